"""The ``meta-native.io/plugin.response-header`` annotation, validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway_core import HeaderName

# The gateway frames the response body itself and drops hop-by-hop headers: a plugin
# setting one of these would corrupt the response or be silently undone.
RESERVED = frozenset(
    {"connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


class ResponseHeaderConfig(BaseModel):
    """Which header to add to upstream responses, and whether it replaces the upstream's."""

    model_config = ConfigDict(extra="forbid")

    name: HeaderName = Field(
        "x-served-by",
        description="Name of the response header: an HTTP token, not a framing or hop-by-hop header "
        "such as `content-length` or `connection`.",
    )
    value: str = Field(
        min_length=1,
        max_length=1024,
        description="Value of the header: at most 1024 printable ASCII characters, no line breaks, "
        "no leading or trailing spaces.",
    )
    overwrite: bool = Field(
        True,
        description="Replace a header of that name the upstream sent; `false` keeps the upstream's and "
        "adds the header only when it is missing.",
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED:
            raise ValueError(f"{name!r} is a framing or hop-by-hop header the gateway manages itself")
        return name

    @field_validator("value")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not all(" " <= char <= "~" or char == "\t" for char in value):
            raise ValueError("must be printable ASCII: no line breaks or other control characters")
        if value != value.strip():
            raise ValueError("must not start or end with spaces or tabs")
        return value
