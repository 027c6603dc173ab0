"""Settings from the environment: typed, one message per bad variable, the production guard."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings

SECRET = "s" * 40
TOKEN = "data-service-token-0123456789"  # a test credential


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    return info.value.problems


def test_embedded_defaults() -> None:
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.data_service_url is None
    assert settings.log_format == "text"
    assert len(settings.embedded_defaults()) == 3


def test_every_bad_variable_gets_its_own_message() -> None:
    assert problems({
        "PORT": "99999", "LOG_LEVEL": "LOUD", "REDIS_URL": "http://x", "TURNSTILE_TRACE_HOOKS": "maybe",
        "DATA_SERVICE_TIMEOUT_S": "-1",
    }) == [
        "PORT='99999': expected a port number 1-65535",
        "LOG_LEVEL='LOUD': expected one of CRITICAL, ERROR, WARNING, INFO, DEBUG",
        "DATA_SERVICE_TIMEOUT_S='-1': expected a positive number of seconds",
        "REDIS_URL: expected a URL of scheme redis/rediss/redis+cluster/rediss+cluster/redis+sentinel, got 'http://x'",
        "TURNSTILE_TRACE_HOOKS='maybe': expected 1/0, true/false, yes/no",
    ]


def test_urls_whose_port_or_host_cannot_be_used_are_refused_at_start_up() -> None:
    # Each one passed before, then failed the start-up with a traceback (or, for the broker,
    # was retried for ever as if it were down).
    assert problems({
        "REDIS_URL": "redis://:secret@127.0.0.1:notaport/12", "DATA_SERVICE_URL": "http://127.0.0.1:99999",
        "RABBITMQ_URL": "amqp://127.0.0.1:abc/", "DATA_SERVICE_RETRIES": "-3",
    }) == [
        "DATA_SERVICE_URL: expected host or host:port (a port 1-65535), got '127.0.0.1:99999'",
        "DATA_SERVICE_RETRIES='-3': expected a whole number, 0 or more",
        "REDIS_URL: expected host or host:port (a port 1-65535), got '127.0.0.1:notaport'",
        "RABBITMQ_URL: expected host or host:port (a port 1-65535), got '127.0.0.1:abc'",
    ]
    assert problems({"REDIS_URL": "redis://:secret@[::1/0"}) == [
        "REDIS_URL: expected a URL of scheme redis/rediss/redis+cluster/rediss+cluster/redis+sentinel, got 'redis://***'"
    ]


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://redis", "redis://[::1]:6379/0", "redis://user:p:w@host:6379/0",
    "redis+cluster://h1:7000,h2:7001", "redis+sentinel://:pw@s1:26379,s2/mymaster/0",
])
def test_every_documented_redis_url_form_is_taken(url: str) -> None:
    assert load_settings({"REDIS_URL": url}).redis_url == url


def test_production_refuses_embedded_defaults() -> None:
    # The core's own; what each plugin requires (a JWT secret for auth) is in test_plugin_settings.py.
    assert problems({"TURNSTILE_ENV": "production"}) == [
        "DATA_SERVICE_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "REDIS_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "RABBITMQ_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
    ]


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://127.0.0.1:26379", "must end in /service_name"),
    ("redis+sentinel://s1/mymaster/x", "must end in /service_name"),
    ("redis://r:6379/abc", "must end in /db, a number"),
    ("redis+cluster://n1:7000/3", "a cluster has only db 0"),
    ("http://r:6379", "expected a URL of scheme"),
])
def test_a_bad_redis_url_is_one_line_and_not_also_missing(url: str, says: str) -> None:
    # The app was built with it, and the start-up failed with a traceback; then "required" was
    # added in production, as if the variable were unset.
    found = problems({"TURNSTILE_ENV": "production", "REDIS_URL": url, "DATA_SERVICE_URL": "http://data:8081",
                      "DATA_SERVICE_TOKEN": "a-token-of-twenty-chars", "RABBITMQ_URL": "amqp://mq/"})
    assert len(found) == 1, found
    assert found[0].startswith("REDIS_URL: ")
    assert says in found[0]


def test_settings_keep_the_environment_they_were_read_from() -> None:
    settings = load_settings({"PORT": "8081", "ACME_THING": "x"})
    assert settings.environ["ACME_THING"] == "x"  # the plugins' settings are read from it
    assert "ACME_THING" not in repr(settings)


def test_production_with_everything_set(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text(SECRET + "\n")
    token_file = tmp_path / "data-service-token"
    token_file.write_text(TOKEN + "\n")
    settings = load_settings({
        "TURNSTILE_ENV": "production", "DATA_SERVICE_URL": "http://data:8081", "REDIS_URL": "redis://r:6379/0",
        "RABBITMQ_URL": "amqp://u:p@mq:5672/", "JWT_SECRET_FILE": str(secret_file),
        "DATA_SERVICE_TOKEN_FILE": str(token_file),
    })
    assert settings.production
    assert settings.data_service_token == TOKEN
    assert settings.log_format == "json"
    assert settings.embedded_defaults() == []


PRODUCTION = {
    "TURNSTILE_ENV": "production", "DATA_SERVICE_URL": "http://data:8081", "REDIS_URL": "redis://r:6379/0",
    "RABBITMQ_URL": "amqp://u:p@mq:5672/", "JWT_SECRET": SECRET,
}


def test_production_refuses_a_data_service_url_without_a_token() -> None:
    assert problems(PRODUCTION) == [
        "DATA_SERVICE_TOKEN or DATA_SERVICE_TOKEN_FILE: required with DATA_SERVICE_URL when TURNSTILE_ENV=production "
        "(every data-service call must carry a credential)",
    ]
    assert load_settings({**PRODUCTION, "DATA_SERVICE_TOKEN": TOKEN}).data_service_token == TOKEN


def test_development_may_call_a_data_service_without_a_token() -> None:
    assert load_settings({"DATA_SERVICE_URL": "http://data:8081"}).data_service_token is None


def test_a_bad_data_service_token_is_one_message_that_never_echoes_it(tmp_path: Path) -> None:
    assert problems({**PRODUCTION, "DATA_SERVICE_TOKEN": "short-secret"}) == [
        "DATA_SERVICE_TOKEN: must be at least 16 characters",
    ]
    [problem] = problems({"DATA_SERVICE_TOKEN": "has spaces in the middle of it"})
    assert problem.startswith("DATA_SERVICE_TOKEN: expected a bearer token")
    assert "spaces" not in problem
    missing = tmp_path / "nowhere"
    assert problems({"DATA_SERVICE_TOKEN_FILE": str(missing)}) == [
        f"DATA_SERVICE_TOKEN_FILE={str(missing)!r}: cannot be read (No such file or directory)",
    ]
    assert problems({"DATA_SERVICE_TOKEN_FILE": str(missing), "DATA_SERVICE_TOKEN": TOKEN}) == [
        "DATA_SERVICE_TOKEN and DATA_SERVICE_TOKEN_FILE are both set: set one of them",
    ]


def test_the_data_service_token_stays_out_of_repr() -> None:
    settings = load_settings({"DATA_SERVICE_TOKEN": TOKEN})
    assert settings.data_service_token == TOKEN
    assert TOKEN not in repr(settings)


def test_trusted_proxies_are_parsed_into_networks() -> None:
    assert load_settings({}).trusted_proxies == ()
    settings = load_settings({"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,fd00::/8,"})
    assert settings.trusted_proxies == (
        ip_network("10.0.0.0/8"), ip_network("192.168.1.7/32"), ip_network("fd00::/8"),
    )


def test_bad_trusted_proxies_are_one_message() -> None:
    [problem] = problems({"TRUSTED_PROXIES": "10.0.0.0/8,10.1.2.3/8,ingress"})
    assert problem.startswith("TRUSTED_PROXIES: expected comma-separated networks such as 10.0.0.0/8, got ")
    assert "'10.1.2.3/8' (10.1.2.3/8 has host bits set)" in problem
    assert "'ingress'" in problem


def test_password_in_a_bad_url_is_not_echoed() -> None:
    [problem] = problems({"RABBITMQ_URL": "http://user:hunter2@mq/"})
    assert "hunter2" not in problem


def test_plugin_lists() -> None:
    settings = load_settings({"TURNSTILE_DISABLE_PLUGINS": "auth, cache", "TURNSTILE_PLUGINS": "a.b,c"})
    assert settings.disabled_plugins == ("auth", "cache")
    assert settings.extra_plugins == ("a.b", "c")


def test_redis_client_tracking_is_on_unless_turned_off() -> None:
    assert load_settings({}).redis_client_tracking is True
    assert load_settings({"REDIS_CLIENT_TRACKING": "0"}).redis_client_tracking is False
    with pytest.raises(SettingsError, match="REDIS_CLIENT_TRACKING"):
        load_settings({"REDIS_CLIENT_TRACKING": "maybe"})


def test_cors_origins_are_origins_or_a_star() -> None:
    settings = load_settings({"CORS_ALLOWED_ORIGINS": " https://App.example.com, http://localhost:5173 ,"})
    assert settings.cors_allowed_origins == ("https://app.example.com", "http://localhost:5173")
    assert load_settings({"CORS_ALLOWED_ORIGINS": "*"}).cors_allowed_origins == ("*",)
    assert load_settings({}).cors_allowed_origins == ()
    [problem] = problems({"CORS_ALLOWED_ORIGINS": "https://ok.example.com,app.example.com,https://x.example.com/path"})
    assert problem.startswith("CORS_ALLOWED_ORIGINS: expected comma-separated origins")
    assert "'app.example.com'" in problem
    assert "'https://x.example.com/path'" in problem


def test_the_request_deadline_must_leave_room_for_the_body() -> None:
    assert problems({"TURNSTILE_REQUEST_TIMEOUT_S": "30"}) == [
        "TURNSTILE_REQUEST_TIMEOUT_S=30 must be above TURNSTILE_BODY_TIMEOUT_S=30: a request's body must be able "
        "to arrive before the request runs out of time",
    ]
    settings = load_settings({"TURNSTILE_REQUEST_TIMEOUT_S": "20", "TURNSTILE_BODY_TIMEOUT_S": "10",
                              "TURNSTILE_HOOK_TIMEOUT_S": "5"})
    assert (settings.request_timeout_s, settings.body_timeout_s, settings.hook_timeout_s) == (20, 10, 5)
