"""What a plugin author writes against: ``PluginSpec``, the ``Plugin`` phases, ``Binding``.

A request-plane plugin is a :class:`PluginSpec` (name, priority, config model, factory)
returned from the ``gateway_plugin_specs`` hook. For every route it is bound to, the
gateway validates the config with the model and calls the factory once; the object it
returns implements any of the phases below. Phases are plain ``async def`` methods, called
without pluggy on the hot path, in priority order (highest first, ties by name).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from gateway_core.errors import PluginError
from gateway_core.messages import LocalResponse, Outcome, RequestContext, RouteInfo, UpstreamRequest, UpstreamResponse

CallNext = Callable[[], Awaitable[UpstreamResponse]]
"""Calls the next ``around_upstream`` layer, or the upstream itself, with ``ctx.request``."""

PHASES = ("on_request", "on_upstream_request", "around_upstream", "on_response", "on_local_response", "on_log")
"""The request phases, in the order a request meets them."""

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Plugin:
    """Optional base class for plugin objects; override only the phases you need.

    An object that does not inherit from it works too: a phase is whatever method of that
    name the object has.
    """

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        """Before the upstream call. Return a response to answer the client directly."""
        return None

    async def on_upstream_request(self, ctx: RequestContext, request: UpstreamRequest) -> None:
        """Before each upstream attempt (after the endpoint is chosen): edit ``request``."""

    async def around_upstream(self, ctx: RequestContext, call_next: CallNext) -> UpstreamResponse:
        """Wrap the upstream call: retry it, time it, refuse it. Must return a response."""
        return await call_next()

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        """After the upstream's head arrives, before the body streams: edit status/headers."""

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        """Before an answer the gateway made itself is sent (a plugin's response, a 502):
        edit ``response.headers``. Errors are logged, never raised."""

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        """After the last byte went to the client. Errors are logged, never raised."""


def implemented_phases(plugin: object) -> tuple[str, ...]:
    """The phases ``plugin`` really implements (not :class:`Plugin`'s no-op defaults)."""
    found = []
    for phase in PHASES:
        method = getattr(type(plugin), phase, None)
        if method is not None and method is not getattr(Plugin, phase):
            found.append(phase)
    return tuple(found)


HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")]
"""A config field holding an HTTP header name (an RFC 9110 token)."""

IDENTITY_HEADER = "X-Auth-User"
"""The default request header an authentication plugin puts the authenticated identity in."""

RESERVED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
    }
)
"""Request headers no plugin may own: owned headers are stripped from every request of the
gateway, and these carry credentials, framing or the gateway's own forwarding information."""


class OwnsHeaders(Protocol):
    """A config model whose plugin sets request headers that clients must never supply."""

    def owned_headers(self) -> Iterable[str]:
        """Request header names the gateway strips from every client request, on every route."""
        ...


class EmptyConfig(BaseModel):
    """The config model of a plugin that takes no settings."""

    model_config = ConfigDict(extra="forbid")


class IdentityConfig(BaseModel):
    """Base of authentication plugins' config models: where the identity goes upstream."""

    model_config = ConfigDict(extra="forbid")

    identity_header: HeaderName = Field(
        IDENTITY_HEADER,
        description="Request header that carries the authenticated identity to the upstream. "
        "The gateway strips it from every client request on every route, so only this plugin sets it.",
    )

    @field_validator("identity_header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_REQUEST_HEADERS:
            raise ValueError(f"{value} cannot carry the identity: it is stripped from every request of the gateway")
        return value

    def owned_headers(self) -> Iterable[str]:
        return (self.identity_header,)


def set_identity(ctx: RequestContext, identity: str, header: str = IDENTITY_HEADER) -> bool:
    """Record a successful authentication: ``ctx.identity`` and the identity header upstream.

    Returns False (and changes nothing) when ``identity`` cannot travel in a header (control
    characters, not latin-1): the plugin should refuse the request rather than forward it.
    """
    try:
        ctx.request.headers.set(header, identity)
    except ValueError:
        return False
    ctx.identity = identity
    return True


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a plugin object is bound: handed to the factory with the validated config."""

    plugin: str
    route: RouteInfo
    secrets: Callable[[str], Mapping[str, bytes] | None]
    """Look up a Secret by name in the route's namespace; its data decoded, or None."""


ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class PluginSpec(Generic[ConfigT]):
    """A request-plane plugin as its distribution declares it.

    ``priority`` orders plugins in every phase (higher first); ``config_model`` must forbid
    unknown keys so a typo in an annotation is an error, not a silently ignored setting.
    """

    name: str
    factory: Callable[[ConfigT, Binding], object]
    config_model: type[ConfigT] = EmptyConfig  # type: ignore[assignment]
    priority: int = 0
    version: str = "0"
    description: str = ""
    owned_headers: tuple[str, ...] = ()
    """Request headers only this plugin may set, whatever its config (e.g. the default
    identity header): the gateway strips them from every client request on every route.
    Headers named by a config are added by the config model's ``owned_headers()``."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PluginError(f"plugin name {self.name!r} must be lowercase letters, digits and '-'")
        if self.config_model.model_config.get("extra") != "forbid":
            raise PluginError(f"plugin {self.name}: its config model must set extra='forbid'")

    def headers_owned_by(self, config: BaseModel | None = None) -> frozenset[str]:
        """Lowercase request header names this plugin owns, with ``config`` if given."""
        names = set(self.owned_headers)
        owned = getattr(config, "owned_headers", None)  # the OwnsHeaders protocol
        if callable(owned):
            names.update(owned())
        return frozenset(name.lower() for name in names)

    def config_schema(self) -> dict[str, Any]:
        """The JSON schema of the config model (for ``/plugins`` and the docs)."""
        return self.config_model.model_json_schema()
