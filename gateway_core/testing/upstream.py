"""A real upstream HTTP server for tests: it records what it received and answers with it.

Runs in its own thread (so a test that blocks does not freeze it), speaks HTTP/1.1 with
keep-alive, and answers every request with JSON describing it: the upstream's name, method,
path (as received on the request line), headers and body size. ``requests`` keeps every
request for assertions.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedRequest:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int]


class _QuietServer(ThreadingHTTPServer):
    """A client (the gateway) cutting a connection is normal in tests; do not print it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class RecordingUpstream:
    """An echo server on 127.0.0.1; use as a context manager or call start()/stop()."""

    name: str = "upstream"
    status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    """Serve HTTPS with this server context (an upstream behind ``backend-protocol: HTTPS``)."""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> RecordingUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: no 40 ms Nagle delay

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                else:
                    body = self.rfile.read(length) if length else b""
                record = ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    header_list=[(k.lower(), v) for k, v in self.headers.items()],
                    body=body,
                    client=self.client_address[:2],
                )
                upstream.requests.append(record)
                payload = json.dumps(
                    {
                        "upstream": upstream.name,
                        "method": record.method,
                        "path": record.path,
                        "headers": record.headers,
                        "body_length": len(body),
                    }
                ).encode()
                self.send_response(upstream.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in upstream.extra_headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _read_chunked(self) -> bytes:
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.ssl_context is not None:  # the handshake runs in the handler's thread, on first read
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"upstream-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RecordingUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
