"""HTTPS to upstreams through both transports, against real HTTPS servers: a CA that signs
the upstream's certificate, checks switched off, and the failures that must be 502s."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway_core.errors import UpstreamConnectError, UpstreamError
from gateway_core.messages import Endpoint, Headers, Timeouts, UpstreamRequest, UpstreamTLS
from gateway_core.testing import RecordingUpstream, TestCertificateAuthority
from gateway_core.transport.base import Transport
from gateway_core.transport.httpx_transport import HttpxTransport
from gateway_core.transport.pool import ConnectionPool

SERVER_NAME = "api.shop.svc"


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


class HttpsUpstream(RecordingUpstream):
    """A recording upstream over TLS that also notes the SNI names it was asked for."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(name="tls-upstream", ssl_context=context)
        self.server_names: list[str | None] = []
        context.sni_callback = lambda connection, name, ctx: self.server_names.append(name)


@pytest.fixture(scope="module")
def https_upstream(ca: TestCertificateAuthority) -> Iterator[HttpsUpstream]:
    server = HttpsUpstream(ca.issue(SERVER_NAME).server_context())
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["pool", "httpx"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    chosen: Transport = ConnectionPool() if request.param == "pool" else HttpxTransport()
    yield chosen
    await chosen.aclose()


async def get(transport: Transport, endpoint: Endpoint, path: str = "/hello") -> dict[str, object]:
    request = UpstreamRequest("GET", path.encode(), Headers([(b"host", b"a.test")]))
    response = await transport.send(request, endpoint, Timeouts(connect=5, read=5, write=5))
    body = b""
    while chunk := await response.body.read():
        body += chunk
    assert response.status == 200
    payload: dict[str, object] = json.loads(body)
    return payload


def tls_endpoint(port: int, **options: object) -> Endpoint:
    return Endpoint("127.0.0.1", port, UpstreamTLS(**{"server_name": SERVER_NAME, **options}))  # type: ignore[arg-type]


async def test_a_ca_signed_upstream_is_verified_and_gets_the_server_name(
    transport: Transport, https_upstream: HttpsUpstream, ca: TestCertificateAuthority
) -> None:
    before = len(https_upstream.requests)
    payload = await get(transport, tls_endpoint(https_upstream.port, ca_pem=ca.cert_pem))
    assert payload["path"] == "/hello"
    assert len(https_upstream.requests) == before + 1
    assert https_upstream.server_names[-1] == SERVER_NAME


async def test_verification_off_accepts_a_certificate_no_one_signed(transport: Transport) -> None:
    stranger = TestCertificateAuthority("someone else").issue("whatever.invalid")
    with HttpsUpstream(stranger.server_context()) as upstream:
        payload = await get(transport, tls_endpoint(upstream.port, verify=False))
    assert payload["upstream"] == "tls-upstream"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"ca_pem": None}, "certificate verify failed"),  # the system's trust store does not know the test CA
        ({"ca_pem": "other"}, "certificate verify failed"),
        ({"server_name": "other.shop.svc"}, "certificate verify failed"),  # wrong name
    ],
)
async def test_an_upstream_that_fails_the_check_is_a_connect_error(
    transport: Transport,
    https_upstream: HttpsUpstream,
    ca: TestCertificateAuthority,
    options: dict[str, object],
    reason: str,
) -> None:
    settings: dict[str, object] = {"ca_pem": ca.cert_pem, **options}
    if settings["ca_pem"] == "other":
        settings["ca_pem"] = TestCertificateAuthority("other").cert_pem
    with pytest.raises(UpstreamConnectError, match=reason):
        await get(transport, tls_endpoint(https_upstream.port, **settings))


async def test_tls_and_plain_connections_to_one_address_do_not_mix(
    https_upstream: HttpsUpstream, ca: TestCertificateAuthority
) -> None:
    pool = ConnectionPool()
    try:
        secure = tls_endpoint(https_upstream.port, ca_pem=ca.cert_pem)
        await get(pool, secure)
        plain = Endpoint("127.0.0.1", https_upstream.port)
        with pytest.raises(UpstreamError):  # plain HTTP to a TLS port
            await get(pool, plain)
        assert pool.stats()[secure].idle == 1  # the TLS connection was not handed to the plain request
        await get(pool, secure)
        assert pool.stats()[secure].idle == 1  # and was reused
    finally:
        await pool.aclose()
