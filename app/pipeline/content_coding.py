"""Request bodies sent with a Content-Encoding, decoded here within the body limit.

aiohttp would decode them itself as they arrive, and it does so for all of a body, even one the
handler never reads: after an early answer (a 401, a 413) it drains what is left of the body,
so 1 MiB of gzip that inflates to 1 GB held the event loop for two seconds. The app turns that
off (`auto_decompress`); a body arrives as sent, at most MAX_BODY_BYTES of it, and is inflated
here to at most MAX_BODY_BYTES, in one bounded call.
"""

from __future__ import annotations

import zlib
from typing import Final

from app.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType

# The codings a request body may have (RFC 9110 §8.4.1), as the Accept-Encoding of a 415 says.
ACCEPTED_CODINGS: Final = "gzip, deflate"

UNREADABLE_BODY: Final = "The request body cannot be read: it does not decode as its Content-Encoding and framing say."
_IDENTITY: Final = frozenset({"", "identity"})
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
# A gzip body may be several members one after the other (RFC 1952 §2.2), as concatenated .gz
# files are. Each costs a new decompressor, so a body of thousands of empty members is refused.
MAX_GZIP_MEMBERS: Final = 16


def decode_content(raw: bytes, coding_header: str, limit: int) -> bytes:
    """`raw` decoded as the request's Content-Encoding header says: at most `limit` bytes, or a
    413; a 400 when it does not decode; a 415 (with Accept-Encoding) for a coding not taken."""
    coding = coding_header.strip().lower()
    if coding in _IDENTITY:
        return raw
    if coding in _GZIP:
        wbits = _GZIP_WBITS
    elif coding == "deflate":
        # RFC 9110 says zlib's format; some clients send bare deflate, as aiohttp also accepts.
        wbits = zlib.MAX_WBITS if raw[:1] and raw[0] & 0x0F == zlib.DEFLATED else -zlib.MAX_WBITS
    else:
        msg = f"The request body's Content-Encoding must be one of: {ACCEPTED_CODINGS} (or none)."
        raise UnsupportedMediaType(msg, headers={"Accept-Encoding": ACCEPTED_CODINGS})
    body = b""
    rest = raw
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits)
        try:
            body += inflater.decompress(rest, limit + 1 - len(body))
        except zlib.error:
            raise MalformedRequest(UNREADABLE_BODY) from None
        if len(body) > limit:
            msg = f"The request body is larger than allowed ({limit // 1024**2} MiB) once decoded."
            raise PayloadTooLarge(msg)
        if not inflater.eof:
            raise MalformedRequest(UNREADABLE_BODY)
        rest = inflater.unused_data
        if not rest:
            return body
        if wbits != _GZIP_WBITS:  # a zlib stream has one member; bytes after it are not a body
            break
    raise MalformedRequest(UNREADABLE_BODY)
