"""One exception tree for the whole gateway.

Third-party exceptions (httptools, pydantic, PyYAML, OS errors) are translated into these
at the edge of the module that met them, so plugins and callers only ever catch
``GatewayError`` subclasses. Each class says which HTTP status it maps to when it reaches
the proxy, so the mapping lives in one place.
"""

from __future__ import annotations

from typing import Self


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    Raised from a request phase, it becomes the JSON answer ``{"error": code, "message": ...}``
    with ``status``. The message is shown to the client only when the class sets
    ``public = True`` (it then must not hold internal detail); ``headers`` go on the answer
    (e.g. ``Retry-After``).
    """

    status: int = 500
    code: str = "internal_error"
    public: bool = False
    """Whether ``str(error)`` may be sent to the client as the answer's message."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra (name, value) headers for the answer, set per instance with ``with_headers``."""

    def with_headers(self, *headers: tuple[str, str]) -> Self:
        """Add answer headers to this error (chainable: ``raise Err("...").with_headers(...)``)."""
        self.headers = (*self.headers, *headers)
        return self


class ConfigError(GatewayError):
    """Settings are invalid (unknown key, bad value); raised at start-up."""

    code = "config_error"


class ManifestError(GatewayError):
    """A manifest file or object could not be read or understood.

    ``object_ref`` is ``(kind, namespace, name)`` when the invalid object could be named.
    """

    code = "manifest_error"

    def __init__(self, message: str, *, object_ref: tuple[str, str, str] | None = None) -> None:
        super().__init__(message)
        self.object_ref = object_ref


class PluginError(GatewayError):
    """A plugin could not be found, configured or loaded."""

    code = "plugin_error"


class UnknownPluginError(PluginError):
    """An annotation or setting names a plugin that is not installed (or disabled)."""

    code = "unknown_plugin"


class PluginConfigError(PluginError):
    """A plugin's config failed validation against its model."""

    code = "invalid_plugin_config"


class RequestError(GatewayError):
    """The client's request is malformed; answered with a 4xx and never forwarded."""

    status = 400
    code = "bad_request"
    public = True


class RequestTimeoutError(RequestError):
    """The client stopped sending its request body for longer than the read timeout."""

    status = 408
    code = "request_timeout"


class UpstreamError(GatewayError):
    """The upstream could not be reached or answered badly."""

    status = 502
    code = "bad_gateway"


class NoEndpointError(UpstreamError):
    """The route's Service has no ready endpoint."""

    status = 503
    code = "no_endpoint"


class UpstreamConnectError(UpstreamError):
    """Connecting to the upstream failed (refused, unreachable, DNS)."""

    code = "upstream_connect_failed"


class UpstreamClosedError(UpstreamError):
    """The upstream closed or reset the connection before a complete response."""

    code = "upstream_closed"


class UpstreamProtocolError(UpstreamError):
    """The upstream's response was not valid HTTP/1.1."""

    code = "upstream_protocol_error"


class BodyNotReplayableError(UpstreamError):
    """Another upstream attempt needed the request body, which streams only once."""

    code = "body_not_replayable"


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer (or connect) within the configured timeout."""

    status = 504
    code = "upstream_timeout"


class UpstreamConnectTimeoutError(UpstreamTimeoutError):
    """Connecting to the upstream took longer than the connect timeout: nothing was sent."""


class EndpointRefusedError(GatewayError):
    """A plugin refused the chosen endpoint before anything was sent to it.

    The per-endpoint circuit breaker raises a subclass when that endpoint's circuit is open.
    Nothing reached the upstream, so the retry loop may move the request to another endpoint
    whatever its method. Not an :class:`UpstreamError`: it says nothing new about the
    endpoint's health.
    """

    status = 503
    code = "endpoint_refused"
