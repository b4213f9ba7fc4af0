"""The ``meta-native.io/plugin.jwt-auth`` annotation, validated.

The cross-field rules that keep algorithm confusion out live here, so a dangerous config
rejects the Ingress before any token is seen: ``none`` is never accepted, HMAC algorithms
only with a shared secret, and a shared secret only with HMAC algorithms.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from gateway_core.plugin_api import RESERVED_REQUEST_HEADERS, HeaderName, IdentityConfig

Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"
]
"""The JWS algorithms a route may allow (RFC 7518 names; EdDSA as RFC 8037)."""

ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})

Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
ClaimName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
CookieName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")]
Realm = Annotated[str, StringConstraints(pattern=r"^[ !#-\[\]-~]{1,128}$")]
"""Printable ASCII without ``"`` and ``\\``: it goes inside a quoted-string of WWW-Authenticate."""


class SecretKeyRef(BaseModel):
    """One data entry of a Secret in the Ingress's namespace."""

    model_config = ConfigDict(extra="forbid")

    secret: Name = Field(description="Name of the Secret, in the Ingress's namespace.")
    key: Name = Field(description="Data entry of the Secret that holds the material.")


class JwksCacheConfig(BaseModel):
    """How keys fetched from ``jwks_url`` are cached and refreshed."""

    model_config = ConfigDict(extra="forbid")

    ttl: float = Field(
        300,
        gt=0,
        le=86_400,
        description="Seconds fetched keys are used before they are fetched again (in the background, "
        "while the old keys keep verifying).",
    )
    min_refresh_interval: float = Field(
        30,
        gt=0,
        le=3_600,
        description="Minimum seconds between two fetches: bounds refreshes caused by tokens naming an "
        "unknown `kid` and retries after a failed fetch.",
    )
    timeout: float = Field(5, gt=0, le=60, description="Seconds one fetch may take, from connect to last byte.")

    @model_validator(mode="after")
    def _interval_within_ttl(self) -> JwksCacheConfig:
        if self.min_refresh_interval > self.ttl:
            raise ValueError("`min_refresh_interval` must not exceed `ttl`")
        return self


class JwtAuthConfig(IdentityConfig):
    """Where verification keys come from, what a valid token must say, and what goes upstream."""

    algorithms: list[Algorithm] = Field(
        min_length=1,
        description="Signature algorithms accepted (the token's `alg` must be one of them). HS256/HS384/HS512 "
        "only with `shared_secret`; never `none`.",
    )
    public_keys: SecretKeyRef | None = Field(
        None,
        description="Secret entry holding one or more PEM public keys or X.509 certificates (concatenated).",
    )
    jwks: SecretKeyRef | None = Field(None, description="Secret entry holding a JWKS JSON document (RFC 7517).")
    jwks_url: AnyHttpUrl | None = Field(
        None, description="URL of the issuer's JWKS document, fetched by the gateway and cached (see `jwks_cache`)."
    )
    jwks_cache: JwksCacheConfig = Field(
        default_factory=JwksCacheConfig, description="Caching of `jwks_url` keys (only with `jwks_url`)."
    )
    shared_secret: SecretKeyRef | None = Field(
        None, description="Secret entry holding the HMAC key for HS256/HS384/HS512, used byte for byte."
    )
    issuers: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, min_length=1, description="Accepted `iss` values; when set, a token must carry one of them."
    )
    audiences: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="Accepted `aud` values; when set, a token must name one of them. When unset, a token "
        "carrying any `aud` is refused (RFC 7519 §4.1.3).",
    )
    require_exp: bool = Field(True, description="Refuse tokens without an `exp` (expiry) claim.")
    leeway: float = Field(
        30, ge=0, le=600, description="Seconds of clock skew tolerated when checking `exp`, `nbf` and `iat`."
    )
    header: HeaderName | None = Field(
        "Authorization", description="Request header carrying the token; `null` to read it from elsewhere only."
    )
    scheme: Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")] | None = Field(
        "Bearer",
        description="Authentication scheme before the token in `header` (compared case-insensitively); "
        "`null` when the header holds the bare token.",
    )
    cookie: CookieName | None = Field(None, description="Cookie carrying the token (e.g. from a browser session).")
    query_param: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="Query parameter carrying the token. Off by default: URLs end up in logs."
    )
    forward_token: bool = Field(
        True,
        description="Keep the token in the forwarded request so the upstream can verify it again; "
        "`false` removes it from the header, cookie or query parameter it came in.",
    )
    identity_claim: ClaimName = Field(
        "sub", description="Claim whose value (a string or integer) becomes the identity in `identity_header`."
    )
    claims_to_headers: dict[ClaimName, HeaderName] = Field(
        default_factory=dict,
        max_length=32,
        description="Claims forwarded upstream, as claim name -> request header. Strings go as they are, other "
        "values JSON-encoded; an absent claim sets no header. These headers are stripped from every client request.",
    )
    realm: Realm = Field("gateway", description="`realm` of the `WWW-Authenticate: Bearer` challenge on a 401.")

    @field_validator("algorithms", mode="before")
    @classmethod
    def _never_none(cls, value: object) -> object:
        if isinstance(value, list) and any(isinstance(item, str) and item.lower() == "none" for item in value):
            raise ValueError("`none` is never accepted: an unsigned token proves nothing")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _no_credentials_in_url(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and (value.username or value.password):
            raise ValueError("put no credentials in `jwks_url`: annotations are not secret")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JwtAuthConfig:
        sources = [name for name in ("public_keys", "jwks", "jwks_url", "shared_secret") if getattr(self, name)]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            raise ValueError(f"set exactly one of public_keys, jwks, jwks_url, shared_secret (found: {found})")
        hmac = sorted(HMAC_ALGORITHMS.intersection(self.algorithms))
        if self.shared_secret is None and hmac:
            raise ValueError(
                f"{', '.join(hmac)} needs `shared_secret`: an HMAC algorithm verified with a public key lets "
                "anyone who knows that key sign tokens"
            )
        asymmetric = [name for name in self.algorithms if name not in HMAC_ALGORITHMS]
        if self.shared_secret is not None and asymmetric:
            raise ValueError(f"`shared_secret` works only with HS256/HS384/HS512, not {', '.join(asymmetric)}")
        if "jwks_cache" in self.model_fields_set and self.jwks_url is None:
            raise ValueError("`jwks_cache` applies only to `jwks_url`")
        if self.header is None and self.cookie is None and self.query_param is None:
            raise ValueError("set `header`, `cookie` or `query_param`: the token has to come from somewhere")
        if self.header is None and "scheme" in self.model_fields_set and self.scheme is not None:
            raise ValueError("`scheme` applies only to `header`")
        self._check_headers()
        return self

    def _check_headers(self) -> None:
        identity = self.identity_header.lower()
        if self.header is not None and identity == self.header.lower():  # reserved names: IdentityConfig
            raise ValueError(f"`identity_header` cannot be {self.identity_header}")
        seen: dict[str, str] = {}
        for claim, header in self.claims_to_headers.items():
            name = header.lower()
            if (
                name in RESERVED_REQUEST_HEADERS  # owned headers vanish from every request of the gateway
                or name == identity
                or (self.header is not None and name == self.header.lower())
            ):
                raise ValueError(f"claims_to_headers: claim {claim!r} cannot go to {header}: that header is reserved")
            if name in seen:
                raise ValueError(f"claims_to_headers: claims {seen[name]!r} and {claim!r} both go to {header}")
            seen[name] = claim

    def owned_headers(self) -> tuple[str, ...]:
        """The identity header and every header a claim is forwarded in."""
        return (self.identity_header, *self.claims_to_headers.values())
