"""Admins: created at start-up (TURNSTILE_ADMIN_EMAIL/PASSWORD), created or promoted from the CLI.

Both talk to the data service over HTTP like every other write, so the password is hashed
here and only its argon2id hash is sent.

The two paths differ on purpose (contract §3). Start-up only ever creates: an account that
already has the configured email, whoever registered it and whatever its roles or state, is
left exactly as it is, or anyone who registered that address before the variable was set
would become admin at the next restart. Promoting an existing account is a deliberate act:
`turnstile create-admin`.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import secrets
import sys
import unicodedata
from typing import Any, Literal

from app.clients.dataservice import DataService, DataServiceClient, DataServiceOptions
from app.errors import Conflict, ProblemError
from app.passwords import PasswordHasher, hasher_for
from app.settings import Settings

log = logging.getLogger("turnstile.admin")

AdminOutcome = Literal["created", "promoted", "unchanged"]
StartupOutcome = Literal["created", "exists"]
ADMIN_ROLES = ("admin", "user")
PASSWORD_ENV = "TURNSTILE_ADMIN_PASSWORD"  # noqa: S105  # a variable name, not a password
PASSWORD_MIN, PASSWORD_MAX = 8, 128
_USERS = "/api/v1/users"


def normalise_email(email: str) -> str:
    """An email as the service stores it (contract §4): trimmed, NFKC-normalised, lower-cased."""
    return unicodedata.normalize("NFKC", email.strip()).lower()


async def create_admin_if_absent(
    client: DataService, hasher: PasswordHasher, email: str, password: str
) -> StartupOutcome:
    """Create the admin `email` with `password` unless an account already has that email.

    An existing account is never changed: not promoted, not re-enabled, its password kept.
    The reason is logged (one line); `turnstile create-admin` promotes deliberately.

    Returns:
        "created", or "exists" (left untouched, including when another instance created it
        between our lookup and our create).

    Raises:
        ProblemError: the data service failed (unreachable, timeout, bad answer).
    """
    email = normalise_email(email)
    record = await _find(client, email)
    if record is None:
        try:
            await _create(client, hasher, email, password)
        except Conflict:
            record = await _find(client, email)  # another replica, or a registration, won the race
        else:
            log.info("admin from TURNSTILE_ADMIN_EMAIL: created")
            return "created"
    _log_existing(record)
    return "exists"


def _log_existing(record: dict[str, Any] | None) -> None:
    if record is not None and _is_active_admin(record):
        log.info("admin from TURNSTILE_ADMIN_EMAIL: the account exists and is an active admin; left unchanged")
        return
    log.warning(
        "admin from TURNSTILE_ADMIN_EMAIL not created: an account with that email exists; start-up never "
        "promotes, re-enables or changes an account (use `turnstile create-admin` to promote it)"
    )


async def ensure_admin(client: DataService, hasher: PasswordHasher, email: str, password: str) -> AdminOutcome:
    """Make the user `email` an active admin (`turnstile create-admin`); idempotent.

    A missing user is created with roles ["admin", "user"] and `password`. An existing one
    is promoted (``admin`` added to its roles, made active) and keeps its own password: this
    never resets anyone's password behind their back.

    Returns:
        "created", "promoted" or "unchanged".

    Raises:
        ProblemError: the data service failed (unreachable, timeout, bad answer).
    """
    email = normalise_email(email)
    for _attempt in range(2):
        record = await _find(client, email)
        if record is not None:
            return await _promote(client, record)
        try:
            await _create(client, hasher, email, password)
        except Conflict:
            continue  # another replica created it between our lookup and our create
        return "created"
    msg = "the admin user could not be created nor found"
    raise ProblemError(msg)


async def _find(client: DataService, email: str) -> dict[str, Any] | None:
    reply = await client.request("GET", _USERS, params={"email": email, "limit": 1, "offset": 0})
    items = reply.data.get("items", []) if isinstance(reply.data, dict) else []
    return items[0] if items else None


async def _create(client: DataService, hasher: PasswordHasher, email: str, password: str) -> None:
    body = {
        "email": email,
        "password_hash": await hasher.hash(password),
        "full_name": None,
        "roles": list(ADMIN_ROLES),
        "is_active": True,
    }
    await client.request("POST", f"{_USERS}/", json=body)


def _is_active_admin(record: dict[str, Any]) -> bool:
    return "admin" in (record.get("roles") or ()) and record.get("is_active") is True


async def _promote(client: DataService, record: dict[str, Any]) -> AdminOutcome:
    if _is_active_admin(record):
        return "unchanged"
    roles = list(record.get("roles") or [])
    if "admin" not in roles:
        roles.insert(0, "admin")
    await client.request("PATCH", f"{_USERS}/{record['id']}", json={"roles": roles, "is_active": True})
    return "promoted"


def create_admin_command(settings: Settings, email: str) -> int:
    """`turnstile create-admin --email E`: create or promote that admin; the exit status.

    The password comes from TURNSTILE_ADMIN_PASSWORD, else from a prompt (asked twice).
    Without DATA_SERVICE_URL the embedded data service is started on its SQLite file for
    the duration of the command. Exit status: 0 done, 1 the data service failed, 2 bad input.
    """
    password = settings.admin_password or os.environ.get(PASSWORD_ENV) or _prompt_password()
    if password is None:
        return 2
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        sys.stderr.write(f"create-admin: the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters\n")
        return 2
    if "@" not in email or not email.strip():
        sys.stderr.write("create-admin: --email must be an email address\n")
        return 2
    try:
        outcome = asyncio.run(_create_admin(settings, email, password))
    except ProblemError as exc:
        sys.stderr.write(f"create-admin: the data service failed: {exc.detail}\n")
        return 1
    sys.stdout.write(f"admin {normalise_email(email)}: {outcome}\n")
    return 0


def _prompt_password() -> str | None:
    try:
        first = getpass.getpass("Admin password: ")
        again = getpass.getpass("Again: ")
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\ncreate-admin: no password given\n")
        return None
    if first != again:
        sys.stderr.write("create-admin: the two passwords differ\n")
        return None
    return first


async def _create_admin(settings: Settings, email: str, password: str) -> AdminOutcome:
    runner = None
    base_url = settings.data_service_url
    token = settings.data_service_token
    if base_url is None:
        from app.dataservice import start_dataservice  # noqa: PLC0415  # only when embedded

        token = secrets.token_urlsafe(32)  # this command's own, like the server's (app/wiring.py)
        runner, base_url = await start_dataservice(settings.var_dir / "data.sqlite3", token=token)
    try:
        options = DataServiceOptions(
            base_url=base_url,
            connect_timeout_s=settings.data_service_connect_timeout_s,
            total_timeout_s=settings.data_service_timeout_s,
            retries=settings.data_service_retries,
            token=token,
        )
        async with DataServiceClient(options) as client:
            return await ensure_admin(client, hasher_for(settings), email, password)
    finally:
        if runner is not None:
            await runner.cleanup()
