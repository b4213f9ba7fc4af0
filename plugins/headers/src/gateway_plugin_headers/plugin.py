"""The ``headers`` plugin objects: one per route, holding that route's compiled edits.

Everything is decided at bind time; per request an edit is a header list operation and,
for a template with variables, a string join. A value that comes out unusable is skipped
(never a 500): for ``set`` the header is then removed, so a client's value never survives a
``set`` it was meant to be replaced by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway_core import Binding, Headers, LocalResponse, RequestContext, UpstreamResponse
from gateway_plugin_headers.config import HeadersConfig, RequestEdits, ResponseEdits
from gateway_plugin_headers.template import Resolver, Template, compile_template, valid_value

logger = logging.getLogger("gateway_plugin_headers")


def resolvers(request_id_header: str) -> Mapping[str, Resolver]:
    """How each template variable is read from a request."""

    def request_id(ctx: RequestContext) -> str:
        return ctx.request.headers.get(request_id_header) or ""

    def scheme(ctx: RequestContext) -> str:
        return ctx.request.headers.get("x-forwarded-proto") or ctx.scheme

    return {
        "client_ip": lambda ctx: ctx.client_ip,
        "request_id": request_id,
        "host": lambda ctx: ctx.host,
        "method": lambda ctx: ctx.method,
        "path": lambda ctx: ctx.path,
        "scheme": scheme,
    }


@dataclass(frozen=True, slots=True)
class EditPlan:
    """One direction's edits, compiled: remove, then set, then add."""

    remove: tuple[str, ...]
    set: tuple[tuple[str, Template], ...]
    add: tuple[tuple[str, Template], ...]

    @classmethod
    def compile(cls, edits: RequestEdits | ResponseEdits, variables: Mapping[str, Resolver]) -> EditPlan:
        """Compile validated edits against the variable resolvers."""
        return cls(
            remove=tuple(edits.remove),
            set=tuple((name, compile_template(value, variables)) for name, value in edits.set_.items()),
            add=tuple((name, compile_template(value, variables)) for name, value in edits.add.items()),
        )

    def apply(self, ctx: RequestContext, headers: Headers) -> None:
        """Edit ``headers`` for this request."""
        for name in self.remove:
            headers.remove(name)
        for name, template in self.set:
            value = template.render(ctx)
            if not _put(headers.set, name, value):
                headers.remove(name)
                _skipped(ctx, name)
        for name, template in self.add:
            if not _put(headers.add, name, template.render(ctx)):
                _skipped(ctx, name)


def _put(operation: Callable[[str, str], None], name: str, value: str) -> bool:
    if not value or not valid_value(value):
        return False
    try:
        operation(name, value)  # ValueError: CR/LF/NUL, or not Latin-1
    except ValueError:
        return False
    return True


def _skipped(ctx: RequestContext, name: str) -> None:
    route = ctx.route.id if ctx.route is not None else "-"
    logger.debug("headers: %s not sent on route %s: its value is empty or not a valid header value", name, route)


class HeaderEdits:
    """Base of the plugin objects: the compiled edits of both directions."""

    def __init__(self, request: EditPlan, response: EditPlan) -> None:
        self.request = request
        self.response = response


class RequestHeaders(HeaderEdits):
    """Edits the request headers on their way to the upstream."""

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        self.request.apply(ctx, ctx.request.headers)
        return None


class ResponseHeaders(HeaderEdits):
    """Edits the upstream's response headers on their way to the client."""

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        self.response.apply(ctx, response.headers)

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        """The gateway's own answers on the route (a 401, a 429, a 502) get the same edits."""
        self.response.apply(ctx, Headers(response.headers))


class RequestAndResponseHeaders(RequestHeaders, ResponseHeaders):
    """Edits both directions."""


def from_binding(config: HeadersConfig, binding: Binding) -> HeaderEdits:
    """The plugin object for one route: only the phases its config needs."""
    variables = resolvers(config.request_id_header)
    request = EditPlan.compile(config.request, variables)
    response = EditPlan.compile(config.response, variables)
    if config.response.is_empty():
        return RequestHeaders(request, response)
    if config.request.is_empty():
        return ResponseHeaders(request, response)
    return RequestAndResponseHeaders(request, response)
