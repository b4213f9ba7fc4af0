"""Run a real ``gateway run`` process, or a gateway in a background thread, for tests.

:class:`GatewayProcess` drives the CLI exactly as a user (or an acceptance test) does.
:class:`InProcessGateway` serves a gateway built with ``create_app`` — with in-code plugins
or a custom route source — on real sockets from a thread of the test process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway_core.app import create_app
from gateway_core.providers.base import RouteSource
from gateway_core.server import GatewayServer, bind_socket, event_loop_factory
from gateway_core.settings import GatewaySettings, load_settings


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")


@dataclass
class GatewayProcess:
    """``gateway run --manifests DIR`` on free ports; ``start()`` returns once it is ready."""

    manifests: Path | None
    workers: int = 1
    config: Path | None = None
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "gateway_core",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin_port),
            "--https-port",
            str(self.https_port),
            "--workers",
            str(self.workers),
        ]
        if self.manifests is not None:
            args += ["--manifests", str(self.manifests)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return args + list(self.extra_args)

    def start(self, *, wait_ready: bool = True, timeout: float = 20.0) -> GatewayProcess:
        handle, name = tempfile.mkstemp(prefix="gateway-", suffix=".log")
        self.log_path = Path(name)
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", **self.env}
        env.setdefault("GATEWAY_LOG__FORMAT", "text")
        with os.fdopen(handle, "wb") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, message=f"gateway readiness\n{self.log()}")

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; the exit code (SIGKILL after ``timeout``)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InProcessGateway:
    """A gateway served from a background thread on real sockets (in-code plugins welcome)."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        manifests: Path | None = None,
        plugins: Iterable[object] = (),
        route_source: RouteSource | None = None,
        load_entry_points: bool = True,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"log": {"level": "warning", "format": "text"}, **(overrides or {})}
        if manifests is not None:
            data.setdefault("manifests", {})["dir"] = str(manifests)
        self.settings = settings or load_settings(None, data)
        self.port = free_port()
        self.admin_port = free_port()
        self.gateway = create_app(
            self.settings, plugins=plugins, route_source=route_source, load_entry_points=load_entry_points
        )
        self._server: GatewayServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 10.0) -> InProcessGateway:
        proxy = bind_socket(f"127.0.0.1:{self.port}")
        admin = bind_socket(f"127.0.0.1:{self.admin_port}")
        self._server = GatewayServer(self.gateway, proxy, admin)

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                    assert self._server is not None
                    runner.run(self._server.serve(handle_signals=False))
            except BaseException as exc:  # reported by wait_ready/stop
                self._error = exc
            finally:
                proxy.close()
                admin.close()

        self._thread = threading.Thread(target=run, name="in-process-gateway", daemon=True)
        self._thread.start()

        def ready() -> bool:
            if self._error is not None:
                raise AssertionError(f"gateway failed: {self._error!r}")
            return self.gateway.ready

        wait_until(ready, timeout=timeout, message="in-process gateway readiness")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None and not isinstance(self._error, SystemExit):
            raise AssertionError(f"gateway failed: {self._error!r}")

    def __enter__(self) -> InProcessGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
