"""The OpenAPI 3.0 document, built once from the pipelines, and the offline Swagger UI.

aiohttp-apispec serves the document and its bundled Swagger UI (no CDN), but it only
writes Swagger 2.0 and documents decorated handlers; our routes are built from
pipelines.toml. So the document is written with apispec (its foundation) as OpenAPI 3.0.3
— the newest its bundled Swagger UI 3.x renders — and handed to aiohttp-apispec to serve.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp_apispec import AiohttpApiSpec
from apispec import APISpec

from app.asyncapi.page import ASYNCAPI_PATH, EVENTS_PAGE_PATH
from app.errors import PROBLEM_CONTENT_TYPE
from app.models.schema import schema_of
from app.pipeline.json_checks import MAX_JSON_CONTAINERS, MAX_JSON_DEPTH
from app.pipeline.types import (
    BEARER_SCHEME,
    OAUTH2_SCHEME,
    PROBLEM_REF,
    OperationDoc,
    PipelineConfig,
    PipelineFile,
    model_ref,
)
from app.plugin_routes import PluginRoute
from app.swagger_page import setup_swagger_page

OPENAPI_VERSION = "3.0.3"
DOCS_PATH = "/api/docs"
SPEC_PATH = "/api/docs/swagger.json"
LOGIN_PATH = "/api/v1/auth/login"
REFRESH_PATH = "/api/v1/auth/refresh"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                },
            },
        },
        "error": {
            "type": "string",
            "description": "A refused login or refresh only (401, 403): the OAuth2 error code (RFC 6749 "
                           "§5.2), `invalid_grant`, which OAuth2 client libraries read",
        },
    },
}


def build_document(
    pipelines: PipelineFile,
    models: dict[str, type],
    *,
    routes: Sequence[PluginRoute] = (),
    title: str = "Turnstile",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The OpenAPI document of the pipelines, the operational routes and the plugins' `routes`."""
    spec = APISpec(
        title=title,
        version=version,
        openapi_version=OPENAPI_VERSION,
        info={"description": "Users and authentication; every route is a pipeline of plugin steps."},
        # Relative: the document is served by the service it describes, under whatever prefix.
        servers=[{"url": "/", "description": "The service that serves this document"}],
    )
    spec.components.schema("Problem", PROBLEM_SCHEMA)
    for name, model in sorted(models.items()):
        spec.components.schema(name, schema_of(model, components=models.keys()))
    spec.components.security_scheme(BEARER_SCHEME, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.security_scheme(
        OAUTH2_SCHEME,
        {"type": "oauth2", "flows": {"password": {"tokenUrl": LOGIN_PATH, "refreshUrl": REFRESH_PATH, "scopes": {}}}},
    )
    paths: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines.pipelines:
        paths.setdefault(pipeline.route.plain_path, {})[pipeline.route.method.lower()] = _operation(pipeline, models)
    for path, operations in _operational_paths().items():
        paths.setdefault(path, {}).update(operations)
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation()
    for path, operations in paths.items():
        for operation in operations.values():
            # Contract §6: a caller's id is kept (a generated client gets a way to send it).
            operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)
            # Said, not left to a missing key: linters and generators read no `security` as "unknown".
            operation.setdefault("security", [])
            # Every route of the service answers it (app/expect.py), operational ones included.
            operation["responses"].setdefault("417", _problem(EXPECTATION_FAILED))
            for status, response in operation["responses"].items():  # contract §6: on every answer
                operation["responses"][status] = {
                    **response, "headers": {**response.get("headers", {}), "X-Request-ID": _REQUEST_ID_HEADER},
                }
        spec.path(path=path, operations=operations)
    used = {tag for operations in paths.values() for operation in operations.values()
            for tag in operation.get("tags", ())}
    for tag in sorted(used):
        spec.tag({"name": tag})  # declared, as linters and generators expect of every tag used
    return spec.to_dict()


def _operation(pipeline: PipelineConfig, models: dict[str, type]) -> dict[str, Any]:
    doc = OperationDoc(pipeline)
    for configured in pipeline.steps:
        if configured.type.document is not None:
            configured.type.document(configured.config, doc)
    if pipeline.route.int_params:
        doc.problem(404, "No such resource")
    if pipeline.query:
        query_schema = schema_of(models[pipeline.query])
        required = set(query_schema.get("required", ()))
        for name, schema in query_schema["properties"].items():
            doc.query_parameter(name, {k: v for k, v in schema.items() if k != "description"},
                                schema.get("description", name), required=name in required)
        doc.problem(422, "Invalid query parameters")
    operation = doc.to_dict()
    if not any(status.startswith("2") for status in operation["responses"]):
        # A terminal step without a `document` callback says nothing of its answer: a route
        # with no success at all would read as one that never succeeds.
        operation["responses"]["200"] = {"description": "Success (its step type documents no answer)"}
    if pipeline.body:
        content: dict[str, Any] = {"application/json": {"schema": model_ref(pipeline.body)}}
        model = models[pipeline.body]
        form_model, form_fields = getattr(model, "form_model", None), getattr(model, "form_fields", None)
        if form_model is not None:
            content["application/x-www-form-urlencoded"] = {"schema": model_ref(form_model.__name__)}
        elif form_fields:
            content["application/x-www-form-urlencoded"] = {"schema": _form_schema(model, form_fields)}
        operation["requestBody"] = {"required": True, "content": content}
        containers = getattr(model, "max_json_containers", MAX_JSON_CONTAINERS)
        for status, text in ((400, f"Malformed JSON, nested over {MAX_JSON_DEPTH} levels, "
                                   "or a body that does not decode"),
                             (408, "The body did not arrive in time (TURNSTILE_BODY_TIMEOUT_S)"),
                             (413, f"Body over 1 MiB, over {containers:,} JSON objects and arrays, "
                                   "or a form over 1,000 fields"),
                             (415, "Wrong content type"), (422, "Invalid fields")):
            operation["responses"].setdefault(str(status), _problem(text))
    operation["responses"].setdefault("417", _problem(EXPECTATION_FAILED))
    operation["responses"].setdefault("500", _problem("Internal error (no internals disclosed)"))
    operation["responses"].setdefault("504", _problem(
        "The request did not complete in time (TURNSTILE_REQUEST_TIMEOUT_S), or a business rule did not answer "
        "in time (TURNSTILE_HOOK_TIMEOUT_S)"))
    operation["responses"] = dict(sorted(operation["responses"].items()))
    return operation


_REQUEST_ID_PARAMETER: Final = {
    "name": "X-Request-ID", "in": "header", "required": False,
    "description": "The caller's id for this request, echoed and carried to the data service and the events; "
                   "another one is made when it is absent or not of this form.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
}
_REQUEST_ID_HEADER: Final = {
    "description": "The request's id: the caller's X-Request-ID when it is safe to echo, else a new one.",
    "schema": {"type": "string"},
}


def _form_schema(model: type, form_fields: dict[str, str]) -> dict[str, Any]:
    schema = schema_of(model)
    renamed = {model_field: form_field for form_field, model_field in form_fields.items()}
    properties = {renamed.get(k, k): v for k, v in schema["properties"].items()}
    out = {"type": "object", "properties": properties}
    if "required" in schema:
        out["required"] = [renamed.get(k, k) for k in schema["required"]]
    return out


EXPECTATION_FAILED: Final = "An `Expect` header other than 100-continue"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operational_paths() -> dict[str, dict[str, Any]]:
    status_schema = {"type": "object", "properties": {"status": {"type": "string"}}}
    ready_schema = {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            "details": {
                "type": "object", "additionalProperties": {"type": "object"},
                "description": "What a dependency says about itself, by dependency (Redis: its topology and "
                               "each node's state); absent when none says more than its check",
            },
            "upstreams": {
                "type": "object", "additionalProperties": {"type": "string", "enum": ["closed", "half_open", "open"]},
                "description": "Each named upstream's circuit (absent when the file declares none)",
            },
            "pipelines": {
                "type": "object",
                "description": "The pipelines file the routes came from (a reload changes it)",
                "properties": {
                    "sha256": {"type": "string", "description": "First 12 hex digits of the file's SHA-256"},
                    "loaded_at": {"type": "string", "format": "date-time"},
                },
            },
        },
    }
    ops: dict[str, tuple[str, str, dict[str, Any]]] = {
        "/healthz": ("healthz", "Liveness: the process answers", {"200": _json("Alive", status_schema)}),
        "/readyz": ("readyz", "Readiness: dependencies and drain state", {
            "200": _json("Ready", ready_schema), "503": _json("Starting, draining or a dependency down", ready_schema),
        }),
        "/metrics": ("metrics", "Prometheus metrics", {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
        }),
        DOCS_PATH: ("docs", "Swagger UI", {
            "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        }),
        SPEC_PATH: ("openapi", "This document", {"200": _json("OpenAPI document", {"type": "object"})}),
        ASYNCAPI_PATH: ("asyncapi", "The AsyncAPI 3.0 document of the events", {
            "200": _json("AsyncAPI document", {"type": "object"}),
        }),
        EVENTS_PAGE_PATH: ("events_docs", "The events' documentation (the AsyncAPI document rendered)", {
            "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        }),
    }
    return {
        path: {"get": {"operationId": op_id, "summary": summary, "tags": ["operations"], "responses": responses}}
        for path, (op_id, summary, responses) in ops.items()
    }


class _Spec:
    """Stands in for an APISpec: aiohttp-apispec only calls `to_dict()` on it when serving."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def to_dict(self) -> dict[str, Any]:
        return self.document


def setup_openapi(app: web.Application, document: dict[str, Any]) -> None:
    """Serve `document` at /api/docs/swagger.json and the Swagger UI at /api/docs."""
    api = AiohttpApiSpec(url=SPEC_PATH, title=document["info"]["title"], version=document["info"]["version"])
    api.spec = _Spec(document)
    with warnings.catch_warnings():
        # aiohttp-apispec keeps its state under string app keys: its choice, not a mistake of
        # ours, and a warning a plugin team's `-W error` test run would stop on.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        api.register(app, in_place=True)
    setup_swagger_page(app, DOCS_PATH)



def replace_document(app: web.Application, document: dict[str, Any]) -> None:
    """Serve `document` from now on (a reload). aiohttp-apispec's handler answers with the dict
    it was given at set-up, which the frozen app holds, so that dict is refilled in place; it
    happens without an await, so no request sees half of it."""
    served: dict[str, Any] = app["swagger_dict"]
    served.clear()
    served.update(document)
