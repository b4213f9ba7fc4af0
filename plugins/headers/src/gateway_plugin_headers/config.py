"""The ``meta-native.io/plugin.headers`` annotation, validated.

Everything is checked here, before a request is seen: header names are RFC 9110 tokens,
values are templates with known variables only, no header is touched that the gateway
manages (framing, hop-by-hop, forwarding information) or that carries credentials, and no
header is named twice. A bad annotation rejects its Ingress with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway_core import HeaderName
from gateway_core.plugin_api import IDENTITY_HEADER, RESERVED_REQUEST_HEADERS
from gateway_plugin_headers.template import VARIABLES, parse

MAX_HEADERS = 32
"""Headers one operation (``set``, ``add`` or ``remove``) may name: each costs work per request."""
MAX_VALUE_LENGTH = 4096
"""The longest value template."""

CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", IDENTITY_HEADER.lower()})
"""Request headers that may be removed but never written: credentials do not belong in an
annotation, and the identity header is only ever set by an authentication plugin."""

MANAGED_REQUEST_HEADERS = (RESERVED_REQUEST_HEADERS - CREDENTIAL_HEADERS) | {"via", "http2-settings"}
"""Request headers the gateway itself manages (framing, hop-by-hop, forwarding information):
never set, added or removed by this plugin. Every ``x-forwarded-*`` header is managed too."""

MANAGED_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)
"""Response headers that frame the body or the connection: never touched."""

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_VARIABLE_LIST = ", ".join(f"`${{{name}}}`" for name in VARIABLES)
_VALUES = (
    f"Values are literal text or contain the variables {_VARIABLE_LIST}; `$$` is a literal `$`. "
    "A value that comes out empty or not a valid header value (e.g. a control character in the path) "
    "is not sent"
)


def _check_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(
            f"{name!r} is not a header name: use 1-128 letters, digits and !#$%&'*+.^_`|~- (an RFC 9110 token)"
        )
    return name


def _check_value(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name}: the value is empty; to drop a header, list it in `remove`")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"{name}: the value is longer than {MAX_VALUE_LENGTH} characters")
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _no_repeats(names: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        key = name.lower()
        if key in seen:
            raise ValueError(f"{name} is named twice in {where} (header names are case-insensitive)")
        seen.add(key)


class _Edits(BaseModel):
    """Shared checks of the request and response edits."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    set_: dict[str, str]
    add: dict[str, str]
    remove: list[str]

    @field_validator("set_", "add")
    @classmethod
    def _check_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            _check_name(name)
            _check_value(name, template)
        _no_repeats(value, "one operation")
        return value

    @field_validator("remove")
    @classmethod
    def _check_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name)
        _no_repeats(value, "`remove`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _Edits:
        operations = (("set", self.set_), ("add", self.add), ("remove", self.remove))
        owner: dict[str, str] = {}
        for operation, names in operations:
            for name in names:
                earlier = owner.setdefault(name.lower(), operation)
                if earlier != operation:
                    raise ValueError(f"{name} is named in both `{earlier}` and `{operation}`: pick one")
                self._check_allowed(name, operation)
        return self

    def _check_allowed(self, name: str, operation: str) -> None:
        """Raise ValueError when ``operation`` may not touch header ``name``."""

    def is_empty(self) -> bool:
        """Whether there is nothing to do."""
        return not (self.set_ or self.add or self.remove)


class RequestEdits(_Edits):
    """Edits to the request as it goes to the upstream (after authentication)."""

    set_: dict[str, str] = Field(
        default_factory=dict,
        alias="set",
        max_length=MAX_HEADERS,
        description="Request headers to set, name to value: replaces whatever the client sent. " + _VALUES + ".",
    )
    add: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Request headers to add, name to value: appended, keeping the client's values. " + _VALUES + ".",
    )
    remove: list[str] = Field(
        default_factory=list,
        max_length=MAX_HEADERS,
        description="Request header names to remove before forwarding (e.g. `Cookie`).",
    )

    def _check_allowed(self, name: str, operation: str) -> None:
        key = name.lower()
        if key in MANAGED_REQUEST_HEADERS or key.startswith("x-forwarded-"):
            raise ValueError(f"request header {name} is managed by the gateway and cannot be set, added or removed")
        if key in CREDENTIAL_HEADERS and operation != "remove":
            raise ValueError(
                f"request header {name} carries credentials or the identity: it may be removed, never "
                "written from an annotation (use an authentication plugin)"
            )


class ResponseEdits(_Edits):
    """Edits to the upstream's response before it goes to the client."""

    set_: dict[str, str] = Field(
        default_factory=dict,
        alias="set",
        max_length=MAX_HEADERS,
        description="Response headers to set, name to value: replaces whatever the upstream sent. " + _VALUES + ".",
    )
    add: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Response headers to add, name to value: appended, keeping the upstream's values. " + _VALUES + ".",
    )
    remove: list[str] = Field(
        default_factory=list,
        max_length=MAX_HEADERS,
        description="Response header names to remove before the client sees them (e.g. `Server`, `X-Powered-By`).",
    )

    def _check_allowed(self, name: str, operation: str) -> None:
        if name.lower() in MANAGED_RESPONSE_HEADERS:
            raise ValueError(f"response header {name} frames the body or the connection and cannot be touched")


class HeadersConfig(BaseModel):
    """Which request and response headers to set, add and remove."""

    model_config = ConfigDict(extra="forbid")

    request: RequestEdits = Field(
        default_factory=RequestEdits,
        description="Edits to the request sent upstream, applied in the order remove, set, add.",
    )
    response: ResponseEdits = Field(
        default_factory=ResponseEdits,
        description="Edits to the upstream's response sent to the client, applied in the order remove, set, add. "
        "Also applied to answers the gateway makes itself on the route (401, 429, 502, ...).",
    )
    request_id_header: HeaderName = Field(
        "X-Request-ID",
        description="Request header `${request_id}` reads (the one the request-id plugin sets, or the client sent).",
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> HeadersConfig:
        if self.request.is_empty() and self.response.is_empty():
            raise ValueError("nothing to do: give `request` or `response` at least one of `set`, `add`, `remove`")
        return self
