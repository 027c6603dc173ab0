"""Plugin-owned settings (contract §11): variables under a plugin's prefix, read and checked at
start-up with the core's, one line per bad variable in one report, and the production check
asks each plugin what it requires."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from app import hookimpl, plugin_settings, positive_int, setting
from app.main import create_app, load_configuration
from app.plugin_loading import PluginLoadError
from app.plugin_settings import describe, embedded_defaults, read_plugin_settings, unknown_variables
from app.plugins import make_plugin_manager
from app.settings import SettingsError, load_settings
from tests.app.conftest import CORE_PIPELINES
from tests.fixtures import sample_plugin
from tests.services import ROOT

SECRET = "s" * 40
TOKEN = "data-service-token-0123456789"  # a test credential
PRODUCTION = {
    "TURNSTILE_ENV": "production", "DATA_SERVICE_URL": "http://data:8081", "REDIS_URL": "redis://r:6379/0",
    "RABBITMQ_URL": "amqp://u:p@mq:5672/", "DATA_SERVICE_TOKEN": TOKEN,
    # what the mail plugin requires in production
    "SMTP_URL": "smtp+starttls://mail.example.com:587", "MAIL_FROM": "Shop <no-reply@shop.example>",
    "PUBLIC_URL": "https://shop.example",
}


@attrs.frozen(kw_only=True)
class TeamSettings:
    """A team's settings: every kind of field."""

    env_prefix: ClassVar[str] = "TEAM_"

    name: str = setting(default="payments", description="the team's name")
    workers: int = setting(default=2, parse=positive_int, description="how many")
    ratio: float = setting(default=0.5, description="a share")
    strict: bool = setting(default=False, description="a switch")
    home: Path | None = setting(default=None, description="a directory")
    domains: tuple[str, ...] = setting(default=(), description="comma-separated")
    api_key: str = setting(secret=True, description="required, never shown")
    legacy: int = setting(default=7, env="OLD_TEAM_NUMBER", description="a name from before the prefix")

    def check(self, production: bool) -> Iterator[str]:
        if production and not self.domains:
            yield "TEAM_DOMAINS: required when TURNSTILE_ENV=production"

    def embedded_defaults(self) -> list[str]:
        return [] if self.home else ["a team home in memory"]


class TeamPlugin:
    @hookimpl
    def register_settings(self) -> list[type[Any]]:
        return [TeamSettings]


def read(environ: dict[str, str], *, production: bool = False) -> tuple[TeamSettings | None, list[str]]:
    pm = make_plugin_manager(entrypoints=False, extra=[TeamPlugin()])
    values, problems = read_plugin_settings(pm, environ, production=production)
    try:
        return values.get(TeamSettings), problems
    except LookupError:
        return None, problems


def test_each_field_is_read_from_its_variable(tmp_path: Path) -> None:
    settings, problems = read({
        "TEAM_NAME": "billing", "TEAM_WORKERS": "4", "TEAM_RATIO": "0.25", "TEAM_STRICT": "yes",
        "TEAM_HOME": str(tmp_path), "TEAM_DOMAINS": " a.example, b.example ,", "TEAM_API_KEY": "k-1",
        "OLD_TEAM_NUMBER": "9",
    })
    assert problems == []
    assert settings == TeamSettings(
        name="billing", workers=4, ratio=0.25, strict=True, home=tmp_path, domains=("a.example", "b.example"),
        api_key="k-1", legacy=9,
    )
    assert "k-1" not in repr(settings)


def test_unset_variables_keep_their_defaults() -> None:
    settings, problems = read({"TEAM_API_KEY": "k-1", "TEAM_NAME": ""})
    assert problems == []
    assert settings == TeamSettings(api_key="k-1")


def test_every_bad_variable_gets_its_own_message_and_a_secret_is_never_echoed() -> None:
    _settings, problems = read({
        "TEAM_WORKERS": "0", "TEAM_RATIO": "half", "TEAM_STRICT": "maybe", "OLD_TEAM_NUMBER": "x",
    })
    assert problems == [
        "TEAM_WORKERS='0': expected a positive whole number",
        "TEAM_RATIO='half': expected a number",
        "TEAM_STRICT='maybe': expected 1/0, true/false, yes/no, on/off",
        "TEAM_API_KEY: required",
        "OLD_TEAM_NUMBER='x': expected a whole number",
    ]


def test_a_secret_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text("from-the-file\n")
    settings, problems = read({"TEAM_API_KEY_FILE": str(secret)})
    assert problems == []
    assert settings is not None
    assert settings.api_key == "from-the-file"
    # Both set: which one wins would be a guess nobody sees (a rotation that changed one of them).
    both = read({"TEAM_API_KEY_FILE": str(secret), "TEAM_API_KEY": "from-the-variable"})[1]
    assert both == ["TEAM_API_KEY and TEAM_API_KEY_FILE are both set: set one of them"]  # not also "required"
    missing = tmp_path / "nowhere"
    assert read({"TEAM_API_KEY_FILE": str(missing)})[1] == [
        f"TEAM_API_KEY_FILE={str(missing)!r}: cannot be read (No such file or directory)",
        "TEAM_API_KEY: required",
    ]


def test_the_class_checks_itself_and_says_what_production_requires() -> None:
    assert read({"TEAM_API_KEY": "k"}, production=True)[1] == ["TEAM_DOMAINS: required when TURNSTILE_ENV=production"]
    assert read({"TEAM_API_KEY": "k"}, production=False)[1] == []


def test_the_listing_shows_defaults_and_descriptions_never_a_secret() -> None:
    rows = {info.variable: (info.default, info.file_variable) for info in describe(TeamSettings)}
    assert rows["TEAM_WORKERS"] == ("2", None)
    assert rows["TEAM_DOMAINS"] == ("-", None)
    assert rows["TEAM_STRICT"] == ("0", None)
    assert rows["TEAM_API_KEY"] == ("(required)", "TEAM_API_KEY_FILE")
    assert rows["OLD_TEAM_NUMBER"] == ("7", None)


def test_two_plugins_claiming_one_variable_is_a_problem() -> None:
    class Copy:
        @hookimpl
        def register_settings(self) -> list[type[Any]]:
            return [TeamSettings]

    pm = make_plugin_manager(entrypoints=False, extra=[TeamPlugin(), Copy()])
    _values, problems = read_plugin_settings(pm, {"TEAM_API_KEY": "k"}, production=False)
    assert problems[0].startswith("TEAM_NAME: claimed by both ")


def test_a_field_not_made_with_setting_is_the_plugins_bug() -> None:
    @attrs.frozen
    class Broken:
        plain: int = 3

    class Plugin:
        @hookimpl
        def register_settings(self) -> list[type[Any]]:
            return [Broken]

    pm = make_plugin_manager(entrypoints=False, extra=[Plugin()])
    with pytest.raises(PluginLoadError, match=r"register_settings: .*Broken.plain is not made with setting\(\)"):
        read_plugin_settings(pm, {}, production=False)


def test_a_settings_class_without_a_prefix_is_the_plugins_bug() -> None:
    # Its `path` field would read PATH: a variable of anything but the plugin.
    @attrs.frozen
    class NoPrefix:
        path: str = setting(default="/srv", description="Where the files are")

    class Plugin:
        @hookimpl
        def register_settings(self) -> list[type[Any]]:
            return [NoPrefix]

    pm = make_plugin_manager(entrypoints=False, extra=[Plugin()])
    with pytest.raises(PluginLoadError, match=r"NoPrefix.path: the class has no env_prefix .* would be PATH"):
        read_plugin_settings(pm, {"PATH": "/usr/bin"}, production=False)


# --- with the built-ins ----------------------------------------------------------------------


def configuration_problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_configuration(environ)
    return info.value.problems


def test_core_and_plugin_problems_come_in_one_report() -> None:
    assert configuration_problems({
        "PORT": "99999", "JWT_SECRET": "short", "JWT_ALGORITHM": "none", "ARGON2_TIME_COST": "-1",
        "ACCESS_TOKEN_TTL_S": "soon", "LOG_LEVEL": "LOUD",
    }) == [
        "PORT='99999': expected a port number 1-65535",
        "LOG_LEVEL='LOUD': expected one of CRITICAL, ERROR, WARNING, INFO, DEBUG",
        "JWT_ALGORITHM='none': expected one of HS256, HS384, HS512, RS256, EdDSA",
        "ACCESS_TOKEN_TTL_S='soon': expected a positive whole number",
        "JWT_SECRET (or the file JWT_SECRET_FILE names): must be at least 32 bytes for HMAC signing (RFC 7518 §3.2)",
        "ARGON2_TIME_COST='-1': expected a positive whole number",
    ]


def test_production_asks_the_auth_plugin_for_a_real_secret() -> None:
    assert configuration_problems(PRODUCTION) == [
        "JWT_SECRET or JWT_SECRET_FILE: required when TURNSTILE_ENV=production",
    ]
    settings, _pm, values = load_configuration({**PRODUCTION, "JWT_SECRET": SECRET})
    assert settings.production
    assert values  # the built-ins' settings, each read


def test_a_secret_set_twice_is_that_problem_alone(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text(SECRET)
    assert configuration_problems({**PRODUCTION, "JWT_SECRET": SECRET, "JWT_SECRET_FILE": str(secret_file)}) == [
        "JWT_SECRET and JWT_SECRET_FILE are both set: set one of them",  # not also "required"
    ]


def test_production_without_the_auth_plugin_needs_no_jwt_secret() -> None:
    settings, pm, _values = load_configuration({**PRODUCTION, "TURNSTILE_DISABLE_PLUGINS": "auth"})
    assert settings.production
    assert pm.get_plugin("auth") is None


def test_production_asks_the_mail_plugin_for_a_server_a_sender_and_links() -> None:
    without_mail = {k: v for k, v in PRODUCTION.items() if k not in ("SMTP_URL", "MAIL_FROM", "PUBLIC_URL")}
    problems = configuration_problems({**without_mail, "JWT_SECRET": SECRET})
    assert problems == [
        f"{name}: required when TURNSTILE_ENV=production (no embedded defaults)"
        for name in ("SMTP_URL", "MAIL_FROM", "PUBLIC_URL")
    ]


def test_production_reports_the_core_and_each_plugin_together() -> None:
    assert configuration_problems({"TURNSTILE_ENV": "production", "ARGON2_PARALLELISM": "many"}) == [
        "DATA_SERVICE_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "REDIS_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "RABBITMQ_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "JWT_SECRET or JWT_SECRET_FILE: required when TURNSTILE_ENV=production",
        "ARGON2_PARALLELISM='many': expected a positive whole number",
        "SMTP_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
        "MAIL_FROM: required when TURNSTILE_ENV=production (no embedded defaults)",
        "PUBLIC_URL: required when TURNSTILE_ENV=production (no embedded defaults)",
    ]


async def test_a_plugin_reads_its_settings_from_the_app(tmp_path: Path) -> None:
    settings = attrs.evolve(
        load_settings({"TEAM_API_KEY": "k-1", "TEAM_WORKERS": "3"}), pipelines_file=CORE_PIPELINES,
        var_dir=tmp_path / "var",
    )
    app = create_app(settings, pm=make_plugin_manager(entrypoints=False, extra=[sample_plugin, TeamPlugin()]))
    assert plugin_settings(app, TeamSettings).workers == 3
    with pytest.raises(LookupError, match="not registered by any plugin"):
        plugin_settings(app, attrs.make_class("Unregistered", {}))


def test_an_app_is_not_built_on_bad_plugin_settings(tmp_path: Path) -> None:
    settings = attrs.evolve(load_settings({"TEAM_WORKERS": "many"}), pipelines_file=CORE_PIPELINES)
    with pytest.raises(SettingsError) as info:
        create_app(settings, pm=make_plugin_manager(entrypoints=False, extra=[sample_plugin, TeamPlugin()]))
    assert info.value.problems == ["TEAM_WORKERS='many': expected a positive whole number", "TEAM_API_KEY: required"]


def test_plugins_name_their_embedded_defaults_for_the_start_up_line() -> None:
    _settings, _pm, values = load_configuration({})
    assert "a random development JWT secret" in embedded_defaults(values)
    assert "mail written as .eml files to mail/ in TURNSTILE_VAR_DIR (no SMTP_URL)" in embedded_defaults(values)
    _settings, _pm, values = load_configuration({"JWT_SECRET": SECRET, "SMTP_URL": "smtp://mail.example.com"})
    assert embedded_defaults(values) == []


def test_a_misspelt_variable_under_a_plugins_prefix_is_named_with_the_setting_it_may_mean() -> None:
    # TEAMX_BLOCKED_EMAIL_DOMAIN (no S) kept the blocklist off without a word.
    @attrs.frozen(kw_only=True)
    class TeamSettings:
        env_prefix: ClassVar[str] = "TEAMX_"
        blocked_email_domains: str = setting(default="", description="Domains refused at registration.")
        api_key: str | None = setting(default=None, secret=True, description="A secret.")

    class Team:
        @hookimpl
        def register_settings(self) -> list[type[Any]]:
            return [TeamSettings]

    pm = make_plugin_manager(entrypoints=False, extra=[Team()])
    environ = {
        "TEAMX_BLOCKED_EMAIL_DOMAIN": "rival.example", "TEAMX_API_KEY_FILE": "/run/secrets/key",
        "TEAMX_SERVICE_HOST": "10.0.0.7", "TEAMX_PORT": "tcp://10.0.0.7:80",  # Kubernetes' Service links
        "TEAMX_BLOCKED_EMAIL_DOMAINS": "", "OTHER_THING": "1",
    }
    assert unknown_variables(pm, environ) == [
        "TEAMX_BLOCKED_EMAIL_DOMAIN is under a plugin's prefix, but no setting reads it "
        "(did you mean TEAMX_BLOCKED_EMAIL_DOMAINS?)",
    ]


def test_every_variable_the_readme_names_is_read() -> None:
    # No false alarm for what the docs tell operators to set.
    names = dict.fromkeys(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", (ROOT / "README.md").read_text()), "x")
    assert "JWT_SECRET" in names
    assert unknown_variables(make_plugin_manager(), names) == []
