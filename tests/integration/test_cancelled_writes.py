"""A change the data service saved is followed through when its request is cancelled right
after (the end of the process cancels a request still running, say): the sessions a password
change ends are ended, and the cache forgets the user (contract §4, §9)."""

from __future__ import annotations

from pathlib import Path

from tests.cancelling import send_cancelled
from tests.fixtures.commit_plugin import CommitPlugin
from tests.integration.conftest import Client, StackFactory, admin_headers, bearer, login, pipelines_for, register

FETCH = ('  { use = "data-fetch", call = "PATCH /api/v1/users/{id}", response = "User", '
         'conflict = "Another user already has this email." },')


async def stack_cancelling_patches(stack: StackFactory, tmp_path: Path, unique: str) -> Client:
    """The default pipelines, with PATCH's request cancelled as soon as the data service saved it."""
    text = pipelines_for(tmp_path, unique).read_text()
    assert text.count(FETCH) == 1
    path = tmp_path / "cancelling.toml"  # not pipelines_for's file: the stack writes that one afresh
    path.write_text(text.replace(FETCH, '  { use = "cancel-after" },\n' + FETCH))
    return await stack(pipelines_file=path, plugins=(CommitPlugin(),))


async def test_a_password_change_cancelled_once_saved_still_ends_the_sessions(
    stack: StackFactory, tmp_path: Path, unique: str,
) -> None:
    client = await stack_cancelling_patches(stack, tmp_path, unique)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", "correct-horse-1")
    admin = await admin_headers(client)
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=admin)).headers["X-Cache"] == "MISS"

    await send_cancelled(client.patch(f"/api/v1/users/{user['id']}", headers=bearer(tokens),
                                      json={"password": "new-horse-22", "current_password": "correct-horse-1"}))

    await login(client, "ann@example.com", "new-horse-22")  # saved
    # The cached read checks the token against the revocation cut-off alone, never the record.
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens))).status == 401
    assert (await client.get("/api/v1/auth/me", headers=bearer(tokens))).status == 401
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=admin)).headers["X-Cache"] == "MISS"
