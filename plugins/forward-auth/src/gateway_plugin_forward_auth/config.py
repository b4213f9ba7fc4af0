"""The ``meta-native.io/plugin.forward-auth`` annotation, validated.

Cross-field rules live here, so a config that could not work (a header both forwarded to
the auth service and owned by the plugin) or that would hurt other routes (owning
``Authorization``, which the gateway would then strip everywhere) is refused at bind time.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway_core.plugin_api import HeaderName, IdentityConfig

MAX_BODY_BYTES = 64 * 1024
"""The most of an auth service's body relayed to the client; the rest is cut off."""

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)
"""Headers about one connection, never copied anywhere."""

SENT_BY_THE_PLUGIN = frozenset(
    {
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-method",
        "x-forwarded-uri",
        "x-real-ip",
        "x-original-method",
        "x-original-uri",
        "x-original-url",
    }
)
"""Headers of the auth request the plugin sets itself, from what the gateway saw."""

CLIENT_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "authorization",
        "cache-control",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "cookie",
        "date",
        "forwarded",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "proxy-authorization",
        "range",
        "referer",
        "user-agent",
        "via",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
"""Standard request headers clients send. Owning one would strip it from every client
request on every route of the gateway, so ``upstream_headers`` may not name them."""


def _unique(names: list[str], field: str) -> list[str]:
    seen: set[str] = set()
    for name in names:
        key = name.lower()
        if key in seen:
            raise ValueError(f"{name!r} is listed twice in {field}")
        seen.add(key)
    return names


def _refuse(names: Iterable[str], refused: frozenset[str], why: str) -> None:
    for name in names:
        if name.lower() in refused:
            raise ValueError(f"{name!r} {why}")


class ForwardAuthConfig(IdentityConfig):
    """Where the auth service is, what it is shown and what is taken from its answer."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Absolute `http://` or `https://` URL of the auth service. It gets a `GET` for every "
        "request (never the body): 2xx lets the request through, any other answer is the client's answer.",
    )
    request_headers: list[HeaderName] = Field(
        default_factory=lambda: ["Authorization", "Cookie"],
        max_length=32,
        description="Client request headers sent on to the auth service (every value, as received). "
        "The request's method, URI and forwarding headers are always sent as well.",
    )
    upstream_headers: list[HeaderName] = Field(
        default_factory=list,
        max_length=32,
        description="Headers copied from a 2xx auth response onto the upstream request (e.g. `X-User`, "
        "`X-Groups`). The gateway strips them from every client request on every route, so only the auth "
        "service can set them; standard request headers such as `Authorization` are refused for that reason.",
    )
    identity_from: HeaderName | None = Field(
        None,
        description="Header of a 2xx auth response whose value is the authenticated identity: it becomes "
        "the request's identity (for logs and rate limits) and is sent upstream in `identity_header`. A 2xx "
        "answer without exactly one non-empty value is refused with 503. `null`: no identity is recorded.",
    )
    client_headers: list[HeaderName] = Field(
        default_factory=lambda: ["WWW-Authenticate", "Location", "Set-Cookie"],
        max_length=32,
        description="Headers copied from a 3xx/4xx auth response to the client, with its status and body "
        "(up to 64 KiB). `Content-Type` and `Content-Encoding` always go with the body.",
    )
    timeout: float = Field(
        3.0,
        gt=0,
        le=60,
        description="Seconds the whole auth call may take (connect, send, answer, body). After that the "
        "client gets 503 and the request is not forwarded.",
    )
    cache_ttl: float = Field(
        0,
        ge=0,
        le=300,
        description="Seconds a 2xx answer is reused for requests with the same forwarded header values; "
        "0 turns the cache off. Denials are never cached; nor are answers marked `Cache-Control: no-store` "
        "or `no-cache`.",
    )
    cache_key_includes_uri: bool = Field(
        True,
        description="Whether the cache key also holds the method, host and URI. Keep it on when the auth "
        "service decides per path; turn it off when it only checks who the caller is, for more cache hits.",
    )
    cache_max_entries: int = Field(
        10_000,
        ge=1,
        le=100_000,
        description="Most answers cached per route; the least recently used is dropped first.",
    )

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("the URL must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            given = f"{parts.scheme}:// is not supported" if parts.scheme else "a relative URL is not enough"
            raise ValueError(f"must be an absolute http:// or https:// URL ({given})")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in the URL (annotations are not secret)")
        if parts.fragment:
            raise ValueError("the URL must not have a #fragment")
        return value

    @field_validator("request_headers")
    @classmethod
    def _forwardable(cls, value: list[str]) -> list[str]:
        _refuse(value, HOP_BY_HOP, "is a hop-by-hop header and is never forwarded")
        _refuse(value, SENT_BY_THE_PLUGIN, "is set by the plugin itself from what the gateway saw")
        return _unique(value, "request_headers")

    @field_validator("upstream_headers")
    @classmethod
    def _ownable(cls, value: list[str]) -> list[str]:
        _refuse(value, HOP_BY_HOP, "is a hop-by-hop header and cannot be set on the upstream request")
        _refuse(
            value,
            CLIENT_REQUEST_HEADERS,
            "is a standard request header: owning it would strip it from every client request on every "
            "route; use an application header such as X-User",
        )
        return _unique(value, "upstream_headers")

    @field_validator("client_headers")
    @classmethod
    def _relayable(cls, value: list[str]) -> list[str]:
        _refuse(value, HOP_BY_HOP | {"content-length", "date"}, "is set by the gateway on its own answers")
        return _unique(value, "client_headers")

    @model_validator(mode="after")
    def _consistent(self) -> ForwardAuthConfig:
        if self.identity_header.lower() in CLIENT_REQUEST_HEADERS:
            raise ValueError(
                f"identity_header {self.identity_header!r} is a standard request header: owning it would strip "
                "it from every client request on every route"
            )
        owned = {name.lower(): name for name in self.owned_headers()}
        for name in self.request_headers:
            if name.lower() in owned:
                raise ValueError(
                    f"{name!r} is in request_headers but the plugin owns it (upstream_headers or "
                    "identity_header): clients' copies are stripped, so it would never reach the auth service"
                )
        if self.identity_from is not None and self.identity_header.lower() in {
            name.lower() for name in self.upstream_headers
        }:
            raise ValueError(
                f"identity_header {self.identity_header!r} is also in upstream_headers: "
                "set it from one place (identity_from) only"
            )
        return self

    def owned_headers(self) -> Iterable[str]:
        """The identity header and every ``upstream_headers`` name: stripped from every client request."""
        return (self.identity_header, *self.upstream_headers)
