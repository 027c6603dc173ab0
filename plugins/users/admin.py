"""Admins: created at start-up (TURNSTILE_ADMIN_EMAIL/PASSWORD), created or promoted from the CLI
(`turnstile create-admin`, a command this plugin adds).

Both talk to the data service over HTTP like every other write, so the password is hashed
here (with the hasher the app provides, `password_hasher_key`) and only its hash is sent. And
like every other write, each saved change is announced (contract §9): `user.created` for a new
admin, `user.updated` for a promotion, with the public user. The default subscriptions then
drop the promoted user's cache entries on every instance.

The two paths differ on purpose (contract §3). Start-up only ever creates: an account that
already has the configured email, whoever registered it and whatever its roles or state, is
left exactly as it is, or anyone who registered that address before the variable was set
would become admin at the next restart. Promoting an existing account is a deliberate act:
`turnstile create-admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import re
import sys
from typing import Any, ClassVar, Literal

import attrs

from app import (
    Command,
    CommandContext,
    Conflict,
    DataService,
    PasswordHasher,
    ProblemError,
    password_hasher_key,
    plugin_settings,
    setting,
)
from plugins.users.announce import Announce, announcer
from plugins.users.models import EMAIL_PATTERN, PASSWORD_MAX, PASSWORD_MIN
from plugins.users.records import user_with_email
from plugins.users.rules import normalise_email
from plugins.users.startup_admin import StartupOutcome

log = logging.getLogger("turnstile.admin")

AdminOutcome = Literal["created", "promoted", "unchanged"]
ADMIN_ROLES = ("admin", "user")
_USERS = "/api/v1/users"

def _checked_email(value: str) -> str:
    """An address a user could register (the same rules: `EMAIL_PATTERN` after normalising)."""
    if not re.search(EMAIL_PATTERN, normalise_email(value)):
        msg = "an email address a user could register"
        raise ValueError(msg)
    return value


def _checked_password(value: str) -> str:
    """A password a user could choose: PASSWORD_MIN to PASSWORD_MAX characters."""
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        msg = f"{PASSWORD_MIN} to {PASSWORD_MAX} characters"
        raise ValueError(msg)
    return value


@attrs.frozen(kw_only=True)
class AdminSettings:
    """The start-up admin (contract §3), and `turnstile create-admin`'s password."""

    env_prefix: ClassVar[str] = "TURNSTILE_ADMIN_"

    email: str | None = setting(
        default=None,
        description="with TURNSTILE_ADMIN_PASSWORD: created at start-up when no account has this email "
        "(an existing account is never changed at start-up)",
        parse=_checked_email,
    )
    password: str | None = setting(
        default=None, secret=True, description="the start-up admin's password; create-admin's too",
        parse=_checked_password,
    )


async def create_admin_if_absent(
    client: DataService, hasher: PasswordHasher, email: str, password: str, announce: Announce
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
            created = await _create(client, hasher, email, password)
        except Conflict:
            record = await _find(client, email)  # another replica, or a registration, won the race
        else:
            log.info("admin from TURNSTILE_ADMIN_EMAIL: created")
            await announce("user.created", created)
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


async def ensure_admin(
    client: DataService, hasher: PasswordHasher, email: str, password: str, announce: Announce
) -> AdminOutcome:
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
            return await _promote(client, record, announce)
        try:
            created = await _create(client, hasher, email, password)
        except Conflict:
            continue  # another replica created it between our lookup and our create
        await announce("user.created", created)
        return "created"
    msg = "the admin user could not be created nor found"
    raise ProblemError(msg)


async def _find(client: DataService, email: str) -> dict[str, Any] | None:
    return await user_with_email(client, email, None, with_hash=False)


async def _create(client: DataService, hasher: PasswordHasher, email: str, password: str) -> Any:
    """The data service's answer: the stored user."""
    body = {
        "email": email,
        "password_hash": await hasher.hash(password),
        "full_name": None,
        "roles": list(ADMIN_ROLES),
        "is_active": True,
    }
    return (await client.request("POST", f"{_USERS}/", json=body)).data


def _is_active_admin(record: dict[str, Any]) -> bool:
    return "admin" in (record.get("roles") or ()) and record.get("is_active") is True


async def _promote(client: DataService, record: dict[str, Any], announce: Announce) -> AdminOutcome:
    if _is_active_admin(record):
        return "unchanged"
    roles = list(record.get("roles") or [])
    if "admin" not in roles:
        roles.insert(0, "admin")
    reply = await client.request("PATCH", f"{_USERS}/{record['id']}", json={"roles": roles, "is_active": True})
    await announce("user.updated", reply.data)
    return "promoted"


def _create_admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", required=True)


def create_admin_command(args: argparse.Namespace, context: CommandContext) -> int:
    """`turnstile create-admin --email E`: create or promote that admin; the exit status.

    The password comes from TURNSTILE_ADMIN_PASSWORD (or _FILE), else from a prompt (asked
    twice). Without DATA_SERVICE_URL the embedded data service is started on its SQLite file
    for the duration of the command. Exit status: 0 done, 1 the data service failed, 2 bad input.
    """
    email: str = args.email
    hasher = context.app.get(password_hasher_key)
    if hasher is None:
        sys.stderr.write("create-admin: no plugin hashes passwords (is the auth plugin disabled?)\n")
        return 2
    password = plugin_settings(context.app, AdminSettings).password or _prompt_password()
    if password is None:
        return 2
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        sys.stderr.write(f"create-admin: the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters\n")
        return 2
    try:
        _checked_email(email)
    except ValueError:
        sys.stderr.write("create-admin: --email must be an email address a user could register\n")
        return 2
    try:
        outcome = asyncio.run(_create_admin(context, hasher, email, password))
    except ProblemError as exc:
        sys.stderr.write(f"create-admin: the data service failed: {exc.detail}\n")
        return 1
    sys.stdout.write(f"admin {normalise_email(email)}: {outcome}\n")
    return 0


CREATE_ADMIN = Command(
    name="create-admin", help="create or promote an admin", run=create_admin_command, arguments=_create_admin_arguments,
)


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


async def _create_admin(context: CommandContext, hasher: PasswordHasher, email: str, password: str) -> AdminOutcome:
    async with context.data_service() as client, context.publisher() as publisher:
        return await ensure_admin(client, hasher, email, password, announcer(publisher, context.app, "create-admin"))
