"""Where the client's token is read from: a header (``Authorization: Bearer`` by default), a cookie, a query parameter.

A token found in two places, or twice in one place, is ambiguous and refused: the gateway
must not verify one token while the upstream reads another. When the token is not to be
forwarded, it is removed from where it was found (the rest of the query and the other
cookies are kept as sent).
"""

from __future__ import annotations

import enum
from urllib.parse import unquote

from gateway_core import Headers, UpstreamRequest

MAX_TOKEN_LENGTH = 16 * 1024
"""A longer token is refused before any parsing."""


class TokenProblem(enum.Enum):
    """Why no token could be taken from a request."""

    MISSING = "missing"
    """No token anywhere (or an ``Authorization`` header of another scheme)."""
    AMBIGUOUS = "ambiguous"
    """Tokens in several places, or several in one place (header, cookie or parameter repeated)."""
    MALFORMED = "malformed"
    """An empty token, or one too long to be read."""


class TokenSource:
    """Takes the token from a request, per the route's config."""

    __slots__ = ("_header", "_scheme", "_cookie", "_query", "_remove")

    def __init__(
        self, *, header: str | None, scheme: str | None, cookie: str | None, query_param: str | None, remove: bool
    ) -> None:
        self._header = header
        self._scheme = scheme.lower() if scheme is not None else None
        self._cookie = cookie
        self._query = query_param
        self._remove = remove

    def take(self, request: UpstreamRequest) -> str | TokenProblem:
        """The token, or why there is none; removes it from ``request`` unless it is forwarded."""
        found: list[str | TokenProblem] = []
        if self._header is not None:
            found.append(self._from_header(request.headers, self._header))
        if self._cookie is not None:
            found.append(self._from_cookie(request.headers, self._cookie))
        if self._query is not None:
            found.append(self._from_query(request, self._query))
        tokens = [item for item in found if item is not TokenProblem.MISSING]
        if not tokens:
            return TokenProblem.MISSING
        token = tokens[0]
        if len(tokens) > 1:
            return TokenProblem.AMBIGUOUS
        if isinstance(token, TokenProblem):
            return token
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return TokenProblem.MALFORMED
        return token

    def _from_header(self, headers: Headers, name: str) -> str | TokenProblem:
        values = headers.get_all(name)
        if not values:
            return TokenProblem.MISSING
        if len(values) > 1:
            return TokenProblem.AMBIGUOUS
        value = values[0].strip()
        if self._scheme is not None:
            scheme, _, value = value.partition(" ")
            if scheme.lower() != self._scheme:
                return TokenProblem.MISSING  # another scheme: not ours, and forwarded untouched
            value = value.strip()
        if self._remove:
            headers.remove(name)
        return value

    def _from_cookie(self, headers: Headers, name: str) -> str | TokenProblem:
        values = headers.get_all("cookie")
        found: list[str] = []
        kept: list[str] = []
        for value in values:
            for pair in value.split(";"):
                cookie, equals, content = pair.strip().partition("=")
                if equals and cookie == name:
                    content = content.strip()
                    if len(content) >= 2 and content[0] == content[-1] == '"':
                        content = content[1:-1]
                    found.append(content)
                elif pair.strip():
                    kept.append(pair.strip())
        if not found:
            return TokenProblem.MISSING
        if self._remove:
            headers.remove("cookie")
            if kept:
                headers.set("cookie", "; ".join(kept))
        return found[0] if len(found) == 1 else TokenProblem.AMBIGUOUS

    def _from_query(self, request: UpstreamRequest, name: str) -> str | TokenProblem:
        path, question, query = request.target.partition(b"?")
        if not question:
            return TokenProblem.MISSING
        found: list[str] = []
        kept: list[bytes] = []
        for part in query.split(b"&"):
            key, _, value = part.partition(b"=")
            if unquote(key.decode("latin-1")) == name:
                found.append(unquote(value.decode("latin-1")))
            else:
                kept.append(part)
        if not found:
            return TokenProblem.MISSING
        if self._remove:
            request.target = path + (b"?" + b"&".join(kept) if kept else b"")
        return found[0] if len(found) == 1 else TokenProblem.AMBIGUOUS
