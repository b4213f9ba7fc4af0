"""A real ``redis-server`` for tests of shared state (rate limits, breakers across workers).

Starts the Debian ``redis-server`` binary on a free loopback port with persistence off and
talks to it over a plain socket (RESP), so the kit needs no Redis client library.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gateway_core.testing.process import free_port, wait_until


class RedisNotInstalledError(RuntimeError):
    """``redis-server`` is not on this machine (``scripts/bootstrap.sh`` installs it)."""


@dataclass
class RedisServer:
    """One ``redis-server`` process; ``url`` is what storage settings take."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if binary is None:
            raise RedisNotInstalledError("redis-server is not installed; run scripts/bootstrap.sh")
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, timeout=timeout, message=f"redis-server on port {self.port}")
        return self

    def command(self, *args: str) -> bytes:
        """Send one command; the raw reply (e.g. ``b"+PONG\\r\\n"``)."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        """Forget every key."""
        self.command("FLUSHALL")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
