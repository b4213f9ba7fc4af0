"""Upstreams that fail on purpose, for the retry, timeout and outlier-detection tests.

:class:`FaultyUpstream` is a raw HTTP/1.1 server in threads (it does not share the test's
event loop, so it serves pipeline tests and ``gateway run`` tests alike). Its ``fault`` can
change while it runs. :class:`UpstreamProcess` is a healthy upstream in a process of its own,
so a test can kill it the hard way. :func:`blackhole` is a listener whose accept queue is
full: connecting to it hangs until the connect timeout.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

FAULTS = ("ok", "status", "slow", "reset", "cut", "stall", "no-read")
"""What a :class:`FaultyUpstream` does with each request:

- ``ok``: 200 with a JSON body naming the upstream;
- ``status``: ``status`` with that JSON body;
- ``slow``: waits ``delay`` seconds, then answers ``status``;
- ``reset``: reads the request, then resets the connection without answering;
- ``cut``: sends a head promising 100,000 bytes and 1,000 of them, then hangs up;
- ``stall``: sends a head and part of the body, then goes silent (keeps the connection);
- ``no-read``: reads the head and never the body, and never answers.
"""


@dataclass(frozen=True)
class Seen:
    """One request as the upstream read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def read_request(rfile: io.BufferedReader, *, with_body: bool = True) -> Seen | None:
    """One request (body by Content-Length or chunked); None at EOF or if it ended half-way."""
    line = rfile.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := rfile.readline()) not in (b"\r\n", b"\n"):
        if not header:
            return None
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if with_body and headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size_line = rfile.readline()
            if not size_line.endswith(b"\n"):
                return None  # the connection ended mid-body
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (trailer := rfile.readline()) not in (b"\r\n", b"\n"):
                    if not trailer:
                        return None
                break
            parts.append(rfile.read(size))
            if len(parts[-1]) < size or not rfile.readline():
                return None
        body = b"".join(parts)
    elif with_body and "content-length" in headers:
        body = rfile.read(int(headers["content-length"]))
        if len(body) < int(headers["content-length"]):
            return None
    return Seen(method, target, headers, body)


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed process's kernel would."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@dataclass
class FaultyUpstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that behaves as ``fault`` says (see :data:`FAULTS`)."""

    name: str
    fault: str = "ok"
    status: int = 200
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _listener: socket.socket | None = None
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FaultyUpstream:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"faulty-{self.name}").start()
        return self

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def paths(self) -> list[str]:
        with self._lock:
            return [item.path for item in self.seen]

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = conn.makefile("rb")
        try:
            while True:
                fault = self.fault
                request = read_request(rfile, with_body=fault != "no-read")
                if request is None:
                    return
                with self._lock:
                    self.seen.append(request)
                if not self._answer(conn, request, fault):
                    return
        except (OSError, ValueError):
            pass
        finally:
            rfile.close()
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, conn: socket.socket, request: Seen, fault: str) -> bool:
        """Write the answer; False to end the connection."""
        if fault == "reset":
            _reset(conn)
            return False
        if fault == "stall":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        if fault in ("stall", "no-read"):
            self._stopped.wait(30)
            return False
        if fault == "cut":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            time.sleep(0.2)  # the gateway has relayed the head by now: this is a cut mid-body
            return False
        if fault == "slow" and self._stopped.wait(self.delay):
            return False
        status = 200 if fault == "ok" else self.status
        body = json.dumps({"upstream": self.name, "path": request.path, "body_length": len(request.body)}).encode()
        head = f"HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + (b"" if request.method == "HEAD" else body))
        return True

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def __enter__(self) -> FaultyUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PROCESS_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name = sys.argv[1]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        # Head and body in one write: a kill lands before or after a response, never between
        # its head and its body (a cut mid-body is the connection-cut case, tested apart).
        body = json.dumps({"upstream": name, "path": self.path}).encode()
        head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        self.wfile.write(head.encode() + body)

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class UpstreamProcess:
    """A healthy upstream in its own process, which :meth:`kill` ends with SIGKILL."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SERVER, name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def kill(self) -> None:
        """Kill it: the kernel closes its sockets, connections in use are cut."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port on 127.0.0.1 that drops connection attempts (a listener with a full accept queue).

    Linux drops a SYN while the accept queue is full, so ``connect`` hangs until the client's
    own timeout, as with an unreachable host; nothing is ever refused.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        time.sleep(0.05)
        yield int(address[1])
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
