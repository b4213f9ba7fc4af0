"""What a 2xx auth answer grants: headers for the upstream request, and an identity.

Everything taken from the auth service's headers is checked here, before any of it touches
the request: a bad answer changes nothing and is refused whole.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gateway_core import GatewayError, Headers, RequestContext, set_identity
from gateway_core.messages import RawHeaders


class AuthAnswerError(GatewayError):
    """The auth service said yes in a way that cannot be used (bad or missing headers)."""

    status = 503
    code = "auth_service_error"


@dataclass(frozen=True, slots=True)
class Grant:
    """The upstream headers (lowercase names, values checked) and identity of one 2xx answer."""

    headers: tuple[tuple[bytes, bytes], ...]
    identity: str | None

    def apply(self, ctx: RequestContext, owned: Collection[bytes], identity_header: str) -> bool:
        """Put the grant on the upstream request; False if the identity cannot be set."""
        raw = ctx.request.headers.raw
        raw[:] = [item for item in raw if item[0] not in owned]
        raw.extend(self.headers)
        if self.identity is not None:
            return set_identity(ctx, self.identity, identity_header)
        return True


def grant_from(answer: RawHeaders, *, copied: Collection[bytes], identity_from: bytes | None) -> Grant:
    """The grant in a 2xx answer's headers; :class:`AuthAnswerError` if a value is unusable.

    A value with CR, LF or NUL is refused (``Headers`` raises ValueError), never forwarded.
    With ``identity_from``, the answer must carry exactly one non-empty value of it.
    """
    check = Headers()
    pairs: list[tuple[bytes, bytes]] = []
    for name, value in answer:
        if name in copied:
            try:
                check.add(name.decode("latin-1"), value.decode("latin-1"))
            except ValueError:
                raise AuthAnswerError(f"its {name.decode('latin-1')} header has CR, LF or NUL") from None
            pairs.append((name, value))
    identity: str | None = None
    if identity_from is not None:
        label = identity_from.decode("latin-1")
        values = [value for name, value in answer if name == identity_from]
        if len(values) != 1:
            raise AuthAnswerError(f"it has {len(values)} {label} headers; the identity needs exactly one")
        identity = values[0].decode("latin-1").strip()
        if not identity:
            raise AuthAnswerError(f"its {label} header is empty")
        try:
            check.set(label, identity)
        except ValueError:
            raise AuthAnswerError(f"its {label} header has CR, LF or NUL") from None
    return Grant(headers=tuple(pairs), identity=identity)
