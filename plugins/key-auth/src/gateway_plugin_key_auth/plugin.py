"""The ``key-auth`` plugin object: one per route, holding that route's keys."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import unquote_plus

from gateway_core import Binding, LocalResponse, PluginConfigError, RequestContext, set_identity
from gateway_plugin_key_auth.config import KeyAuthConfig

_MISSING = LocalResponse.error(401, "unauthorized", "an API key is required")
_INVALID = LocalResponse.error(401, "unauthorized", "the API key is not valid")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def load_keys(data: Mapping[str, bytes], secret: str) -> dict[bytes, str]:
    """SHA-256 of each key -> consumer name, from a Secret's data; PluginConfigError if unusable."""
    keys: dict[bytes, str] = {}
    for consumer, value in data.items():
        for line in value.decode("utf-8", "replace").splitlines():
            key = line.strip()
            if not key:
                continue
            digest = _digest(key)
            owner = keys.setdefault(digest, consumer)
            if owner != consumer:
                raise PluginConfigError(f"Secret {secret!r}: one key is given to both {owner!r} and {consumer!r}")
    if not keys:
        raise PluginConfigError(f"Secret {secret!r} holds no API keys")
    return keys


class KeyAuth:
    """Checks the key, removes it from the request, sets the identity header."""

    def __init__(self, config: KeyAuthConfig, keys: dict[bytes, str]) -> None:
        self.config = config
        self._keys = keys
        self._query = config.query_param.encode() if config.query_param else None

    @classmethod
    def from_binding(cls, config: KeyAuthConfig, binding: Binding) -> KeyAuth:
        data = binding.secrets(config.secret)
        if data is None:
            raise PluginConfigError(f"Secret {config.secret!r} not found in namespace {binding.route.namespace!r}")
        return cls(config, load_keys(data, config.secret))

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        key = self._take_key(ctx)
        if key is None:
            return _MISSING
        # Looked up by SHA-256 digest: the lookup's timing tells nothing about stored keys.
        consumer = self._keys.get(_digest(key))
        if consumer is None:
            return _INVALID
        if not set_identity(ctx, consumer, self.config.identity_header):
            return _INVALID
        return None

    def _take_key(self, ctx: RequestContext) -> str | None:
        """The client's key, removed from the upstream request (header and query both)."""
        key: str | None = None
        headers = ctx.request.headers
        if self.config.header is not None:
            values = headers.get_all(self.config.header)
            if values:
                headers.remove(self.config.header)
                key = values[0].strip() if len(values) == 1 else None
                if key is None:
                    return None  # several keys: ambiguous, refuse
        if self._query is not None:
            found = self._strip_query(ctx)
            if key is None:
                key = found
        return key or None

    def _strip_query(self, ctx: RequestContext) -> str | None:
        request = ctx.request
        path, question, query = request.target.partition(b"?")
        if not question:
            return None
        found: str | None = None
        kept: list[bytes] = []
        assert self._query is not None
        for part in query.split(b"&"):
            name, _, value = part.partition(b"=")
            if unquote_plus(name.decode("latin-1")) == self._query.decode():
                if found is None:
                    found = unquote_plus(value.decode("latin-1"))
                continue
            kept.append(part)
        request.target = path + (b"?" + b"&".join(kept) if kept else b"")
        return found
