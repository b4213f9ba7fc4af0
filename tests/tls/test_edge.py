"""The core's HTTPS redirect decision and the HSTS middleware, on their own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_core.testing import TestCertificateAuthority
from gateway_core.tls.certificate_set import CertificateRequest, CertificateSet, build_certificate_set
from gateway_core.tls.edge import HstsMiddleware, HttpsRedirect, hsts_value, is_secure


@pytest.fixture(scope="module")
def certificates() -> CertificateSet:
    issued = TestCertificateAuthority().issue("a.test", "*.b.test")
    data = {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem}
    requests = [CertificateRequest("shop/web", "shop", "cert", ("a.test", "*.b.test"))]
    return build_certificate_set(requests, lambda namespace, name: data)


def test_a_tls_host_is_redirected_with_path_and_query(certificates: CertificateSet) -> None:
    answer = HttpsRedirect().answer(certificates, None, "a.test", "/a b", b"/a%20b?x=1&y=%C3%A9")
    assert answer is not None
    assert answer.status == 308
    headers = dict(answer.headers)
    assert headers[b"location"] == b"https://a.test/a%20b?x=1&y=%C3%A9"
    assert json.loads(answer.body) == {"location": "https://a.test/a%20b?x=1&y=%C3%A9"}


def test_a_websocket_handshake_is_sent_to_wss(certificates: CertificateSet) -> None:
    answer = HttpsRedirect().answer(certificates, None, "a.test", "/chat", b"/chat", websocket=True)
    assert answer is not None
    assert dict(answer.headers)[b"location"] == b"wss://a.test/chat"


def test_the_port_and_status_come_from_the_settings(certificates: CertificateSet) -> None:
    answer = HttpsRedirect(status=301, port=8443).answer(certificates, None, "x.b.test", "/", b"/")
    assert answer is not None
    assert answer.status == 301
    assert dict(answer.headers)[b"location"] == b"https://x.b.test:8443/"


def test_unsafe_bytes_in_the_target_are_escaped(certificates: CertificateSet) -> None:
    answer = HttpsRedirect().answer(certificates, None, "a.test", "/", b'/\xff\x7f"<x>')
    assert answer is not None
    assert dict(answer.headers)[b"location"] == b"https://a.test/%FF%7F%22%3Cx%3E"


@pytest.mark.parametrize(
    ("default", "route_setting", "host", "path", "redirected"),
    [
        (True, None, "a.test", "/", True),
        (True, False, "a.test", "/", False),  # the Ingress switched it off
        (False, None, "a.test", "/", False),  # the settings switched it off
        (False, True, "a.test", "/", True),  # the Ingress switched it on
        (True, None, "c.test", "/", False),  # no certificate for this host
        (True, None, "a.test", "/.well-known/acme-challenge/token", False),
        (True, None, "evil.com/x.b.test", "/", False),
    ],
)
def test_when_the_redirect_applies(
    certificates: CertificateSet, default: bool, route_setting: bool | None, host: str, path: str, redirected: bool
) -> None:
    answer = HttpsRedirect(enabled=default).answer(certificates, route_setting, host, path, path.encode())
    assert (answer is not None) is redirected


def test_hsts_values() -> None:
    assert hsts_value(31536000) == "max-age=31536000"
    assert hsts_value(60, include_subdomains=True, preload=True) == "max-age=60; includeSubDomains; preload"
    assert is_secure(b"https")
    assert is_secure(b"HTTPS, http")
    assert is_secure(b"wss")
    assert not is_secure(b"http")
    assert not is_secure(b"http, https")


async def _answer(middleware: HstsMiddleware, scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    headers: list[tuple[bytes, bytes]] = sent[0]["headers"]
    return headers


def _app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


def _scope(scheme: str, headers: list[tuple[bytes, bytes]] | None = None, client: str = "10.0.0.1") -> dict[str, Any]:
    return {"type": "http", "scheme": scheme, "headers": headers or [], "client": (client, 1234)}


async def test_hsts_is_added_to_https_answers_only() -> None:
    shared: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    middleware = HstsMiddleware(_app(shared), value="max-age=10")
    assert (b"strict-transport-security", b"max-age=10") in await _answer(middleware, _scope("https"))
    assert shared == [(b"content-type", b"text/plain")]  # the app's list is not edited in place
    assert all(name != b"strict-transport-security" for name, _ in await _answer(middleware, _scope("http")))


async def test_hsts_already_on_a_response_is_kept() -> None:
    own = [(b"strict-transport-security", b"max-age=5; includeSubDomains")]
    headers = await _answer(HstsMiddleware(_app(own), value="max-age=10"), _scope("https"))
    assert headers == own


async def test_a_trusted_proxys_forwarded_proto_counts_as_https() -> None:
    trusted = HstsMiddleware(_app([]), value="max-age=10", trusts=lambda ip: ip == "10.0.0.1")
    forwarded = [(b"x-forwarded-proto", b"https")]
    assert await _answer(trusted, _scope("http", forwarded)) == [(b"strict-transport-security", b"max-age=10")]
    assert await _answer(trusted, _scope("http", forwarded, client="192.0.2.9")) == []  # not a trusted peer
    assert await _answer(trusted, _scope("http", [(b"x-forwarded-proto", b"http")])) == []
    untrusting = HstsMiddleware(_app([]), value="max-age=10")
    assert await _answer(untrusting, _scope("http", forwarded)) == []
