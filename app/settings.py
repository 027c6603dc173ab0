"""The core's settings from the environment (12-factor), validated once at start-up into one frozen object.

Every bad variable gets its own message; `load_settings` raises them all at once. In
production (`TURNSTILE_ENV=production`) embedded defaults are refused. Plugins own their
own variables (app/plugin_settings.py); `app.main.load_configuration` reads both and reports
every problem of either in one `SettingsError`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import attrs

from app.clients.redis.urls import parse_redis_url
from app.hostports import split_host_port

log = logging.getLogger("turnstile.settings")

T = TypeVar("T")

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel")
# RFC 6750 §2.1 b64token: what may follow "Bearer " in an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
DATA_SERVICE_TOKEN_MIN = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(Exception):
    """One or more environment variables are wrong; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


BODY_TIMEOUT_S: Final = 30.0  # TURNSTILE_BODY_TIMEOUT_S's default


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the service reads from its environment. Defaults are the embedded ones."""

    env: str = "development"
    host: str = "0.0.0.0"  # noqa: S104  # a service listens on every interface by default
    port: int = 8080
    pipelines_file: Path = Path("pipelines.toml")
    var_dir: Path = Path("var")
    log_level: str = "INFO"
    log_format: str = "text"

    data_service_url: str | None = None
    # Sent as `Authorization: Bearer …` on every data-service call; None: send none.
    data_service_token: str | None = attrs.field(repr=False, default=None)
    data_service_connect_timeout_s: float = 1.0
    data_service_timeout_s: float = 5.0
    data_service_retries: int = 2
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0

    redis_url: str | None = None
    redis_client_tracking: bool = True
    cache_max_entries: int = 10_000

    rabbitmq_url: str | None = None
    events_exchange: str = "users"
    event_confirm_deadline_s: float = 0.5
    # Shared subscription queues: "quorum" (replicated, counts deliveries) or "classic".
    rabbitmq_queue_type: str = "quorum"

    # Proxies whose X-Forwarded-For is believed (app/proxies.py); empty: the header is ignored.
    trusted_proxies: tuple[Network, ...] = ()
    # Browser origins that may call the API (app/middlewares/cors.py); empty: CORS is off.
    cors_allowed_origins: tuple[str, ...] = ()

    drain_seconds: float = 10.0
    # A connection that has not sent a whole request this long after it opened, or after its
    # last answer, is closed: idle keep-alives, and clients that send a request slowly on purpose
    # (slowloris). Longer than the usual load balancers' idle timeout (60 s), so they close first.
    keepalive_timeout_s: float = 75.0
    # Connections one process holds (app/connection_limits.py): in all (None: under its file
    # descriptor limit, at most 10,000), and from one client address (0: no bound per client).
    max_connections: int | None = None
    max_connections_per_client: int = 256
    # The longest a request's body may take to arrive once its headers have: past it, a 408 and
    # the connection closed, so a client trickling a body cannot hold a request open for good.
    body_timeout_s: float = BODY_TIMEOUT_S
    # How long code may hold the event loop before a warning names it (app/loop_watch.py).
    loop_blocked_s: float = 0.5
    # The longest a pipeline's or a plugin route's request may run; past it, a 504 (app/deadlines.py).
    request_timeout_s: float = 60.0
    # The longest an async hook implementation may take (a rule waiting on a service of its
    # own, say); past it, its request answers 504 (app/plugins.py); `startup` hooks have none.
    hook_timeout_s: float = 10.0
    trace_hooks: bool = False
    disabled_plugins: tuple[str, ...] = ()
    extra_plugins: tuple[str, ...] = ()
    # The environment these settings were read from: plugins' settings are read from it too
    # (app/plugin_settings.py), so a test's or a worker's environment is the one that counts.
    environ: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def embedded_defaults(self) -> list[str]:
        """The embedded stand-ins in use, for the one start-up line that announces them."""
        used = []
        if self.data_service_url is None:
            used.append(f"data service in-process on SQLite at {self.var_dir / 'data.sqlite3'}")
        if self.redis_url is None:
            used.append("in-process memory cache and token store")
        if self.rabbitmq_url is None:
            used.append(f"events to the log and {self.var_dir / 'events.jsonl'}")
        return used


class _Reader:
    """Reads typed variables, collecting one problem per bad variable instead of stopping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.set_twice: set[str] = set()  # secrets given as NAME and NAME_FILE (a problem each)

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value if value not in (None, "") else None

    def get(self, name: str, parse: Callable[[str], T], default: T, expect: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: expected {expect}")
            return default

    def choice(self, name: str, choices: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        value = self.raw(name)
        if value is None:
            return default
        normal = value.upper() if upper else value.lower()
        allowed = {c.upper() if upper else c.lower(): c for c in choices}
        if normal not in allowed:
            self.problems.append(f"{name}={value!r}: expected one of {', '.join(choices)}")
            return default
        return allowed[normal]

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
        except ValueError:  # an unclosed "[" of an IPv6 host
            parts = urlsplit("")
        if parts.scheme not in schemes or not parts.netloc:
            self.problems.append(f"{name}: expected a URL of scheme {'/'.join(schemes)}, got {_redact(value)!r}")
            return None
        bad = [host for host in parts.netloc.rpartition("@")[2].split(",") if not _host_and_port(host)]
        if bad:
            self.problems.append(f"{name}: expected host or host:port (a port 1-65535), got {bad[0]!r}")
            return None
        return value

    def redis_url(self) -> str | None:
        """REDIS_URL in one of its forms (app/clients/redis/urls.py): a Sentinel URL without its
        service name, a db that is no number or a cluster URL with one is refused here, as one
        line, not as a traceback when the app is built."""
        value = self.url("REDIS_URL", REDIS_SCHEMES)
        if value is None:
            return None
        try:
            parse_redis_url(value)
        except ValueError as exc:
            self.problems.append(f"REDIS_URL: {exc}")
            return None
        return value


def _host_and_port(text: str) -> bool:
    try:
        split_host_port(text)
    except ValueError:
        return False
    return True


def _redact(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable: whatever follows the scheme may be a password
        return url.partition("://")[0] + "://***"
    if parts.password:
        return url.replace(parts.password, "***")
    return url


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError(value)
    return number


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The core's settings from `environ` (default: os.environ).

    Raises:
        SettingsError: with one message per bad variable, the production guard's included.
    """
    settings, problems = read_settings(environ)
    if problems:
        raise SettingsError(problems)
    return settings


def read_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """The core's settings from `environ` (default: os.environ), and one problem per bad
    variable; a bad variable's setting keeps its default, so the rest can still be used (to
    find the plugins whose own settings are read next, say)."""
    environ = dict(os.environ if environ is None else environ)
    r = _Reader(environ)
    env = r.choice("TURNSTILE_ENV", ("development", "production", "test"), "development")
    production = env == "production"
    values: dict[str, Any] = {
        "env": env,
        "host": r.raw("HOST") or "0.0.0.0",  # noqa: S104
        "port": r.get("PORT", _port, 8080, "a port number 1-65535"),
        "pipelines_file": Path(r.raw("PIPELINES_FILE") or "pipelines.toml"),
        "var_dir": Path(r.raw("TURNSTILE_VAR_DIR") or "var"),
        "log_level": r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
        "log_format": r.choice("LOG_FORMAT", ("json", "text"), "json" if production else "text"),
        "data_service_url": r.url("DATA_SERVICE_URL", ("http", "https")),
        "data_service_token": _data_service_token(r),
        "data_service_connect_timeout_s": r.get(
            "DATA_SERVICE_CONNECT_TIMEOUT_S", _positive_float, 1.0, "a positive number of seconds"
        ),
        "data_service_timeout_s": r.get(
            "DATA_SERVICE_TIMEOUT_S", _positive_float, 5.0, "a positive number of seconds"
        ),
        "data_service_retries": r.get("DATA_SERVICE_RETRIES", _non_negative_int, 2, "a whole number, 0 or more"),
        "breaker_failures": r.get("BREAKER_FAILURES", _positive_int, 5, "a positive whole number"),
        "breaker_cooldown_s": r.get("BREAKER_COOLDOWN_S", _positive_float, 5.0, "a positive number"),
        "redis_url": r.redis_url(),
        "redis_client_tracking": r.get("REDIS_CLIENT_TRACKING", _flag, True, "1/0, true/false, yes/no"),
        "cache_max_entries": r.get("CACHE_MAX_ENTRIES", _positive_int, 10_000, "a positive whole number"),
        "rabbitmq_url": r.url("RABBITMQ_URL", ("amqp", "amqps")),
        "events_exchange": r.raw("EVENTS_EXCHANGE") or "users",
        "event_confirm_deadline_s": r.get(
            "EVENT_CONFIRM_DEADLINE_S", _positive_float, 0.5, "a positive number of seconds"
        ),
        "rabbitmq_queue_type": r.choice("RABBITMQ_QUEUE_TYPE", ("quorum", "classic"), "quorum"),
        "trusted_proxies": _trusted_proxies(r),
        "cors_allowed_origins": _cors_origins(r),
        "drain_seconds": r.get("TURNSTILE_DRAIN_SECONDS", _positive_float, 10.0, "a positive number"),
        "keepalive_timeout_s": r.get(
            "TURNSTILE_KEEPALIVE_TIMEOUT_S", _positive_float, 75.0, "a positive number of seconds"
        ),
        "max_connections": r.get("TURNSTILE_MAX_CONNECTIONS", _positive_int, None, "a positive whole number"),
        "max_connections_per_client": r.get(
            "TURNSTILE_MAX_CONNECTIONS_PER_CLIENT", _non_negative_int, 256, "a whole number, 0 for no bound"
        ),
        "body_timeout_s": r.get(
            "TURNSTILE_BODY_TIMEOUT_S", _positive_float, BODY_TIMEOUT_S, "a positive number of seconds"
        ),
        "loop_blocked_s": r.get("TURNSTILE_LOOP_BLOCKED_S", _positive_float, 0.5, "a positive number of seconds"),
        "request_timeout_s": r.get(
            "TURNSTILE_REQUEST_TIMEOUT_S", _positive_float, 60.0, "a positive number of seconds"
        ),
        "hook_timeout_s": r.get("TURNSTILE_HOOK_TIMEOUT_S", _positive_float, 10.0, "a positive number of seconds"),
        "trace_hooks": r.get("TURNSTILE_TRACE_HOOKS", _flag, False, "1/0, true/false, yes/no"),
        "disabled_plugins": tuple(
            name.strip() for name in (r.raw("TURNSTILE_DISABLE_PLUGINS") or "").split(",") if name.strip()
        ),
    }
    # Like PYTEST_PLUGINS: modules imported and registered as plugins without packaging them.
    values["extra_plugins"] = tuple(
        name.strip() for name in (r.raw("TURNSTILE_PLUGINS") or "").split(",") if name.strip()
    )
    values["environ"] = environ
    r.problems.extend(_deadline_problems(values))
    if production:
        token_given = r.raw("DATA_SERVICE_TOKEN") is not None or r.raw("DATA_SERVICE_TOKEN_FILE") is not None
        # A variable set to a bad value has its own line: "required" would send the operator
        # looking for a missing secret instead of a typo.
        given = {name for name, _ in _PRODUCTION_URLS if r.raw(name) is not None}
        r.problems.extend(_production_problems(values, token_given=token_given, given=given))
    return Settings(**values), r.problems


def _deadline_problems(values: dict[str, Any]) -> list[str]:
    """A request deadline at or under the body's would answer a slow upload 504 before its 408."""
    request_s, body_s = values["request_timeout_s"], values["body_timeout_s"]
    if isinstance(request_s, float) and isinstance(body_s, float) and request_s <= body_s:
        return [f"TURNSTILE_REQUEST_TIMEOUT_S={request_s:g} must be above TURNSTILE_BODY_TIMEOUT_S={body_s:g}: "
                "a request's body must be able to arrive before the request runs out of time"]
    return []


def check_bearer_token(token: str) -> str | None:
    """What is wrong with `token` as a data-service token, or None when it will do."""
    if not _BEARER_TOKEN.fullmatch(token):
        return "expected a bearer token (letters, digits and -._~+/, optionally = at the end; RFC 6750)"
    if len(token) < DATA_SERVICE_TOKEN_MIN:
        return f"must be at least {DATA_SERVICE_TOKEN_MIN} characters"
    return None


def read_token_file(path: str | Path) -> str:
    """The token in the file at `path` (surrounding whitespace dropped).

    Raises:
        ValueError: the file cannot be read, or what it holds is not a usable token.
    """
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        msg = f"cannot be read ({exc.strerror})"
        raise ValueError(msg) from None
    problem = check_bearer_token(token)
    if problem is not None:
        raise ValueError(problem)
    return token


def read_token_lines(path: str | Path) -> list[str]:
    """The tokens in the file at `path`, one a line (blank lines skipped; may be none).

    Raises:
        ValueError: the file cannot be read, or a line is not a usable token (named by number).
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        msg = f"cannot be read ({exc.strerror})"
        raise ValueError(msg) from None
    tokens = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem = check_bearer_token(line.strip())
        if problem is not None:
            msg = f"line {number}: {problem}"
            raise ValueError(msg)
        tokens.append(line.strip())
    return tokens


def _data_service_token(r: _Reader) -> str | None:
    """DATA_SERVICE_TOKEN_FILE (read once, here) or DATA_SERVICE_TOKEN; the value is never echoed."""
    path = r.raw("DATA_SERVICE_TOKEN_FILE")
    if path is not None and r.raw("DATA_SERVICE_TOKEN") is not None:
        # Which one wins would be a guess the operator never sees: a rotation that changed one of them.
        r.problems.append("DATA_SERVICE_TOKEN and DATA_SERVICE_TOKEN_FILE are both set: set one of them")
        return None
    if path is not None:
        try:
            return read_token_file(path)
        except ValueError as exc:
            r.problems.append(f"DATA_SERVICE_TOKEN_FILE={path!r}: {exc}")
            return None
    token = r.raw("DATA_SERVICE_TOKEN")
    if token is None:
        return None
    problem = check_bearer_token(token.strip())
    if problem is not None:
        r.problems.append(f"DATA_SERVICE_TOKEN: {problem}")
        return None
    return token.strip()


def _trusted_proxies(r: _Reader) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: comma-separated CIDRs (a bare address is a /32 or /128)."""
    networks: list[Network] = []
    bad: list[str] = []
    for entry in (r.raw("TRUSTED_PROXIES") or "").split(","):
        if not entry.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as exc:
            bad.append(f"{entry.strip()!r} ({exc})")
    if bad:
        expected = "expected comma-separated networks such as 10.0.0.0/8"
        r.problems.append(f"TRUSTED_PROXIES: {expected}, got {', '.join(bad)}")
    return tuple(networks)


def _cors_origins(r: _Reader) -> tuple[str, ...]:
    """CORS_ALLOWED_ORIGINS: comma-separated origins (scheme://host[:port], as a browser sends
    them in `Origin`), or `*` for any."""
    origins: list[str] = []
    bad: list[str] = []
    for entry in (r.raw("CORS_ALLOWED_ORIGINS") or "").split(","):
        origin = entry.strip()
        if not origin:
            continue
        parts = urlsplit(origin)
        if origin == "*" or (parts.scheme in ("http", "https") and parts.netloc and not parts.path
                             and not parts.query and not parts.fragment and "@" not in parts.netloc):
            origins.append(origin.lower() if origin != "*" else origin)
        else:
            bad.append(repr(origin))
    if bad:
        r.problems.append(
            f"CORS_ALLOWED_ORIGINS: expected comma-separated origins such as https://app.example.com "
            f"(scheme and host, no path), or *, got {', '.join(bad)}"
        )
    return tuple(origins)


# What production requires instead of an embedded default: (variable, Settings field).
_PRODUCTION_URLS: Final = (
    ("DATA_SERVICE_URL", "data_service_url"), ("REDIS_URL", "redis_url"), ("RABBITMQ_URL", "rabbitmq_url"),
)


def _production_problems(values: Mapping[str, Any], *, token_given: bool, given: set[str]) -> list[str]:
    problems = []
    for name, key in _PRODUCTION_URLS:
        if values.get(key) is None and name not in given:
            problems.append(f"{name}: required when TURNSTILE_ENV=production (no embedded defaults)")
    if values.get("data_service_url") is not None and not token_given:  # a bad one has its own message
        problems.append(
            "DATA_SERVICE_TOKEN or DATA_SERVICE_TOKEN_FILE: required with DATA_SERVICE_URL when "
            "TURNSTILE_ENV=production (every data-service call must carry a credential)"
        )
    return problems


def announce_embedded_defaults(settings: Settings, more: Iterable[str] = ()) -> None:
    """The one start-up log line naming every embedded default in use: the core's, and
    `more` (what the plugins' settings name)."""
    used = [*settings.embedded_defaults(), *more]
    if used:
        log.warning("embedded defaults in use (development only): %s", "; ".join(used))
