"""Canary selection: which of a route's backends serves a request.

Header and cookie matches come first, in the annotation's order; then the weights share out
the remaining requests; whatever is left goes to the route's own Service. A canary without
ready endpoints is skipped, so its requests go to the route's own Service.
"""

from __future__ import annotations

from gateway_core.messages import RequestContext
from gateway_core.routing.table import Backend, Route


def choose_backend(route: Route, ctx: RequestContext) -> Backend:
    """The backend for this request (not built yet: always the route's own)."""
    return route.backend
