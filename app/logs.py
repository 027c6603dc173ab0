"""Log set-up: text in development, one JSON object per line in production; every line of a
request carries its request_id (from a context variable the request-id middleware sets).

In production the lines go through `JsonLinesHandler`, which also takes ready-made lines
(`write_line`: the access log's, app/middlewares/observe.py) into a buffer written once per
event-loop iteration, so a busy loop writes many lines per system call.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any, Final, final

import orjson
from aiohttp import web

from app.middlewares.request_id import current_request_id
from app.workers import this_worker

# Under `--workers N`, every line names its worker (a stalled loop, an error: which process).
_WORKER: Final[dict[str, int]] = {"worker": worker.number} if (worker := this_worker()) is not None else {}

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

# The current span's ids, as the OpenTelemetry log data model names them (`trace_id`, `span_id`,
# lowercase hex), or None outside a recording span: set by app/tracing.py when tracing is on, so
# that a log line leads to its trace. None while tracing is off: a line then costs nothing more.
SpanIds = Callable[[], dict[str, str] | None]
_span_ids: SpanIds | None = None


def use_span_ids(source: SpanIds | None) -> None:
    global _span_ids  # noqa: PLW0603  # set once, when tracing is set up
    _span_ids = source


def _with_span_ids(doc: dict[str, Any]) -> dict[str, Any]:
    if _span_ids is not None and (ids := _span_ids()) is not None:
        doc.update(ids)
    return doc


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A caller's `extra={"request_id": None}` (a call made for no request) reads as "-" too:
        # the field is always a string, as log queries expect.
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


# The second a line's time falls in, and its text: lines come many per second, and making a
# datetime and its ISO text for each was most of the cost of an access line.
_second_text: tuple[int, str] = (-1, "")


def iso_utc(created: float) -> str:
    """`created` (a POSIX time) as RFC 3339 UTC with microseconds: 2026-11-30T19:31:03.917819+00:00."""
    global _second_text  # noqa: PLW0603  # a one-entry cache, replaced whole (threads may log too)
    second, micros = divmod(round(created * 1_000_000), 1_000_000)
    cached_second, text = _second_text
    if second != cached_second:
        text = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{text}.{micros:06d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            **_WORKER,
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        _with_span_ids(doc)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def json_line(name: str, message: str, request_id: str, extra: dict[str, Any], created: float) -> str:
    """The line `JsonFormatter` writes for an INFO record of logger `name` (no exception)."""
    doc = {
        "ts": iso_utc(created),
        "level": "INFO",
        "logger": name,
        "msg": message,
        "request_id": request_id,
        **_WORKER,
        **extra,
    }
    return orjson.dumps(_with_span_ids(doc), default=str).decode()


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]  # typeshed: StreamHandler[TextIO]
    """The production handler: records as `JsonFormatter` lines, plus lines made elsewhere.

    `write_line` buffers a finished line and writes the buffer at the end of the current
    event-loop iteration (at once when no loop runs). A record, and `flush`, write the buffer
    first, so lines keep their order; logging's shutdown flushes it at exit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self._pending: list[str] = []

    def write_line(self, line: str) -> None:
        first = not self._pending
        self._pending.append(line)
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: nothing would write it later
                self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self._write_pending()
        super().emit(record)

    def flush(self) -> None:
        self._write_pending()
        super().flush()

    def _write_pending(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.acquire()
            try:
                self.stream.write("\n".join(lines) + "\n")
            except Exception:  # as logging does: a failed write must not fail the request
                self.handleError(logging.makeLogRecord({"msg": "access log lines"}))
            finally:
                self.release()


def direct_handler(logger: logging.Logger) -> JsonLinesHandler | None:
    """The `JsonLinesHandler` that is the only place an INFO record of `logger` would reach,
    through no filter of its own: then a line can be written to it directly. None otherwise
    (text logs, a capturing handler in tests, a handler or filter a deployment added)."""
    if logger.filters:
        return None
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if not isinstance(handler, JsonLinesHandler) or handler.level > logging.INFO:
        return None
    if any(not isinstance(f, RequestIdFilter) for f in handler.filters):
        return None
    return handler


# C0 controls and DEL, as the text format writes them: escaped, each visible and none a line break.
_CONTROLS: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


class TextFormatter(logging.Formatter):
    """The development format, one line per record as the JSON one is: a message carries what
    clients sent (a decoded path, a header), and a line break or a NUL in it would make a line
    that looks like another request's, or a log that tools take for binary. A traceback, which
    follows the message, keeps its lines."""

    def __init__(self) -> None:
        worker = f" worker={_WORKER['worker']}" if _WORKER else ""
        super().__init__(f"%(asctime)s %(levelname)s %(name)s [%(request_id)s]{worker} %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's name
        return super().formatMessage(record).translate(_CONTROLS)


def setup_logging(level: str, fmt: str) -> None:
    handler: logging.StreamHandler = JsonLinesHandler() if fmt == "json" else logging.StreamHandler()  # type: ignore[type-arg]
    handler.addFilter(RequestIdFilter())
    if fmt != "json":
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would be a second line per request; ours carries the pipeline.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The SQLite driver logs every query's parameters at DEBUG, password hashes included:
    # never let it below INFO, whatever LOG_LEVEL says (contract §4: no hash in any log line).
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # coredis logs every reconnect attempt at INFO (and tracebacks at ERROR) during a Redis
    # outage; our clients already log the outage once, with its consequence.
    logging.getLogger("coredis").setLevel(logging.CRITICAL if level != "DEBUG" else logging.DEBUG)
    # aiormq logs an ERROR for every failed connection attempt, so a broker outage repeats one
    # per retry; the link logs it once (app/clients/amqp/link.py). Its other lines (a blocked
    # connection, a close from the broker) stay.
    _drop_lines(logging.getLogger("aiormq.connection"), "error when creating transport")
    # ... and a WARNING with a traceback each time a connection's reader meets the broker going
    # away (several per outage, one per connection). A reader that fails on anything else (a
    # malformed frame) is still logged.
    _add_once(logging.getLogger("aiormq.connection"), _DropReaderConnectionLoss())
    # A request body that does not decode is answered 400 (app/pipeline/body.py); aiohttp then
    # meets the same error again while draining the rest of it, and logs it as an unhandled
    # ERROR with a traceback: one per bad request, which a hostile client could repeat at will.
    _add_once(logging.getLogger("aiohttp.server"), _DropBrokenBodies())


@final
class _DropLines(logging.Filter):
    """Drops a logger's records whose message template starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.prefixes))


@final
class _DropReaderConnectionLoss(logging.Filter):
    """Drops aiormq's "reader exited abnormally" record when what ended the reader is the
    connection itself (reset, closed, cut mid-frame): the outage the link already logs once."""

    def filter(self, record: logging.LogRecord) -> bool:
        lost = record.exc_info is not None and isinstance(record.exc_info[1], OSError | asyncio.IncompleteReadError)
        return not (lost and record.msg == "Cancelling cause reader exited abnormally")


@final
class _DropBrokenBodies(logging.Filter):
    """Drops records about a request body that did not decode (the client's, not ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], web.RequestPayloadError))


def _drop_lines(logger: logging.Logger, *prefixes: str) -> None:
    _add_once(logger, _DropLines(prefixes))


def _add_once(logger: logging.Logger, new: logging.Filter) -> None:
    """Add a filter once, however often logging is set up (tests do it many times)."""
    if not any(type(f) is type(new) and vars(f) == vars(new) for f in logger.filters):
        logger.addFilter(new)
