"""Who the client is (contract §3): X-Forwarded-For believed only as far as TRUSTED_PROXIES vouch for it."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient

from app import Handler, StepKind, StepType, client_address, hookimpl
from app.main import create_app
from app.plugins import make_plugin_manager
from app.proxies import TrustedProxies, parse_hop, trusted_proxies_key
from app.settings import Settings, load_settings

PIPELINES = """
[[pipelines]]
name = "whoami"
route = "GET /whoami"
steps = [{ use = "whoami" }]
"""


@attrs.frozen(kw_only=True)
class WhoamiConfig:
    """`{ use = "whoami" }`: answers with the client's address, as a team's step would read it."""


@attrs.frozen
class WhoamiStep:
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return web.json_response({"client": client_address(request)})


class WhoamiPlugin:
    @hookimpl
    def register_steps(self) -> list[StepType[Any]]:
        return [StepType(name="whoami", config_cls=WhoamiConfig, kind=StepKind.TERMINAL,
                         build=lambda config, ctx: WhoamiStep())]


def settings_for(tmp_path: Path, trusted: str) -> Settings:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(PIPELINES)
    settings = load_settings({"TRUSTED_PROXIES": trusted} if trusted else {})
    return attrs.evolve(settings, pipelines_file=pipelines, var_dir=tmp_path / "var")


async def whoami(aiohttp_client: AiohttpClient, tmp_path: Path, trusted: str, forwarded: list[str]) -> str:
    pm = make_plugin_manager(entrypoints=False, extra=[WhoamiPlugin()])
    client = await aiohttp_client(create_app(settings_for(tmp_path, trusted), pm=pm))
    headers = [("X-Forwarded-For", value) for value in forwarded]
    resp = await client.get("/whoami", headers=headers)
    assert resp.status == 200, await resp.text()
    answer: str = (await resp.json())["client"]
    return answer


# The test client connects from 127.0.0.1: that is the socket peer in every case below.
@pytest.mark.parametrize(
    ("trusted", "forwarded", "client"),
    [
        ("", [], "127.0.0.1"),
        ("", ["203.0.113.9"], "127.0.0.1"),  # nobody is trusted: the header is a client's claim
        ("10.0.0.0/8", ["203.0.113.9"], "127.0.0.1"),  # the peer is not a trusted proxy
        ("127.0.0.0/8", [], "127.0.0.1"),
        ("127.0.0.0/8", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.0/8", ["192.0.2.66, 203.0.113.9"], "203.0.113.9"),  # 192.0.2.66 is the client's own claim
        ("127.0.0.0/8,10.0.0.0/8", ["192.0.2.66, 203.0.113.9, 10.0.3.7"], "203.0.113.9"),
        ("127.0.0.0/8,10.0.0.0/8", ["192.0.2.66, 203.0.113.9", "10.0.3.7"], "203.0.113.9"),  # two header lines
        ("127.0.0.0/8,10.0.0.0/8", ["10.0.9.9, 10.0.3.7"], "10.0.9.9"),  # all trusted: the farthest one
        ("127.0.0.0/8", ["203.0.113.9, not-an-address"], "127.0.0.1"),  # a malformed hop stops the walk
        ("127.0.0.0/8,10.0.0.0/8", ["203.0.113.9, junk, 10.0.3.7"], "10.0.3.7"),
        ("127.0.0.0/8", ["2001:db8::7"], "2001:db8::7"),
        ("127.0.0.0/8", ["[2001:db8::7]:4711"], "2001:db8::7"),
        ("127.0.0.0/8", ["203.0.113.9:4711"], "203.0.113.9"),
    ],
)
async def test_client_address_through_real_http(
    aiohttp_client: AiohttpClient, tmp_path: Path, trusted: str, forwarded: list[str], client: str
) -> None:
    assert await whoami(aiohttp_client, tmp_path, trusted, forwarded) == client


def test_create_app_builds_the_resolver_once_from_settings(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, "10.0.0.0/8, fd00::/8"),
                     pm=make_plugin_manager(entrypoints=False, extra=[WhoamiPlugin()]))
    assert app[trusted_proxies_key].networks == (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))


async def test_an_app_without_the_resolver_uses_the_peer(aiohttp_client: AiohttpClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"client": client_address(request)})

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert await resp.json() == {"client": "127.0.0.1"}


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("198.51.100.4", "198.51.100.4"),
        (" 198.51.100.4 ", "198.51.100.4"),
        ("198.51.100.4:80", "198.51.100.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("", None),
        ("unknown", None),
        ("198.51.100.4:http", None),
        ("[2001:db8::1]x", None),
        ("198.51.100.300", None),
        ("_hidden", None),
    ],
)
def test_parse_hop(hop: str, address: str | None) -> None:
    parsed = parse_hop(hop)
    assert (None if parsed is None else str(parsed)) == address


def test_ipv4_mapped_peers_match_ipv4_networks() -> None:
    proxies = TrustedProxies([ip_network("10.0.0.0/8")])
    assert proxies.trusts(ip_address("10.9.9.9"))
    assert not proxies.trusts(ip_address("fd00::1"))
    assert proxies.client("::ffff:10.0.0.2", ["203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("::ffff:192.0.2.1", ["203.0.113.9"]) == "::ffff:192.0.2.1"
    assert proxies.client(None, ["203.0.113.9"]) == ""
