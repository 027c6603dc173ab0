"""Compressed request bodies for tests: a gzip bomb, and a spy on aiohttp's own decompressor."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from aiohttp import compression_utils

MIB = 1024 * 1024


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip member of a JSON object whose `name` is `inflated_mib` MiB long: ~1 KB of gzip
    per MiB."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"a" * MIB
    parts = [deflater.compress(b'{"name": "')]
    parts += [deflater.compress(chunk) for _ in range(inflated_mib)]
    parts += [deflater.compress(b'", "size": 2}'), deflater.flush()]
    return b"".join(parts)


def count_aiohttp_inflation(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes aiohttp's own decompressor produces from now on, call by call."""
    produced: list[int] = []
    original = compression_utils.ZLibDecompressor.decompress_sync

    def counting(self: Any, data: bytes, max_length: int = 0) -> bytes:
        out: bytes = original(self, data, max_length)
        produced.append(len(out))
        return out

    monkeypatch.setattr(compression_utils.ZLibDecompressor, "decompress_sync", counting)
    return produced
