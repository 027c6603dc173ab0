"""The mail plugin's settings: environment variables read once at start-up, one message per bad one.

| variable | default |
| --- | --- |
| `SMTP_URL` | none: each mail is written to `<var>/mail/` as an `.eml` file (development only) |
| `SMTP_PASSWORD_FILE` | none; the password (read once) when it is not in `SMTP_URL` |
| `SMTP_CA_FILE` | none: the system's CAs verify the server's certificate |
| `SMTP_TIMEOUT_S` | 10 |
| `MAIL_FROM` | `Turnstile <no-reply@localhost>` |
| `PUBLIC_URL` | `http://localhost:<PORT>`: where the links in mails point |
| `MAIL_TEMPLATES_DIR` | none: the built-in templates; files there replace the built-in ones of the same name |
| `MAIL_QUEUE_SIZE` | 1000 mails waiting at most; past it a mail is dropped and counted |
| `MAIL_MAX_ATTEMPTS` | 8 sends of one mail at most (about 4 minutes of retries) |
| `MAIL_RETRY_DELAY_S` | 2: the wait after the first failed send, doubled each time (with jitter) |

`SMTP_URL` is `smtp://` (plain, port 25), `smtp+starttls://` (STARTTLS required, port 587) or
`smtps://` (TLS from the first byte, port 465), with an optional `user:password@` (percent-encoded).
Production (`TURNSTILE_ENV=production`) refuses the `.eml` stand-in and needs `MAIL_FROM` and
`PUBLIC_URL` as well: a mail from `localhost` with links to `localhost` reaches nobody.

Kept in this one class so the plugin-owned settings hook can take it over as it is.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit

import attrs

from app import Settings, SettingsError

N = TypeVar("N", int, float)

SMTP_SCHEMES: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
DEFAULT_FROM: Final = "Turnstile <no-reply@localhost>"


@attrs.frozen(kw_only=True)
class SmtpServer:
    """Where and how mail is handed over: `security` is "plain", "starttls" or "tls"."""

    host: str
    port: int
    security: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca_file: Path | None = None
    timeout_s: float = 10.0


@attrs.frozen(kw_only=True)
class MailSettings:
    """Everything the mail plugin reads from its environment; `smtp` None: the `.eml` stand-in."""

    smtp: SmtpServer | None
    mail_from: str
    public_url: str
    templates_dir: Path | None
    mail_dir: Path
    queue_size: int = 1000
    max_attempts: int = 8
    retry_delay_s: float = 2.0


class _Problems:
    """Reads variables, collecting one message per bad one instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.found: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def number(self, name: str, parse: Callable[[str], N], default: N, expect: str) -> N:
        """A positive, finite number."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            number = None
        if number is None or not 0 < number < math.inf:
            self.found.append(f"{name}={value!r}: expected {expect}")
            return default
        return number


def load_mail_settings(environ: Mapping[str, str], core: Settings) -> MailSettings:
    """The mail settings `environ` describes (the core settings give the port, var dir and env).

    Raises:
        SettingsError: one message per bad variable, the production guard's included.
    """
    r = _Problems(environ)
    smtp = _smtp_server(r)
    mail_from = r.raw("MAIL_FROM")
    if mail_from is not None and not _is_address(mail_from):
        r.found.append(f"MAIL_FROM={mail_from!r}: expected an address such as 'Shop <no-reply@shop.example>'")
    public_url = _public_url(r)
    templates_dir = r.raw("MAIL_TEMPLATES_DIR")
    if templates_dir is not None and not Path(templates_dir).is_dir():
        r.found.append(f"MAIL_TEMPLATES_DIR={templates_dir!r}: not a readable directory")
    if core.production:
        for name, value in (("SMTP_URL", smtp or r.raw("SMTP_URL")), ("MAIL_FROM", mail_from),
                            ("PUBLIC_URL", public_url or r.raw("PUBLIC_URL"))):  # a bad value has its own line
            if value is None:
                r.found.append(f"{name}: required when TURNSTILE_ENV=production (no embedded defaults)")
    settings = MailSettings(
        smtp=smtp,
        mail_from=mail_from or DEFAULT_FROM,
        public_url=(public_url or f"http://localhost:{core.port}").rstrip("/"),
        templates_dir=Path(templates_dir) if templates_dir else None,
        mail_dir=core.var_dir / "mail",
        queue_size=r.number("MAIL_QUEUE_SIZE", int, 1000, "a positive whole number"),
        max_attempts=r.number("MAIL_MAX_ATTEMPTS", int, 8, "a positive whole number"),
        retry_delay_s=r.number("MAIL_RETRY_DELAY_S", float, 2.0, "a positive number of seconds"),
    )
    if r.found:
        raise SettingsError(r.found)
    return settings


def _is_address(value: str) -> bool:
    _name, address = email.utils.parseaddr(value)
    local, _, domain = address.partition("@")
    return bool(local and domain) and "\n" not in value and "\r" not in value


def _public_url(r: _Problems) -> str | None:
    value = r.raw("PUBLIC_URL")
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        r.found.append(f"PUBLIC_URL={value!r}: expected an http(s) URL without query or fragment, "
                       "such as https://app.example.com")
        return None
    return value


def _smtp_server(r: _Problems) -> SmtpServer | None:
    url = r.raw("SMTP_URL")
    timeout_s = r.number("SMTP_TIMEOUT_S", float, 10.0, "a positive number of seconds")
    ca_file = r.raw("SMTP_CA_FILE")
    if ca_file is not None and not Path(ca_file).is_file():
        r.found.append(f"SMTP_CA_FILE={ca_file!r}: not a readable file")
        ca_file = None
    password_from_file = _password_file(r)
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        schemes = ", ".join(f"{s}://" for s in SMTP_SCHEMES)
        # Never echo the URL: it may carry a password.
        r.found.append(f"SMTP_URL: expected {schemes} with a host and an optional port, "
                       "such as smtp+starttls://user:password@mail.example.com:587")
        return None
    return SmtpServer(
        host=parts.hostname,
        port=port or SMTP_SCHEMES[parts.scheme],
        security={"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=password_from_file or (unquote(parts.password) if parts.password else None),
        ca_file=Path(ca_file) if ca_file else None,
        timeout_s=timeout_s,
    )


def _password_file(r: _Problems) -> str | None:
    path = r.raw("SMTP_PASSWORD_FILE")
    if path is None:
        return None
    try:
        password = Path(path).read_text().strip()
    except OSError as exc:
        r.found.append(f"SMTP_PASSWORD_FILE={path!r}: cannot be read ({exc.strerror})")
        return None
    if not password:
        r.found.append(f"SMTP_PASSWORD_FILE={path!r}: the file is empty")
        return None
    return password
