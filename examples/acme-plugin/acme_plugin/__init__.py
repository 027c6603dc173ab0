"""ACME's Turnstile plugin: an email-domain rule for registration, a support link in ACME's
answers, a maintenance switch and an audit log. Installed, it changes nothing by itself: the
rules act once their ACME_* variable is set, the steps where a pipeline uses them.

Turnstile registers this module (entry point `acme`); the hook implementations live beside
the feature they belong to and are gathered here.
"""

from __future__ import annotations

from typing import Any

from acme_plugin.audit import AUDIT, setup_app
from acme_plugin.maintenance import MAINTENANCE
from acme_plugin.rules import check_request, register_models, transform_response
from acme_plugin.settings import register_settings
from app import StepType, hookimpl

__all__ = ["check_request", "register_models", "register_settings", "register_steps", "setup_app", "transform_response"]


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [MAINTENANCE, AUDIT]
