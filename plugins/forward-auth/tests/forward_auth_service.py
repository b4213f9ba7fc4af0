"""A real auth service for the forward-auth tests: a threading HTTP server on 127.0.0.1.

It decides by the ``Authorization`` header and records every call:

- ``Bearer user:NAME`` or ``Bearer user:NAME:GROUPS`` -> 200 with ``X-User`` (and ``X-Groups``)
- ``Bearer forbidden`` -> 403; ``Bearer login`` -> 302 to a login page with two cookies
- ``Bearer error`` -> 500 with an internal-looking body
- ``Bearer slow`` -> waits ``delay`` seconds, then 200
- ``Bearer huge`` -> 401 with a 1 MiB body
- a token in ``raw_answers`` -> those exact bytes, then the connection is closed
- anything else (or nothing) -> 401 with ``WWW-Authenticate`` and a JSON body
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway_core.testing import ingress, path, plugin_annotations

HUGE_BODY_BYTES = 1024 * 1024


@dataclass
class AuthCall:
    """One request as the auth service saw it."""

    method: str
    path: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class AuthService:
    """Start with ``start()`` (or as a context manager); ``url`` is its ``/verify`` endpoint."""

    delay: float = 2.0
    raw_answers: dict[str, bytes] = field(default_factory=dict)
    calls: list[AuthCall] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/verify"

    def start(self) -> AuthService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                service.calls.append(
                    AuthCall(
                        method=self.command,
                        path=self.path,
                        headers={name.lower(): value for name, value in self.headers.items()},
                        header_list=[(name.lower(), value) for name, value in self.headers.items()],
                    )
                )
                token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if token in service.raw_answers:
                    self.wfile.write(service.raw_answers[token])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if token.startswith("user:"):
                    _, name, *groups = token.split(":")
                    extra = [("X-User", name)] + ([("X-Groups", groups[0])] if groups else [])
                    self._answer(200, b"", [*extra, ("X-Internal", "auth-only")])
                elif token == "forbidden":
                    self._answer(403, b'{"error":"forbidden"}', [("Content-Type", "application/json")])
                elif token == "login":
                    target = self.headers.get("x-original-url", "")
                    self._answer(
                        302,
                        b"<a href='https://login.test/'>log in</a>",
                        [
                            ("Content-Type", "text/html"),
                            ("Location", f"https://login.test/?rd={target}"),
                            ("Set-Cookie", "csrf=1; HttpOnly"),
                            ("Set-Cookie", "flow=abc; HttpOnly"),
                            ("X-Internal", "auth-only"),
                        ],
                    )
                elif token == "error":
                    self._answer(500, b"Traceback (most recent call last): internal secret", [])
                elif token == "slow":
                    time.sleep(service.delay)
                    self._answer(200, b"", [("X-User", "slowpoke")])
                elif token == "huge":
                    self._answer(401, b"x" * HUGE_BODY_BYTES, [("Content-Type", "text/plain")])
                else:
                    self._answer(
                        401,
                        json.dumps({"error": "who are you"}).encode(),
                        [
                            ("Content-Type", "application/json"),
                            ("WWW-Authenticate", 'Bearer realm="test"'),
                            ("X-Internal", "auth-only"),
                        ],
                    )

            def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="auth-service", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AuthService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def guarded_ingress(name: str, host: str | None, config: dict[str, Any], service_name: str = "api") -> dict[str, Any]:
    """An Ingress for ``host`` with forward-auth bound with ``config``, routed to ``service_name``."""
    return ingress(
        name, rules=[(host, [path("/", service_name)])], annotations=plugin_annotations({"forward-auth": config})
    )
