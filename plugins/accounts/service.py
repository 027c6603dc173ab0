"""`Accounts`: the plugin's per-app objects (token state, the mailer, the auth store) and the
work it does after answering: looking a user up, issuing a token and queueing its mail.

Work after the answer runs in tasks this object keeps, so a request for a mail answers the
same, in body and in time, whether or not the address belongs to anyone; shutdown waits for
them briefly before the mailer drains.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final, final

from aiohttp import web

from app import (
    DataService,
    MemoryWindowCounter,
    ProblemError,
    RedisUnavailable,
    RedisWindowCounter,
    data_service_key,
    redis_key,
)
from plugins.accounts.budget import VerificationMailBudget
from plugins.accounts.settings import AccountsSettings
from plugins.accounts.tokens import (
    RESET,
    VERIFY,
    MailTokens,
    MemoryRecordStore,
    RecordStore,
    RedisRecordStore,
    password_fingerprint,
)
from plugins.auth.services import AuthServices, services_key
from plugins.mail import Mailer, MailTemplate, mailer_for
from plugins.users import normalise_email, user_with_email

log = logging.getLogger("turnstile.accounts")

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
TEMPLATE_FOR: Final = {VERIFY: "verify-email", RESET: "reset-password"}
# Where the links point, under PUBLIC_URL. The token rides in the fragment, which browsers
# never send to a server: no access log or Referer header on the way ever holds it.
LINK_PATH_FOR: Final = {VERIFY: "/verify-email", RESET: "/reset-password"}
VARIABLES: Final = frozenset({"link", "token", "email", "expires_in", "public_url"})
STOP_DEADLINE_S: Final = 5.0
# Work after answers that may wait at once (each a data-service look-up, then a mail): past it,
# new work is dropped and logged, so a flood from many clients cannot pile up tasks.
MAX_PENDING: Final = 1000


def lifetime_in_words(seconds: int) -> str:
    """E.g. "24 hours", "1 hour", "10 minutes", "90 seconds", "7 days"."""
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        count, unit = seconds // 86400, "day"
    elif seconds % 3600 == 0:
        count, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        count, unit = seconds // 60, "minute"
    else:
        count, unit = seconds, "second"
    return f"{count} {unit}{'' if count == 1 else 's'}"


@final
class Accounts:
    """Made when the first accounts step is built; `start` reads the settings and templates."""

    def __init__(
        self, *, data: DataService, mailer: Mailer, tokens: MailTokens, auth: AuthServices,
        verification_mails: VerificationMailBudget | None = None,
    ) -> None:
        self.data = data
        self.mailer = mailer
        self.tokens = tokens
        self.auth = auth
        self.verification_mails = (
            verification_mails if verification_mails is not None else VerificationMailBudget(MemoryWindowCounter())
        )
        self.settings = AccountsSettings()
        self.templates: dict[str, MailTemplate] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, settings: AccountsSettings) -> None:
        self.settings = settings
        self.templates = self.mailer.templates(TEMPLATE_FOR.values(), TEMPLATES_DIR, VARIABLES)

    async def stop(self) -> None:
        if not self._tasks:
            return
        await asyncio.wait(set(self._tasks), timeout=STOP_DEADLINE_S)
        late = list(self._tasks)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning("%d mail(s) not prepared at shutdown: their look-up did not finish in time", len(late))

    def after_answer(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` once the request is answered; its failure is logged, never raised."""
        if len(self._tasks) >= MAX_PENDING:
            work.close()
            self.mailer.count_unqueued(what, f"{len(self._tasks)} earlier ones are still being prepared")
            return
        task = asyncio.create_task(self._guarded(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except ProblemError as exc:  # the data service's answer
            self.mailer.count_unprepared(what, exc.detail)
        except RedisUnavailable as exc:
            self.mailer.count_unprepared(what, f"token state (Redis) unavailable: {exc}")
        except Exception:
            log.exception("%s not sent", what)
            self.mailer.count_unprepared(what, "an unexpected error (logged above)")

    async def user_by_email(self, email: str, request_id: str | None) -> dict[str, Any] | None:
        """The stored record (hash included) of the user with `email`, or None."""
        return await user_with_email(self.data, email, request_id)

    async def mail_if_due(self, purpose: str, email: str, request_id: str | None) -> None:
        """A `purpose` mail to the user with `email` when one is due: a reset mail to an active
        user, a verification mail to an active, unverified one."""
        user = await self.user_by_email(email, request_id)
        if user is None or user.get("is_active") is not True:
            return
        if purpose == VERIFY and user.get("is_verified") is not False:
            return
        await self.mail_token(purpose, user)

    async def void_mail_tokens(self, user_id: int) -> None:
        """Refuse every token mailed to `user_id` until now (its address changed)."""
        longest = max(self.settings.verify_token_ttl_s, self.settings.reset_token_ttl_s)
        await self.tokens.void_issued_before(user_id, longest)

    async def mail_token(self, purpose: str, user: dict[str, Any]) -> None:
        """Issue a `purpose` token for `user` (a record with id and email; a reset needs its
        password_hash too) and queue the mail that carries it."""
        email = str(user["email"])
        if purpose == RESET:
            ttl_s, state = self.settings.reset_token_ttl_s, password_fingerprint(str(user["password_hash"]))
        else:
            ttl_s, state = self.settings.verify_token_ttl_s, ""
        token = await self.tokens.issue(purpose, user_id=int(user["id"]), email=normalise_email(email), state=state,
                                        ttl_s=ttl_s)
        public_url = self.mailer.public_url
        values = {
            "link": f"{public_url}{LINK_PATH_FOR[purpose]}#token={token}",
            "token": token,
            "email": email,
            "expires_in": lifetime_in_words(ttl_s),
            "public_url": public_url,
        }
        self.mailer.send(self.templates[TEMPLATE_FOR[purpose]].render(email, values))


# Provided by the plugin's setup_app (before any step is built).
accounts_key: Final = web.AppKey("accounts", Accounts)


def make_accounts(app: web.Application) -> Accounts:
    """The app's Accounts, from the clients and the auth and mail plugins' objects (no I/O)."""
    redis = app.get(redis_key)
    store: RecordStore = RedisRecordStore(redis) if redis is not None else MemoryRecordStore()
    return Accounts(
        data=app[data_service_key], mailer=mailer_for(app), tokens=MailTokens(store), auth=app[services_key],
        verification_mails=VerificationMailBudget(
            RedisWindowCounter(redis) if redis is not None else MemoryWindowCounter()
        ),
    )


def accounts_for(app: web.Application) -> Accounts:
    """The app's Accounts; call it from a step's `build` (at start-up), never per request."""
    accounts = app.get(accounts_key)
    if accounts is None:
        msg = "the account flows need the auth and mail plugins, and one of them is disabled"
        raise RuntimeError(msg)
    return accounts
