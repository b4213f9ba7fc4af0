"""The ``basic-auth`` plugin object: one per route, holding that route's users.

Everything that can be done once is done when the object is made (the htpasswd file
parsed, the challenge and error answers built); per request it only decodes the header and
checks one password, bcrypt off the event loop and cached, ``{SHA}`` inline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import bcrypt

from gateway_core import Binding, LocalResponse, PluginConfigError, RequestContext, set_identity
from gateway_plugin_basic_auth.bcrypt_pool import BcryptPool, Verdict
from gateway_plugin_basic_auth.cache import VerifiedCache
from gateway_plugin_basic_auth.config import BasicAuthConfig
from gateway_plugin_basic_auth.htpasswd import HashKind, PasswordHash, parse_htpasswd, usual_bcrypt_cost

MAX_CREDENTIALS = 4096
"""Longest base64 credentials accepted (about 3 KB decoded); longer ones get 401 undecoded."""


def decode_credentials(value: str) -> tuple[bytes, str, bytes] | None:
    """``(user:password, user, password)`` from an ``Authorization: Basic`` value, or None.

    None for another scheme, a value too long, bad base64, no colon, an empty user name or
    text that is not UTF-8 (the charset the challenge announces).
    """
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token or len(token) > MAX_CREDENTIALS:
        return None
    try:
        credentials = base64.b64decode(token, validate=True)
        credentials.decode("utf-8")
    except ValueError:  # binascii.Error, non-ASCII input and UnicodeDecodeError are all ValueErrors
        return None
    user, colon, password = credentials.partition(b":")
    if not colon or not user:
        return None
    return credentials, user.decode("utf-8"), password


class BasicAuth:
    """Checks the credentials, removes them from the request, sets the identity header."""

    def __init__(self, config: BasicAuthConfig, users: dict[str, PasswordHash], *, pool: BcryptPool) -> None:
        self.config = config
        self._users = users
        self._pool = pool
        self._cache = VerifiedCache(ttl=config.cache_ttl, size=config.cache_size)
        self._checking: dict[bytes, asyncio.Future[Verdict]] = {}
        """bcrypt checks in progress by cache key (bounded by the pool's bound on pending checks)."""
        cost = usual_bcrypt_cost(users)
        # An unknown user costs a bcrypt run too, so response time does not tell which users exist.
        self._decoy_salt = bcrypt.gensalt(cost) if cost is not None else None
        challenge = [("WWW-Authenticate", f'Basic realm="{config.realm}", charset="UTF-8"')]
        self._missing = _unauthorized("credentials are required", challenge)
        self._malformed = _unauthorized("the Authorization header does not hold Basic credentials", challenge)
        self._invalid = _unauthorized("the user name or password is not valid", challenge)
        self._busy = LocalResponse.json(
            503,
            {"error": "auth_busy", "message": "too many password checks are in progress; retry shortly"},
            [("Retry-After", "1")],
        )

    @classmethod
    def from_binding(cls, config: BasicAuthConfig, binding: Binding, *, pool: BcryptPool) -> BasicAuth:
        """The plugin object for one route: reads and parses the htpasswd Secret."""
        data = binding.secrets(config.secret)
        if data is None:
            raise PluginConfigError(f"Secret {config.secret!r} not found in namespace {binding.route.namespace!r}")
        text = data.get(config.secret_key)
        if text is None:
            keys = ", ".join(repr(key) for key in sorted(data)) or "none"
            raise PluginConfigError(f"Secret {config.secret!r} has no key {config.secret_key!r} (its keys: {keys})")
        users = parse_htpasswd(text, source=f"Secret {config.secret!r} key {config.secret_key!r}")
        return cls(config, users, pool=pool)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        headers = ctx.request.headers
        values = headers.get_all("authorization")
        if not values:
            return self._missing
        if not self.config.forward_authorization:
            headers.remove("authorization")
        decoded = decode_credentials(values[0]) if len(values) == 1 else None
        if decoded is None:
            return self._malformed
        credentials, user, password = decoded
        entry = self._users.get(user)
        if entry is None:
            if self._decoy_salt is not None and await self._pool.waste(password, self._decoy_salt) is Verdict.BUSY:
                return self._busy
            return self._invalid
        verdict = await self._verify(entry, credentials, password)
        if verdict is Verdict.BUSY:
            return self._busy
        if verdict is not Verdict.MATCH or not set_identity(ctx, user, self.config.identity_header):
            return self._invalid
        return None

    async def _verify(self, entry: PasswordHash, credentials: bytes, password: bytes) -> Verdict:
        if entry.kind is HashKind.SHA1:
            digest = hashlib.sha1(password).digest()  # noqa: S324 - the htpasswd {SHA} format, by request
            return Verdict.MATCH if hmac.compare_digest(digest, entry.value) else Verdict.MISMATCH
        key = self._cache.key(credentials)
        if self._cache.hit(key):
            return Verdict.MATCH
        # Concurrent requests with the same credentials (a browser loading a page) share one check.
        check = self._checking.get(key)
        if check is None:
            check = asyncio.ensure_future(self._check_bcrypt(key, password, entry.value))
            self._checking[key] = check
            check.add_done_callback(lambda _: self._checking.pop(key, None))
        return await asyncio.shield(check)  # one waiter giving up must not cancel the others' check

    async def _check_bcrypt(self, key: bytes, password: bytes, hashed: bytes) -> Verdict:
        verdict = await self._pool.check(password, hashed)
        if verdict is Verdict.MATCH:
            self._cache.add(key)
        return verdict


def _unauthorized(message: str, challenge: list[tuple[str, str]]) -> LocalResponse:
    return LocalResponse.json(401, {"error": "unauthorized", "message": message}, challenge)
