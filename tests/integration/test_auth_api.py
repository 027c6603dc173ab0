"""The token endpoints and bearer checks of contract §4 through real HTTP.

Token state (refresh families, revocation) and login throttling run twice: on the embedded
stores and on the real Redis.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import ClientResponse
from multidict import CIMultiDict

from app.clients.redis import RedisConnection
from tests.integration.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    DEFAULT_PIPELINES,
    JWT_SECRET,
    REFRESH_GRACE_S,
    Client,
    StackFactory,
    admin_headers,
    assert_problem,
    bearer,
    login,
    register,
)
from tests.integration.faults import FaultProxy
from tests.integration.test_headers import raw_exchange

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
PASSWORD = "correct-horse-1"




def claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims for user 1 (the admin), with `changes` (None drops a claim)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "1", "roles": ["admin"], "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex,
        "iss": "turnstile", "aud": "turnstile-api", "type": "access",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def forge(secret: str = JWT_SECRET, **changes: Any) -> str:
    """An HS256 token over `claims(**changes)`, signed with the service's secret by default."""
    return jwt.encode(claims(**changes), secret, algorithm="HS256")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def unsigned(fam: str) -> str:
    """Valid claims under ``alg: none`` with no signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims(fam=fam))}."


def tampered(token: str) -> str:
    """`token` with one character of its signature changed."""
    head, payload, sig = token.split(".")
    swapped = "A" if sig[3] != "A" else "B"
    return f"{head}.{payload}.{sig[:3]}{swapped}{sig[4:]}"


async def refresh(client: Client, token: str) -> ClientResponse:
    return await client.post(REFRESH, json={"refresh_token": token})


# --- login ------------------------------------------------------------------------------------


async def test_login_json_and_oauth2_form_give_a_bearer_pair(stack: StackFactory) -> None:
    client = await stack()
    user = await register(client, "ann@example.com")
    for resp in (
        await client.post(LOGIN, json={"email": " Ann@Example.com ", "password": PASSWORD}),
        await client.post(LOGIN, data={"grant_type": "password", "username": "ann@example.com", "password": PASSWORD}),
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["Cache-Control"] == "no-store"
        pair = await resp.json()
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert pair["token_type"] == "bearer"
        assert pair["expires_in"] == 900
        me = await client.get(ME, headers=bearer(pair))
        assert me.status == 200
        assert (await me.json())["id"] == user["id"]


async def test_every_json_answer_has_one_media_type_whichever_plugin_made_it(stack: StackFactory) -> None:
    # The token pair (auth), a user (data-fetch), a session list (auth), a mail request
    # (accounts) and /readyz (core) are made by different code: a client sees one media type.
    client = await stack()
    await register(client, "bea@example.com")
    pair = await login(client, "bea@example.com", PASSWORD)
    answers = {
        "token pair": await client.post(LOGIN, json={"email": "bea@example.com", "password": PASSWORD}),
        "user": await client.get(ME, headers=bearer(pair)),
        "sessions": await client.get("/api/v1/auth/sessions", headers=bearer(pair)),
        "mail request": await client.post("/api/v1/auth/verify/request", json={"email": "bea@example.com"}),
        "readyz": await client.get("/readyz"),
    }
    for what, resp in answers.items():
        assert resp.status in (200, 202), (what, resp.status, await resp.text())
        assert resp.headers["Content-Type"] == "application/json", what
        assert b": " not in await resp.read(), what  # one serializer: compact


async def test_login_answers_unknown_email_and_wrong_password_alike(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    unknown = await client.post(LOGIN, json={"email": "nobody@example.com", "password": PASSWORD})
    wrong = await client.post(LOGIN, json={"email": "ann@example.com", "password": "wrong-password"})
    bodies = [await assert_problem(resp, 401) for resp in (unknown, wrong)]
    for body in bodies:
        del body["request_id"]
    assert bodies[0] == bodies[1]
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"] == "Bearer"
    # RFC 6749 §5.2: what an OAuth2 client library looks for in a token endpoint's error (without
    # it one took the problem document for a token).
    assert bodies[0]["error"] == "invalid_grant"


async def test_login_with_a_member_sent_twice_is_422_and_logs_nobody_in(stack: StackFactory) -> None:
    # A gateway that keeps the first "email" would rate-limit or audit another account than
    # the one logging in: neither value is chosen.
    client = await stack()
    await register(client, "ann@example.com")
    body = f'{{"email": "nobody@example.com", "email": "ann@example.com", "password": "{PASSWORD}"}}'
    problem = await assert_problem(
        await client.post(LOGIN, data=body, headers={"Content-Type": "application/json"}), 422)
    assert problem["errors"] == [{"loc": ["body", "email"], "msg": "sent more than once"}]


async def test_login_of_a_disabled_user_is_403(stack: StackFactory) -> None:
    client = await stack()
    resp = await client.post(
        "/api/v1/users", headers=await admin_headers(client),
        json={"email": "off@example.com", "password": PASSWORD, "is_active": False},
    )
    assert resp.status == 201, await resp.text()
    problem = await assert_problem(await client.post(LOGIN, json={"email": "off@example.com", "password": PASSWORD}),
                                   403)
    assert problem["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "body",
    [{"email": "ann@example.com"}, {"password": PASSWORD}, {"email": 5, "password": PASSWORD}, {}],
    ids=["no-password", "no-email", "email-not-a-string", "empty"],
)
async def test_login_with_a_bad_body_is_422(stack: StackFactory, body: dict[str, Any]) -> None:
    client = await stack()
    problem = await assert_problem(await client.post(LOGIN, json=body), 422)
    assert problem["errors"]


async def test_login_is_throttled_per_email(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    for _ in range(5):
        await assert_problem(await client.post(LOGIN, json={"email": "ann@example.com", "password": "nope-nope"}), 401)
    # The right password no longer helps, however the email is spelled, nor does the form.
    throttled = await client.post(LOGIN, json={"email": " ANN@example.com", "password": PASSWORD})
    await assert_problem(throttled, 429)
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    form = {"grant_type": "password", "username": "ann@example.com", "password": PASSWORD}
    await assert_problem(await client.post(LOGIN, data=form), 429)
    # Another account from the same client is not locked out.
    assert (await client.post(LOGIN, json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).status == 200


async def test_swagger_uis_authorize_form_logs_in(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    # What Swagger UI's Authorize button sends for the OAuth2 password flow.
    form = {"grant_type": "password", "username": "ann@example.com", "password": PASSWORD, "scope": "",
            "client_id": "swagger-ui", "client_secret": ""}
    resp = await client.post(LOGIN, data=form)
    assert resp.status == 200, await resp.text()
    assert (await client.get(ME, headers=bearer(await resp.json()))).status == 200


async def test_the_login_form_ignores_parameters_it_does_not_know(stack: StackFactory) -> None:
    # RFC 6749 §3.2: "The authorization server MUST ignore unrecognized request parameters";
    # OAuth2 client libraries add `audience`, `resource` (RFC 8707) or their own.
    client = await stack()
    await register(client, "ann@example.com")
    form = {"grant_type": "password", "username": "ann@example.com", "password": PASSWORD, "audience": "api",
            "resource": "https://api.example.com/", "x-vendor": "1"}
    resp = await client.post(LOGIN, data=form)
    assert resp.status == 200, await resp.text()
    login_form = (await (await client.get("/api/docs/swagger.json")).json())["components"]["schemas"]["LoginForm"]
    assert login_form["additionalProperties"] is True


@pytest.mark.parametrize(
    ("form", "loc"),
    [
        ({"grant_type": "client_credentials", "username": "ann@example.com", "password": PASSWORD}, "grant_type"),
        ({"username": "ann@example.com", "password": PASSWORD}, "grant_type"),
        ({"grant_type": "password", "username": "ann@example.com", "email": "ann@example.com",
          "password": PASSWORD}, "email"),
        ({"grant_type": "password", "password": PASSWORD}, "username"),
        # blank once normalised, found so after the form was read: named as the form sent it
        ({"grant_type": "password", "username": "   ", "password": PASSWORD}, "username"),
    ],
    ids=["other-grant", "no-grant", "email-and-username", "no-username", "blank-username"],
)
async def test_a_form_outside_the_password_grant_is_422(stack: StackFactory, form: dict[str, str], loc: str) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    problem = await assert_problem(await client.post(LOGIN, data=form), 422)
    assert ["body", loc] in [error["loc"] for error in problem["errors"]]


async def test_a_field_sent_twice_is_422_not_the_last_one_wins(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    body = f"grant_type=password&username=decoy@example.com&username=ann@example.com&password={PASSWORD}"
    resp = await client.post(LOGIN, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    await assert_problem(resp, 422)


async def test_the_email_limiter_counts_the_email_the_login_checks(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    # The attack: a decoy in `email` for the limiter, the victim in `username` for the login.
    for n in range(8):
        form = {"grant_type": "password", "email": f"decoy{n}@example.com", "username": "ann@example.com",
                "password": f"guess-{n}-xx"}
        refused = await client.post(LOGIN, data=form)
        await assert_problem(refused, 422)
        expected = [{"loc": ["body", "email"], "msg": "a form sends this as 'username'"}]
        assert (await refused.json())["errors"] == expected
    for n in range(5):
        form = {"grant_type": "password", "username": "ANN@example.com", "password": f"guess-{n}-xx"}
        await assert_problem(await client.post(LOGIN, data=form), 401)
    await assert_problem(await client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD}), 429)


async def test_one_client_cannot_lock_a_chosen_account_out(stack: StackFactory, token_state: dict[str, Any]) -> None:
    # Behind a trusted proxy (the test client is 127.0.0.1), each X-Forwarded-For is a client.
    client = await stack(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),), **token_state)
    await register(client, "ann@example.com")
    attacker, owner = {"X-Forwarded-For": "203.0.113.66"}, {"X-Forwarded-For": "198.51.100.7"}
    wrong = {"email": "ann@example.com", "password": "nope-nope"}
    for _ in range(5):
        await assert_problem(await client.post(LOGIN, json=wrong, headers=attacker), 401)
    await assert_problem(await client.post(LOGIN, json=wrong, headers=attacker), 429)
    right = {"email": "ann@example.com", "password": PASSWORD}
    assert (await client.post(LOGIN, json=right, headers=owner)).status == 200


async def test_many_clients_guessing_one_account_meet_the_per_email_bound(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),), **token_state)
    await register(client, "ann@example.com")
    wrong = {"email": "ann@example.com", "password": "nope-nope"}
    for n in range(20):  # four failures each from five addresses: under each one's own bound
        resp = await client.post(LOGIN, json=wrong, headers={"X-Forwarded-For": f"203.0.113.{n // 4}"})
        await assert_problem(resp, 401)
    fresh = await client.post(LOGIN, json=wrong, headers={"X-Forwarded-For": "203.0.113.99"})
    await assert_problem(fresh, 429)


async def test_successful_logins_do_not_count_as_failures(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    for _ in range(8):
        await login(client, "ann@example.com", PASSWORD)
    for _ in range(4):
        await assert_problem(await client.post(LOGIN, json={"email": "ann@example.com", "password": "nope-nope"}), 401)
    await login(client, "ann@example.com", PASSWORD)


async def test_login_is_throttled_per_client(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    for n in range(30):
        resp = await client.post(LOGIN, json={"email": f"u{n}@example.com", "password": "nope-nope"})
        await assert_problem(resp, 401)
    throttled = await client.post(LOGIN, json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    await assert_problem(throttled, 429)
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300


# --- refresh and logout ----------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    first = await login(client, "ann@example.com", PASSWORD)
    resp = await refresh(client, first["refresh_token"])
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get(ME, headers=bearer(second))).status == 200
    # The spent token comes back after the grace window: a replay, so the whole family dies,
    # the newest token too.
    await asyncio.sleep(REFRESH_GRACE_S + 0.1)
    await assert_problem(await refresh(client, first["refresh_token"]), 401)
    await assert_problem(await refresh(client, second["refresh_token"]), 401)
    # Another session of the same user lives on.
    other = await login(client, "ann@example.com", PASSWORD)
    assert (await refresh(client, other["refresh_token"])).status == 200


async def test_racing_refreshes_of_one_token_rotate_once_and_get_the_same_pair(
    stack: StackFactory, token_state: dict[str, Any]
) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    answers = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(2)))
    assert [resp.status for resp in answers] == [200, 200]
    first, second = [await resp.json() for resp in answers]
    assert first == second  # one rotation; the other got its pair (a retry or a second tab)
    assert (await refresh(client, first["refresh_token"])).status == 200


@pytest.mark.parametrize("token", ["not-a-jwt", ""], ids=["garbage", "empty"])
async def test_refresh_with_a_bad_token_is_401_or_422(stack: StackFactory, token: str) -> None:
    client = await stack()
    resp = await refresh(client, token)
    problem = await assert_problem(resp, 422 if token == "" else 401)
    if token:
        assert problem["error"] == "invalid_grant"  # RFC 6749 §5.2, as for a login


async def test_the_oauth2_refresh_grant_form_refreshes_as_json_does(stack: StackFactory) -> None:
    # RFC 6749 §6, as an OAuth2 client library sends it to the flow's refreshUrl: it took a 422
    # for a token before.
    client = await stack()
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "web"}
    resp = await client.post("/api/v1/auth/refresh", data=form)
    assert resp.status == 200, await resp.text()
    pair = await resp.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    again = await client.post("/api/v1/auth/refresh", data={**form, "grant_type": "password"})
    assert (await assert_problem(again, 422))["errors"][0]["loc"] == ["body", "grant_type"]
    spec = await (await client.get("/api/docs/swagger.json")).json()
    flow = spec["components"]["securitySchemes"]["oauth2Password"]["flows"]["password"]
    assert flow["refreshUrl"] == "/api/v1/auth/refresh"


async def test_an_access_token_cannot_refresh(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    await assert_problem(await refresh(client, tokens["access_token"]), 401)


async def test_logout_spends_the_refresh_token(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    resp = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens))
    assert resp.status == 204, await resp.text()
    await assert_problem(await refresh(client, tokens["refresh_token"]), 401)


async def test_logout_needs_a_bearer_and_the_callers_own_token(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    no_bearer = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]})
    await assert_problem(no_bearer, 401)
    assert no_bearer.headers["WWW-Authenticate"] == "Bearer"
    admin = await admin_headers(client)
    # Another user's refresh token, or none that is valid: refused as a grant, with a challenge
    # that does not call the caller's good access token invalid (a client would drop it).
    for sent in (tokens["refresh_token"], "not-a-token"):
        refused = await client.post(LOGOUT, json={"refresh_token": sent}, headers=admin)
        problem = await assert_problem(refused, 401)
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert problem["error"] == "invalid_grant"
    assert (await client.get("/api/v1/auth/me", headers=admin)).status == 200
    assert (await refresh(client, tokens["refresh_token"])).status == 200


# --- me and bearer tokens --------------------------------------------------------------------


async def test_me_answers_the_caller_and_401_without_a_token(stack: StackFactory) -> None:
    client = await stack()
    user = await register(client, "ann@example.com", full_name="Ann")
    me = await client.get(ME, headers=bearer(await login(client, "ann@example.com", PASSWORD)))
    assert me.status == 200
    assert await me.json() == user
    missing = await client.get(ME)
    await assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    await assert_problem(await client.get(ME, headers={"Authorization": "Basic YWRtaW46eA=="}), 401)


# Each is given the admin's live session, so only the flaw under test stands in the way.
BAD_TOKENS: dict[str, Callable[[str], str]] = {
    "expired": lambda fam: forge(fam=fam, iat=int(time.time()) - 3600, exp=int(time.time()) - 60),
    "tampered": lambda fam: tampered(forge(fam=fam)),
    "other-secret": lambda fam: forge("another-secret-of-at-least-32-bytes!!", fam=fam),
    "alg-none": unsigned,
    "wrong-audience": lambda fam: forge(fam=fam, aud="someone-else"),
    "wrong-issuer": lambda fam: forge(fam=fam, iss="evil"),
    "no-type": lambda fam: forge(fam=fam, type=None),
    "no-session": lambda fam: forge(),
    "ended-session": lambda fam: forge(fam=uuid.uuid4().hex),
    "garbage": lambda fam: "abc.def.ghi",
    # Signed with the key, as only a key holder could: a digit of another script in `sub` was a 500.
    "superscript-sub": lambda fam: forge(fam=fam, sub="\u00b9"),
    "arabic-indic-sub": lambda fam: forge(fam=fam, sub="\u0661"),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_a_bad_bearer_token_is_401(stack: StackFactory, kind: str) -> None:
    client = await stack()
    # The forged tokens name user 1, the admin, in the admin's own live session.
    admin = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    fam = jwt.decode(admin["access_token"], options={"verify_signature": False})["fam"]
    assert (await client.get(ME, headers={"Authorization": f"Bearer {forge(fam=fam)}"})).status == 200
    resp = await client.get(ME, headers={"Authorization": f"Bearer {BAD_TOKENS[kind](fam)}"})
    await assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    bad = {"Authorization": f"Bearer {BAD_TOKENS[kind](fam)}"}
    await assert_problem(await client.get("/api/v1/users", headers=bad), 401)


@pytest.mark.parametrize("order", ["valid-first", "valid-last"])
async def test_two_authorization_headers_are_400_whichever_comes_first(stack: StackFactory, order: str) -> None:
    # A proxy that reads the other header would see another caller than the service does.
    client = await stack()
    admin = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    values = [f"Bearer {admin['access_token']}", "Bearer garbage"]
    headers = CIMultiDict(("Authorization", value) for value in (values if order == "valid-first" else values[::-1]))
    resp = await client.get("/api/v1/users", headers=headers)
    problem = await assert_problem(resp, 400)
    assert problem["detail"] == "Send one Authorization header, not several."
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'


async def test_a_refresh_token_is_no_bearer(stack: StackFactory) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    await assert_problem(await client.get(ME, headers={"Authorization": f"Bearer {tokens['refresh_token']}"}), 401)


async def test_a_deleted_users_tokens_die_at_once(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    assert (await client.get(ME, headers=bearer(tokens))).status == 200
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=await admin_headers(client))
    assert deleted.status == 204
    await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)
    await assert_problem(await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens)), 401)
    await assert_problem(await refresh(client, tokens["refresh_token"]), 401)


async def test_a_user_deleted_at_the_data_service_itself_is_refused_not_missing(
    stack: StackFactory, dataservice: str
) -> None:
    # Deleted by the data service's own tools, no event heard: the token names nobody.
    client = await stack()
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    assert (await client.get(ME, headers=bearer(tokens))).status == 200
    async with aiohttp.ClientSession() as session, \
            session.delete(f"{dataservice}/api/v1/users/{user['id']}") as deleted:
        assert deleted.status == 204
    body = await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)
    assert body["detail"] == "The user this token was issued to no longer exists."
    await assert_problem(await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens)), 401)
    # Anyone else asking for that user is told it does not exist.
    await assert_problem(await client.get(f"/api/v1/users/{user['id']}", headers=await admin_headers(client)), 404)


@pytest.mark.parametrize("first", ["ann", "admin"])
async def test_one_fetch_of_a_deleted_user_answers_each_caller_as_who_they_are(
    stack: StackFactory, redis_db: str, proxy: FaultProxy, first: str
) -> None:
    # The cache's flight gives both the same fetch's 404: Ann's own token dies, the admin is told
    # the user does not exist, whichever of them asked first.
    client = await stack(redis_url=redis_db, data_service_url=proxy.url)
    admin = await admin_headers(client)
    user = await register(client, "ann@example.com")
    ann = bearer(await login(client, "ann@example.com", PASSWORD))
    async with aiohttp.ClientSession() as session, \
            session.delete(f"{proxy.upstream}/api/v1/users/{user['id']}") as deleted:
        assert deleted.status == 204
    proxy.slow_s = 1.0
    proxy.mode = "slow"
    path = f"/api/v1/users/{user['id']}"
    callers = {"ann": ann, "admin": admin}
    second = "admin" if first == "ann" else "ann"

    async def later() -> ClientResponse:
        await asyncio.sleep(0.3)  # while the first one's fetch is held
        return await client.get(path, headers=callers[second])

    calls = proxy.calls
    answers = dict(zip((first, second), await asyncio.gather(client.get(path, headers=callers[first]), later()),
                       strict=True))
    assert proxy.calls == calls + 1  # one fetch for both
    await assert_problem(answers["ann"], 401)
    await assert_problem(answers["admin"], 404)


NOTES = """
[[pipelines]]
name = "get_note"
route = "GET /api/v1/notes/{note:int}"
steps = [
  { use = "auth", allow = ["authenticated"] },
  { use = "data-fetch", call = "GET /api/v1/notes/{note}" },
]
"""


async def test_a_missing_record_of_another_resource_numbered_as_the_caller_is_a_404(
    stack: StackFactory, tmp_path: Path
) -> None:
    # Only the data service's users are users: note 7 missing says nothing of user 7's token.
    pipelines = tmp_path / "notes.toml"
    pipelines.write_text(DEFAULT_PIPELINES.read_text() + NOTES)
    client = await stack(pipelines_file=pipelines)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    await assert_problem(await client.get(f"/api/v1/notes/{user['id']}", headers=bearer(tokens)), 404)
    assert (await client.get(ME, headers=bearer(tokens))).status == 200


PROFILES = """
[[pipelines]]
name = "get_profile"
route = "GET /api/v1/profiles/{uid}"
steps = [
  { use = "auth", allow = ["self", "admin"], self_param = "uid" },
  { use = "data-fetch", call = "GET /api/v1/users/{uid}", response = "User" },
]
"""


async def test_a_deleted_user_is_refused_on_every_route_that_reads_their_record(
    stack: StackFactory, dataservice: str, tmp_path: Path
) -> None:
    # A remembered 404 (not_found_ttl_s), a team's route whose parameter is not declared :int,
    # and a change proved with the current password: each answers the user 401, an admin 404.
    text = DEFAULT_PIPELINES.read_text()
    cached = '{ use = "cache", key = "user:{id}", ttl_s = 3600 }'
    assert cached in text
    pipelines = tmp_path / "remembered.toml"
    pipelines.write_text(text.replace(cached, cached[:-2] + ", not_found_ttl_s = 60 }") + PROFILES)
    client = await stack(pipelines_file=pipelines)
    admin = await admin_headers(client)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    async with aiohttp.ClientSession() as session, \
            session.delete(f"{dataservice}/api/v1/users/{user['id']}") as deleted:
        assert deleted.status == 204
    own = f"/api/v1/users/{user['id']}"
    for _ in range(2):  # the first answer is not remembered as the second's
        await assert_problem(await client.get(own, headers=admin), 404)
        await assert_problem(await client.get(own, headers=bearer(tokens)), 401)
    await assert_problem(await client.get(f"/api/v1/profiles/{user['id']}", headers=bearer(tokens)), 401)
    await assert_problem(await client.get(f"/api/v1/profiles/{user['id']}", headers=admin), 404)
    changed = await client.patch(own, json={"password": "another-horse-2", "current_password": PASSWORD},
                                 headers=bearer(tokens))
    await assert_problem(changed, 401)


async def test_a_disabled_users_tokens_die_at_once(stack: StackFactory, token_state: dict[str, Any]) -> None:
    client = await stack(**token_state)
    user = await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    assert (await client.get(ME, headers=bearer(tokens))).status == 200
    patched = await client.patch(
        f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=await admin_headers(client)
    )
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["is_active"] is False
    await assert_problem(await client.get(ME, headers=bearer(tokens)), 401)
    await assert_problem(await refresh(client, tokens["refresh_token"]), 401)
    await assert_problem(await client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD}), 403)


@pytest.mark.parametrize("form", [b"username=\xff\xfe&password=x", b"username=a%40example.com&password=%80%81horse-1"])
async def test_a_broken_form_is_400_not_500(stack: StackFactory, form: bytes) -> None:
    # Bytes that are not UTF-8, raw or %-escaped (aiohttp made the escapes U+FFFD: a password
    # of its own that JSON could not send).
    client = await stack()
    resp = await client.post("/api/v1/auth/login", data=form,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    problem = await assert_problem(resp, 400)
    assert problem["detail"] == "The form body cannot be read."


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=xyz", "multipart/form-data"])
async def test_a_multipart_login_is_415_the_grant_is_a_urlencoded_form(stack: StackFactory, content_type: str) -> None:
    client = await stack()
    await register(client, "ann@example.com")
    form = b"--xyz\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nann@example.com\r\n--xyz--\r\n"
    resp = await client.post("/api/v1/auth/login", data=form, headers={"Content-Type": content_type})
    await assert_problem(resp, 415)


async def test_a_token_that_is_not_ascii_is_401_not_a_500(stack: StackFactory) -> None:
    # Bytes that are not UTF-8 reach the token check as surrogates, on which PyJWT raised.
    client = await stack()
    request = b"GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    headers, body = await raw_exchange(str(client.host), int(client.port or 0), request, status=401)
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert json.loads(body)["status"] == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": "é.é.é"})
    await assert_problem(refresh, 401)


async def test_the_answer_kept_for_the_grace_window_is_no_token_in_plain_text(
    stack: StackFactory, redis_db: str
) -> None:
    # Anyone who reads Redis in those seconds (MONITOR, a replica, a snapshot, a backup) would
    # have taken the session over: it is sealed with the refresh token it answers.
    client = await stack(redis_url=redis_db)
    await register(client, "ann@example.com")
    tokens = await login(client, "ann@example.com", PASSWORD)
    first = await refresh(client, tokens["refresh_token"])
    assert first.status == 200
    pair = await first.json()
    connection = RedisConnection(redis_db)  # standalone or a cluster (its second pass): every master scanned
    await connection.start()
    try:
        redis: Any = connection.client
        kept = [await redis.get(key) async for key in redis.scan_iter(match="turnstile:auth:grace:*")]
    finally:
        await connection.stop()
    assert kept
    assert not any(pair["refresh_token"] in value or pair["access_token"] in value for value in kept)
    again = await refresh(client, tokens["refresh_token"])  # within the window: the same pair
    assert again.status == 200
    assert await again.json() == pair
