"""The REDIS_URL forms: each accepted, each mistake a clear ValueError without the password."""

from __future__ import annotations

import pytest

from app.clients.redis import RedisConnection
from app.clients.redis.urls import RedisTarget, parse_redis_url, redact_url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:secret@redis.example:6380/1?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=2",
        "redis+sentinel://s1:26379,s2,[::1]:26380/mymaster/3",
        "redis+cluster://:secret@n1:7000,n2:7001",
        "rediss+cluster://n1:7000",
    ],
)
def test_supported_url_forms_are_accepted(url: str) -> None:
    assert RedisConnection(url).url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379", "unsupported Redis URL scheme 'http'"),
        ("127.0.0.1:6379", "unsupported Redis URL scheme"),
        ("redis+sentinel://:pw@s1:26379", "must end in /service_name"),
        ("redis+sentinel://s1:26379/mymaster/zero", "must end in /service_name"),
        ("redis+cluster://n1:port", "bad host:port 'n1:port'"),
        ("redis+cluster://", "names no host"),
        ("redis://127.0.0.1:6379/abc", "must end in /db, a number"),  # coredis read it as db 0
        ("redis+cluster://n1:7000/3", "a cluster has only db 0"),  # the /3 was dropped unsaid
    ],
)
def test_bad_urls_raise_a_clear_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisConnection(url)


def test_error_messages_do_not_leak_the_password() -> None:
    with pytest.raises(ValueError, match="n1:7000") as info:
        RedisConnection("redis+cluster://admin:hunter2@n1:7000,n1:bad")
    assert "hunter2" not in str(info.value)




@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget(topology="standalone")),
        ("unix:///run/redis.sock?db=2", RedisTarget(topology="standalone")),
        (
            "redis+sentinel://u:p%40ss@s1:26379,s2,[::1]:26380/my%20master/3",
            RedisTarget(
                topology="sentinel", nodes=(("s1", 26379), ("s2", 26379), ("::1", 26380)),
                service="my master", db=3, username="u", password="p@ss",
            ),
        ),
        (
            "rediss+cluster://:secret@n1:7000,n2",
            RedisTarget(topology="cluster", nodes=(("n1", 7000), ("n2", 6379)), password="secret", tls=True),
        ),
    ],
)
def test_each_form_names_its_topology_nodes_and_credentials(url: str, target: RedisTarget) -> None:
    assert parse_redis_url(url) == target


def test_a_target_never_shows_its_password() -> None:
    assert "hunter2" not in repr(parse_redis_url("redis+cluster://:hunter2@n1:7000"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+cluster://admin:hunter2@n1:7000", "redis+cluster://admin:***@n1:7000"),
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_redacted_urls_keep_everything_but_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
