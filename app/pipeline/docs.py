"""The OpenAPI 3.0 operation of one pipeline route, built up by the route and its steps.

Each step type's `document` callback says what the step adds: the auth step a bearer
requirement and 401/403, the data-fetch step the success response and upstream errors.
"""

from __future__ import annotations

from typing import Any

import attrs

from app.errors import PROBLEM_CONTENT_TYPE
from app.pipeline.config import INT_PARAM_MAX, PipelineConfig

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
BEARER_SCHEME = "bearerAuth"
OAUTH2_SCHEME = "oauth2Password"
# An ``{name:int}`` path parameter: any other spelling matches no route (a 404).
_INT64 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": INT_PARAM_MAX}


def model_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@attrs.define
class OperationDoc:
    pipeline: PipelineConfig
    responses: dict[str, dict[str, Any]] = attrs.Factory(dict)
    security: list[dict[str, list[str]]] | None = None
    parameters: list[dict[str, Any]] = attrs.Factory(list)
    # Sentences steps add to the operation's description (e.g. the event it publishes).
    pipeline_notes: list[str] = attrs.Factory(list)

    def respond(
        self, status: int, description: str, *, schema: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """A success response (JSON when `schema` is given)."""
        response: dict[str, Any] = self.responses.setdefault(str(status), {"description": description})
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        for name, text in (headers or {}).items():
            self.header(status, name, text)

    def problem(self, status: int, description: str, *, headers: dict[str, str] | None = None) -> None:
        """An error response in problem+json."""
        response = self.responses.setdefault(
            str(status), {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}}
        )
        if description not in response["description"]:
            response["description"] += f"; {description}"
        for name, text in (headers or {}).items():
            self.header(status, name, text)

    def header(self, status: int, name: str, description: str) -> None:
        response = self.responses.setdefault(str(status), {"description": description})
        response.setdefault("headers", {})[name] = {"description": description, "schema": {"type": "string"}}

    def require_bearer(self) -> None:
        self.security = [{BEARER_SCHEME: []}, {OAUTH2_SCHEME: []}]

    def query_parameter(self, name: str, schema: dict[str, Any], description: str, *, required: bool) -> None:
        self.parameters.append(
            {"name": name, "in": "query", "required": required, "description": description, "schema": schema}
        )

    def to_dict(self) -> dict[str, Any]:
        pipeline = self.pipeline
        route = pipeline.route
        operation: dict[str, Any] = {
            "operationId": pipeline.name,
            "summary": pipeline.summary or pipeline.name.replace("_", " "),
            "tags": list(pipeline.tags) or ["default"],
            "parameters": [
                {
                    "name": param, "in": "path", "required": True,
                    "schema": _INT64 if param in route.int_params else {"type": "string"},
                }
                for param in route.params
            ] + self.parameters,
            "responses": dict(sorted(self.responses.items())),
        }
        description = " ".join(filter(None, [pipeline.description, *self.pipeline_notes]))
        if description:
            operation["description"] = description
        if self.security is not None:
            operation["security"] = self.security
        if not operation["parameters"]:
            del operation["parameters"]
        return operation
