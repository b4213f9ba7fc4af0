"""The ``meta-native.io/plugin.basic-auth`` annotation, validated."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway_core.plugin_api import IdentityConfig


class BasicAuthConfig(IdentityConfig):
    """Where the htpasswd file is, what the challenge says, how long a good password is remembered."""

    secret: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Secret (in the Ingress's namespace) holding an htpasswd file: one "
        "`user:hash` per line, bcrypt (`$2y$`, `$2b$`, `$2a$`) or `{SHA}` hashes.",
    )
    secret_key: str = Field(
        "auth",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the Secret's data that holds the htpasswd file (`auth`, as in ingress-nginx's "
        "`auth-file` Secrets).",
    )
    realm: str = Field(
        "Restricted",
        min_length=1,
        max_length=128,
        description='Protection space named in the `WWW-Authenticate: Basic realm="..."` challenge: '
        'printable ASCII without `"` or `\\`.',
    )
    forward_authorization: bool = Field(
        False,
        description="Forward the client's `Authorization` header to the upstream. Off by default: the "
        "upstream gets the user name in the identity header, never the password.",
    )
    cache_ttl: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds a successful bcrypt check of a (user, password) pair is remembered, so a steady "
        "client does not pay for bcrypt on every request; 0 turns the cache off. Failures are never cached.",
    )
    cache_size: int = Field(
        1024,
        ge=1,
        le=100_000,
        description="Most (user, password) pairs remembered at once; the least recently used is dropped first.",
    )

    @field_validator("realm")
    @classmethod
    def _realm_is_quotable(cls, realm: str) -> str:
        bad = sorted({char for char in realm if not (" " <= char <= "~") or char in '"\\'})
        if bad:
            raise ValueError(
                f"the realm goes into a quoted header value: it must be printable ASCII without '\"' or '\\' "
                f"(found {', '.join(repr(char) for char in bad)})"
            )
        return realm
