"""Clients for what Turnstile talks to: the data service, the cache, the message broker."""
