"""Mail bodies from templates a deployment may override, and the MIME message made of them.

A template is three files named after it: ``<name>.subject``, ``<name>.txt`` (plain text) and
``<name>.html``. A plugin ships its own in a directory; `MAIL_TEMPLATES_DIR` may hold files of
the same names that replace them one by one. They use `string.Template` placeholders
(``$link`` or ``${link}``) and nothing else: a template can show values, never run code.
Values are HTML-escaped in the HTML body, and the subject is kept to one line.
"""

from __future__ import annotations

import email.utils
import html
import string
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Final

import attrs

from app import SettingsError

PARTS: Final = ("subject", "txt", "html")
MAX_LINE: Final = 998  # characters per line on the wire (RFC 5322 §2.1.1)


@attrs.frozen(kw_only=True)
class OutgoingMail:
    """One mail, rendered: what the queue holds and a sender hands over."""

    to: str
    subject: str
    text: str
    html: str
    # What the log may say about it (e.g. "verify-email"): never a link or a token.
    kind: str


@attrs.frozen
class MailTemplate:
    """The three parts of one template, parsed."""

    name: str
    subject: string.Template
    text: string.Template
    html: string.Template

    def render(self, to: str, values: Mapping[str, str]) -> OutgoingMail:
        """The mail to `to` with `values` filled in (every placeholder was checked at load time)."""
        escaped = {name: html.escape(value) for name, value in values.items()}
        subject = " ".join(self.subject.substitute(values).split())
        return OutgoingMail(
            to=to, subject=subject, text=self.text.substitute(values), html=self.html.substitute(escaped),
            kind=self.name,
        )


def load_templates(
    names: Iterable[str], builtin_dir: Path, override_dir: Path | None, variables: frozenset[str]
) -> dict[str, MailTemplate]:
    """The templates `names`, each part from `override_dir` when it has the file, else built in.

    Raises:
        SettingsError: a part that cannot be read, is not a valid template, or names a
            placeholder outside `variables`; one message each.
    """
    problems: list[str] = []
    loaded: dict[str, MailTemplate] = {}
    for name in names:
        parts = [_part(f"{name}.{part}", (override_dir, builtin_dir), variables, problems) for part in PARTS]
        subject, text, body = parts
        if subject is not None and text is not None and body is not None:
            loaded[name] = MailTemplate(name, subject, text, body)
    if problems:
        raise SettingsError(problems)
    return loaded


def _part(
    filename: str, dirs: tuple[Path | None, Path], variables: frozenset[str], problems: list[str]
) -> string.Template | None:
    override_dir, builtin_dir = dirs
    if override_dir is not None and (override_dir / filename).is_file():
        path, where = override_dir / filename, f"MAIL_TEMPLATES_DIR: {filename}"
    else:
        path, where = builtin_dir / filename, f"built-in template {filename}"
    try:
        template = string.Template(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: cannot be read ({exc})")
        return None
    if not template.is_valid():
        problems.append(f"{where}: a `$` that starts no placeholder (write `$$` for a dollar sign)")
        return None
    unknown = sorted(set(template.get_identifiers()) - variables)
    if unknown:
        known = ", ".join(f"${v}" for v in sorted(variables))
        problems.append(f"{where}: unknown placeholder {', '.join('$' + u for u in unknown)} (known: {known})")
        return None
    return template


def compose(mail: OutgoingMail, sender: str) -> EmailMessage:
    """The MIME message: plain text with an HTML alternative, a Date and a Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    if str(message["To"]) != mail.to:
        # The header reads as another address (an encoded word decoded, say), and the envelope
        # is taken from it: the mail would go to someone else's mailbox.
        msg = f"the address {mail.to!r} reads as {str(message['To'])!r} in a mail header"
        raise ValueError(msg)
    message["Subject"] = mail.subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    _name, address = email.utils.parseaddr(sender)
    message["Message-ID"] = email.utils.make_msgid(domain=address.partition("@")[2] or None)
    message.set_content(mail.text, cte=_transfer_encoding(mail.text))
    message.add_alternative(mail.html, subtype="html", cte=_transfer_encoding(mail.html))
    return message


def _transfer_encoding(body: str) -> str | None:
    """7bit for ASCII text whose lines fit SMTP's limit, so a link stays whole and readable in the
    message (quoted-printable would break a long one and write its `=` as `=3D`); else the
    email package's choice."""
    fits = body.isascii() and all(len(line) <= MAX_LINE for line in body.splitlines())
    return "7bit" if fits else None
