"""The ``meta-native.io/plugin.key-auth`` annotation, validated."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway_core.plugin_api import HeaderName, IdentityConfig


class KeyAuthConfig(IdentityConfig):
    """Where API keys come from and where the client sends them."""

    secret: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Secret (in the Ingress's namespace) holding the keys: each data entry "
        "is a consumer name mapped to its key, or to several keys one per line (for rotation).",
    )
    header: HeaderName | None = Field(
        "X-API-Key", description="Request header carrying the key; `null` to accept the query parameter only."
    )
    query_param: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Query parameter carrying the key (e.g. `api_key`); checked after the header. "
        "Off by default: URLs end up in logs.",
    )

    @model_validator(mode="after")
    def _somewhere(self) -> KeyAuthConfig:
        if self.header is None and self.query_param is None:
            raise ValueError("set `header`, `query_param` or both: the key has to come from somewhere")
        return self
