"""The accounts plugin's settings and its mail templates, built in or replaced by a deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import SettingsError
from plugins.accounts.service import TEMPLATE_FOR, TEMPLATES_DIR, VARIABLES, lifetime_in_words
from plugins.accounts.settings import AccountsSettings, load_accounts_settings
from plugins.mail.message import load_templates

VALUES = {
    "link": "https://app.test/verify-email#token=abc", "token": "abc", "email": "ann@example.com",
    "expires_in": "24 hours", "public_url": "https://app.test",
}


def test_token_lifetimes_default_to_a_day_and_an_hour_and_are_checked() -> None:
    assert load_accounts_settings({}) == AccountsSettings(verify_token_ttl_s=86400, reset_token_ttl_s=3600)
    assert load_accounts_settings({"ACCOUNTS_RESET_TOKEN_TTL_S": "600"}).reset_token_ttl_s == 600
    with pytest.raises(SettingsError) as caught:
        load_accounts_settings({"ACCOUNTS_VERIFY_TOKEN_TTL_S": "0", "ACCOUNTS_RESET_TOKEN_TTL_S": "\u0661\u0660"})
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "ACCOUNTS_VERIFY_TOKEN_TTL_S", "ACCOUNTS_RESET_TOKEN_TTL_S",
    ]


@pytest.mark.parametrize(("seconds", "words"), [
    (86400, "24 hours"), (3600, "1 hour"), (600, "10 minutes"), (90, "90 seconds"), (1, "1 second"),
    (7 * 86400, "7 days"),
])
def test_lifetimes_in_words(seconds: int, words: str) -> None:
    assert lifetime_in_words(seconds) == words


def test_the_built_in_templates_render_every_value_and_escape_html() -> None:
    templates = load_templates(TEMPLATE_FOR.values(), TEMPLATES_DIR, None, VARIABLES)
    mail = templates["verify-email"].render("ann@example.com", {**VALUES, "email": "<ann>@example.com"})
    assert (mail.to, mail.subject, mail.kind) == ("ann@example.com", "Verify your email address", "verify-email")
    assert VALUES["link"] in mail.text
    assert "<ann>@example.com" in mail.text
    assert "&lt;ann&gt;@example.com" in mail.html
    assert f'href="{VALUES["link"]}"' in mail.html


def test_a_deployment_replaces_a_template_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "reset-password.subject").write_text("Ihr Passwort\n\n")
    (tmp_path / "reset-password.txt").write_text("Neues Passwort: $link (gültig $expires_in)\n")
    templates = load_templates(TEMPLATE_FOR.values(), TEMPLATES_DIR, tmp_path, VARIABLES)
    mail = templates["reset-password"].render("ann@example.com", VALUES)
    assert mail.subject == "Ihr Passwort"
    assert mail.text == f"Neues Passwort: {VALUES['link']} (gültig 24 hours)\n"
    assert "<!DOCTYPE html>" in mail.html  # the built-in HTML part stays


def test_a_bad_replacement_stops_start_up_naming_each_file(tmp_path: Path) -> None:
    (tmp_path / "verify-email.txt").write_text("Hello $name, open $link\n")
    (tmp_path / "reset-password.html").write_text("<p>Costs $5</p>\n")
    with pytest.raises(SettingsError) as caught:
        load_templates(TEMPLATE_FOR.values(), TEMPLATES_DIR, tmp_path, VARIABLES)
    assert caught.value.problems == [
        "MAIL_TEMPLATES_DIR: verify-email.txt: unknown placeholder $name "
        "(known: $email, $expires_in, $link, $public_url, $token)",
        "MAIL_TEMPLATES_DIR: reset-password.html: a `$` that starts no placeholder (write `$$` for a dollar sign)",
    ]
