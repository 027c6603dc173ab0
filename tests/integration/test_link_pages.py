"""The pages the links in mails open when they point at the service itself (PUBLIC_URL unset, as
in development): a real browser follows a verification link and the account is verified; the
pages run nothing but their own script and keep the token out of every request's URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.asyncapi.chromium import load_page
from tests.integration.accounts import ME, PASSWORD, inbox_fixture, verification_token  # noqa: F401  # a fixture
from tests.integration.conftest import StackFactory, bearer, login, register
from tests.smtp import SmtpInbox


async def test_a_browser_following_the_verification_link_verifies_the_account(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    client = await stack()
    await register(client, "ann@example.com", PASSWORD)
    token = await verification_token(inbox, "ann@example.com")
    ann = bearer(await login(client, "ann@example.com", PASSWORD))
    assert (await (await client.get(ME, headers=ann)).json())["is_verified"] is False

    page = await load_page(str(client.make_url("/verify-email")) + f"#token={token}", tmp_path)

    assert "Your email address is verified" in page.dom
    assert (await (await client.get(ME, headers=ann)).json())["is_verified"] is True
    paths = [urlsplit(url).path for url in page.requests]
    assert paths[:2] == ["/verify-email", "/account-pages.js"]
    assert "/api/v1/auth/verify" in paths
    # Only the navigation names the fragment (a browser never sends it); the script's calls do not.
    assert not [url for url in page.requests[1:] if token in url]


async def test_a_used_link_says_why_it_no_longer_works(
    inbox: SmtpInbox, stack: StackFactory, tmp_path: Path
) -> None:
    client = await stack()
    await register(client, "bob@example.com", PASSWORD)
    token = await verification_token(inbox, "bob@example.com")
    assert (await client.post("/api/v1/auth/verify", json={"token": token})).status == 200

    page = await load_page(str(client.make_url("/verify-email")) + f"#token={token}", tmp_path / "again")

    assert "Your email address is verified" not in page.dom
    status = page.dom.split('id="status"')[1].split("</p>")[0]
    assert "The link is invalid, has expired or was already used" in status  # the service's own detail


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
