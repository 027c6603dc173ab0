"""The built-in `users` plugin: the user models and the business rules around them, as hooks.

- transform_request: a body's `email` is NFKC-normalised, trimmed and lower-cased before
  validation. `normalise_email` is that rule, public for every other place that takes an
  email (the login step, the per-email rate limit).
- check_request: `roles` and `is_active` (UserCreate, UserPatch bodies) are for admins only; an
  address given to an account has no invisible, unassigned or private-use character and no
  encoded word, and a local part of at most 64 octets (`email_address_problem`).
- transform_upstream: a `password` becomes `password_hash` (argon2id) before it is sent;
  new users get their defaults, and a self-registered one is always a plain active user.
- transform_response: user records, alone or in a page, keep only the public User fields.
- startup: TURNSTILE_ADMIN_EMAIL/PASSWORD (this plugin's settings) create that admin when no
  account has the email; an existing account is never changed at start-up (admin.py).
- register_commands: `turnstile create-admin --email E` creates or promotes an admin.

Passwords are hashed with the hasher the app provides (`password_hasher_key`, the auth
plugin's argon2id); without one a password is never sent anywhere: the request fails.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import attrs
from aiohttp import web

from app import (
    Actor,
    Command,
    InternalError,
    PipelineConfig,
    Resources,
    data_service_key,
    hookimpl,
    models_key,
    password_hasher_key,
    plugin_settings,
    publisher_key,
)
from plugins.users import rules
from plugins.users.admin import CREATE_ADMIN, AdminSettings, create_admin_if_absent
from plugins.users.announce import announcer
from plugins.users.models import MODELS
from plugins.users.records import user_page, user_record, user_with_email
from plugins.users.rules import normalise_email
from plugins.users.startup_admin import StartUpAdmin, start_up_admin_key

__all__ = ["normalise_email", "user_page", "user_record", "user_with_email"]


@hookimpl
def register_settings() -> list[type[Any]]:
    return [AdminSettings]


@hookimpl
def register_commands() -> list[Command]:
    return [CREATE_ADMIN]


@hookimpl
def register_models() -> list[type[Any]]:
    return list(MODELS)


@hookimpl
def transform_request(request: web.Request, pipeline: PipelineConfig, body: dict[str, Any]) -> dict[str, Any] | None:
    return rules.with_normalised_email(body)


@hookimpl
def check_request(
    request: web.Request, pipeline: PipelineConfig, actor: Actor | None, body: dict[str, Any] | None
) -> None:
    rules.check_admin_fields(pipeline.body, actor, body)
    rules.check_email_address(pipeline.body, body)
    rules.check_password_length(pipeline.body, body)


@hookimpl
async def transform_upstream(
    request: web.Request, pipeline: PipelineConfig, payload: dict[str, Any]
) -> dict[str, Any] | None:
    out = rules.with_defaults(pipeline.body, payload)
    # Proof for the `reauthenticate` step, never data: dropped even where no such step stands.
    out.pop("current_password", None)
    password = out.pop("password", None)
    if isinstance(password, str):
        hasher = request.app.get(password_hasher_key)
        if hasher is None:
            msg = "no plugin hashes passwords (the auth plugin is disabled)"
            raise InternalError(msg)
        out["password_hash"] = await hasher.hash(password)
    return out


_public_fields_of: dict[type[Any], frozenset[str]] = {}


def _public_fields(user_model: type[Any]) -> frozenset[str]:
    # The registered User, with the fields plugins added (extend_models): they are public too.
    fields = _public_fields_of.get(user_model)
    if fields is None:
        fields = _public_fields_of[user_model] = frozenset(field.name for field in attrs.fields(user_model))
    return fields


@hookimpl
def transform_response(request: web.Request, pipeline: PipelineConfig, data: Any) -> Any:
    return rules.public_data(data, _public_fields(request.app[models_key]["User"]))


@hookimpl
async def startup(app: web.Application) -> None:
    admin = plugin_settings(app, AdminSettings)
    if not (admin.email and admin.password):
        if admin.email:  # (the password alone is also create-admin's: no admin meant at start-up)
            logging.getLogger("turnstile.admin").warning(
                "admin from TURNSTILE_ADMIN_EMAIL: not created, TURNSTILE_ADMIN_PASSWORD is not set (both are needed)")
        return
    hasher = app.get(password_hasher_key)
    if hasher is None:
        msg = "TURNSTILE_ADMIN_EMAIL is set but no plugin hashes passwords (the auth plugin is disabled)"
        raise RuntimeError(msg)
    announce = announcer(app[publisher_key], app, "admin from TURNSTILE_ADMIN_EMAIL")
    # Logs its own outcome: created, or why an existing account was left as it is.
    await app[start_up_admin_key].ensure(functools.partial(
        create_admin_if_absent, app[data_service_key], hasher, admin.email, admin.password, announce,
    ))


@hookimpl
async def shutdown(app: web.Application) -> None:
    await app[start_up_admin_key].stop()


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    resources.provide(start_up_admin_key, StartUpAdmin(),
                      description="the start-up admin, tried again in the background while the data service fails")
