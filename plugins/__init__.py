"""Turnstile's built-in plugins, each registered through the `turnstile.plugins` entry-point group."""
