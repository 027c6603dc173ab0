"""A login looks its user up by email: the data service must answer that from the unique
index, not by scanning the table (a scan per login made it the bottleneck of a login storm)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from app.dataservice import store


@pytest.mark.parametrize("statement", [store._COUNT_EMAIL, store._PAGE_EMAIL])
async def test_a_lookup_by_email_searches_the_unique_index(tmp_path: Path, statement: str) -> None:
    db = tmp_path / "data.sqlite3"
    await (await store.UserStore.open(db)).close()  # the schema, as the service creates it
    with contextlib.closing(sqlite3.connect(db)) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}", {"email": "a@example.com", "limit": 1, "offset": 0})
        details = " ".join(row[3] for row in plan.fetchall())
    assert "SEARCH users USING" in details
    assert "(email=?)" in details
