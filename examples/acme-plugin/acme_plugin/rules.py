"""Two business rules: who may register, and the support link in ACME's profile answers."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from acme_plugin.settings import AcmeSettings
from app import Forbidden, PipelineConfig, hookimpl, plugin_settings, schema_field


@hookimpl
def check_request(request: web.Request, pipeline: PipelineConfig, body: dict[str, Any] | None) -> None:
    """Only addresses at ACME_ALLOWED_EMAIL_DOMAINS may register (the body is validated by now)."""
    allowed = plugin_settings(request.app, AcmeSettings).allowed_email_domains
    if pipeline.body == "UserRegister" and allowed and body and body["email"].rpartition("@")[2] not in allowed:
        msg = f"Only addresses at {', '.join(allowed)} may register."
        raise Forbidden(msg)


@attrs.frozen(kw_only=True)
class AcmeProfile:
    """The caller, as ACME's help pages show them."""

    id: int = schema_field(description="The user's id.")
    email: str = schema_field(description="Email address.")
    support_url: str | None = schema_field(default=None, description="Where to get help (ACME_SUPPORT_URL).")


@hookimpl
def register_models() -> list[type[Any]]:
    return [AcmeProfile]


@hookimpl(trylast=True)  # after the users plugin made the record public
def transform_response(request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
    """The answer of a pipeline tagged `acme`, with ACME_SUPPORT_URL in it."""
    url = plugin_settings(request.app, AcmeSettings).support_url
    return {**data, "support_url": url} if url and "acme" in pipeline.tags and isinstance(data, dict) else None
