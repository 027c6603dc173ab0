"""The built-in `event-emit` plugin."""
