"""Streaming through a real ``gateway run`` process: events as they happen, big uploads, disconnects.

The upstream (:class:`StreamingUpstream`) is a raw HTTP/1.1 server in threads of the test
process that timestamps what it sends, counts what it receives without keeping it, and
tracks each of its connections, so a test can see from the upstream side whether the
gateway's pool let go of a connection. Clients are raw sockets or httpx streams; the
upload client generates its data block by block, so the test process stays flat too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import statistics
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway_core.testing import GatewayProcess, ingress, path, routed_service, wait_until, write_manifests

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
GiB = 1024 * MiB
EVENT_INTERVAL = 0.1
TICK = b"data: tick\n\n"


# --- the upstream ---------------------------------------------------------------------------------


@dataclass
class UpstreamConnection:
    """One connection the gateway opened to the upstream."""

    paths: list[str] = field(default_factory=list)
    closed: bool = False


@dataclass
class StreamingUpstream:
    """Raw HTTP/1.1 with keep-alive; one thread per connection.

    ``/events?n=N``: N server-sent events, one every 100 ms (chunked), each send time kept
    in ``event_times``. ``/forever``: an event every 50 ms until a write fails, noted in
    ``broken_streams``. ``/count`` and ``/upload-cut``: read the body counting bytes and CRC-32, never keeping
    it (``progress`` is the running count), and answers them as JSON. Anything else: ``ok``.
    """

    event_times: dict[int, float] = field(default_factory=dict)
    broken_streams: list[float] = field(default_factory=list)
    uploads: list[tuple[int, int]] = field(default_factory=list)
    """(bytes, crc32) of every upload read to its end."""
    abandoned_uploads: list[int] = field(default_factory=list)
    """Bytes read of every upload whose connection ended before its body did."""
    progress: int = 0
    connections: list[UpstreamConnection] = field(default_factory=list)
    port: int = 0
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> StreamingUpstream:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="streaming-upstream").start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def open_connections(self, path_name: str | None = None) -> int:
        """Connections still open (that served ``path_name``, if given)."""
        with self._lock:
            return sum(
                1
                for connection in self.connections
                if not connection.closed and (path_name is None or path_name in connection.paths)
            )

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            record = UpstreamConnection()
            with self._lock:
                self.connections.append(record)
            threading.Thread(target=self._serve, args=(conn, record), daemon=True).start()

    def _serve(self, conn: socket.socket, record: UpstreamConnection) -> None:
        rfile = conn.makefile("rb")
        try:
            while True:
                head = _read_head(rfile)
                if head is None:
                    return
                target, headers = head
                route, _, query = target.partition("?")
                record.paths.append(route)
                if route == "/events":
                    self._events(conn, int(query.removeprefix("n=")))
                elif route == "/forever":
                    self._forever(conn)
                    return
                elif route in ("/count", "/upload-cut"):
                    if not self._count(conn, rfile, headers):
                        return
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            record.closed = True
            conn.close()

    def _events(self, conn: socket.socket, count: int) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for index in range(count):
            event = f"id: {index}\ndata: event {index}\n\n".encode()
            self.event_times[index] = time.monotonic()
            conn.sendall(b"%x\r\n%b\r\n" % (len(event), event))
            time.sleep(EVENT_INTERVAL)
        conn.sendall(b"0\r\n\r\n")

    def _forever(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                conn.sendall(b"%x\r\n%b\r\n" % (len(TICK), TICK))
                time.sleep(0.05)
        except OSError:
            self.broken_streams.append(time.monotonic())

    def _count(self, conn: socket.socket, rfile: io.BufferedReader, headers: dict[str, str]) -> bool:
        remaining = int(headers["content-length"])
        total = crc = 0
        buffer = bytearray(256 * 1024)
        view = memoryview(buffer)
        while remaining:
            got = rfile.readinto(view[: min(remaining, len(buffer))])
            if not got:
                self.abandoned_uploads.append(total)
                return False
            crc = zlib.crc32(view[:got], crc)
            total += got
            remaining -= got
            self.progress = total
        self.uploads.append((total, crc))
        body = json.dumps({"bytes": total, "crc32": crc}).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
        )
        return True


def _read_head(rfile: io.BufferedReader) -> tuple[str, dict[str, str]] | None:
    line = rfile.readline()
    if not line:
        return None
    target = line.split(b" ")[1].decode()
    headers = {}
    while (header := rfile.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return target, headers


# --- fixtures ---------------------------------------------------------------------------------------


@dataclass
class Env:
    gateway: GatewayProcess
    upstream: StreamingUpstream

    @property
    def pid(self) -> int:
        assert self.gateway.process is not None
        return self.gateway.process.pid

    def get(self, target: str) -> httpx.Response:
        return httpx.get(self.gateway.url + target, headers={"host": "stream.test"}, timeout=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    upstream = StreamingUpstream().start()
    directory = tmp_path_factory.mktemp("stream-manifests")
    write_manifests(
        directory,
        [*routed_service("stream", upstream.port), ingress("stream", rules=[("stream.test", [path("/", "stream")])])],
    )
    gateway = GatewayProcess(directory).start()
    yield Env(gateway, upstream)
    gateway.stop()
    upstream.stop()


def memory_kib(pid: int, field_name: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Start ``VmHWM`` afresh from the current RSS (Linux's ``clear_refs``; kept as is if refused)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of a response with a Content-Length."""
    rfile = sock.makefile("rb")
    status = int(rfile.readline().split()[1])
    length = 0
    while (line := rfile.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, rfile.read(length)


def raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    return sock


# --- server-sent events -------------------------------------------------------------------------------


def test_events_reach_the_client_as_they_are_sent(env: Env) -> None:
    count = 30
    arrivals: dict[int, float] = {}
    with httpx.stream(
        "GET", env.gateway.url + f"/events?n={count}", headers={"host": "stream.test"}, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        pending = b""
        for chunk in response.iter_raw():
            now = time.monotonic()
            pending += chunk
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                index = int(event.split(b"\n")[0].removeprefix(b"id: "))
                arrivals[index] = now
    assert sorted(arrivals) == list(range(count))
    latencies = sorted(arrivals[index] - env.upstream.event_times[index] for index in range(count))
    median, p90 = statistics.median(latencies), latencies[int(count * 0.9) - 1]
    # Each event within 50 ms of being sent (the bound), measured over the whole stream:
    # the median and 90th percentile must meet it; no single event may wait for the next one.
    assert median < 0.05, f"median event latency {median * 1000:.1f} ms"
    assert p90 < 0.05, f"90th percentile event latency {p90 * 1000:.1f} ms"
    assert latencies[-1] < EVENT_INTERVAL * 5, f"slowest event {latencies[-1] * 1000:.1f} ms: held back"


# --- uploads ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_one_gib_upload_streams_through_with_flat_memory(env: Env) -> None:
    """About 2.5 s here (the gateway carries it in about 1 s; the rest is the test's own CRCs)."""
    assert env.get("/warm-up").status_code == 200
    reset_peak(env.pid)  # VmHWM from here on is this upload's peak
    gateway_before = memory_kib(env.pid, "VmRSS")
    own_before = memory_kib(os.getpid(), "VmRSS")
    block = bytearray(os.urandom(MiB))
    sock = raw_request(
        env.gateway.port, b"POST /count HTTP/1.1\r\nHost: stream.test\r\nContent-Length: %d\r\n\r\n" % GiB
    )
    crc = 0
    upstream_at_half = -1
    started = time.monotonic()
    with sock:
        for index in range(GiB // MiB):
            block[:8] = index.to_bytes(8, "big")  # every block differs: a reordering shows in the CRC
            crc = zlib.crc32(block, crc)
            sock.sendall(block)
            if index == GiB // MiB // 2:
                upstream_at_half = env.upstream.progress
        status, body = read_response(sock)
    elapsed = time.monotonic() - started
    gateway_peak = memory_kib(env.pid, "VmHWM")
    own_after = memory_kib(os.getpid(), "VmRSS")
    assert status == 200
    assert json.loads(body) == {"bytes": GiB, "crc32": crc}
    assert env.upstream.uploads[-1] == (GiB, crc)
    assert upstream_at_half > 256 * MiB, "the upstream had not received half the body when half was sent"
    growth = (gateway_peak - gateway_before) / 1024
    assert growth < 64, f"gateway peak RSS grew {growth:.0f} MiB during a 1 GiB upload (in {elapsed:.1f}s)"
    assert (own_after - own_before) / 1024 < 64, "the test's own client and upstream must stay flat too"


# --- disconnects -----------------------------------------------------------------------------------------


def test_a_client_leaving_mid_stream_closes_the_upstream_request_promptly(env: Env) -> None:
    assert env.get("/warm-up").status_code == 200
    wait_until(lambda: env.upstream.open_connections() == 1, message="one idle pooled connection")
    broken_before = len(env.upstream.broken_streams)
    clients = [raw_request(env.gateway.port, b"GET /forever HTTP/1.1\r\nHost: stream.test\r\n\r\n") for _ in range(10)]
    try:
        for sock in clients:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "the stream started"
        wait_until(lambda: env.upstream.open_connections("/forever") == 10, message="ten upstream streams")
    finally:
        left_at = time.monotonic()
        for sock in clients:
            sock.close()
    wait_until(
        lambda: len(env.upstream.broken_streams) - broken_before == 10,
        timeout=10,
        message="every upstream stream noticing its client left",
    )
    noticed = sorted(at - left_at for at in env.upstream.broken_streams[broken_before:])
    assert noticed[-1] < 5, f"the last upstream stream noticed after {noticed[-1]:.2f}s"
    wait_until(lambda: env.upstream.open_connections("/forever") == 0, message="the streams' connections closed")
    assert env.upstream.open_connections() <= 1, "only the pool's idle connection may stay open"
    assert env.get("/after").status_code == 200
    assert env.upstream.open_connections() == 1, "the pool is back to its idle size"


def test_a_client_leaving_mid_upload_abandons_the_upstream_request(env: Env) -> None:
    assert env.get("/warm-up").status_code == 200
    abandoned_before, uploads_before = len(env.upstream.abandoned_uploads), len(env.upstream.uploads)
    sock = raw_request(
        env.gateway.port, b"POST /upload-cut HTTP/1.1\r\nHost: stream.test\r\nContent-Length: %d\r\n\r\n" % GiB
    )
    with sock:
        for _ in range(16):
            sock.sendall(os.urandom(MiB))
        wait_until(lambda: env.upstream.progress >= 8 * MiB, message="the upload reaching the upstream")
    wait_until(
        lambda: len(env.upstream.abandoned_uploads) == abandoned_before + 1,
        timeout=10,
        message="the upstream seeing the upload end early",
    )
    assert len(env.upstream.uploads) == uploads_before, "the upstream never took the cut body as whole"
    wait_until(lambda: env.upstream.open_connections("/upload-cut") == 0, message="the upload's connection closed")
    assert env.get("/after").status_code == 200
