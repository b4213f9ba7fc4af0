"""The ``meta-native.io/plugin.ip-filter`` annotation, validated.

Every entry is parsed here, so a typo rejects the Ingress with the entry named instead of
letting a route run with a filter that silently matches less than intended.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateway_plugin_ip_filter.networks import parse_network

MAX_ENTRIES = 65536
"""Entries per list; more than an annotation can hold in practice."""


class IpFilterConfig(BaseModel):
    """Which client addresses may use the route."""

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(
        default_factory=list,
        max_length=MAX_ENTRIES,
        description="CIDRs (IPv4 or IPv6; a single address means /32 or /128) whose clients may pass. "
        "When non-empty, every other client is refused, including one whose address cannot be parsed.",
    )
    deny: list[str] = Field(
        default_factory=list,
        max_length=MAX_ENTRIES,
        description="CIDRs whose clients are refused with `403`, even when `allow` also lists them: "
        "deny wins over allow.",
    )

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        normalized = []
        for index, entry in enumerate(entries):
            try:
                normalized.append(str(parse_network(entry)))
            except ValueError as error:
                raise ValueError(f"{info.field_name}[{index}]: {error}") from None
        return normalized

    @model_validator(mode="after")
    def _something(self) -> IpFilterConfig:
        if not self.allow and not self.deny:
            raise ValueError("set `allow`, `deny` or both: an empty filter would let every client through")
        return self
