"""The answers jwt-auth gives instead of forwarding: 401 challenges (RFC 6750 §3) and 503.

Every answer is built once per plugin object from fixed text: nothing from the token is
ever echoed into a header or body.
"""

from __future__ import annotations

import enum
import math

from gateway_core import LocalResponse


class Failure(enum.Enum):
    """Why a request is refused; the value is the ``error_description`` sent with it."""

    MISSING = "a bearer token is required"
    AMBIGUOUS = "more than one token was sent"
    MALFORMED = "the token cannot be read"
    INVALID = "the token's signature, algorithm or key is not accepted"
    EXPIRED = "the token has expired"
    NOT_YET_VALID = "the token is not valid yet"
    AUDIENCE = "the token is not meant for this audience"
    ISSUER = "the token's issuer is not accepted"
    CLAIMS = "the token lacks a required claim or has an invalid one"
    IDENTITY = "the token has no usable identity claim"
    UNFORWARDABLE = "a claim of the token cannot be forwarded in a header"


class Challenges:
    """The prebuilt responses of one plugin object."""

    __slots__ = ("_responses", "unavailable")

    def __init__(self, realm: str, *, retry_after: float) -> None:
        self._responses = {failure: _challenge(realm, failure) for failure in Failure}
        self.unavailable = LocalResponse.json(
            503,
            {"error": "jwks_unavailable", "message": "the keys to verify tokens could not be fetched; retry later"},
            headers=[("Retry-After", str(max(1, math.ceil(retry_after))))],
        )

    def __getitem__(self, failure: Failure) -> LocalResponse:
        return self._responses[failure]


def _challenge(realm: str, failure: Failure) -> LocalResponse:
    """401 with ``WWW-Authenticate``: a bare challenge when no token came, ``error=...`` otherwise."""
    if failure is Failure.MISSING:
        header = f'Bearer realm="{realm}"'
    else:
        error = "invalid_request" if failure is Failure.AMBIGUOUS else "invalid_token"
        header = f'Bearer realm="{realm}", error="{error}", error_description="{failure.value}"'
    return LocalResponse.json(
        401, {"error": "unauthorized", "message": failure.value}, headers=[("WWW-Authenticate", header)]
    )
