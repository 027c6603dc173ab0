"""HEAD beside every GET route (RFC 9110 §9.3.2: HEAD is GET without the content).

aiohttp adds HEAD only to routes registered with `add_get(allow_head=True)`; the OpenAPI and
Swagger routes of aiohttp-apispec, a plugin's GET route and the pipelines' routes are added
otherwise. Run on a router once every route is in it, before it freezes: each GET route then
gets a HEAD route with the same handler on the same resource (so with the same name, for
metrics and logs), and aiohttp drops the body it writes. The app's router and each pipelines'
routing table (app/pipeline/routes.py) are passed through it.
"""

from __future__ import annotations

from aiohttp import web


def answer_head_beside_get(router: web.UrlDispatcher) -> None:
    for resource in router.resources():
        if not isinstance(resource, web.Resource):  # the pipelines' table: its own router has them
            continue
        routes = {route.method: route for route in resource}
        if "GET" in routes and "HEAD" not in routes:
            resource.add_route("HEAD", routes["GET"].handler)
