"""Turnstile's benchmark: the pipeline against a hand-written baseline (docs/performance.md)."""
