"""The mail plugin's settings: every SMTP_URL form, a password from a file, one message per bad
variable, no secret in a message or a repr, and the production guard."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from app import Settings, SettingsError
from app.settings import load_settings
from plugins.mail.env import MailEnv
from plugins.mail.settings import MailSettings, SmtpServer, load_mail_settings

CORE = attrs.evolve(load_settings({}), var_dir=Path("/srv/var"), port=8080)
PRODUCTION = attrs.evolve(CORE, env="production")


def problems(environ: dict[str, str], core: Settings = CORE) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_mail_settings(environ, core)
    return caught.value.problems


def test_unset_means_mail_written_to_files_with_local_defaults() -> None:
    settings = load_mail_settings({}, CORE)
    assert settings == MailSettings(
        smtp=None, mail_from="Turnstile <no-reply@localhost>", public_url="http://localhost:8080",
        templates_dir=None, mail_dir=Path("/srv/var/mail"),
    )


@pytest.mark.parametrize(("url", "server"), [
    ("smtp://mail.test", SmtpServer(host="mail.test", port=25, security="plain")),
    ("smtp+starttls://mail.test", SmtpServer(host="mail.test", port=587, security="starttls")),
    ("smtps://mail.test", SmtpServer(host="mail.test", port=465, security="tls")),
    ("smtp://ann%40corp:p%3Ass@mail.test:2525",
     SmtpServer(host="mail.test", port=2525, security="plain", username="ann@corp", password="p:ss")),
])
def test_smtp_url_forms(url: str, server: SmtpServer) -> None:
    assert load_mail_settings({"SMTP_URL": url}, CORE).smtp == server


def test_a_password_file_takes_precedence_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("from-the-file\n")
    settings = load_mail_settings(
        {"SMTP_URL": "smtp+starttls://relay@mail.test", "SMTP_PASSWORD_FILE": str(secret)}, CORE
    )
    assert settings.smtp is not None
    assert (settings.smtp.username, settings.smtp.password) == ("relay", "from-the-file")
    assert "from-the-file" not in repr(settings)


def test_each_bad_variable_has_its_own_message_without_the_password(tmp_path: Path) -> None:
    found = problems({
        "SMTP_URL": "http://user:hunter22@mail.test",
        "SMTP_PASSWORD_FILE": str(tmp_path / "missing"),
        "SMTP_CA_FILE": str(tmp_path / "missing.pem"),
        "SMTP_TIMEOUT_S": "soon",
        "MAIL_FROM": "not an address",
        "PUBLIC_URL": "ftp://app.test",
        "MAIL_TEMPLATES_DIR": str(tmp_path / "nowhere"),
        "MAIL_QUEUE_SIZE": "0",
        "MAIL_MAX_ATTEMPTS": "many",
        "MAIL_RETRY_DELAY_S": "-1",
    })
    assert [p.split(":")[0].split("=")[0] for p in found] == [
        "SMTP_TIMEOUT_S", "SMTP_CA_FILE", "SMTP_PASSWORD_FILE", "SMTP_URL", "MAIL_FROM", "PUBLIC_URL",
        "MAIL_TEMPLATES_DIR", "MAIL_QUEUE_SIZE", "MAIL_MAX_ATTEMPTS", "MAIL_RETRY_DELAY_S",
    ]
    assert not any("hunter22" in p for p in found)


def test_production_refuses_the_file_stand_in_and_local_links() -> None:
    assert problems({}, PRODUCTION) == [
        "SMTP_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "MAIL_FROM: required when TURNSTILE_ENV=production (no embedded defaults)",
        "PUBLIC_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
    ]
    settings = load_mail_settings({
        "SMTP_URL": "smtps://mail.test", "MAIL_FROM": "Shop <no-reply@shop.test>", "PUBLIC_URL": "https://shop.test/",
    }, PRODUCTION)
    assert (settings.mail_from, settings.public_url) == ("Shop <no-reply@shop.test>", "https://shop.test")


def test_a_bad_public_url_in_production_is_not_also_missing() -> None:
    found = problems({"SMTP_URL": "smtps://mail.test", "MAIL_FROM": "Shop <no-reply@shop.test>",
                      "PUBLIC_URL": "not a url"}, PRODUCTION)
    assert len(found) == 1, found
    assert found[0].startswith("PUBLIC_URL='not a url'")


def test_the_eml_stand_in_is_named_in_the_one_line_of_embedded_defaults() -> None:
    # Contract §3: every embedded default is announced in one start-up line; mail had its own.
    assert MailEnv().embedded_defaults() == ["mail written as .eml files to mail/ in TURNSTILE_VAR_DIR (no SMTP_URL)"]
    assert MailEnv(smtp_url="smtp://mail.example.com").embedded_defaults() == []
