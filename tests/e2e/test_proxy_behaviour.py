"""The proxy's HTTP behaviour through a real ``gateway run`` process, real clients, real upstreams.

Most tests share one gateway (module scope) routing a handful of hosts to upstreams that
behave well (``RecordingUpstream``) or badly on purpose (``ScriptedUpstream``: raw sockets in
a thread, answering whatever the test scripts). Tests that need their own settings, their
own manifests or to stop the process start their own gateway.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    routed_service,
    wait_until,
    write_manifests,
)

pytestmark = pytest.mark.e2e


# --- raw HTTP on sockets ------------------------------------------------------------------------


@dataclass
class RawResponse:
    """A response as read off a socket."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool
    """False when the connection ended before the framing said the body was over."""
    head: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(rfile: io.BufferedReader, *, method: str = "GET") -> RawResponse:
    """Read one response (skipping 1xx) from a buffered socket file; ``complete`` says if it was whole."""
    while True:
        head = b""
        while True:
            line = rfile.readline()
            if not line:
                raise ConnectionError(f"connection closed before a response head: {head!r}")
            head += line
            if line in (b"\r\n", b"\n"):
                break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for item in lines[1:]:
            if item:
                name, _, value = item.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        if status >= 200:
            break
    response = RawResponse(status, headers, b"", True, head)
    if method == "HEAD" or status in (204, 304):
        return response
    coding = response.header("transfer-encoding")
    length = response.header("content-length")
    if coding is not None and coding.lower() == "chunked":
        parts = []
        while True:
            size_line = rfile.readline()
            if not size_line.endswith(b"\n"):
                response.complete = False
                break
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (trailer := rfile.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                response.complete = trailer != b""
                break
            data = rfile.read(size + 2)
            parts.append(data[:size])
            if len(data) < size + 2:
                response.complete = False
                break
        response.body = b"".join(parts)
    elif length is not None:
        response.body = rfile.read(int(length))
        response.complete = len(response.body) == int(length)
    else:
        response.body = rfile.read()
    return response


class RawClient:
    """One client connection to the gateway that sends exactly the bytes the test wrote."""

    def __init__(self, port: int, *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, *, method: str = "GET") -> RawResponse:
        return read_response(self.rfile, method=method)

    def request(self, data: bytes, *, method: str = "GET") -> RawResponse:
        self.send(data)
        return self.response(method=method)

    def at_eof(self) -> bool:
        """True when the gateway closed the connection (reads nothing more)."""
        try:
            return self.rfile.read(1) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- an upstream that misbehaves on purpose ------------------------------------------------------


Answer = Callable[[socket.socket, bytes], bool | None]
"""Writes the response to one request (its head given); returning False closes the connection."""


def read_request_bytes(rfile: io.BufferedReader) -> bytes | None:
    """One whole request (head and body, framing included); None at EOF or if it ended half-way."""
    head = b""
    while True:
        line = rfile.readline()
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size_line = rfile.readline()
            if not size_line.endswith(b"\n"):
                return None
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (trailer := rfile.readline()) not in (b"\r\n", b"\n"):
                    if not trailer:
                        return None
                    body += trailer
                return head + body + b"\r\n"
            data = rfile.read(size + 2)
            if len(data) < size + 2:
                return None
            body += data
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            data = rfile.read(length)
            return head + data if len(data) == length else None
    return head


@dataclass
class ScriptedUpstream:
    """A raw HTTP/1.1 server in threads: each request's bytes are recorded, ``answer`` writes the reply."""

    answer: Answer
    received: list[bytes] = field(default_factory=list)
    """Every request, as bytes off the wire."""
    connections: int = 0
    port: int = 0
    _listener: socket.socket | None = None
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ScriptedUpstream:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="scripted-upstream").start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while (data := read_request_bytes(rfile)) is not None:
                with self._lock:
                    self.received.append(data)
                if self.answer(conn, data) is False:
                    break
        except (OSError, ValueError):
            pass
        finally:
            rfile.close()
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()


def answer_ok(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    return True


def answer_with_hop_by_hop_headers(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: keep-alive, X-Hop-Secret\r\n"
        b"X-Hop-Secret: must-not-pass\r\n"
        b"Keep-Alive: timeout=5, max=100\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: h2c\r\n"
        b"X-End-To-End: kept\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"
    )
    return True


# --- the shared gateway -----------------------------------------------------------------------


@dataclass
class Env:
    gateway: GatewayProcess
    echo: RecordingUpstream
    public: RecordingUpstream
    admin: RecordingUpstream
    hop: ScriptedUpstream
    stream: ScriptedUpstream
    hang: ScriptedUpstream
    cut: ScriptedUpstream
    framing: ScriptedUpstream
    down_port: int
    stream_finished: list[float]

    @property
    def port(self) -> int:
        return self.gateway.port

    def get(self, host: str, target: str = "/", **kwargs: Any) -> httpx.Response:
        return httpx.get(
            self.gateway.url + target, headers={"host": host, **kwargs.pop("headers", {})}, timeout=5, **kwargs
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    stream_finished: list[float] = []

    def answer_streaming(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"first;", b"second;", b"third"):
            conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            if part != b"third":
                time.sleep(0.4)
        stream_finished.append(time.monotonic())  # before the last chunk, so the client cannot see the end first
        conn.sendall(b"0\r\n\r\n")
        return True

    def answer_never(conn: socket.socket, request: bytes) -> bool:
        time.sleep(3)
        return False

    def answer_cut(conn: socket.socket, request: bytes) -> bool:
        if b"/chunked" in request.split(b"\r\n", 1)[0]:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * 100 + b"\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.1)
        return False  # hang up half-way through the body

    echo = RecordingUpstream(name="echo").start()
    public = RecordingUpstream(name="public").start()
    admin = RecordingUpstream(name="admin").start()
    hop = ScriptedUpstream(answer_with_hop_by_hop_headers).start()
    stream = ScriptedUpstream(answer_streaming).start()
    hang = ScriptedUpstream(answer_never).start()
    cut = ScriptedUpstream(answer_cut).start()
    framing = ScriptedUpstream(answer_ok).start()
    down_port = free_port()
    objects: list[dict[str, Any]] = [
        *routed_service("echo", echo.port),
        *routed_service("public", public.port),
        *routed_service("admin", admin.port),
        *routed_service("hop", hop.port),
        *routed_service("stream", stream.port),
        *routed_service("hang", hang.port),
        *routed_service("cut", cut.port),
        *routed_service("framing", framing.port),
        *routed_service("down", down_port),
        ingress("echo", rules=[("echo.test", [path("/", "echo")])]),
        ingress("paths", rules=[("paths.test", [path("/public", "public"), path("/admin", "admin")])]),
        ingress("hop", rules=[("hop.test", [path("/", "hop")])]),
        ingress("stream", rules=[("stream.test", [path("/", "stream")])]),
        ingress("hang", rules=[("hang.test", [path("/", "hang")])]),
        ingress("cut", rules=[("cut.test", [path("/", "cut")])]),
        ingress("framing", rules=[("framing.test", [path("/", "framing")])]),
        ingress("down", rules=[("down.test", [path("/", "down")])]),
        ingress(
            "broken",
            rules=[("broken.test", [path("/", "echo")])],
            annotations={"meta-native.io/plugins": "no-such-plugin"},
        ),
    ]
    base = tmp_path_factory.mktemp("shared-gateway")
    manifests = base / "manifests"
    write_manifests(manifests, objects)
    config = base / "gateway.yaml"
    config.write_text("gateway:\n  proxy_timeout: 1\n")
    gateway = GatewayProcess(manifests, config=config).start()
    try:
        yield Env(gateway, echo, public, admin, hop, stream, hang, cut, framing, down_port, stream_finished)
    finally:
        gateway.stop()
        for server in (echo, public, admin):
            server.stop()
        for scripted in (hop, stream, hang, cut, framing):
            scripted.stop()


def assert_clean_log(gateway: GatewayProcess) -> None:
    log = gateway.log()
    assert "Traceback" not in log, log


# --- headers ------------------------------------------------------------------------------------


def test_hop_by_hop_request_headers_are_stripped(env: Env) -> None:
    response = env.get(
        "echo.test",
        "/hop",
        headers={
            "Connection": "keep-alive, X-Hop-Secret",
            "X-Hop-Secret": "must-not-pass",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Upgrade": "h2c",
            "X-End-To-End": "kept",
        },
    )
    assert response.status_code == 200, response.text
    received = env.echo.requests[-1]
    names = [name for name, _ in received.header_list]
    for hop in (
        "connection",
        "x-hop-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ):
        assert hop not in names, f"{hop} reached the upstream: {received.header_list}"
    assert received.headers["x-end-to-end"] == "kept"


def test_hop_by_hop_response_headers_are_stripped(env: Env) -> None:
    with RawClient(env.port) as client:
        response = client.request(b"GET / HTTP/1.1\r\nHost: hop.test\r\n\r\n")
    assert response.status == 200
    assert response.complete
    assert response.body == b"hello"
    names = [name for name, _ in response.headers]
    for hop in ("x-hop-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
        assert hop not in names, f"{hop} reached the client: {response.head!r}"
    assert response.header_all("connection") in ([], ["keep-alive"]), "only the gateway's own Connection header"
    # The body is re-framed by the gateway for this client connection: at most one framing header.
    assert len(response.header_all("transfer-encoding")) + len(response.header_all("content-length")) == 1
    assert response.header("x-end-to-end") == "kept"


def test_forwarding_headers_are_set_from_what_the_gateway_saw(env: Env) -> None:
    response = env.get("echo.test", "/fwd")
    assert response.status_code == 200
    headers = env.echo.requests[-1].headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "echo.test"
    assert headers["x-forwarded-port"] == str(env.port)
    assert headers["x-real-ip"] == "127.0.0.1"


def test_client_forwarding_headers_are_not_trusted_from_an_untrusted_peer(env: Env) -> None:
    response = env.get(
        "echo.test",
        "/spoof",
        headers={
            "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
            "X-Real-IP": "203.0.113.9",
            "Forwarded": "for=203.0.113.9;proto=https",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Port": "443",
        },
    )
    assert response.status_code == 200
    received = env.echo.requests[-1]
    values = dict(received.header_list)
    counts = {name: [n for n, _ in received.header_list].count(name) for name in values}
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert values["x-real-ip"] == "127.0.0.1"
    assert values["x-forwarded-proto"] == "http"
    assert values["x-forwarded-host"] == "echo.test"
    assert values["x-forwarded-port"] == str(env.port)
    assert "forwarded" not in values
    for name in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"):
        assert counts[name] == 1, f"{name} appears {counts[name]} times: {received.header_list}"
    assert "203.0.113.9" not in json.dumps(received.header_list)


def test_trusted_proxy_chain_is_kept_and_extended(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir, [*routed_service("api", api.port), ingress("api", rules=[("api.test", [path("/", "api")])])]
    )
    config = tmp_path / "trusted.yaml"
    config.write_text('server:\n  trusted_proxies: ["127.0.0.0/8"]\n')
    gw = gateway_process(manifests_dir, config=config)

    response = httpx.get(
        gw.url + "/a",
        headers={
            "host": "api.test",
            "x-forwarded-for": "203.0.113.7, 127.0.0.5",
            "x-forwarded-proto": "https",
            "x-real-ip": "6.6.6.6",
            "forwarded": "for=203.0.113.7",
        },
    )
    assert response.status_code == 200
    headers = api.requests[-1].headers
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.5, 127.0.0.1"
    assert headers["x-real-ip"] == "203.0.113.7", "right-most address that is not a trusted proxy"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["forwarded"] == "for=203.0.113.7"

    response = httpx.get(gw.url + "/b", headers={"host": "api.test", "x-forwarded-for": "198.51.100.1, 10.1.2.3"})
    assert response.status_code == 200
    headers = api.requests[-1].headers
    assert headers["x-forwarded-for"] == "198.51.100.1, 10.1.2.3, 127.0.0.1"
    assert headers["x-real-ip"] == "10.1.2.3"

    response = httpx.get(gw.url + "/c", headers={"host": "api.test"})
    headers = api.requests[-1].headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert [name for name, _ in api.requests[-1].header_list].count("x-real-ip") == 1


def test_host_header_is_preserved(env: Env) -> None:
    with RawClient(env.port) as client:
        response = client.request(b"GET /h HTTP/1.1\r\nHost: Echo.Test:8443\r\n\r\n")
    assert response.status == 200
    received = env.echo.requests[-1]
    assert [value for name, value in received.header_list if name == "host"] == ["Echo.Test:8443"]
    assert received.headers["x-forwarded-host"] == "Echo.Test:8443"


# --- bodies -------------------------------------------------------------------------------------


def test_content_length_upload_arrives_intact(env: Env) -> None:
    payload = bytes(range(256)) * 12 * 1024  # 3 MiB
    response = httpx.post(env.gateway.url + "/upload", content=payload, headers={"host": "echo.test"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["body_length"] == len(payload)
    received = env.echo.requests[-1]
    assert received.body == payload
    assert received.headers["content-length"] == str(len(payload))
    assert "transfer-encoding" not in received.headers


def test_chunked_upload_arrives_intact(env: Env) -> None:
    parts = [bytes([index]) * 100_000 for index in range(30)]  # 3 MB in uneven chunks

    def generate() -> Iterator[bytes]:
        yield from parts

    response = httpx.post(env.gateway.url + "/upload", content=generate(), headers={"host": "echo.test"}, timeout=10)
    assert response.status_code == 200
    received = env.echo.requests[-1]
    assert received.body == b"".join(parts)
    assert [v for n, v in received.header_list if n == "transfer-encoding"] == ["chunked"]
    assert "content-length" not in received.headers


def test_expect_100_continue_upload(env: Env) -> None:
    with RawClient(env.port) as client:
        client.send(b"PUT /expect HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        interim = client.rfile.readline()
        assert interim.startswith(b"HTTP/1.1 100"), interim
        assert client.rfile.readline() == b"\r\n"
        client.send(b"hello world")
        response = client.response()
    assert response.status == 200
    received = env.echo.requests[-1]
    assert received.method == "PUT"
    assert received.body == b"hello world"
    assert "expect" not in received.headers


def test_response_body_streams(env: Env) -> None:
    with httpx.stream("GET", env.gateway.url + "/s", headers={"host": "stream.test"}, timeout=5) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic()
        rest = b"".join(chunks)
    assert first.startswith(b"first;")
    assert first + rest == b"first;second;third"
    assert env.stream_finished, "the upstream finished its response"
    assert first_at < env.stream_finished[-1] - 0.5, "the first chunk waited for the whole upstream response"


# --- framing the gateway must refuse --------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: framing.test\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: framing.test\r\nContent-Length: -5\r\n\r\nhello",
        b"POST /x HTTP/1.0\r\nHost: framing.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: framing.test\r\nHost: echo.test\r\n\r\n",
    ],
    ids=[
        "length-and-chunked",
        "chunked-and-length-smuggling",
        "two-lengths",
        "invalid-chunk-size",
        "gzip",
        "gzip-chunked",
        "chunked-identity",
        "negative-length",
        "chunked-in-http-1.0",
        "two-hosts",
    ],
)
def test_ambiguous_requests_are_rejected_and_never_forwarded(env: Env, request_bytes: bytes) -> None:
    connections, received = env.framing.connections, len(env.framing.received)
    with RawClient(env.port) as client:
        response = client.request(request_bytes)
        assert response.status == 400, response.head
        assert b"Traceback" not in response.body
    time.sleep(0.1)
    assert env.framing.connections == connections, "the gateway opened an upstream connection for it"
    assert len(env.framing.received) == received, env.framing.received[received:]

    following = env.get("framing.test", "/next")
    assert following.status_code == 200
    assert following.text == "ok"
    assert env.framing.received[-1].startswith(b"GET /next HTTP/1.1\r\n")
    assert len(env.framing.received) == received + 1


def test_invalid_chunk_arriving_late_never_completes_the_upstream_request(env: Env) -> None:
    """The head may already be on its way upstream; the upstream must never see a complete request."""
    received = len(env.framing.received)
    with RawClient(env.port) as client:
        client.send(b"POST /late HTTP/1.1\r\nHost: framing.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.2)
        client.send(b"zz\r\nnot a chunk\r\n0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            response = client.response()
            assert response.status >= 400
    time.sleep(0.2)
    assert len(env.framing.received) == received, env.framing.received[received:]
    assert env.get("framing.test", "/after").status_code == 200


def test_missing_host_on_http_1_1_is_rejected(env: Env) -> None:
    with RawClient(env.port) as client:
        response = client.request(b"GET / HTTP/1.1\r\nUser-Agent: raw\r\n\r\n")
    assert response.status == 400
    assert response.json()["error"] == "bad_request"


# --- errors the gateway answers itself ------------------------------------------------------------


def assert_error_body(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]
    assert "Traceback" not in response.text
    assert "127.0.0.1" not in response.text, "internal addresses leak to the client"


def test_no_route_is_404_json(env: Env) -> None:
    assert_error_body(env.get("nowhere.test", "/x"), 404, "no_route")


def test_rejected_ingress_answers_503(env: Env) -> None:
    assert_error_body(env.get("broken.test", "/"), 503, "route_unavailable")
    assert all(not r.path.startswith("/broken") for r in env.echo.requests)


def test_upstream_down_is_502_json(env: Env) -> None:
    response = env.get("down.test", "/x")
    assert_error_body(response, 502, "upstream_connect_failed")
    assert str(env.down_port) not in response.text


def test_upstream_that_never_answers_is_504_in_time(env: Env) -> None:
    started = time.monotonic()
    response = env.get("hang.test", "/x")
    elapsed = time.monotonic() - started
    assert_error_body(response, 504, "upstream_timeout")
    assert 0.9 <= elapsed < 1.5


@pytest.mark.parametrize("target", [b"/length", b"/chunked"])
def test_upstream_closing_mid_response_cuts_the_client_connection(env: Env, target: bytes) -> None:
    with RawClient(env.port) as client:
        response = client.request(b"GET " + target + b" HTTP/1.1\r\nHost: cut.test\r\n\r\n")
        assert response.status == 200, "the head had already been relayed"
        assert not response.complete, "the client must see a cut body, not a complete-looking response"
        assert client.at_eof()
    time.sleep(0.2)
    assert_clean_log(env.gateway)
    assert env.get("echo.test", "/alive").status_code == 200


def test_upstream_cut_seen_by_a_regular_client(env: Env) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        env.get("cut.test", "/length")


# --- paths, methods, connections -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [b"/public/../admin", b"/public/../admin/", b"/public/./../admin/x", b"/public/%2e%2e/admin", b"/../admin"],
)
def test_dot_segments_are_resolved_before_routing(env: Env, target: bytes) -> None:
    admin_before, public_before = len(env.admin.requests), len(env.public.requests)
    with RawClient(env.port) as client:
        response = client.request(b"GET " + target + b" HTTP/1.1\r\nHost: paths.test\r\n\r\n")
    assert response.status == 200
    assert response.json()["upstream"] == "admin"
    assert len(env.public.requests) == public_before
    assert len(env.admin.requests) == admin_before + 1
    received = env.admin.requests[-1].path
    assert received.startswith("/admin")
    assert ".." not in received
    assert "%2e" not in received.lower()
    assert "/./" not in received


def test_head_request(env: Env) -> None:
    with RawClient(env.port) as client:
        head = client.request(b"HEAD /head HTTP/1.1\r\nHost: echo.test\r\n\r\n", method="HEAD")
        assert head.status == 200
        length = int(head.header("content-length") or -1)
        assert length > 0
        # Same connection: no stray body bytes may precede the next response.
        get = client.request(b"GET /head HTTP/1.1\r\nHost: echo.test\r\n\r\n")
    assert get.status == 200
    assert get.json()["method"] == "GET"
    assert [r.method for r in env.echo.requests[-2:]] == ["HEAD", "GET"]


def test_keep_alive_serves_several_requests_on_one_connection(env: Env) -> None:
    before = len(env.echo.requests)
    with RawClient(env.port) as client:
        for index in range(5):
            response = client.request(f"GET /ka/{index} HTTP/1.1\r\nHost: echo.test\r\n\r\n".encode())
            assert response.status == 200
            assert response.json()["path"] == f"/ka/{index}"
        response = client.request(b"POST /ka/post HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 3\r\n\r\nabc")
        assert response.json()["body_length"] == 3
    received = env.echo.requests[before:]
    assert [r.path for r in received] == [*(f"/ka/{i}" for i in range(5)), "/ka/post"]
    assert len({r.client for r in received}) == 1, "the gateway reuses its upstream connection"


def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    before = len(env.echo.requests)
    with RawClient(env.port) as client:
        client.send(
            b"GET /pipe/1 HTTP/1.1\r\nHost: echo.test\r\n\r\n"
            b"POST /pipe/2 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\n\r\nbody"
            b"GET /pipe/3 HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n"
        )
        responses = [client.response() for _ in range(3)]
        assert client.at_eof(), "Connection: close is honoured after the last response"
    assert [r.json()["path"] for r in responses] == ["/pipe/1", "/pipe/2", "/pipe/3"]
    assert responses[1].json()["body_length"] == 4
    assert [r.path for r in env.echo.requests[before:]] == ["/pipe/1", "/pipe/2", "/pipe/3"]


# --- route table swaps under traffic ---------------------------------------------------------------


def test_route_swaps_do_not_disturb_traffic(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    blue, green, other = upstream("blue"), upstream("green"), upstream("other")

    def version(web_port: int, with_other: bool) -> list[dict[str, Any]]:
        objects = [*routed_service("web", web_port), ingress("web", rules=[("web.test", [path("/", "web")])])]
        if with_other:
            objects += [
                *routed_service("other", other.port),
                ingress("other", rules=[("other.test", [path("/", "other")])]),
            ]
        return objects

    write_manifests(manifests_dir, version(blue.port, False))
    gw = gateway_process(manifests_dir)
    stop = threading.Event()
    failures: list[str] = []
    served: list[str] = []
    lock = threading.Lock()

    def traffic() -> None:
        with httpx.Client(base_url=gw.url, headers={"host": "web.test"}, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.get("/live")
                    name = response.json()["upstream"] if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        failures.append(repr(exc))
                    continue
                with lock:
                    if name is None:
                        failures.append(f"{response.status_code} {response.text}")
                    else:
                        served.append(name)

    def generation() -> int:
        return int(httpx.get(gw.admin_url + "/routes").json()["generation"])

    def newer(than: int) -> bool:
        return generation() > than

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for web_port, with_other in [
            (green.port, True),
            (blue.port, False),
            (green.port, True),
            (blue.port, True),
            (green.port, True),
        ]:
            before = generation()
            write_manifests(manifests_dir, version(web_port, with_other))
            wait_until(partial(newer, before), timeout=5, message="a new route table")
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    assert not failures, failures[:5]
    assert len(served) > 100
    assert {"blue", "green"} <= set(served), "both endpoint sets served traffic"
    routes = httpx.get(gw.admin_url + "/routes").json()["routes"]
    assert {route["host"] for route in routes} == {"web.test", "other.test"}
    web = next(route for route in routes if route["host"] == "web.test")
    assert web["backend"]["endpoints"] == [f"127.0.0.1:{green.port}"]
    assert all(httpx.get(gw.url + "/", headers={"host": "web.test"}).json()["upstream"] == "green" for _ in range(5))
    assert httpx.get(gw.url + "/", headers={"host": "other.test"}).json()["upstream"] == "other"
    assert_clean_log(gw)


def test_no_404_for_a_configured_route_while_starting(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    """Until its first route table is loaded, the gateway does not know the routes: it must not say 404.

    (Holding the request, refusing the connection or a 503 are all fine; a 404 for a route that is
    configured is a wrong, cacheable answer.) Many Ingresses make the first load take a moment.
    """
    api = upstream("api")
    objects = [*routed_service("api", api.port), ingress("api", rules=[("api.test", [path("/", "api")])])]
    for index in range(300):
        objects += [
            *routed_service(f"svc{index}", api.port),
            ingress(f"ing{index}", rules=[(f"host{index}.test", [path("/", f"svc{index}")])]),
        ]
    write_manifests(manifests_dir, objects)
    gw = gateway_process(manifests_dir, wait_ready=False)
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    while statuses.count(200) < 10 and time.monotonic() < deadline:
        try:
            statuses.append(httpx.get(gw.url + "/early", headers={"host": "api.test"}, timeout=5).status_code)
        except httpx.TransportError:
            time.sleep(0.005)  # not listening yet
    assert statuses.count(200) == 10
    assert 404 not in statuses, f"answers while starting: {statuses}"
    assert set(statuses) <= {200, 503}, statuses


# --- shutdown ---------------------------------------------------------------------------------------


def test_graceful_shutdown_finishes_in_flight_requests(
    manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    def answer_slowly(conn: socket.socket, request: bytes) -> bool:
        time.sleep(1)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        return True

    slow = ScriptedUpstream(answer_slowly).start()
    try:
        write_manifests(
            manifests_dir,
            [*routed_service("slow", slow.port), ingress("slow", rules=[("slow.test", [path("/", "slow")])])],
        )
        gw = gateway_process(manifests_dir)
        result: dict[str, Any] = {}

        def call() -> None:
            try:
                response = httpx.get(gw.url + "/work", headers={"host": "slow.test"}, timeout=10)
                result["status"], result["body"] = response.status_code, response.text
            except httpx.HTTPError as exc:
                result["error"] = repr(exc)

        thread = threading.Thread(target=call)
        thread.start()
        wait_until(lambda: len(slow.received) == 1, timeout=5, message="the request to reach the upstream")
        assert gw.process is not None
        gw.signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(httpx.TransportError):  # no new connections while draining
            httpx.get(gw.url + "/new", headers={"host": "slow.test"}, timeout=2)
        thread.join(10)
        assert result == {"status": 200, "body": "slow"}
        assert gw.process.wait(10) == 0
        assert len(slow.received) == 1
        assert_clean_log(gw)
    finally:
        slow.stop()


def test_client_going_away_mid_response_leaves_nothing_behind(
    manifests_dir: Path, gateway_process: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """A client that hangs up mid-download: the upstream connection is closed and the request ends.

    Nothing may stay in flight afterwards: a stuck request would hold shutdown for the whole
    graceful timeout and then be cancelled with an error.
    """
    gone: list[float] = []

    def answer_endlessly(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                conn.sendall(b"400\r\n" + b"z" * 1024 + b"\r\n")
                time.sleep(0.02)
        except OSError:
            gone.append(time.monotonic())
        return False

    endless = ScriptedUpstream(answer_endlessly).start()
    try:
        write_manifests(
            manifests_dir,
            [*routed_service("endless", endless.port), ingress("e", rules=[("endless.test", [path("/", "endless")])])],
        )
        config = tmp_path / "gateway.yaml"
        config.write_text("server:\n  graceful_timeout: 3\n")
        gw = gateway_process(manifests_dir, config=config)
        with RawClient(gw.port) as client:
            client.send(b"GET /forever HTTP/1.1\r\nHost: endless.test\r\n\r\n")
            assert client.rfile.readline().startswith(b"HTTP/1.1 200")
            client.rfile.read(4096)  # some of the body arrived
            left = time.monotonic()
        wait_until(lambda: bool(gone), timeout=3, message="the upstream connection to be closed")
        assert gone[0] - left < 1.5
        time.sleep(0.3)

        assert gw.process is not None
        stopping = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.process.wait(10) == 0
        assert time.monotonic() - stopping < 2, "shutdown waited for a request that should be over"
        assert_clean_log(gw)
    finally:
        endless.stop()


def test_two_workers_serve_and_stop_cleanly(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir, [*routed_service("api", api.port), ingress("api", rules=[("api.test", [path("/", "api")])])]
    )
    gw = gateway_process(manifests_dir, workers=2)
    # /ready answers from whichever worker takes the admin connection; let both load their table
    # (a worker serving before that is test_no_404_for_a_configured_route_while_starting's subject).
    wait_until(
        lambda: all(httpx.get(gw.url, headers={"host": "api.test"}).status_code == 200 for _ in range(10)),
        timeout=10,
        message="both workers serving",
    )
    api.requests.clear()
    for index in range(20):
        response = httpx.get(f"{gw.url}/w/{index}", headers={"host": "api.test"}, timeout=5)
        assert response.status_code == 200, f"request {index}: {response.status_code} {response.text}\n{gw.log()}"
    assert len(api.requests) == 20
    metrics = httpx.get(gw.admin_url + "/metrics").text
    assert "gateway_requests_total{route=" in metrics
    assert gw.process is not None
    gw.signal(signal.SIGTERM)
    assert gw.process.wait(15) == 0
    assert_clean_log(gw)


# --- the admin listener ---------------------------------------------------------------------------


def test_admin_endpoints(env: Env) -> None:
    admin = env.gateway.admin_url
    assert httpx.get(admin + "/healthz").status_code == 200
    ready = httpx.get(admin + "/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True

    routes = httpx.get(admin + "/routes").json()
    by_host = {(route["host"], route["path"]): route for route in routes["routes"]}
    assert ("echo.test", "/") in by_host
    assert ("paths.test", "/admin") in by_host
    assert by_host[("echo.test", "/")]["backend"]["endpoints"] == [f"127.0.0.1:{env.echo.port}"]
    assert by_host[("echo.test", "/")]["backend"]["service"].startswith("default/echo")
    rejected = {item["ingress"]: item for item in routes["rejected"]}
    assert "default/broken" in rejected
    assert any("no-such-plugin" in reason for reason in rejected["default/broken"]["reasons"])

    for _ in range(3):
        assert env.get("echo.test", "/metered").status_code == 200
    env.get("nowhere.test")
    metrics = httpx.get(admin + "/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("gateway_requests_total{")]
    echo_ok = [line for line in lines if 'service="default/echo"' in line and 'status="200"' in line]
    assert echo_ok, lines
    assert 'route="' in echo_ok[0]
    assert float(echo_ok[0].rsplit(" ", 1)[1]) >= 3
    assert any('status="404"' in line for line in lines), lines

    plugins = httpx.get(admin + "/plugins")
    assert plugins.status_code == 200
    assert isinstance(plugins.json()["plugins"], list)

    # The admin listener is separate: its paths are not the proxy's.
    assert env.get("echo.test", "/healthz").json()["upstream"] == "echo"
