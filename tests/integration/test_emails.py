"""Emails are NFKC-normalised, trimmed and lower-cased (contract §4), so a look-alike spelling
(full-width letters, an ideographic space) names the same account everywhere the API takes an
email: it cannot register a second account, it logs in, and it collides on a change."""

from __future__ import annotations

import aiohttp
import argon2
import pytest

from tests.integration.conftest import StackFactory, admin_headers, assert_problem, bearer, login, register

REGISTER = "/api/v1/auth/register"
PASSWORD = "correct-horse-1"
# ann@example.com in full-width letters (U+FF41 is a full-width "a")
FULL_WIDTH_ANN = "\uff41\uff4e\uff4e@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.\uff43\uff4f\uff4d"


@pytest.mark.parametrize("email", [FULL_WIDTH_ANN, FULL_WIDTH_ANN.upper(), "\u3000Ann@Example.com\u3000"])
async def test_a_look_alike_of_a_registered_email_is_409(stack: StackFactory, email: str) -> None:
    client = await stack()
    await register(client, "ann@example.com", PASSWORD)
    problem = await assert_problem(await client.post(REGISTER, json={"email": email, "password": PASSWORD}), 409)
    # The route's own words (data-fetch's `conflict`), never the data service's
    assert problem["detail"] == "Another user already has this email."


async def test_a_look_alike_is_stored_in_its_normal_form(stack: StackFactory) -> None:
    client = await stack()
    user = await register(client, "\uff22\uff2f\uff22@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.\uff23\uff2f\uff2d")
    assert user["email"] == "bob@example.com"
    await assert_problem(await client.post(REGISTER, json={"email": "bob@example.com", "password": PASSWORD}), 409)


async def test_a_look_alike_logs_in_as_the_same_user(stack: StackFactory) -> None:
    client = await stack()
    ann = await register(client, "ann@example.com", PASSWORD)
    for tokens in (
        await login(client, FULL_WIDTH_ANN, PASSWORD),
        await login(client, "\u3000" + FULL_WIDTH_ANN.upper(), PASSWORD),
    ):
        me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
        assert (await me.json())["id"] == ann["id"]
    form = await client.post("/api/v1/auth/login", data={"grant_type": "password", "username": FULL_WIDTH_ANN,
                                                               "password": PASSWORD})
    assert form.status == 200, await form.text()


async def test_changing_an_email_to_a_look_alike_of_another_is_409(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com", PASSWORD)
    bob = await register(client, "bob@example.com", PASSWORD)
    admin = await admin_headers(client)
    path = f"/api/v1/users/{bob['id']}"
    await assert_problem(await client.patch(path, json={"email": FULL_WIDTH_ANN}, headers=admin), 409)
    changed = await client.patch(path, json={"email": "\uff43\uff41\uff52\uff4f\uff4c@example.com"}, headers=admin)
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["email"] == "carol@example.com"


@pytest.mark.parametrize("route", ["register", "create", "change"])
async def test_a_mixed_script_look_alike_is_422_on_every_route_that_gives_an_address(
    stack: StackFactory, route: str
) -> None:
    # "admin" with a Cyrillic a (U+0430): NFKC keeps it apart (another letter), so it would be a second
    # account that reads as the first.
    client = await stack()
    bob = await register(client, "bob@example.com", PASSWORD)
    look_alike = "\u0430dmin@example.com"
    if route == "register":
        resp = await client.post(REGISTER, json={"email": look_alike, "password": PASSWORD})
    elif route == "create":
        resp = await client.post("/api/v1/users", json={"email": look_alike, "password": PASSWORD},
                                 headers=await admin_headers(client))
    else:
        resp = await client.patch(f"/api/v1/users/{bob['id']}", json={"email": look_alike},
                                  headers=await admin_headers(client))
    problem = await assert_problem(resp, 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "email"]]
    assert "mixes letters of different scripts" in problem["errors"][0]["msg"]


async def test_the_idna_form_of_a_look_alike_domain_is_refused_as_its_letters_would_be(stack: StackFactory) -> None:
    # xn--pple-43d.com is "apple.com" with a Cyrillic a (U+0430): the letters are what the rules read.
    client = await stack()
    resp = await client.post(REGISTER, json={"email": "x@xn--pple-43d.com", "password": PASSWORD})
    problem = await assert_problem(resp, 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "email"]]
    assert "own letters" in problem["errors"][0]["msg"]


async def test_a_password_is_counted_as_it_is_hashed(stack: StackFactory) -> None:
    # "e" and a combining accent are hashed as one "é": four of them are a four-character password.
    client = await stack()
    short = await client.post(REGISTER, json={"email": "ann@example.com", "password": "e\u0301" * 4})
    problem = await assert_problem(short, 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "password"]]
    assert (await client.post(REGISTER, json={"email": "ann@example.com", "password": "e\u0301" * 8})).status == 201
    assert (await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": "\u00e9" * 8})
            ).status == 200
    # 128 code points that NFC makes 256 characters: past the maximum as hashed.
    long = await client.post(REGISTER, json={"email": "bob@example.com", "password": "\u0958" * 128})
    await assert_problem(long, 422)


async def test_a_login_compares_any_password_it_is_given(stack: StackFactory, dataservice: str) -> None:
    # An account whose password was taken before the rule counted it as hashed (7 characters
    # once NFC) still signs in: the rule is for passwords being set, not compared.
    client = await stack()
    await register(client, "ann@example.com", PASSWORD)
    short = "abcdefg\u0301"
    admin = await admin_headers(client)
    users = await client.get("/api/v1/users", headers=admin)
    ann = next(u for u in (await users.json())["items"] if u["email"] == "ann@example.com")
    stored = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(short)
    async with aiohttp.ClientSession() as session, session.patch(
        f"{dataservice}/api/v1/users/{ann['id']}", json={"password_hash": stored}
    ) as patched:
        assert patched.status == 200
    assert (await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": short})
            ).status == 200
