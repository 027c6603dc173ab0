"""SQLite storage for the reference data service: one file, WAL, one aiosqlite connection.

aiosqlite runs every statement on its own thread, so the event loop never blocks on disk.
One connection serves the whole app in autocommit mode: every write is a single statement,
and an `asyncio.Lock` keeps a page and its count from seeing different states.

`sessions_revoked_at` (contract §7) is the durable record of a user-level revocation: tokens
issued before it are dead. It only moves forward (a write keeps the later of the stored and
the given time, so a late or repeated revocation can never revive tokens), and changing it
alone does not change `updated_at`: it is not part of the user Turnstile answers with.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypedDict, final

import aiosqlite
import attrs
import orjson

# aiosqlite logs every statement with its parameters at DEBUG: password hashes included. The
# service's own DEBUG level must never write those, so this library stays at INFO.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

BUSY_TIMEOUT_MS: Final = 5000

# AUTOINCREMENT: a deleted user's id is never handed out again, so stale cache entries and
# tokens that name it can never point at somebody else.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    full_name     TEXT,
    roles         TEXT    NOT NULL DEFAULT '[]',
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_verified   INTEGER NOT NULL DEFAULT 0 CHECK (is_verified IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    sessions_revoked_at TEXT
) STRICT
"""
# Databases made before a column existed get it added at open (`_ADDED_COLUMNS`).
_ADDED_COLUMNS: Final = {
    "is_verified": "ALTER TABLE users ADD COLUMN is_verified INTEGER NOT NULL DEFAULT 0 CHECK (is_verified IN (0, 1))",
    "sessions_revoked_at": "ALTER TABLE users ADD COLUMN sessions_revoked_at TEXT",
}
_MUTABLE: Final = ("email", "password_hash", "full_name", "roles", "is_active", "is_verified")
_INSERT: Final = """
INSERT INTO users (email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at)
VALUES (:email, :password_hash, :full_name, :roles, :is_active, :is_verified, :now, :now)
RETURNING id, email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at,
    sessions_revoked_at
"""
# One fixed statement for every PATCH: `set_<column>` says whether that column changes, so
# setting full_name to NULL differs from leaving it alone, and no SQL is built from input.
# The RFC 3339 times all share one UTC format, so the later one is the larger text.
_UPDATE: Final = """
UPDATE users SET
    email         = IIF(:set_email, :email, email),
    password_hash = IIF(:set_password_hash, :password_hash, password_hash),
    full_name     = IIF(:set_full_name, :full_name, full_name),
    roles         = IIF(:set_roles, :roles, roles),
    is_active     = IIF(:set_is_active, :is_active, is_active),
    is_verified   = IIF(:set_is_verified, :is_verified, is_verified),
    sessions_revoked_at = IIF(
        :set_sessions_revoked_at AND (sessions_revoked_at IS NULL OR :sessions_revoked_at > sessions_revoked_at),
        :sessions_revoked_at, sessions_revoked_at),
    updated_at    = IIF(:set_public, :now, updated_at)
WHERE id = :id
RETURNING id, email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at,
    sessions_revoked_at
"""
_GET: Final = """
SELECT id, email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at,
    sessions_revoked_at FROM users
WHERE id = :id
"""
# Two fixed statements per query rather than `(:email IS NULL OR email = :email)`: SQLite
# plans that once for both cases and scans the table, where `email = :email` uses the unique
# index (a login is a lookup by email: a scan per login made the data service the bottleneck).
_COUNT_ALL: Final = "SELECT COUNT(*) FROM users"
_COUNT_EMAIL: Final = "SELECT COUNT(*) FROM users WHERE email = :email"
_PAGE_ALL: Final = """
SELECT id, email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at,
    sessions_revoked_at FROM users
ORDER BY id LIMIT :limit OFFSET :offset
"""
_PAGE_EMAIL: Final = """
SELECT id, email, password_hash, full_name, roles, is_active, is_verified, created_at, updated_at,
    sessions_revoked_at FROM users
WHERE email = :email
ORDER BY id LIMIT :limit OFFSET :offset
"""
_DELETE: Final = "DELETE FROM users WHERE id = :id"


class EmailTaken(Exception):
    """Another user already has this email (the `UNIQUE` constraint said so)."""


class UserChanges(TypedDict, total=False):
    """The fields a PATCH may change; absent keys stay as they are."""

    email: str
    password_hash: str
    full_name: str | None
    roles: list[str]
    is_active: bool
    is_verified: bool
    sessions_revoked_at: str  # RFC 3339 UTC as `utc_now` writes it; only a later one is kept


@attrs.frozen(kw_only=True)
class NewUser:
    """What POST stores. The store sets `id`, `created_at` and `updated_at`."""

    email: str
    password_hash: str
    full_name: str | None = None
    roles: list[str] = attrs.field(factory=lambda: ["user"])
    is_active: bool = True
    is_verified: bool = False  # a new address is unproven until its owner follows a mailed link


@attrs.frozen(kw_only=True)
class UserRecord:
    """A stored user, exactly as the data service returns it (hash included: Turnstile strips it)."""

    id: int
    email: str
    password_hash: str
    full_name: str | None
    roles: list[str]
    is_active: bool
    is_verified: bool
    created_at: str
    updated_at: str
    sessions_revoked_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds and a `Z`, so consecutive writes order as text."""
    return utc_text(datetime.now(UTC))


def utc_text(moment: datetime) -> str:
    """`moment` in the one format every stored time has (RFC 3339, UTC, microseconds, `Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _owner_only(db: Path) -> None:
    db.touch(mode=0o600, exist_ok=True)
    db.chmod(0o600)  # a file made by an earlier release may be world-readable


def _record(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        email=row["email"],
        password_hash=row["password_hash"],
        full_name=row["full_name"],
        roles=orjson.loads(row["roles"]),
        is_active=bool(row["is_active"]),
        is_verified=bool(row["is_verified"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sessions_revoked_at=row["sessions_revoked_at"],
    )


def _column_value(name: str, value: object) -> object:
    if name == "roles" and value is not None:
        return orjson.dumps(value).decode()
    if name in ("is_active", "is_verified") and value is not None:
        return int(bool(value))
    return value


async def _add_missing_columns(conn: aiosqlite.Connection) -> None:
    """Bring a database made by an older version up to the current columns (additive only)."""
    async with conn.execute("PRAGMA table_info(users)") as cur:
        present = {row["name"] for row in await cur.fetchall()}
    for name, statement in _ADDED_COLUMNS.items():
        if name not in present:
            await conn.execute(statement)


@final
class UserStore:
    """Users in one SQLite file. Open with `await UserStore.open(path)`; `await close()` at the end."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> UserStore:
        """Connect (autocommit), switch to WAL, set `busy_timeout`, create the schema if missing.

        The file holds every password hash: it is made readable by its owner alone, and SQLite
        gives its WAL and shared-memory files the database file's permissions."""
        await asyncio.to_thread(_owner_only, Path(path))
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute(_SCHEMA)
            await _add_missing_columns(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def journal_mode(self) -> str:
        async with self._conn.execute("PRAGMA journal_mode") as cur:
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def create(self, new: NewUser) -> UserRecord:
        """Insert a user. Raises `EmailTaken`."""
        params = {name: _column_value(name, getattr(new, name)) for name in _MUTABLE}
        async with self._lock:
            row = await self._fetch_one(_INSERT, {**params, "now": utc_now()}, new.email)
        assert row is not None
        return _record(row)

    async def get(self, user_id: int) -> UserRecord | None:
        async with self._lock:
            row = await self._fetch_one(_GET, {"id": user_id})
        return None if row is None else _record(row)

    async def find(self, *, email: str | None, limit: int, offset: int) -> tuple[list[UserRecord], int]:
        """One page ordered by id (exact `email` match when given), and the total that matches."""
        params = {"email": email, "limit": limit, "offset": offset}
        async with self._lock:
            count_sql, page_sql = (_COUNT_ALL, _PAGE_ALL) if email is None else (_COUNT_EMAIL, _PAGE_EMAIL)
            count = await self._fetch_one(count_sql, params)
            async with self._conn.execute(page_sql, params) as cur:
                rows = await cur.fetchall()
        assert count is not None
        return [_record(r) for r in rows], int(count[0])

    async def update(self, user_id: int, changes: UserChanges) -> UserRecord | None:
        """Apply `changes` and bump `updated_at`; None when there is no such user.

        An empty `changes` returns the record untouched. Raises `EmailTaken`.
        """
        if not changes:
            return await self.get(user_id)
        params: dict[str, object] = {"id": user_id, "now": utc_now()}
        for name in _MUTABLE:
            params[f"set_{name}"] = name in changes
            params[name] = _column_value(name, changes.get(name))
        params["set_public"] = any(name in changes for name in _MUTABLE)
        params["set_sessions_revoked_at"] = "sessions_revoked_at" in changes
        params["sessions_revoked_at"] = changes.get("sessions_revoked_at")
        async with self._lock:
            row = await self._fetch_one(_UPDATE, params, changes.get("email"))
        return None if row is None else _record(row)

    async def delete(self, user_id: int) -> bool:
        """Remove a user; False when there was none."""
        async with self._lock, self._conn.execute(_DELETE, {"id": user_id}) as cur:
            return cur.rowcount > 0

    async def _fetch_one(
        self, sql: str, params: Mapping[str, object], email: str | None = None
    ) -> sqlite3.Row | None:
        """Run one statement and return its first row; a clash on the email becomes `EmailTaken`."""
        try:
            async with self._conn.execute(sql, params) as cur:
                row: sqlite3.Row | None = await cur.fetchone()
        except sqlite3.IntegrityError as exc:
            if "users.email" in str(exc):
                raise EmailTaken(email or "") from None
            raise
        return row
