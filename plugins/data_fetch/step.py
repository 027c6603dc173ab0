"""The `data-fetch` step: call the data service (or a named upstream), check its answer, and answer with it."""

from __future__ import annotations

import functools
import logging
from typing import Any, final

import attrs
import pluggy
from aiohttp import web

from app import (
    BadGateway,
    BuildContext,
    CheckContext,
    Conflict,
    DataService,
    Handler,
    InternalError,
    NotFound,
    OperationDoc,
    PipelineConfig,
    ProblemError,
    Projection,
    ShapeMismatch,
    Template,
    UpstreamReply,
    UserNotFound,
    actor_key,
    body_key,
    call_chain,
    committed_at_key,
    committed_key,
    complete_despite_cancellation,
    has_implementations,
    json_response,
    model_ref,
    models_key,
    outcome_unknown_key,
    payload_key,
    plugin_manager_key,
    projection_of,
    query_key,
    request_id_key,
    schema_of,
    template_placeholders,
    upstreams_key,
    utc_now_rfc3339,
)
from plugins.data_fetch.config import DataFetchConfig
from plugins.data_fetch.settle import Settled, settle

_WRITES = frozenset({"POST", "PUT", "PATCH"})
DATA_SERVICE = "data_service"
_COMMITS = _WRITES | {"DELETE"}
_ACTOR = "actor"  # a template's name for the caller's id (contract §10)
_USERS = "/api/v1/users"  # the data service's users (contract §7)

log = logging.getLogger("turnstile.data_fetch")


@final
@attrs.frozen
class AnswerCheck:
    """The response model's projection (compiled once, at build time), its name for the log,
    and the upstream whose answers it checks."""

    model: str
    project: Projection
    upstream: str = DATA_SERVICE
    # The model's field names: a query value of the same name fills one the answer leaves out.
    fields: frozenset[str] = frozenset()

    def __call__(self, data: Any, pipeline: str, query: dict[str, Any] | None = None) -> Any:
        """The answer with only the model's fields; BadGateway when it does not fit.

        A field the answer leaves out is taken from the validated query when it has one of that
        name: a list's ``limit`` and ``offset`` are what was asked (the data service's list
        answer is ``{items, total}``, contract §7).
        """
        if query and isinstance(data, dict):
            echoed = {name: value for name, value in query.items()
                      if name in self.fields and name not in data and value is not None}
            if echoed:
                data = {**data, **echoed}
        try:
            return self.project(data)
        except ShapeMismatch as exc:
            # The location and the rule only: the answer may carry a password hash.
            source = "the data service's answer" if self.upstream == DATA_SERVICE else f"the answer of {self.upstream}"
            log.warning("pipeline %s: %s does not fit %s: %s", pipeline, source, self.model, exc)
            raise BadGateway(f"{_public_name(self.upstream)} gave an answer this service could not use") from None

    def problem(self, data: Any) -> str | None:
        """Why `data` does not fit the model (a hook's answer, named with its plugin); None when it fits."""
        try:
            self.project(data)
        except ShapeMismatch as exc:
            return f"it does not fit {self.model}: {exc}"
        return None

    def final(self, data: Any, pipeline: str) -> Any:
        """The answer as `transform_response` hooks left it, with only the model's fields:
        what a hook added without declaring it (`extend_models`) never leaves. A wrong type
        is a plugin's bug: a 500, logged like the upstream's."""
        try:
            return self.project(data)
        except ShapeMismatch as exc:
            log.error("pipeline %s: the answer after transform_response does not fit %s: %s",
                      pipeline, self.model, exc)
            msg = "The answer could not be completed."
            raise InternalError(msg) from None


@final
@attrs.frozen
class DataFetchStep:
    """Terminal: sends the request on to its upstream and answers `status` with its data.

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
    upstream: str = DATA_SERVICE
    # The query model's defaults: what a parameter the client left out stands for.
    query_defaults: dict[str, Any] = attrs.Factory(dict)
    # The Location header's template over the answer's fields (`location`), if any.
    location: Template | None = None
    # Route parameters the call names that are also fields of the answer (`{id}` of
    # /users/{id}): the answer must be the record asked for (a data service answering another
    # user's record must not show it, nor have it cached under this one's key).
    identity: tuple[str, ...] = ()
    conflict: str | None = None  # the 409's detail (`DataFetchConfig.conflict`)
    # The placeholder (a route parameter or `actor`) naming the one user record the call reads
    # or writes (the data service's /api/v1/users/{id}), if any: its 404 names that user.
    user_param: str | None = None

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._run(request)
        except NotFound as exc:
            user_id = None if self.user_param is None or isinstance(exc, UserNotFound) else self._user_id(request)
            if user_id is None:
                raise
            # The auth step tells the caller whose own record it is (401) from anyone else (404).
            raise UserNotFound(user_id, exc.detail, headers=exc.headers) from None

    def _user_id(self, request: web.Request) -> int | None:
        if self.user_param == _ACTOR:
            return int(request[actor_key].user_id)
        value = request.match_info.get(str(self.user_param), "")
        return int(value) if value.isdecimal() and value.isascii() else None

    async def _run(self, request: web.Request) -> web.StreamResponse:
        body = request.get(body_key)
        if body is not None and self.transform_upstream is not None:
            body = await call_chain(self.transform_upstream, "payload", body, expect=dict, request=request,
                                    pipeline=self.pipeline)
        query = request.get(query_key)
        asked = None if query is None else {**self.query_defaults, **query}
        path = self.path.for_request(request)
        if self.method in _COMMITS:
            # Once sent, a write is seen through (its answer, or a read-back when the answer is
            # lost) even if the request is cancelled meanwhile (its deadline, a client gone): the
            # steps around then see it saved, and announce it, invalidate and revoke as they unwind.
            data = await complete_despite_cancellation(self._write(request, path, body, query, asked))
        else:
            checked: list[Any] = []  # the answer as `check_answer` made it, or its BadGateway
            reply = await self._call(request, path, body, query, asked, checked=checked)
            data = self._checked(request, reply, checked, asked)
        if self.status == 204:
            return self._answer(request, web.Response(status=204))
        if data is not None and self.transform_response is not None:
            data = await call_chain(self.transform_response, "data", data, request=request, pipeline=self.pipeline,
                                    check=None if self.check_answer is None else self.check_answer.problem)
            if self.check_answer is not None:
                data = self.check_answer.final(data, self.pipeline.name)
        response = json_response(data, status=self.status)
        response[payload_key] = data
        if self.location is not None and isinstance(data, dict):
            response.headers["Location"] = self.location.for_data(data)
        return self._answer(request, response)

    async def _call(
        self, request: web.Request, path: str, body: Any, query: dict[str, Any] | None, asked: Any, *,
        checked: list[Any],
    ) -> UpstreamReply:
        return await self.client.request(
            self.method,
            path,
            json=body,
            params=None if query is None else _params(query),
            request_id=request.get(request_id_key),
            accept=None if self.check_answer is None else functools.partial(self._fits, checked, asked),
        )

    async def _write(
        self, request: web.Request, path: str, body: Any, query: dict[str, Any] | None, asked: Any
    ) -> Any:
        """The write's checked answer (None for a 204 route), the request marked saved from the
        moment the data service is known to have taken it (`committed_key`)."""
        checked: list[Any] = []
        try:
            reply = await self._call(request, path, body, query, asked, checked=checked)
        except Conflict as exc:
            if self.conflict is None:
                raise
            raise Conflict(self.conflict) from exc  # the route's own words for it
        except ProblemError as exc:
            if not exc.outcome_unknown:
                raise
            reply = await self._read_back(request, path, body, exc)
            checked.clear()
        request[committed_at_key] = utc_now_rfc3339()  # the change's time, for its event
        # The data service accepted the write: the steps around must follow it (invalidate,
        # revoke, announce) even if making the answer fails now. Until it is made they see the
        # route's parameters, then the checked answer.
        saved = request[committed_key] = web.Response(status=self.status)
        if self._unusable(reply, checked):
            # Saved (a 2xx) but answered with no record or one that does not fit: the record
            # read back is the answer and what the event announces, when it shows the change.
            settled, back = await self._settle(request, path, body)
            if settled is Settled.APPLIED and back is not None:
                reply = back
                checked.clear()
        if self.status == 204:
            return None
        data = self._checked(request, reply, checked, asked)
        if data is not None:
            saved[payload_key] = data
        return data

    async def _read_back(self, request: web.Request, path: str, sent: Any, error: ProblemError) -> UpstreamReply:
        """The record read back when it shows the lost write applied (see settle.py); else
        `error` again, the request marked for the steps around when the write may have been made."""
        settled, reply = await self._settle(request, path, sent)
        if settled is Settled.APPLIED:
            return reply if reply is not None else UpstreamReply(self.status, None)
        if settled is Settled.UNKNOWN:
            request[outcome_unknown_key] = True
        raise error

    async def _settle(self, request: web.Request, path: str, sent: Any) -> tuple[Settled, UpstreamReply | None]:
        """What became of this write, read back (the data service's records only: settle.py)."""
        client = self.client if self.upstream == DATA_SERVICE else None
        return await settle(client, self.method, path, sent, request.get(request_id_key))

    def _unusable(self, reply: UpstreamReply, checked: list[Any]) -> bool:
        """A write's 2xx answer that is no record the response model takes (none, `{}`, a part)."""
        if self.method not in _COMMITS or self.check_answer is None or self.status == 204:
            return False
        if checked:
            return isinstance(checked[0], BadGateway)
        return reply.data is None

    def _checked(self, request: web.Request, reply: UpstreamReply, checked: list[Any], asked: Any) -> Any:
        """The answer as the response model and the route make it; BadGateway when it does not fit."""
        data = reply.data
        if checked:  # checked once, as the client took the answer (a wrong one counts as bad_gateway)
            data = checked[0]
            if isinstance(data, BadGateway):
                raise data
        elif self.check_answer is not None:
            data = self.check_answer(data, self.pipeline.name, asked)
        if self.identity and isinstance(data, dict):
            self._check_identity(request, data)
        return data

    def _check_identity(self, request: web.Request, data: dict[str, Any]) -> None:
        for name in self.identity:
            if str(data.get(name)) != request.match_info.get(name):
                log.warning("pipeline %s: the answer is another record than the one asked for (%s %r, not %r)",
                            self.pipeline.name, name, data.get(name), request.match_info.get(name),
                            extra={"request_id": request.get(request_id_key)})
                raise BadGateway(f"{_public_name(self.upstream)} gave an answer this service could not use")

    def _fits(self, checked: list[Any], query: dict[str, Any] | None, data: Any) -> bool:
        assert self.check_answer is not None  # only asked with a model to check against
        try:
            checked.append(self.check_answer(data, self.pipeline.name, query))
        except BadGateway as exc:
            checked.append(exc)
            return False
        return True

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
        client=context.app[upstreams_key].client(config.upstream),
        pipeline=context.pipeline,
        transform_upstream=hook.transform_upstream if has_implementations(hook.transform_upstream) else None,
        transform_response=hook.transform_response if has_implementations(hook.transform_response) else None,
        check_answer=_answer_check(config, context),
        upstream=config.upstream,
        query_defaults=_query_defaults(context),
        location=Template(config.location) if config.location is not None else None,
        identity=_identity(config, context),
        conflict=config.conflict,
        user_param=_user_param(config, context),
    )


def _user_param(config: DataFetchConfig, context: BuildContext) -> str | None:
    """The placeholder of a call to the data service's `/api/v1/users/{id}` (contract §7) that
    names the user: `actor`, or a route parameter (a user id when its value is one)."""
    if config.upstream != DATA_SERVICE:
        return None
    collection, _, last = config.path.rstrip("/").rpartition("/")
    names = template_placeholders(last)
    if collection != _USERS or len(names) != 1 or last != f"{{{names[0]}}}":
        return None
    name = names[0]
    return name if name == _ACTOR or name in context.pipeline.route.params else None


def _identity(config: DataFetchConfig, context: BuildContext) -> tuple[str, ...]:
    """The route parameters the call names that the response model has as fields."""
    if config.response is None or config.status == 204:
        return ()
    model = context.app[models_key][config.response]
    fields = {field.name for field in attrs.fields(model)} if attrs.has(model) else set()
    params = set(context.pipeline.route.params)
    return tuple(name for name in template_placeholders(config.path) if name in fields and name in params)


def _query_defaults(context: BuildContext) -> dict[str, Any]:
    if context.pipeline.query is None:
        return {}
    properties = schema_of(context.app[models_key][context.pipeline.query]).get("properties", {})
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


def _answer_check(config: DataFetchConfig, context: BuildContext) -> AnswerCheck | None:
    if config.response is None or config.status == 204:
        return None
    # `check` made sure the model is registered.
    model = context.app[models_key][config.response]
    fields = frozenset(field.name for field in attrs.fields(model)) if attrs.has(model) else frozenset()
    return AnswerCheck(config.response, projection_of(model), config.upstream, fields)


def _public_name(upstream: str) -> str:
    """How answers to clients name the service: a named upstream's name is configuration."""
    return "the data service" if upstream == DATA_SERVICE else "an upstream service"


def check(config: DataFetchConfig, ctx: CheckContext) -> list[str]:
    """The documented response model must exist, or the OpenAPI document would dangle; the
    upstream must be declared in the file."""
    problems = []
    if config.response is not None and config.response not in ctx.models:
        known = ", ".join(sorted(ctx.models)) or "none"
        problems.append(f"response: model {config.response!r} is not registered (known: {known})")
    if config.location is not None:
        problems.extend(_location_problems(config, ctx))
    if config.upstream not in ctx.upstreams:
        known = ", ".join(sorted(ctx.upstreams))
        problems.append(f"upstream: {config.upstream!r} is not declared by an [upstreams.NAME] table "
                        f"(known: {known})")
    return problems


def _location_problems(config: DataFetchConfig, ctx: CheckContext) -> list[str]:
    if config.response is None or config.status == 204:
        return ["location: names fields of the answer, so it needs a response model (and a status other than 204)"]
    return [f"location: placeholder {{{name}}} names no field of the answer ({config.response})"
            for name in template_placeholders(config.location or "")
            if name not in ctx.model_fields(config.response)]


def document(config: DataFetchConfig, doc: OperationDoc) -> None:
    description = "Success" if config.status != 204 else "Done; no content"
    schema = model_ref(config.response) if config.response and config.status != 204 else None
    headers = {"Location": "Where the created resource is"} if config.location is not None else None
    doc.respond(config.status, description, schema=schema, headers=headers)
    # The terminal step owns the success description; a wrapper documented first may have
    # created the response only to hang its headers on it.
    doc.responses[str(config.status)]["description"] = description
    doc.problem(404, "Not found")
    if config.method in _WRITES:
        doc.problem(409, config.conflict or "Conflicts with the stored state")
    service = _public_name(config.upstream).capitalize()
    doc.problem(502, f"{service} gave an unusable answer")
    doc.problem(503, f"{service} is unreachable or paused", headers={"Retry-After": "Seconds to wait"})
    doc.problem(504, f"{service} did not answer in time")
