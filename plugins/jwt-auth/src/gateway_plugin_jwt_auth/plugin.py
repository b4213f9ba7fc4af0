"""The ``jwt-auth`` plugin object: one per route, holding that route's keys and checks.

Per request: take the token, read its header (``alg`` must be allowed, ``kid`` picks the
keys), verify signature and claims with PyJWT, then forward identity and claims in headers.
Keys are parsed at bind time (Secret) or fetch time (JWKS URL); nothing per request is
blocking, and nothing from a token's header other than ``alg`` and ``kid`` is used.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWTError,
)

from gateway_core import Binding, LocalResponse, PluginConfigError, RequestContext, set_identity
from gateway_plugin_jwt_auth.challenge import Challenges, Failure
from gateway_plugin_jwt_auth.config import JwtAuthConfig, SecretKeyRef
from gateway_plugin_jwt_auth.jwks import RemoteKeys
from gateway_plugin_jwt_auth.keys import KeyMaterialError, KeySet, key_from_shared_secret, keys_from_jwks, keys_from_pem
from gateway_plugin_jwt_auth.token_source import TokenProblem, TokenSource

logger = logging.getLogger("gateway_plugin_jwt_auth")

_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (other than tab) that no forwarded header value may carry."""

_HARMLESS_ERRORS = (ValueError, TypeError, ArithmeticError, RecursionError)
"""What hostile token content can make a library raise besides PyJWTError: a 401, never a 500."""


_PROBLEMS = {
    TokenProblem.MISSING: Failure.MISSING,
    TokenProblem.AMBIGUOUS: Failure.AMBIGUOUS,
    TokenProblem.MALFORMED: Failure.MALFORMED,
}


def _secret_entry(binding: Binding, ref: SecretKeyRef) -> bytes:
    data = binding.secrets(ref.secret)
    if data is None:
        raise PluginConfigError(f"Secret {ref.secret!r} not found in namespace {binding.route.namespace!r}")
    value = data.get(ref.key)
    if value is None:
        present = ", ".join(sorted(data)) or "none"
        raise PluginConfigError(f"Secret {ref.secret!r} has no key {ref.key!r} (it has: {present})")
    return value


def load_key_set(config: JwtAuthConfig, binding: Binding) -> KeySet | None:
    """The keys held in a Secret, parsed; None for ``jwks_url``. PluginConfigError if unusable."""
    algorithms = tuple(config.algorithms)
    for ref, parse in (
        (config.public_keys, keys_from_pem),
        (config.jwks, lambda data, allowed: keys_from_jwks(data, allowed)[0]),
        (config.shared_secret, key_from_shared_secret),
    ):
        if ref is not None:
            try:
                return parse(_secret_entry(binding, ref), algorithms)
            except KeyMaterialError as exc:
                raise PluginConfigError(f"Secret {ref.secret!r} key {ref.key!r}: {exc}") from None
    return None


class JwtAuth:
    """Verifies the bearer token, sets the identity and claim headers, or answers 401/503."""

    def __init__(self, config: JwtAuthConfig, *, keys: KeySet | None = None, remote: RemoteKeys | None = None) -> None:
        if (keys is None) == (remote is None):
            raise ValueError("give exactly one of keys, remote")
        self.config = config
        self._keys = keys
        self._remote = remote
        self._tokens = TokenSource(
            header=config.header,
            scheme=config.scheme,
            cookie=config.cookie,
            query_param=config.query_param,
            remove=not config.forward_token,
        )
        self._algorithms: dict[str, list[str]] = {name: [name] for name in config.algorithms}
        self._decoder = jwt.PyJWT(
            {"require": ["exp"] if config.require_exp else [], "enforce_minimum_key_length": True}
        )
        self._audiences = list(config.audiences) if config.audiences is not None else None
        self._issuers = frozenset(config.issuers) if config.issuers is not None else None
        self._claim_headers = tuple(config.claims_to_headers.items())
        self._challenges = Challenges(config.realm, retry_after=config.jwks_cache.min_refresh_interval)

    @classmethod
    def from_binding(cls, config: JwtAuthConfig, binding: Binding) -> JwtAuth:
        """The factory: Secret keys are read and parsed now; a JWKS URL is fetched on first use."""
        keys = load_key_set(config, binding)
        if keys is not None:
            return cls(config, keys=keys)
        assert config.jwks_url is not None
        cache = config.jwks_cache
        remote = RemoteKeys(
            str(config.jwks_url),
            tuple(config.algorithms),
            ttl=cache.ttl,
            min_refresh_interval=cache.min_refresh_interval,
            timeout=cache.timeout,
        )
        return cls(config, remote=remote)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        """None to let a verified request through; else the 401 challenge (or 503 without keys)."""
        token = self._tokens.take(ctx.request)
        if isinstance(token, TokenProblem):
            return self._challenges[_PROBLEMS[token]]
        try:
            header = jwt.get_unverified_header(token)
        except (PyJWTError, *_HARMLESS_ERRORS):
            return self._challenges[Failure.MALFORMED]
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            return self._challenges[Failure.INVALID]
        kid: str | None = header.get("kid")  # a string when present: PyJWT checked it
        keys = self._keys
        if keys is None:
            assert self._remote is not None
            keys = await self._remote.current()
            if keys is None:
                return self._challenges.unavailable
            if kid is not None and not keys.candidates(algorithm, kid):
                refreshed = await self._remote.refresh_for_unknown_kid()
                keys = refreshed if refreshed is not None else keys
        claims = self._verify(token, algorithm, keys.candidates(algorithm, kid))
        if isinstance(claims, Failure):
            return self._challenges[claims]
        failure = self._forward(ctx, claims)
        return self._challenges[failure] if failure is not None else None

    def _verify(self, token: str, algorithm: str, candidates: tuple[jwt.PyJWK, ...]) -> dict[str, Any] | Failure:
        """The verified claims, or why the token is refused (each candidate key tried in turn)."""
        for key in candidates:
            try:
                return self._decoder.decode(
                    token,
                    key=key,
                    algorithms=self._algorithms[algorithm],
                    audience=self._audiences,
                    issuer=self._issuers,
                    leeway=self.config.leeway,
                )
            except InvalidSignatureError:
                continue
            except ExpiredSignatureError:
                return Failure.EXPIRED
            except ImmatureSignatureError:
                return Failure.NOT_YET_VALID
            except InvalidAudienceError:
                return Failure.AUDIENCE
            except InvalidIssuerError:
                return Failure.ISSUER
            except MissingRequiredClaimError as exc:
                return {"aud": Failure.AUDIENCE, "iss": Failure.ISSUER}.get(exc.claim, Failure.CLAIMS)
            except DecodeError:  # a payload that is not a JSON object, a time claim that is not a number
                return Failure.MALFORMED
            except InvalidAlgorithmError:
                return Failure.INVALID
            except InvalidTokenError:  # sub, jti, iat of the wrong type
                return Failure.CLAIMS
            except PyJWTError:
                return Failure.INVALID
            except _HARMLESS_ERRORS as exc:
                logger.debug("jwt-auth: token refused by an unexpected %s", type(exc).__name__)
                return Failure.INVALID
        return Failure.INVALID

    def _forward(self, ctx: RequestContext, claims: dict[str, Any]) -> Failure | None:
        """Set the claim headers and the identity; the failure if one cannot travel in a header."""
        identity = claims.get(self.config.identity_claim)
        if isinstance(identity, int) and not isinstance(identity, bool):
            identity = str(identity)
        if not isinstance(identity, str) or not identity or _UNSAFE_VALUE.search(identity):
            return Failure.IDENTITY
        values: list[tuple[str, str]] = []
        for claim, header in self._claim_headers:
            value = claims.get(claim)
            if value is None:
                continue
            try:
                text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            except (ValueError, RecursionError):
                return Failure.UNFORWARDABLE
            if _UNSAFE_VALUE.search(text):
                return Failure.UNFORWARDABLE
            values.append((header, text))
        headers = ctx.request.headers
        try:
            for header, text in values:
                headers.set(header, text)
        except ValueError:  # not latin-1
            return Failure.UNFORWARDABLE
        if not set_identity(ctx, identity, self.config.identity_header):
            return Failure.IDENTITY
        return None
