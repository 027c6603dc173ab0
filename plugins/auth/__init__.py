"""The built-in `auth` plugin."""
