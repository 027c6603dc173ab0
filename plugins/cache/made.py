"""The invalidations this process made right after a write, by the id of the event it emits.

The default subscriptions tombstone `user:{id}` for every `user.updated` and `user.deleted`,
this process's own events included: twice more per write (the shared queue and this
instance's queue) after the pipeline's own tombstone. For a write whose pipeline stored its
tombstone after the data service answered, those two close no race: any fill that read the
old record started before that tombstone and is refused by it (see `plugins.cache.markers`),
and any fill after it reads the new record. So the pipeline step records here what it stored,
under the event's id (`event_id_key`), and a subscription step skips the keys recorded for the
event it handles.

Only stored tombstones are recorded: a deferred one (Redis down) is not, and the subscriptions
write it as before. Events of other instances and of other producers are never recorded here.
The record is bounded: an event consumed after more than `max_events` newer writes is simply
invalidated again, which is what happened before this record existed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, final

from aiohttp import web


@final
class MadeInvalidations:
    """At most `max_events` recent events' stored keys, oldest forgotten first."""

    def __init__(self, *, max_events: int = 4096) -> None:
        if max_events < 1:
            msg = f"max_events must be at least 1, got {max_events}"
            raise ValueError(msg)
        self._max_events = max_events
        self._keys_by_event: OrderedDict[str, frozenset[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys_by_event)

    def record(self, event_id: str, keys: Iterable[str]) -> None:
        """The tombstones of `keys` were stored after the write that `event_id` announces."""
        stored = frozenset(keys)
        if not stored:
            return
        self._keys_by_event[event_id] = stored | self._keys_by_event.get(event_id, frozenset())
        self._keys_by_event.move_to_end(event_id)
        while len(self._keys_by_event) > self._max_events:
            self._keys_by_event.popitem(last=False)

    def made(self, event_id: str) -> frozenset[str]:
        """The keys already tombstoned after `event_id`'s write (kept: both subscriptions ask)."""
        return self._keys_by_event.get(event_id, frozenset())


made_invalidations_key: Final[web.AppKey[MadeInvalidations]] = web.AppKey("cache_made_invalidations")
