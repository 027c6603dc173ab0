"""The built-in `data-fetch` plugin."""
