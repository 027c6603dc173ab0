"""A write whose answer was lost or unusable: read the record back to learn whether it was applied.

The data service may apply a write and then answer too late, with a 5xx, or over a connection
that drops (the client marks those errors `outcome_unknown`). Answering the error and doing
nothing else would leave the cache stale, the change unannounced and, for a deactivation, the
user's tokens working (contract §4, §9, §9a). So the step reads the record the write named:

- the record shows every field the write sent (or a deleted record is gone): **applied**, and
  the request goes on as if the answer had come;
- a record a DELETE named is still there: **not applied**, the error stands and nothing follows;
- anything else (the read fails too, a field the record never shows, such as a password, or a
  value that differs): **unknown**. The error stands, and the steps around act as for a change
  that may have been made: the cache entry is dropped and sessions the change would end are
  ended (`outcome_unknown_key`); no event is published, since none can say what changed.

A create's answer carried the new record's id, so its record is looked for by the address it
was sent with (`?email=`, the one lookup §7 offers) and taken only when it shows every field
sent. Only the data service is read back: its routes are the contract's (§7). A named
upstream's lost write is unknown at once.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Final

from prometheus_client import Counter

from app import DataService, NotFound, ProblemError, UpstreamReply

log = logging.getLogger("turnstile.data_fetch")

# A create is found by `?email=`; contract §7 does not say the filter is exact, so a page of
# other records may come before it (as the users plugin's lookup allows for).
_LOOKUP_PAGE: Final = 100

UNCERTAIN_WRITES = Counter(
    "turnstile_uncertain_writes_total",
    "Writes whose answer was lost or unusable, by what reading the record back said",
    ["result"],
)


class Settled(enum.Enum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"
    UNKNOWN = "unknown"


async def settle(
    client: DataService | None, method: str, path: str, sent: Any, request_id: str | None
) -> tuple[Settled, UpstreamReply | None]:
    """What became of a `method` write to `path` whose answer was lost; with the record read
    back when it shows the write applied. `client` None: not the data service, not read back."""
    if client is None:
        result, reply = Settled.UNKNOWN, None
    elif method == "POST":
        result, reply = await _created(client, path, sent, request_id)
    else:
        result, reply = await _read_back(client, method, path, sent, request_id)
    UNCERTAIN_WRITES.labels(result.value).inc()
    log.warning("%s %s: the data service's answer was lost or unusable; read back, the write is %s", method, path,
                result.value.replace("_", " "), extra={"request_id": request_id})
    return result, reply


async def _read_back(
    client: DataService, method: str, path: str, sent: Any, request_id: str | None
) -> tuple[Settled, UpstreamReply | None]:
    """The record a PATCH or DELETE named, read again."""
    try:
        reply = await client.request("GET", path, request_id=request_id)
    except NotFound:
        return (Settled.APPLIED if method == "DELETE" else Settled.UNKNOWN), None
    except ProblemError:
        return Settled.UNKNOWN, None
    if method == "DELETE":
        return Settled.NOT_APPLIED, None
    if _shows(reply.data, sent):
        return Settled.APPLIED, reply
    return Settled.UNKNOWN, None


async def _created(
    client: DataService, path: str, sent: Any, request_id: str | None
) -> tuple[Settled, UpstreamReply | None]:
    """A create's record, found by the address it was sent with (its id was in the lost answer).

    Applied only when a record shows every field sent: the password hash among them is salted,
    so an account that had the address before (a 409 that was lost) never passes for this one.
    Not found is unknown, not "not applied": the data service may still be saving it.
    """
    email = sent.get("email") if isinstance(sent, dict) else None
    if not isinstance(email, str):
        return Settled.UNKNOWN, None
    try:
        reply = await client.request("GET", path.rstrip("/"), params={"email": email, "limit": _LOOKUP_PAGE},
                                     request_id=request_id)
    except ProblemError:
        return Settled.UNKNOWN, None
    items = reply.data.get("items") if isinstance(reply.data, dict) else None
    for record in items if isinstance(items, list) else ():
        if _shows(record, sent):
            return Settled.APPLIED, UpstreamReply(reply.status, record)
    return Settled.UNKNOWN, None


def _shows(record: Any, sent: Any) -> bool:
    """Whether `record` holds every field of the write `sent`, with the value sent."""
    return isinstance(record, dict) and isinstance(sent, dict) and bool(sent) \
        and all(name in record and record[name] == value for name, value in sent.items())
