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

Only the data service is read back: its routes are the contract's (§7). A named upstream's
lost write is unknown at once.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from prometheus_client import Counter

from app import DataService, NotFound, ProblemError, UpstreamReply

log = logging.getLogger("turnstile.data_fetch")

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
    result, reply = await _read_back(client, method, path, sent, request_id)
    UNCERTAIN_WRITES.labels(result.value).inc()
    log.warning("%s %s: the data service's answer was lost or unusable; read back, the write is %s", method, path,
                result.value.replace("_", " "), extra={"request_id": request_id})
    return result, reply


async def _read_back(
    client: DataService | None, method: str, path: str, sent: Any, request_id: str | None
) -> tuple[Settled, UpstreamReply | None]:
    if client is None or method == "POST":  # a created record's id was in the lost answer
        return Settled.UNKNOWN, None
    try:
        reply = await client.request("GET", path, request_id=request_id)
    except NotFound:
        return (Settled.APPLIED if method == "DELETE" else Settled.UNKNOWN), None
    except ProblemError:
        return Settled.UNKNOWN, None
    if method == "DELETE":
        return Settled.NOT_APPLIED, None
    record = reply.data
    if isinstance(record, dict) and isinstance(sent, dict) and sent \
            and all(name in record and record[name] == value for name, value in sent.items()):
        return Settled.APPLIED, reply
    return Settled.UNKNOWN, None
