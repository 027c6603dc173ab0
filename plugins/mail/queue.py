"""The send queue: bounded, worked by a few tasks, each failed send retried with backoff.

A request only ever puts a mail in the queue (`submit`, which never waits and never raises),
so a slow or absent SMTP server never slows or fails the request that caused the mail. A
transient failure is tried again after `retry_delay_s`, doubled each time with jitter, up to
`max_attempts` sends; the wait happens on a timer, so the workers keep sending other mails
meanwhile. A mail refused for good (a 5xx answer), one that ran out of attempts, one that found
the queue full and one still waiting at shutdown are logged and counted, never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from email.message import EmailMessage
from typing import Final, final

import attrs
from prometheus_client import Counter, Gauge

from app import OutageLog, current_request_id
from plugins.mail.senders import Sender, SendFailed

log = logging.getLogger("turnstile.mail")

WORKERS: Final = 4
MAX_RETRY_DELAY_S: Final = 300.0

QUEUED = Counter("turnstile_mail_queued_total", "Mails accepted into the send queue")
SENT = Counter("turnstile_mail_sent_total", "Mails handed to the SMTP server (or written as .eml files)")
FAILED = Counter(
    "turnstile_mail_failed_total",
    "Mails given up on, by reason (rejected, attempts_exhausted, queue_full, shutdown, error, unprepared)",
    ["reason"],
)
RETRIES = Counter("turnstile_mail_retries_total", "Failed sends that will be tried again")
WAITING = Gauge("turnstile_mail_waiting", "Mails in the send queue or waiting for a retry",
                multiprocess_mode="livesum")  # under --workers N: every worker's queue


@attrs.define
class _Item:
    message: EmailMessage
    kind: str  # what the log may say about the mail
    attempt: int = 0
    # The request that caused the mail: every line about it carries its id, as the request's own do.
    request_id: str = attrs.field(factory=current_request_id.get)


@final
class MailQueue:
    """At most `size` mails wait (queued or between retries); `WORKERS` tasks send them."""

    def __init__(
        self, sender: Sender, *, size: int, max_attempts: int, retry_delay_s: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.sender = sender
        self.size = size
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self._jitter = jitter
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._retries: dict[asyncio.TimerHandle, _Item] = {}
        self._in_flight = 0
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._outage_log = OutageLog(log, f"mail delivery ({sender.name})")

    @property
    def waiting(self) -> int:
        """Mails not yet handed over: queued, being sent, or waiting for a retry."""
        return self._queue.qsize() + len(self._retries) + self._in_flight

    def submit(self, message: EmailMessage, kind: str) -> bool:
        """Queue `message`; False (logged and counted) when the queue is full or closed."""
        if self._closed or self.waiting >= self.size:
            reason = "shutdown" if self._closed else "queue_full"
            FAILED.labels(reason=reason).inc()
            log.error("mail %s dropped: %s (%d waiting)", kind, reason.replace("_", " "), self.waiting)
            return False
        self._queue.put_nowait(_Item(message, kind))
        QUEUED.inc()
        WAITING.inc()
        return True

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"mail-worker-{i}") for i in range(WORKERS)]

    async def stop(self, deadline_s: float) -> None:
        """Send what is queued for up to `deadline_s`; what is left then is counted as lost."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), deadline_s)
        left = self.waiting
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        if left:
            FAILED.labels(reason="shutdown").inc(left)
            WAITING.dec(left)
            log.warning("%d mail(s) not sent at shutdown (the server kept failing, or time ran out)", left)

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            self._in_flight += 1
            try:
                await self._attempt(item)
            finally:
                self._in_flight -= 1
                self._queue.task_done()

    async def _attempt(self, item: _Item) -> None:
        item.attempt += 1
        current_request_id.set(item.request_id)  # this worker task's own context, until its next mail
        try:
            await self.sender.send(item.message)
        except SendFailed as exc:
            if exc.transient and item.attempt < self.max_attempts:
                self._retry_later(item, exc)
            else:
                reason = "attempts_exhausted" if exc.transient else "rejected"
                self._give_up(item, reason, str(exc))
        except Exception:
            log.exception("mail %s: the %s sender failed unexpectedly", item.kind, self.sender.name)
            self._give_up(item, "error", "unexpected error")
        else:
            SENT.inc()
            WAITING.dec()

    def _retry_later(self, item: _Item, exc: SendFailed) -> None:
        delay = min(self.retry_delay_s * 2 ** (item.attempt - 1), MAX_RETRY_DELAY_S) * (0.5 + self._jitter())
        RETRIES.inc()
        self._outage_log.warning(f"sending mail {item.kind} (attempt {item.attempt} of {self.max_attempts}, "
                            f"next in {delay:.1f} s)", exc)
        handle: asyncio.TimerHandle | None = None

        def requeue() -> None:
            assert handle is not None
            self._retries.pop(handle, None)
            self._queue.put_nowait(item)

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._retries[handle] = item

    def _give_up(self, item: _Item, reason: str, detail: str) -> None:
        FAILED.labels(reason=reason).inc()
        WAITING.dec()
        log.error("mail %s given up after %d attempt(s): %s", item.kind, item.attempt, detail)
