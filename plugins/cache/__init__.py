"""The built-in `cache` plugin."""
