"""HEAD beside every GET route (RFC 9110 §9.3.2: HEAD is GET without the content).

aiohttp adds HEAD only to routes registered with `add_get(allow_head=True)`; the OpenAPI and
Swagger routes of aiohttp-apispec and a plugin's GET route are added otherwise. Run once every
route is in the router: each GET route then gets a HEAD route with the same handler on the same
resource (so with the same name, for metrics and logs), and aiohttp drops the body it writes.
The pipelines' routes add theirs when their table is built (app/pipeline/routes.py).
"""

from __future__ import annotations

from aiohttp import web


def answer_head_beside_get(app: web.Application) -> None:
    for resource in app.router.resources():
        if not isinstance(resource, web.Resource):  # the pipelines' table: HEAD added when built
            continue
        routes = {route.method: route for route in resource}
        if "GET" in routes and "HEAD" not in routes:
            resource.add_route("HEAD", routes["GET"].handler)
