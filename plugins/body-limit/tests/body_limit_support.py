"""Raw-socket helpers for the body-limit tests.

:class:`StreamingUpstream` records, per connection, exactly the bytes the gateway sent and
whether the chunked body's terminating zero-length chunk ever arrived, so a test can tell a
complete request from one cut off. :class:`RawClient` sends a request piece by piece, so a
test decides when the limit is crossed.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from gateway_core.testing import ingress, path, plugin_annotations

Mode = Literal["reading", "stalled", "early"]
ANSWER = b'{"upstream":"streaming"}'


@dataclass
class UpstreamConnection:
    """One connection as the upstream saw it."""

    head: bytes = b""
    body: bytes = b""
    """Raw bytes after the head, chunk framing included."""
    complete: bool = False
    """The terminating zero-length chunk arrived: the request was whole."""
    ended: bool = False
    """The gateway closed or reset the connection."""

    @property
    def payload(self) -> bytes:
        """The body's data with the chunk framing removed (as much as arrived)."""
        data, rest = b"", self.body
        while b"\r\n" in rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            data += rest[:size]
            rest = rest[size + 2 :]
        return data


class StreamingUpstream:
    """A raw HTTP/1.1 upstream on 127.0.0.1 for chunked requests.

    ``reading`` reads the body as it arrives and answers once it is complete (a normal
    upstream); ``stalled`` reads the head, then nothing until :attr:`release` is set (a slow
    upstream); ``early`` answers right after the head, then keeps reading.
    """

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.connections: list[UpstreamConnection] = []
        self.release = threading.Event()
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> StreamingUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        record = UpstreamConnection()
        self.connections.append(record)
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    record.ended = True
                    return
                buffer += data
            record.head, _, record.body = buffer.partition(b"\r\n\r\n")
            if self.mode == "early":
                self._answer(sock)
            elif self.mode == "stalled":
                self.release.wait(5)
            while not (record.body == b"0\r\n\r\n" or record.body.endswith(b"\r\n0\r\n\r\n")):
                data = sock.recv(65536)
                if not data:
                    record.ended = True
                    return
                record.body += data
            record.complete = True
            if self.mode != "early":
                self._answer(sock)
        except OSError:  # reset by the gateway, or our own timeout
            record.ended = True

    @staticmethod
    def _answer(sock: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)
        sock.sendall(head + ANSWER)


class RawClient:
    """A client connection to the gateway that writes exactly the bytes it is given."""

    def __init__(self, url: str) -> None:
        address = urlsplit(url)
        self.sock = socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=5)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lowercase names) and body of the next response (Content-Length framed)."""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_peer(self) -> bool:
        """Whether the gateway closed the connection (EOF or reset) after what was read."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the gateway closed the connection before a whole response")
        self._buffer += data

    def close(self) -> None:
        self.sock.close()


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def chunked_head(host: str, target: str = "/upload", extra: str = "") -> bytes:
    """The head of a chunked POST."""
    return f"POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode()


def limited_ingress(name: str, host: str, service: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """An Ingress for ``host`` with body-limit bound (``config`` None: the global default)."""
    return ingress(name, rules=[(host, [path("/", service)])], annotations=plugin_annotations({"body-limit": config}))
