"""The built-in `rate-limit` plugin."""
