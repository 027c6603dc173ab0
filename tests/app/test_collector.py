"""The collector's settings for a long-running server (app/collector.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from app.collector import YOUNG_THRESHOLD, freeze_long_lived, tune_thresholds


class Node:
    """An object that can be part of a reference cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A two-object cycle, unreachable once this returns: only the collector can free it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process's collector as it was: nothing frozen, CPython's thresholds."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("thawed")
def test_what_is_alive_is_frozen_and_garbage_is_collected_first() -> None:
    kept = [[i] for i in range(1000)]
    garbage = cycle()

    frozen = freeze_long_lived("in a test")

    assert frozen == gc.get_freeze_count() >= len(kept)
    assert garbage() is None  # collected before the freeze, not frozen for ever


@pytest.mark.usefixtures("thawed")
def test_the_next_freeze_collects_what_the_last_one_kept_and_is_garbage_now() -> None:
    holder = [cycle()]  # the cycle's weak reference, and the cycle itself kept alive by:
    alive = holder[0]()
    assert alive is not None
    freeze_long_lived("in a test")
    del alive  # the cycle is garbage now, but frozen: the collector does not look at it
    gc.collect()
    assert holder[0]() is not None

    freeze_long_lived("again")

    assert holder[0]() is None


@pytest.mark.usefixtures("thawed")
def test_only_the_young_generation_is_collected_less_often() -> None:
    _young, middle, old = gc.get_threshold()

    tune_thresholds()

    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
