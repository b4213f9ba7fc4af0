"""HTTP to HTTPS at the edge: the default redirect for TLS hosts, and HSTS on HTTPS answers.

Both follow ingress-nginx's defaults (``ssl-redirect``, ``hsts``) and are the gateway's own,
not a plugin's: a host listed in some Ingress's ``spec.tls`` gets them without any
annotation. The ``redirect`` plugin does the same per route for hosts whose TLS ends
elsewhere (a cloud load balancer); where both apply, the core redirect answers first, and
HSTS already on a response (the plugin's or the upstream's) is left as it is.

"Over HTTPS" means the HTTPS listener, or a trusted proxy's ``X-Forwarded-Proto: https``
(``server.trusted_proxies``), so a gateway behind a TLS-terminating balancer neither
redirects in a loop nor leaves HSTS out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_from_bytes

from gateway_core.messages import LocalResponse
from gateway_core.tls.certificate_set import CertificateSet

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACME_CHALLENGE = "/.well-known/acme-challenge/"
"""ACME HTTP-01 challenges are answered over plain HTTP (RFC 8555 §8.3): never redirected."""

_HSTS = b"strict-transport-security"
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


def hsts_value(max_age: int, *, include_subdomains: bool = False, preload: bool = False) -> str:
    """The ``Strict-Transport-Security`` value, e.g. ``max-age=31536000; includeSubDomains``."""
    value = f"max-age={max_age}"
    if include_subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return value


def is_secure(proto: bytes) -> bool:
    """Whether an ``X-Forwarded-Proto`` value (the first of a list) says the client used TLS."""
    return proto.partition(b",")[0].strip().lower() in (b"https", b"wss")


class HttpsRedirect:
    """Decides the redirect of a plain-HTTP request to a host that has TLS."""

    __slots__ = ("enabled", "status", "_port")

    def __init__(self, *, enabled: bool = True, status: int = 308, port: int = 443) -> None:
        self.enabled = enabled
        """The default when an Ingress does not say (``tls.ssl_redirect``)."""
        self.status = status
        self._port = "" if port == 443 else f":{port}"

    def answer(
        self,
        certificates: CertificateSet,
        route_setting: bool | None,
        host: str,
        path: str,
        target: bytes,
        *,
        websocket: bool = False,
    ) -> LocalResponse | None:
        """The redirect for a request not made over HTTPS, or None to serve it.

        ``route_setting`` is the route's ``meta-native.io/ssl-redirect`` (None: the default);
        ``host`` the lowercase Host without port; ``target`` the raw path and query. A
        WebSocket handshake is sent to ``wss://`` (clients that follow redirects need it).
        """
        if not (self.enabled if route_setting is None else route_setting):
            return None
        if path.startswith(ACME_CHALLENGE) or not certificates.covers(host):
            return None
        scheme = "wss" if websocket else "https"
        location = f"{scheme}://{host}{self._port}{quote_from_bytes(target, safe=_URL_SAFE)}"
        return LocalResponse.json(self.status, {"location": location}, headers=(("location", location),))


class HstsMiddleware:
    """Adds ``Strict-Transport-Security`` to every response to an HTTPS request that has none."""

    __slots__ = ("app", "_header", "_trusts")

    def __init__(self, app: ASGIApp, *, value: str, trusts: Callable[[str], bool] | None = None) -> None:
        """``trusts(peer_ip)`` says whether a peer's ``X-Forwarded-Proto`` is believed."""
        self.app = app
        self._header = (_HSTS, value.encode("latin-1"))
        self._trusts = trusts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The plain listener's requests pass at the cost of one lookup (no trusted proxies).
        if scope.get("scheme") != "https" and (self._trusts is None or not self._forwarded_https(scope)):
            await self.app(scope, receive, send)
            return
        header = self._header

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if not any(name == _HSTS for name, _ in headers):
                    message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)

    def _forwarded_https(self, scope: Scope) -> bool:
        """A plain request a trusted proxy says arrived over HTTPS (``X-Forwarded-Proto``)."""
        client = scope.get("client")
        if scope["type"] != "http" or self._trusts is None or not client or not self._trusts(client[0]):
            return False
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                return is_secure(value)
        return False
