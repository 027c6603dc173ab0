"""Files of personal data (events and outboxes carry users' emails and names), readable by this
service's user alone: created 0600, and an older file found 0644 made so when next opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600


def open_private(path: Path, *, append: bool) -> BinaryIO:
    """`path` opened for writing bytes (appended to, or emptied first), its mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # an older file, created before, or under a looser umask
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise
