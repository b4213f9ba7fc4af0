"""The HTTPS listener's context over real sockets: SNI picks the certificate; a new set
changes new connections only; a failing lookup still completes the handshake."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway_core.testing import IssuedCertificate, TestCertificateAuthority
from gateway_core.tls.certificate_set import CertificateRequest, CertificateSet, build_certificate_set
from gateway_core.tls.contexts import ServerTlsOptions
from gateway_core.tls.listener import ListenerTls, generated_default_certificate


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


def certificate_set(**hosts: IssuedCertificate) -> CertificateSet:
    data = {name: {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem} for name, issued in hosts.items()}
    requests = [CertificateRequest("shop/web", "shop", name, (name.replace("_", "."),)) for name in hosts]
    return build_certificate_set(requests, lambda namespace, name: data.get(name))


class Listener:
    """An echo server behind the listener context; ``current`` is the table's certificate set."""

    def __init__(self, certificates: Callable[[], CertificateSet]) -> None:
        self.tls = ListenerTls(generated_default_certificate(ServerTlsOptions()), certificates, ServerTlsOptions())
        self.port = 0

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()


Serve = Callable[[Callable[[], CertificateSet]], Awaitable[Listener]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(certificates)``: a listening echo server; closed after the test."""
    servers: list[asyncio.Server] = []

    async def start(certificates: Callable[[], CertificateSet]) -> Listener:
        listener = Listener(certificates)
        server = await asyncio.start_server(listener.echo, "127.0.0.1", 0, ssl=listener.tls.context)
        servers.append(server)
        listener.port = server.sockets[0].getsockname()[1]
        return listener

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def connect(port: int, server_name: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_alpn_protocols(["h2", "http/1.1"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname=server_name or "", ssl_handshake_timeout=10
    )
    tls_object = writer.get_extra_info("ssl_object")
    assert tls_object.selected_alpn_protocol() == "http/1.1"  # h2 is never chosen
    assert tls_object.version() in ("TLSv1.2", "TLSv1.3")
    der = tls_object.getpeercert(binary_form=True)
    return reader, writer, hashlib.sha256(der).hexdigest()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    writer.write(text + b"\n")
    await writer.drain()
    return (await reader.readline()).strip()


async def test_sni_chooses_the_certificate_and_the_default_answers_the_rest(
    ca: TestCertificateAuthority, serve: Serve
) -> None:
    a, b = ca.issue("a.test"), ca.issue("b.test")
    certificates = certificate_set(a_test=a, b_test=b)
    listener = await serve(lambda: certificates)
    default = listener.tls.default.pair.fingerprint
    for server_name, expected in (("a.test", a.fingerprint), ("B.TEST", b.fingerprint), ("c.test", default)):
        reader, writer, seen = await connect(listener.port, server_name)
        assert seen == expected, server_name
        assert await roundtrip(reader, writer, b"ping") == b"ping"
        writer.close()
    _, writer, seen = await connect(listener.port, None)  # no SNI at all (an IP address)
    assert seen == default
    writer.close()


async def test_a_new_set_changes_new_connections_and_open_ones_keep_theirs(
    ca: TestCertificateAuthority, serve: Serve
) -> None:
    old, new = ca.issue("a.test"), ca.issue("a.test")
    current = [certificate_set(a_test=old)]
    listener = await serve(lambda: current[0])
    reader, writer, seen = await connect(listener.port, "a.test")
    assert seen == old.fingerprint
    current[0] = certificate_set(a_test=new)  # what a table swap does
    _, fresh, fresh_seen = await connect(listener.port, "a.test")
    assert fresh_seen == new.fingerprint
    fresh.close()
    assert await roundtrip(reader, writer, b"still here") == b"still here"
    assert hashlib.sha256(writer.get_extra_info("ssl_object").getpeercert(True)).hexdigest() == old.fingerprint
    writer.close()


async def test_a_failing_lookup_is_logged_and_the_default_certificate_answers(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> CertificateSet:
        raise RuntimeError("boom")

    listener = await serve(broken)
    with caplog.at_level(logging.ERROR, logger="gateway_core.tls"):
        reader, writer, seen = await connect(listener.port, "a.test")
    assert seen == listener.tls.default.pair.fingerprint
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    writer.close()
    assert "choosing the certificate for 'a.test' failed" in caplog.text
