"""The pages the links in mails open when they point at the service itself (PUBLIC_URL unset, as
in development), in headless Chromium as a person uses them: opening a link proves nothing (a
mail scanner opens links too), a click verifies; the reset page takes a new password; the pages
run nothing but their own script and keep the token out of every request's URL."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from tests.asyncapi.chromium import load_page, open_page
from tests.integration.accounts import (  # noqa: F401  # inbox_fixture: the `inbox` fixture
    ME,
    PASSWORD,
    inbox_fixture,
    reset_token,
    verification_token,
)
from tests.integration.conftest import Client, StackFactory, bearer, login, register
from tests.smtp import SmtpInbox

STATUS = "document.getElementById('status').textContent"


async def verified(client: Client, tokens: dict[str, str]) -> bool:
    return bool((await (await client.get(ME, headers=tokens)).json())["is_verified"])


async def test_opening_a_verification_link_proves_nothing_a_click_verifies(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    client = await stack()
    await register(client, "ann@example.com", PASSWORD)
    token = await verification_token(inbox, "ann@example.com")
    ann = bearer(await login(client, "ann@example.com", PASSWORD))
    link = str(client.make_url("/verify-email")) + f"#token={token}"

    # What a scanner or a link preview does: open it, run its scripts, look.
    opened = await load_page(link, tmp_path / "scanner")
    assert "Verify my email address" in opened.dom
    assert not await verified(client, ann)
    assert "/api/v1/auth/verify" not in [urlsplit(url).path for url in opened.requests]

    async with open_page(link, tmp_path / "person") as page:
        assert await page.evaluate("window.location.hash") == ""  # taken from the address bar
        await page.evaluate("document.getElementById('verify').click()")
        assert "Your email address is verified" in await page.wait_for(f"{STATUS}.includes('verified') && {STATUS}")
    assert await verified(client, ann)


async def test_a_used_link_says_why_it_no_longer_works(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    client = await stack()
    await register(client, "bob@example.com", PASSWORD)
    token = await verification_token(inbox, "bob@example.com")
    assert (await client.post("/api/v1/auth/verify", json={"token": token})).status == 200

    async with open_page(str(client.make_url("/verify-email")) + f"#token={token}", tmp_path) as page:
        await page.evaluate("document.getElementById('verify').click()")
        status = await page.wait_for(STATUS)
    assert "The link is invalid, has expired or was already used" in status  # the service's own detail


async def test_the_reset_page_sets_the_new_password(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    client = await stack()
    await register(client, "cy@example.com", PASSWORD)
    await verification_token(inbox, "cy@example.com")
    token = await reset_token(client, inbox, "cy@example.com")

    async with open_page(str(client.make_url("/reset-password")) + f"#token={token}", tmp_path) as page:
        new = json.dumps("a-brand-new-password-3")
        await page.evaluate(f"document.getElementById('password').value = {new}")
        await page.evaluate(f"document.getElementById('again').value = {new}")
        await page.evaluate("document.getElementById('reset').requestSubmit()")
        assert "Your password is changed" in await page.wait_for(f"{STATUS}.includes('changed') && {STATUS}")
    await login(client, "cy@example.com", "a-brand-new-password-3")


async def test_the_pages_run_only_their_own_script_and_cannot_be_framed(stack: StackFactory) -> None:
    client = await stack()
    for path, content_type in (("/verify-email", "text/html"), ("/reset-password", "text/html"),
                               ("/account-pages.js", "text/javascript")):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.content_type == content_type
        policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    reset = await (await client.get("/reset-password")).text()
    assert 'id="password"' in reset
    assert "<script>" not in reset  # nothing inline: the policy would refuse it
