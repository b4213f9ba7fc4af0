"""The ``meta-native.io/plugin.redirect`` annotation, validated.

Every redirect target is checked here, once, when the Ingress is read: a target that could
send a client to a host the operator did not write (protocol-relative ``//host``, a
backslash browsers read as a slash, userinfo tricks) rejects the Ingress instead.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ONE_YEAR = 31_536_000
"""Seconds in a year: the ``max-age`` the HSTS preload list asks for, at least."""

_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOST = re.compile(rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?|\[[0-9a-f:.]{{2,45}}\])(?::[0-9]{{1,5}})?$", re.I)
"""A Host header value (name or bracketed IPv6, optional port) safe to put in a URL."""

_FORBIDDEN = re.compile(r"[^\x21-\x7e]|[\\\"<>`{}|^]")


def check_path(value: str) -> str:
    """A same-host target path: starts with one ``/``, no backslash, space or control char."""
    if not value.startswith("/"):
        raise ValueError("must be a path starting with '/' or an absolute http(s) URL")
    if value.startswith("//"):
        raise ValueError("a target starting with '//' is a protocol-relative URL to another host; refused")
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain spaces, backslashes, control or non-ASCII characters (percent-encode them)")
    return value


def check_url(value: str) -> str:
    """An absolute ``http://`` or ``https://`` URL naming a plain host (no userinfo)."""
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain spaces, backslashes, control or non-ASCII characters (percent-encode them)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.lower().startswith(("http://", "https://")):
        raise ValueError("must be a path starting with '/' or an absolute http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("a URL with userinfo ('user@host') is refused: it hides the real host")
    if not parts.netloc or not HOST.match(parts.netloc):
        raise ValueError(f"{parts.netloc!r} is not a valid host[:port]")
    try:
        parts.port  # noqa: B018 - validates the port range
    except ValueError as exc:
        raise ValueError(f"invalid port in {parts.netloc!r}") from exc
    return value


class HstsConfig(BaseModel):
    """The ``Strict-Transport-Security`` header put on responses to HTTPS requests."""

    model_config = ConfigDict(extra="forbid")

    max_age: int = Field(
        ONE_YEAR,
        ge=0,
        le=2**31 - 1,
        description="Seconds browsers remember to use HTTPS only for this host (`max-age`); `0` tells them "
        "to forget it.",
    )
    include_subdomains: bool = Field(
        False,
        description="Add `includeSubDomains`: the policy covers every subdomain too. Off by default, since "
        "it breaks subdomains still served over plain HTTP.",
    )
    preload: bool = Field(
        False,
        description="Add `preload`, consenting to browsers' built-in HSTS lists; needs `include_subdomains` "
        "and a `max_age` of at least one year (31536000).",
    )

    @model_validator(mode="after")
    def _preload_rules(self) -> HstsConfig:
        if self.preload and not (self.include_subdomains and self.max_age >= ONE_YEAR):
            raise ValueError("preload needs include_subdomains: true and max_age of at least 31536000 (one year)")
        return self

    def header_value(self) -> str:
        """The header's value, e.g. ``max-age=31536000; includeSubDomains``."""
        value = f"max-age={self.max_age}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value


class RedirectConfig(BaseModel):
    """Which redirects a route makes, and whether its HTTPS responses carry HSTS."""

    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="Redirect every request of the route here: a path on the same host (`/new`) or an "
        "absolute `http(s)://` URL. Protocol-relative (`//host`) targets are refused.",
    )
    code: Literal[301, 302, 303, 307, 308] = Field(
        308,
        description="Status of the `to` redirect: `308`/`301` permanent, `307`/`302`/`303` temporary. "
        "`307` and `308` keep the method and body; `301`/`302` may turn a POST into a GET. Only with `to`.",
    )
    preserve_path: bool = Field(
        False,
        description="Append to `to` the part of the request path after the route's path, and the request's "
        "query string (`/old/a?x=1` -> `/new/a?x=1`). Only with `to`.",
    )
    app_root: str | None = Field(
        None,
        max_length=2048,
        description="Redirect requests for exactly `/` here with `302` (the query string is kept); "
        "a path on the same host, like ingress-nginx `app-root`.",
    )
    https_redirect: bool = Field(
        False,
        description="Redirect requests that did not arrive over HTTPS to the same URL with `https://`, "
        "except ACME HTTP-01 challenges under `/.well-known/acme-challenge/`.",
    )
    https_code: Literal[301, 302, 307, 308] = Field(
        308, description="Status of the HTTPS redirect. Only with `https_redirect`."
    )
    https_port: int = Field(
        443,
        ge=1,
        le=65535,
        description="Port of the HTTPS URL redirected to; left out of the URL when `443`. Only with `https_redirect`.",
    )
    hsts: HstsConfig | None = Field(
        None,
        description="Put `Strict-Transport-Security` on responses to HTTPS requests (never on plain HTTP "
        "ones); `{}` for the defaults below, `null` for none.",
    )

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_path(value) if value.startswith("/") else check_url(value)

    @field_validator("app_root")
    @classmethod
    def _check_app_root(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_path(value)
        if value == "/":
            raise ValueError("app_root '/' would redirect '/' to itself")
        if "?" in value or "#" in value:
            raise ValueError("app_root is a path: no query string or fragment")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RedirectConfig:
        given = self.model_fields_set
        if self.to is None and self.app_root is None and not self.https_redirect and self.hsts is None:
            raise ValueError("set at least one of `to`, `app_root`, `https_redirect` or `hsts`")
        if self.to is not None and self.app_root is not None:
            raise ValueError("`to` redirects every request, so `app_root` would never apply: set one of them")
        if self.to is None and ({"code", "preserve_path"} & given):
            raise ValueError("`code` and `preserve_path` apply only with `to`")
        if not self.https_redirect and ({"https_code", "https_port"} & given):
            raise ValueError("`https_code` and `https_port` apply only with `https_redirect: true`")
        return self
