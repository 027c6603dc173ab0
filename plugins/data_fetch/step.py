"""The `data-fetch` step: call the data service, check its answer, and answer with it."""

from __future__ import annotations

import logging
from typing import Any, final

import attrs
import orjson
import pluggy
from aiohttp import web

from app import (
    BadGateway,
    BuildContext,
    CheckContext,
    DataService,
    Handler,
    OperationDoc,
    PipelineConfig,
    Projection,
    ShapeMismatch,
    Template,
    body_key,
    call_chain,
    committed_key,
    data_service_key,
    has_implementations,
    model_ref,
    models_key,
    payload_key,
    plugin_manager_key,
    projection_of,
    query_key,
    request_id_key,
)
from plugins.data_fetch.config import DataFetchConfig

JSON = "application/json"
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_COMMITS = _WRITES | {"DELETE"}
UNUSABLE_ANSWER = "the data service gave an answer this service could not use"

log = logging.getLogger("turnstile.data_fetch")


@final
@attrs.frozen
class AnswerCheck:
    """The response model's projection (compiled once, at build time) and its name for the log."""

    model: str
    project: Projection

    def __call__(self, data: Any, pipeline: str) -> Any:
        """The answer with only the model's fields; BadGateway when it does not fit."""
        try:
            return self.project(data)
        except ShapeMismatch as exc:
            # The location and the rule only: the answer may carry a password hash.
            log.warning("pipeline %s: the data service's answer does not fit %s: %s", pipeline, self.model, exc)
            raise BadGateway(UNUSABLE_ANSWER) from None


@final
@attrs.frozen
class DataFetchStep:
    """Terminal: sends the request on to the data service and answers `status` with its data.

    Upstream failures are `ProblemError`s raised by the client; they pass through to the
    error middleware (404, 409, 502, 503 with Retry-After, 504). With a `response` model,
    the answer is checked against it and only the model's fields go on (`projection`,
    compiled once at build time): an answer that does not fit is a 502.
    """

    method: str
    path: Template
    status: int
    client: DataService
    pipeline: PipelineConfig
    # None when no plugin implements the hook: checked once here, not per request.
    transform_upstream: pluggy.HookCaller | None
    transform_response: pluggy.HookCaller | None
    # None without a `response` model (or with status 204): the answer is passed on unchecked.
    check_answer: AnswerCheck | None = None

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = request.get(body_key)
        if body is not None and self.transform_upstream is not None:
            body = await call_chain(self.transform_upstream, "payload", body, request=request, pipeline=self.pipeline)
        query = request.get(query_key)
        reply = await self.client.request(
            self.method,
            self.path.for_request(request),
            json=body,
            params=None if query is None else _params(query),
            request_id=request.get(request_id_key),
        )
        if self.status == 204:
            return self._answer(request, web.Response(status=204))
        data = reply.data
        if self.check_answer is not None:
            data = self.check_answer(data, self.pipeline.name)
        if data is not None and self.transform_response is not None:
            data = await call_chain(self.transform_response, "data", data, request=request, pipeline=self.pipeline)
        response = web.Response(status=self.status, body=orjson.dumps(data), content_type=JSON)
        response[payload_key] = data
        return self._answer(request, response)

    def _answer(self, request: web.Request, response: web.Response) -> web.Response:
        if self.method in _COMMITS:
            request[committed_key] = response  # the data service accepted the write
        return response


def _params(query: dict[str, Any]) -> dict[str, str | int]:
    """Validated query values as the client sends them: None dropped, booleans as JSON words."""
    params: dict[str, str | int] = {}
    for name, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, int | str):
            params[name] = value
        else:
            params[name] = str(value)
    return params


def build(config: DataFetchConfig, context: BuildContext) -> DataFetchStep:
    hook = context.app[plugin_manager_key].hook
    return DataFetchStep(
        method=config.method,
        path=Template(config.path, quote=True, safe=context.pipeline.route.int_params),
        status=config.status,
        client=context.app[data_service_key],
        pipeline=context.pipeline,
        transform_upstream=hook.transform_upstream if has_implementations(hook.transform_upstream) else None,
        transform_response=hook.transform_response if has_implementations(hook.transform_response) else None,
        check_answer=_answer_check(config, context),
    )


def _answer_check(config: DataFetchConfig, context: BuildContext) -> AnswerCheck | None:
    if config.response is None or config.status == 204:
        return None
    # `check` made sure the model is registered.
    return AnswerCheck(config.response, projection_of(context.app[models_key][config.response]))


def check(config: DataFetchConfig, ctx: CheckContext) -> list[str]:
    """The documented response model must exist, or the OpenAPI document would dangle."""
    if config.response is not None and config.response not in ctx.models:
        known = ", ".join(sorted(ctx.models)) or "none"
        return [f"response: model {config.response!r} is not registered (known: {known})"]
    return []


def document(config: DataFetchConfig, doc: OperationDoc) -> None:
    description = "Success" if config.status != 204 else "Done; no content"
    schema = model_ref(config.response) if config.response and config.status != 204 else None
    doc.respond(config.status, description, schema=schema)
    # The terminal step owns the success description; a wrapper documented first may have
    # created the response only to hang its headers on it.
    doc.responses[str(config.status)]["description"] = description
    doc.problem(404, "Not found")
    if config.method in _WRITES:
        doc.problem(409, "Conflicts with the stored state")
    doc.problem(502, "The data service gave an unusable answer")
    doc.problem(503, "The data service is unreachable or paused", headers={"Retry-After": "Seconds to wait"})
    doc.problem(504, "The data service did not answer in time")
