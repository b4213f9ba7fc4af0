"""pytest fixtures for plugin authors and the gateway's own tests (entry point ``pytest11``).

- ``upstream``: a factory of started :class:`RecordingUpstream` echo servers.
- ``manifests_dir``: an empty directory for manifests.
- ``gateway_process``: a factory of started ``gateway run`` processes.
- ``in_process_gateway``: a factory of gateways served from a thread (in-code plugins).
- ``redis_server``: a started ``redis-server`` on a free port (the Debian binary).
Everything a fixture starts is stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.testing.process import GatewayProcess, InProcessGateway
from gateway_core.testing.redis import RedisServer
from gateway_core.testing.upstream import RecordingUpstream


def pytest_configure(config: pytest.Config) -> None:
    """Register the kit's marker, so plugin test suites need no settings of their own for it."""
    config.addinivalue_line("markers", "e2e: runs real gateway processes over real sockets")


@pytest.fixture
def upstream() -> Iterator[Callable[..., RecordingUpstream]]:
    """``upstream(name="api")`` starts an echo server on 127.0.0.1 and returns it."""
    started: list[RecordingUpstream] = []

    def make(name: str = "upstream", **options: Any) -> RecordingUpstream:
        server = RecordingUpstream(name=name, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def manifests_dir(tmp_path: Path) -> Path:
    """An empty manifests directory."""
    path = tmp_path / "manifests"
    path.mkdir()
    return path


@pytest.fixture
def gateway_process() -> Iterator[Callable[..., GatewayProcess]]:
    """``gateway_process(manifests_dir, workers=1, config=None)`` starts ``gateway run``."""
    started: list[GatewayProcess] = []

    def make(manifests: Path | None, **options: Any) -> GatewayProcess:
        wait = options.pop("wait_ready", True)
        process = GatewayProcess(manifests, **options)
        started.append(process)
        return process.start(wait_ready=wait)

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def in_process_gateway() -> Iterator[Callable[..., InProcessGateway]]:
    """``in_process_gateway(manifests=..., plugins=[...])`` serves a gateway from a thread."""
    started: list[InProcessGateway] = []

    def make(**options: Any) -> InProcessGateway:
        gateway = InProcessGateway(**options)
        started.append(gateway)
        return gateway.start()

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` for this test; stopped afterwards."""
    server = RedisServer().start()
    yield server
    server.stop()
