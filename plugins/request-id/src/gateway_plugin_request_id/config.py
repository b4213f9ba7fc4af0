"""The ``meta-native.io/plugin.request-id`` annotation, validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway_core.plugin_api import RESERVED_REQUEST_HEADERS, HeaderName

MAX_ID_LENGTH = 1024
"""The longest ``max_length`` a config may ask for: ids are copied into every log line."""


class RequestIdConfig(BaseModel):
    """Which header carries the id, whether a client's id is kept, and whether it is echoed."""

    model_config = ConfigDict(extra="forbid")

    header: HeaderName = Field(
        "X-Request-ID",
        description="Header that carries the id: read from the client, set on the upstream request, "
        "and echoed on the response.",
    )
    trust_incoming: bool = Field(
        True,
        description="Keep the id the client sent when it is valid (one value, 1 to `max_length` visible "
        "ASCII characters). `false` replaces every client id with a generated one.",
    )
    max_length: int = Field(
        200,
        ge=1,
        le=MAX_ID_LENGTH,
        description="Longest client id kept, in characters; a longer one is replaced by a generated id.",
    )
    response_header: bool = Field(
        True,
        description="Add the id to the response to the client, unless the upstream's response already "
        "carries that header (the upstream's value is then left as is).",
    )

    @field_validator("header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_REQUEST_HEADERS:
            raise ValueError(f"{value} cannot carry a request id: the gateway owns it or it carries credentials")
        return value
