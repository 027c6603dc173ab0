"""Log set-up: text in development, one JSON object per line in production; every line of a
request carries its request_id (from a context variable the request-id middleware sets)."""

from __future__ import annotations

import datetime
import logging

import orjson

from app.middlewares.request_id import current_request_id

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would be a second line per request; ours carries the pipeline.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # coredis logs every reconnect attempt at INFO (and tracebacks at ERROR) during a Redis
    # outage; our clients already log the outage once, with its consequence.
    # The SQLite driver logs every query's parameters at DEBUG, password hashes included:
    # never let it below INFO, whatever LOG_LEVEL says (contract §4: no hash in any log line).
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    logging.getLogger("coredis").setLevel(logging.CRITICAL if level != "DEBUG" else logging.DEBUG)
