"""TLS termination through a real ``gateway run``: certificates from Secrets chosen by SNI,
rotation under traffic, refused Secrets, the HTTPS redirect and HSTS, HTTPS to upstreams.

Clients are Python's ``ssl`` (through ``http.client``, with the test CA trusted and host
names checked), ``openssl s_client`` and ``curl``; upstreams are real servers, plain or TLS.
Secrets are files in the watched manifests directory, rewritten as an operator would.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from gateway_core.manifests.tls_policy import BACKEND_PROTOCOL, BACKEND_TLS, SSL_REDIRECT
from gateway_core.testing import (
    GatewayProcess,
    IssuedCertificate,
    RecordingUpstream,
    TestCertificateAuthority,
    free_port,
    ingress,
    path,
    routed_service,
    secret,
    tls_secret,
    wait_until,
    write_manifests,
)

pytestmark = pytest.mark.e2e

DEFAULT_SUBJECT = "CN=meta-native-gateway default"


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


# --- an HTTPS client that sends any SNI to 127.0.0.1 -------------------------------------------


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port with ``server_name`` as SNI, Host and the name checked."""

    def __init__(self, server_name: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(server_name, port, context=context, timeout=10)

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]

    @property
    def tls(self) -> ssl.SSLSocket:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.tls.getpeercert(binary_form=True) or b"").hexdigest()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    fingerprint: str

    def json(self) -> Any:
        return json.loads(self.body)


def trusting(ca: TestCertificateAuthority | None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (names checked), or trusting anything when None."""
    if ca is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ca.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def request(connection: PinnedHTTPS, target: str = "/", method: str = "GET") -> Answer:
    connection.request(method, target)
    response = connection.getresponse()
    body = response.read()
    return Answer(response.status, response.headers, body, connection.fingerprint)


def https_get(port: int, server_name: str, ca: TestCertificateAuthority | None, target: str = "/") -> Answer:
    """One request on a new connection."""
    connection = PinnedHTTPS(server_name, port, trusting(ca))
    try:
        return request(connection, target)
    finally:
        connection.close()


def fingerprint_of(port: int, server_name: str) -> str:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with trusting(None).wrap_socket(raw, server_hostname=server_name) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def s_client(port: int, *options: str) -> str:
    """``openssl s_client`` output (it reads an empty stdin, so it ends after the handshake)."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options],
        input=b"",
        capture_output=True,
        timeout=20,
        check=False,
    )
    return (result.stdout + result.stderr).decode("latin-1")


# --- manifests ----------------------------------------------------------------------------------


def site(
    manifests: Path,
    upstream: RecordingUpstream,
    certificates: dict[str, IssuedCertificate | dict[str, Any]],
    *,
    hosts: tuple[str, ...] = ("a.test", "b.test"),
    annotations: dict[str, str] | None = None,
    tls: list[tuple[list[str], str | None]] | None = None,
) -> None:
    """An Ingress for ``hosts`` on ``upstream``, with a Secret per entry of ``certificates``
    (``<name>: IssuedCertificate`` or a raw Secret manifest) and ``spec.tls`` (default: host
    ``x.test`` served from Secret ``x-cert``)."""
    secrets = [
        tls_secret(name, value.cert_pem, value.key_pem) if isinstance(value, IssuedCertificate) else value
        for name, value in certificates.items()
    ]
    entries = tls if tls is not None else [([host], f"{host.split('.')[0]}-cert") for host in hosts]
    web = ingress("web", rules=[(host, [path("/", "api")]) for host in hosts], annotations=annotations, tls=entries)
    write_manifests(manifests, [*routed_service("api", upstream.port), web])
    write_manifests(manifests, secrets, filename="secrets.yaml")


def certificates_on_routes(gateway: GatewayProcess) -> dict[str, Any]:
    described: dict[str, Any] = httpx.get(f"{gateway.admin_url}/routes", timeout=5).json()["certificates"]
    return described


@pytest.fixture
def api(upstream: Callable[..., RecordingUpstream]) -> RecordingUpstream:
    return upstream("api")


# --- SNI ---------------------------------------------------------------------------------------


def test_two_hosts_get_their_own_certificates_by_sni(
    ca: TestCertificateAuthority,
    api: RecordingUpstream,
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    a, b = ca.issue("a.test"), ca.issue("b.test")
    site(manifests_dir, api, {"a-cert": a, "b-cert": b})
    gateway = gateway_process(manifests_dir)

    for host, issued in (("a.test", a), ("b.test", b)):
        connection = PinnedHTTPS(host, gateway.https_port, trusting(ca))  # the name is checked
        answer = request(connection, "/hello?x=1")
        assert answer.status == 200, answer.body
        assert answer.fingerprint == issued.fingerprint
        assert connection.tls.selected_alpn_protocol() == "http/1.1"
        assert connection.tls.version() in ("TLSv1.2", "TLSv1.3")
        assert answer.headers["strict-transport-security"] == "max-age=31536000"
        seen = answer.json()["headers"]
        assert (seen["host"], seen["x-forwarded-proto"]) == (f"{host}:{gateway.https_port}", "https")
        assert seen["x-forwarded-port"] == str(gateway.https_port)
        connection.close()

    # A name with no certificate, or no name at all: the generated default certificate.
    for output in (s_client(gateway.https_port, "-servername", "c.test"), s_client(gateway.https_port)):
        assert "subject=CN = meta-native-gateway default" in output
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(gateway.https_port, "c.test", ca)

    # openssl: the subject per name, ALPN, TLS 1.2 accepted with a forward-secret AEAD cipher.
    output = s_client(gateway.https_port, "-servername", "b.test", "-alpn", "h2,http/1.1", "-tls1_2")
    assert "subject=CN = b.test" in output
    assert "ALPN protocol: http/1.1" in output
    assert "Cipher is ECDHE-" in output
    # ... and TLS 1.1, or a TLS 1.2 cipher without forward secrecy, refused (the client allows them).
    assert "Cipher is (NONE)" in s_client(gateway.https_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "Cipher is (NONE)" in s_client(gateway.https_port, "-tls1_2", "-cipher", "AES128-SHA")

    # curl, trusting the test CA, names resolved to the gateway.
    ca_file = manifests_dir.parent / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    result = subprocess.run(
        [
            "curl", "-sS", "--cacert", str(ca_file),
            "--resolve", f"a.test:{gateway.https_port}:127.0.0.1",
            "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
            f"https://a.test:{gateway.https_port}/curl",
        ],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.stdout == "200 0", result.stderr


# --- rotation ----------------------------------------------------------------------------------


def test_a_rotated_certificate_serves_new_connections_while_open_ones_keep_going(
    ca: TestCertificateAuthority,
    api: RecordingUpstream,
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    first, second, third = ca.issue("a.test"), ca.issue("a.test"), ca.issue("a.test")
    site(manifests_dir, api, {"a-cert": first}, hosts=("a.test",))
    gateway = gateway_process(manifests_dir)
    port = gateway.https_port

    stop = threading.Event()
    failures: list[str] = []
    seen_by_new_connections: list[str] = []
    seen_per_thread: list[list[str]] = [[], []]
    kept = PinnedHTTPS("a.test", port, trusting(ca))
    assert request(kept).fingerprint == first.fingerprint
    kept_socket = kept.sock
    kept_requests = 0

    def new_connections(seen: list[str]) -> None:
        while not stop.is_set():
            try:
                answer = https_get(port, "a.test", ca)  # the name is checked each time
                if answer.status != 200:
                    failures.append(f"status {answer.status}")
                seen.append(answer.fingerprint)
                seen_by_new_connections.append(answer.fingerprint)
            except Exception as exc:
                failures.append(f"new connection: {exc!r}")

    def keep_alive() -> None:
        nonlocal kept_requests
        while not stop.is_set():
            try:
                if request(kept).status != 200:
                    failures.append("keep-alive status")
                kept_requests += 1
            except Exception as exc:
                failures.append(f"kept connection: {exc!r}")
                return

    threads = [threading.Thread(target=new_connections, args=(seen,)) for seen in seen_per_thread]
    threads.append(threading.Thread(target=keep_alive))
    for thread in threads:
        thread.start()
    try:
        for issued in (second, third):
            rotated = tls_secret("a-cert", issued.cert_pem, issued.key_pem)
            write_manifests(manifests_dir, [rotated], filename="secrets.yaml")

            def rotated_for_new_connections(expected: str = issued.fingerprint) -> bool:
                return all(seen[-1:] == [expected] for seen in seen_per_thread)

            wait_until(rotated_for_new_connections, timeout=15, message="new connections to see the new certificate")
            time.sleep(0.3)  # more traffic on the new certificate
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert failures == []
    assert {first.fingerprint, second.fingerprint, third.fingerprint} <= set(seen_by_new_connections)
    # Once a client saw a certificate, its later connections never went back to an older one.
    order = [first.fingerprint, second.fingerprint, third.fingerprint]
    for seen in seen_per_thread:
        ranks = [order.index(fingerprint) for fingerprint in seen]
        assert ranks == sorted(ranks)
    # The connection opened before the rotations is the same one, still on the first certificate.
    assert kept.sock is kept_socket
    assert kept.fingerprint == first.fingerprint
    assert kept_requests > 10
    kept.close()


# --- refused Secrets -----------------------------------------------------------------------------


def test_an_invalid_secret_is_refused_with_its_reason_and_the_previous_certificate_keeps_serving(
    ca: TestCertificateAuthority,
    api: RecordingUpstream,
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    good = ca.issue("a.test")
    site(manifests_dir, api, {"a-cert": good}, hosts=("a.test",))
    gateway = gateway_process(manifests_dir)
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue(
        "a.test", valid_from=now - datetime.timedelta(days=10), valid_until=now - datetime.timedelta(days=1)
    )
    broken_cases = [
        ({"tls.crt": good.cert_pem, "tls.key": ca.issue("a.test").key_pem}, "tls.key does not match the certificate"),
        ({"tls.crt": expired.cert_pem, "tls.key": expired.key_pem}, "the certificate expired on"),
        ({"tls.crt": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "tls.key": good.key_pem},
         "tls.crt is not a PEM certificate"),
        ({"tls.crt": ca.issue("z.test").cert_pem, "tls.key": b"x"}, "tls.key is not a PEM private key"),
    ]  # fmt: skip
    for data, reason in broken_cases:
        broken = secret("a-cert", data, secret_type="kubernetes.io/tls")
        write_manifests(manifests_dir, [broken], filename="secrets.yaml")

        def refused(reason: str = reason) -> bool:
            rejected = certificates_on_routes(gateway)["rejected"]
            return any(reason in item["reason"] for item in rejected)

        wait_until(refused, timeout=15, message=f"/routes to show {reason!r}")
        [item] = certificates_on_routes(gateway)["rejected"]
        assert (item["ingress"], item["secret"], item["hosts"]) == ("default/web", "default/a-cert", ["a.test"])
        assert item["serving_previous"] is True
        answer = https_get(gateway.https_port, "a.test", ca)
        assert (answer.status, answer.fingerprint) == (200, good.fingerprint)
        assert f"certificate refused: Ingress default/web: Secret default/a-cert for a.test: {reason}" in gateway.log()

    # A host whose very first Secret is bad has the default certificate (and no redirect).
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            ingress(
                "web",
                rules=[("a.test", [path("/", "api")]), ("n.test", [path("/", "api")])],
                tls=[(["a.test"], "a-cert"), (["n.test"], "n-cert")],
            ),
            secret("n-cert", {"tls.crt": b"nope", "tls.key": b"nope"}),
        ],
    )
    wait_until(
        lambda: any(item["secret"] == "default/n-cert" for item in certificates_on_routes(gateway)["rejected"]),
        timeout=15,
        message="the n-cert refusal",
    )
    assert https_get(gateway.https_port, "n.test", None).fingerprint != good.fingerprint
    assert DEFAULT_SUBJECT.replace("=", " = ") in s_client(gateway.https_port, "-servername", "n.test")
    plain = httpx.get(f"{gateway.url}/", headers={"host": "n.test"}, timeout=5)
    assert plain.status_code == 200  # no certificate of its own: not redirected
    assert https_get(gateway.https_port, "a.test", ca).fingerprint == good.fingerprint


# --- redirect and HSTS ---------------------------------------------------------------------------


def test_plain_http_to_a_tls_host_is_redirected_and_https_answers_carry_hsts(
    ca: TestCertificateAuthority,
    api: RecordingUpstream,
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    https_port = free_port()
    config = manifests_dir.parent / "gateway.yaml"
    config.write_text(f"tls: {{redirect_port: {https_port}, hsts_max_age: 600, hsts_include_subdomains: true}}\n")
    a = ca.issue("a.test", "opt-out.test")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            tls_secret("a-cert", a.cert_pem, a.key_pem),
            ingress("web", rules=[("a.test", [path("/", "api")]), ("plain.test", [path("/", "api")])],
                    tls=[(["a.test"], "a-cert")]),
            ingress("opt-out", rules=[("opt-out.test", [path("/", "api")])], tls=[(["opt-out.test"], "a-cert")],
                    annotations={SSL_REDIRECT: "false"}),
        ],
    )  # fmt: skip
    gateway = gateway_process(manifests_dir, https_port=https_port, config=config)
    before = len(api.requests)

    redirect = httpx.post(f"{gateway.url}/shop/cart?item=1&q=a%20b", headers={"host": "a.test"}, content=b"x=1")
    assert redirect.status_code == 308
    location = redirect.headers["location"]
    assert location == f"https://a.test:{https_port}/shop/cart?item=1&q=a%20b"
    assert redirect.json() == {"location": location}
    assert "strict-transport-security" not in redirect.headers  # never on plain HTTP
    assert len(api.requests) == before  # answered by the gateway

    # Following it: HTTPS, same path, and HSTS as configured.
    answer = https_get(https_port, "a.test", ca, "/shop/cart?item=1&q=a%20b")
    assert answer.status == 200
    assert answer.json()["path"] == "/shop/cart?item=1&q=a%20b"
    assert answer.headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    missing = https_get(https_port, "a.test", ca, "/nothing-here")  # still the upstream: 200
    assert missing.headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    no_route = https_get(https_port, "unknown.test", None)  # the gateway's own 404 gets it too
    assert no_route.status == 404
    assert no_route.headers["strict-transport-security"] == "max-age=600; includeSubDomains"

    # Not redirected: ACME challenges, hosts without TLS, an Ingress that opted out.
    for host, target, status in (
        ("a.test", "/.well-known/acme-challenge/token", 200),
        ("plain.test", "/", 200),
        ("opt-out.test", "/", 200),
        ("unknown.test", "/", 404),
    ):
        response = httpx.get(f"{gateway.url}{target}", headers={"host": host}, timeout=5)
        assert response.status_code == status, (host, response.status_code)
        assert "location" not in response.headers
    assert len(api.requests) == before + 5  # the three above, the two HTTPS requests to a.test


# --- HTTPS to upstreams ------------------------------------------------------------------------


class HttpsUpstream(RecordingUpstream):
    """A recording upstream over TLS that notes the SNI names it was asked for."""

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        super().__init__(name=name, ssl_context=context)
        self.server_names: list[str | None] = []
        context.sni_callback = lambda connection, server_name, ctx: self.server_names.append(server_name)


@pytest.fixture
def https_upstreams() -> Iterator[list[HttpsUpstream]]:
    started: list[HttpsUpstream] = []
    yield started
    for server in started:
        server.stop()


def test_upstreams_over_https_with_a_ca_secret_and_with_verification_off(
    ca: TestCertificateAuthority,
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    https_upstreams: list[HttpsUpstream],
) -> None:
    signed = HttpsUpstream("signed", ca.issue("secure.default.svc").server_context())
    stranger = TestCertificateAuthority("unknown CA").issue("whatever.invalid")
    unsigned = HttpsUpstream("unsigned", stranger.server_context())
    for server in (signed, unsigned):
        server.start()
        https_upstreams.append(server)
    https = {BACKEND_PROTOCOL: "HTTPS"}

    def route(name: str, host: str, service_name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return ingress(name, rules=[(host, [path("/", service_name)])], annotations=annotations)

    write_manifests(
        manifests_dir,
        [
            *routed_service("secure", signed.port),
            *routed_service("insecure", unsigned.port),
            secret("upstream-ca", {"ca.crt": ca.cert_pem}),
            route("verified", "verified.test", "secure", {**https, BACKEND_TLS: "ca_secret: upstream-ca"}),
            route("unverified", "unverified.test", "insecure", {**https, BACKEND_TLS: "verify: false"}),
            route("mismatch", "mismatch.test", "insecure", {**https, BACKEND_TLS: "ca_secret: upstream-ca"}),
            route("plain-to-tls", "plain.test", "secure", {}),
        ],
    )
    gateway = gateway_process(manifests_dir)

    verified = httpx.get(f"{gateway.url}/v?x=1", headers={"host": "verified.test"}, timeout=10)
    assert verified.status_code == 200, verified.text
    assert verified.json()["upstream"] == "signed"
    assert verified.json()["path"] == "/v?x=1"
    assert signed.server_names[-1] == "secure.default.svc"  # SNI: the Service's in-cluster name

    unverified = httpx.get(f"{gateway.url}/u", headers={"host": "unverified.test"}, timeout=10)
    assert unverified.status_code == 200, unverified.text
    assert unverified.json()["upstream"] == "unsigned"

    # An upstream the CA did not sign is never sent the request: 502, and the log says why.
    count = len(unsigned.requests)
    mismatch = httpx.get(f"{gateway.url}/m", headers={"host": "mismatch.test"}, timeout=10)
    assert mismatch.status_code == 502
    assert mismatch.json()["error"] == "upstream_connect_failed"
    assert len(unsigned.requests) == count
    wait_until(lambda: "certificate verify failed" in gateway.log(), timeout=5, message="the verify failure logged")
    assert "Traceback" not in gateway.log()

    # Several requests reuse pooled TLS connections and all succeed.
    with httpx.Client(base_url=gateway.url, headers={"host": "verified.test"}, timeout=10) as client:
        statuses = [client.get(f"/n{index}").status_code for index in range(20)]
    assert statuses == [200] * 20


# --- several workers, start-up errors --------------------------------------------------------------


def test_workers_present_one_generated_default_certificate(
    api: RecordingUpstream, manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    write_manifests(manifests_dir, [*routed_service("api", api.port), ingress("web", default_backend="api")])
    gateway = gateway_process(manifests_dir, workers=2)
    fingerprints = {fingerprint_of(gateway.https_port, "any.test") for _ in range(16)}
    assert len(fingerprints) == 1
    answer = https_get(gateway.https_port, "any.test", None)
    assert answer.status == 200
    assert gateway.log().count("generated self-signed one") == 1


def test_a_bad_default_certificate_stops_start_up_with_a_clear_error(tmp_path: Path, manifests_dir: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    config = tmp_path / "gateway.yaml"
    for text, message in (
        (f"tls: {{default_cert_file: {tmp_path}/cert.pem, default_key_file: {tmp_path}/key.pem}}",
         f"tls: the default certificate {tmp_path}/cert.pem cannot be served: tls.crt is not a PEM certificate"),
        (f"tls: {{default_cert_file: {tmp_path}/missing.pem, default_key_file: {tmp_path}/key.pem}}",
         f"tls: cannot read the default certificate: {tmp_path}/missing.pem: No such file or directory"),
        (f"tls: {{default_cert_file: {tmp_path}/cert.pem}}", "default_cert_file and default_key_file go together"),
        ("tls: {ciphers: NOTHING-REAL}", "no cipher OpenSSL knows matches 'NOTHING-REAL'"),
    ):  # fmt: skip
        config.write_text(text)
        process = GatewayProcess(manifests_dir, config=config).start(wait_ready=False)
        assert process.process is not None
        code = process.process.wait(30)
        assert code == 2, process.log()
        assert f"error: {message}" in process.log() or message in process.log()
        assert "Traceback" not in process.log()


# --- WebSocket on the HTTPS listener ---------------------------------------------------------------


async def test_websockets_run_over_the_https_listener_and_plain_handshakes_are_sent_to_wss(
    ca: TestCertificateAuthority, manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        issued = ca.issue("ws.test")
        write_manifests(
            manifests_dir,
            [
                *routed_service("ws", port),
                tls_secret("ws-cert", issued.cert_pem, issued.key_pem),
                ingress("ws", rules=[("ws.test", [path("/", "ws")])], tls=[(["ws.test"], "ws-cert")]),
            ],
        )
        gateway = await asyncio.to_thread(gateway_process, manifests_dir)
        secure = f"wss://ws.test:{gateway.https_port}/chat"
        async with connect(secure, host="127.0.0.1", port=gateway.https_port, ssl=ca.client_context()) as socket_:
            assert socket_.transport.get_extra_info("ssl_object").getpeercert()["subject"] == (
                (("commonName", "ws.test"),),
            )
            await socket_.send("over TLS")
            assert await socket_.recv() == "over TLS"
        # A plain handshake for a TLS host is redirected, to wss:// (the redirect's port is 443 here).
        handshake = {
            "host": "ws.test",
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{gateway.url}/chat", headers=handshake)
        assert refused.status_code == 308
        assert refused.headers["location"] == "wss://ws.test/chat"
