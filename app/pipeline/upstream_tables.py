"""`[upstreams.NAME]` tables: more HTTP services that a `data-fetch` step may call by name.

```toml
[upstreams.billing]
url = "${BILLING_URL}"          # http(s)://host[:port][/prefix]; call paths are appended
token = "${BILLING_TOKEN}"      # optional: sent as `Authorization: Bearer <token>`
timeout_s = 2.0
```

`${VAR}` in `url` and `token` takes the variable's value from the environment each time the
file is loaded (start-up, `turnstile check`, a reload). An unset or empty variable is an error
at that key's line, like any other; no message ever shows a value that came from the
environment (a URL or a token may carry a credential), only the text as the file wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs
from attrs.validators import and_, ge, gt, le
from yarl import URL

from app.pipeline.types import DATA_SERVICE, UpstreamConfig

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# RFC 6750 §2.1 b64token: what may follow "Bearer " in an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")

Where = tuple[str | int, ...]
Problem = tuple[Where, str]


@attrs.frozen(kw_only=True)
class RawUpstream:
    """An `[upstreams.NAME]` table as written, before its `${VAR}`s are filled in.

    url: ``http(s)://host[:port][/prefix]``; a step's call path is appended to it.
    token: sent as ``Authorization: Bearer <token>`` on every call; write ``"${VAR}"`` so the
        secret stays out of the file. None: no credential.
    connect_timeout_s: limit on opening one connection.
    timeout_s: limit on one attempt, from sending to the last byte of the answer.
    retries: extra attempts for idempotent calls (GET, HEAD, PUT, DELETE) after a connection
        error or a 502/503/504; POST and PATCH are never retried.
    breaker_failures: consecutive failures that open this upstream's circuit.
    breaker_cooldown_s: how long an open circuit refuses calls before one probe goes through.
    pool_limit: most connections open to this upstream at once.
    """

    url: str
    token: str | None = None
    connect_timeout_s: float = attrs.field(default=1.0, validator=gt(0))
    timeout_s: float = attrs.field(default=5.0, validator=gt(0))
    retries: int = attrs.field(default=2, validator=and_(ge(0), le(10)))
    breaker_failures: int = attrs.field(default=5, validator=ge(1))
    breaker_cooldown_s: float = attrs.field(default=5.0, validator=ge(0))
    pool_limit: int = attrs.field(default=100, validator=ge(1))


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with each ``${VAR}`` replaced by its value, and the variables unset or empty."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        found = environ.get(match.group(1), "")
        if not found:
            missing.append(match.group(1))
        return found

    return _VAR.sub(value, text), missing


def check_upstream(
    name: str, raw: RawUpstream, environ: Mapping[str, str], line: int
) -> tuple[UpstreamConfig | None, list[Problem]]:
    """The validated upstream (None when it has problems) and each problem with its place."""
    where: Where = ("upstreams", name)
    label = f"upstream {name!r}"
    problems: list[Problem] = []
    if name == DATA_SERVICE:
        problems.append((where, f"{label}: this name is the data service's, set by DATA_SERVICE_URL; "
                                "choose another"))
    elif not _NAME.match(name):
        problems.append((where, f"{label}: the name must be lower_snake_case"))
    url, missing = expand(raw.url, environ)
    problems.extend(((*where, "url"), f"{label}: url: environment variable {var} is not set") for var in missing)
    if not missing and not _is_base_url(url):
        problems.append(((*where, "url"), f"{label}: url must be an absolute http(s) URL without query or "
                                          f"fragment, such as 'https://billing.internal:8443', got {raw.url!r}"))
    token = None
    if raw.token is not None:
        token, missing = expand(raw.token, environ)
        problems.extend(((*where, "token"), f"{label}: token: environment variable {var} is not set")
                        for var in missing)
        if not missing and not _BEARER_TOKEN.fullmatch(token):
            problems.append(((*where, "token"), f"{label}: token is not a valid bearer token "
                                                "(RFC 6750: letters, digits and -._~+/ then any '=')"))
    if problems:
        return None, problems
    return UpstreamConfig(
        name=name, url=url.rstrip("/"), token=token, connect_timeout_s=raw.connect_timeout_s,
        timeout_s=raw.timeout_s, retries=raw.retries, breaker_failures=raw.breaker_failures,
        breaker_cooldown_s=raw.breaker_cooldown_s, pool_limit=raw.pool_limit, line=line,
    ), []


def _is_base_url(text: str) -> bool:
    try:
        url = URL(text)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host) and not url.query_string and not url.fragment
