"""AMQP topic matching: which routing keys a subscription's binding key receives.

A binding key is words separated by dots; `*` stands for exactly one word, `#` for zero or
more (RabbitMQ's topic exchange).
"""

from __future__ import annotations


def is_pattern(binding: str) -> bool:
    """Whether `binding` has a wildcard word, rather than naming one routing key."""
    return any(word in ("*", "#") for word in binding.split("."))


def topic_matches(binding: str, routing_key: str) -> bool:
    """Whether a queue bound with `binding` receives messages published with `routing_key`."""
    return _words_match(binding.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])
