"""The built-in `users` plugin."""
