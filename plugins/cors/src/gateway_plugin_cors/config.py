"""The ``meta-native.io/plugin.cors`` annotation, validated.

Every rule the CORS protocol puts on a combination of settings (no ``*`` origin with
credentials, ``*`` alone in a list) is checked here, so a bad policy rejects the Ingress
instead of producing headers browsers ignore.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateway_plugin_cors.origins import parse_pattern

DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
"""The methods a route allows cross-origin when ``allow_methods`` is not set."""

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


def _as_list(value: Any) -> Any:
    """A single string (``"*"``, one origin) is taken as a one-item list."""
    return [value] if isinstance(value, str) else value


def _star_alone(values: list[str], field: str) -> list[str]:
    if "*" in values and len(values) > 1:
        raise ValueError(f"`*` in {field} already allows everything: list it alone")
    return values


class CorsConfig(BaseModel):
    """Which cross-origin callers a route accepts, and what their browsers may do."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: list[str] = Field(
        min_length=1,
        max_length=256,
        description="Origins allowed to call the route: exact (`https://app.example.com`, port only if not "
        "the default), one-level wildcards (`https://*.example.com` matches `https://a.example.com`, not "
        "`https://a.b.example.com` nor `https://example.com`), or `*` alone for any origin (refused with "
        "`allow_credentials`). Scheme and host compare case-insensitively, the port exactly; the `null` "
        "origin never matches.",
    )
    allow_methods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        min_length=1,
        max_length=64,
        description="Methods a preflight may ask for, compared case-sensitively as browsers do; `*` alone "
        "allows any method (the answer names the one asked for).",
    )
    allow_headers: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Request headers a preflight may ask for, case-insensitive (`Content-Type` with a JSON "
        "body needs listing); `*` alone allows any header (the answer names the ones asked for, so it "
        "works with credentials and covers `Authorization`).",
    )
    expose_headers: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Response headers, beyond the CORS-safelisted ones, that the page's script may read "
        "(`Access-Control-Expose-Headers`); `*` alone exposes all, and is refused with `allow_credentials`.",
    )
    allow_credentials: bool = Field(
        False,
        description="Let browsers send cookies and HTTP authentication cross-origin and read the answer "
        "(`Access-Control-Allow-Credentials: true`). The allowed origin is then always named, never `*`.",
    )
    max_age: int | None = Field(
        600,
        ge=0,
        le=86400,
        description="Seconds a browser may cache a preflight answer (`Access-Control-Max-Age`); `null` "
        "leaves it to the browser (5 s). Browsers cap it (Chromium at 7200).",
    )

    _listed = field_validator("allow_origins", "allow_methods", "allow_headers", "expose_headers", mode="before")(
        _as_list
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        _star_alone(values, "allow_origins")
        for value in values:
            if value != "*":
                parse_pattern(value)
        return values

    @field_validator("allow_methods", "allow_headers", "expose_headers")
    @classmethod
    def _tokens(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for value in values:
            if not _TOKEN.match(value):
                raise ValueError(f"{value!r} is not an HTTP token (a method or header name)")
        return _star_alone(values, info.field_name or "the list")

    @model_validator(mode="after")
    def _credentials(self) -> CorsConfig:
        if self.allow_credentials and self.allow_origins == ["*"]:
            raise ValueError(
                "allow_origins `*` cannot go with allow_credentials: browsers refuse credentialed answers "
                "for any origin; list the origins instead"
            )
        if self.allow_credentials and self.expose_headers == ["*"]:
            raise ValueError(
                "expose_headers `*` cannot go with allow_credentials: browsers then read it as a header "
                "named `*`; list the headers instead"
            )
        return self
