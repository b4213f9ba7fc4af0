"""The program as its users run it: a real process, real upstreams, real sockets.

``python tenant_gateway.py ROUTES`` (one and two workers, through ``gateway_core.serve``) and
``uvicorn --factory tenant_gateway:proxy_app`` (two uvicorn workers). The gateway test kit's
``GatewayProcess`` starts, waits for and stops it; only the command differs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway_core.testing import GatewayProcess, RecordingUpstream, free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[1]
PROGRAM = EXAMPLE / "tenant_gateway.py"
API = "api.example.test"

pytestmark = pytest.mark.e2e


@dataclass
class ProgramProcess(GatewayProcess):
    """``python tenant_gateway.py ROUTES`` on free ports, driven like ``gateway run``."""

    routes: Path | None = None

    def command(self) -> list[str]:
        assert self.routes is not None
        return [
            sys.executable,
            str(PROGRAM),
            str(self.routes),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--https-listen",
            f"127.0.0.1:{self.https_port}",
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--workers",
            str(self.workers),
        ]


def write_routes(path: Path, routes: list[dict[str, Any]]) -> Path:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"routes": routes}))
    temporary.replace(path)
    return path


def orders(port: int, **options: Any) -> dict[str, Any]:
    return {"name": "orders", "host": API, "path": "/orders", "upstreams": [f"127.0.0.1:{port}"], **options}


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Callable[..., ProgramProcess]]:
    started: list[ProgramProcess] = []

    def start(routes: list[dict[str, Any]], *, workers: int = 1) -> ProgramProcess:
        process = ProgramProcess(manifests=None, workers=workers, routes=write_routes(tmp_path / "routes.yaml", routes))
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


def get(gateway: ProgramProcess, path: str, *, tenant: str | None = None, host: str = API) -> httpx.Response:
    headers = {"Host": host, **({"X-Tenant": tenant} if tenant else {})}
    return httpx.get(gateway.url + path, headers=headers)


def test_each_tenant_reaches_its_own_upstream_path_and_others_are_refused(
    program: Callable[..., ProgramProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    gateway = program(
        [
            orders(api.port, tenants=["acme", "globex"]),
            {"name": "health", "host": API, "path": "/healthz", "upstreams": [f"127.0.0.1:{api.port}"]},
        ]
    )

    acme = get(gateway, "/orders/7?expand=lines", tenant="acme")
    globex = get(gateway, "/orders", tenant="globex")
    stranger = get(gateway, "/orders", tenant="initech")
    anonymous = get(gateway, "/orders")
    health = get(gateway, "/healthz")

    assert [acme.status_code, globex.status_code, health.status_code] == [200, 200, 200]
    assert [seen.path for seen in api.requests] == ["/acme/orders/7?expand=lines", "/globex/orders", "/healthz"]
    assert [seen.headers.get("x-tenant") for seen in api.requests] == ["acme", "globex", None]
    assert (stranger.status_code, stranger.json()["error"]) == (403, "unknown_tenant")
    assert (anonymous.status_code, anonymous.json()["error"]) == (400, "tenant_required")


def test_the_rate_limit_counts_each_tenant_separately(
    program: Callable[..., ProgramProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    gateway = program([orders(api.port, tenants=["acme", "globex"], rate_limit="3/minute")])

    acme = [get(gateway, "/orders", tenant="acme") for _ in range(5)]
    globex = get(gateway, "/orders", tenant="globex")

    assert [response.status_code for response in acme] == [200, 200, 200, 429, 429]
    assert int(acme[-1].headers["retry-after"]) > 0
    assert globex.status_code == 200
    assert [seen.path for seen in api.requests] == ["/acme/orders"] * 3 + ["/globex/orders"]


def test_an_edited_routes_file_is_served_without_a_restart_and_mistakes_stay_local(
    program: Callable[..., ProgramProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api, search = upstream("api"), upstream("search")
    gateway = program([orders(api.port)])
    assert get(gateway, "/search").status_code == 404
    assert gateway.routes is not None

    write_routes(
        gateway.routes,
        [
            orders(api.port),
            {"name": "search", "host": API, "path": "/search", "upstreams": [f"127.0.0.1:{search.port}"]},
            {"name": "limited", "host": API, "path": "/limited", "upstreams": [f"127.0.0.1:{api.port}"]}
            | {"rate_limit": "lots"},
            {"name": "broken", "path": "/broken"},
        ],
    )
    wait_until(lambda: get(gateway, "/search").status_code == 200, message="the new route")

    assert get(gateway, "/orders").status_code == 200
    assert (get(gateway, "/limited").status_code, get(gateway, "/limited").json()["error"]) == (
        503,
        "route_unavailable",
    )
    table = httpx.get(f"{gateway.admin_url}/routes").json()
    assert [item["ingress"] for item in table["rejected"]] == ["default/limited"]
    assert "plugin 'rate-limit': invalid config" in " ".join(table["rejected"][0]["reasons"])
    assert table["problems"] == [{"source": "routes.yaml: routes[3]", "message": "left out: upstreams: Field required"}]
    assert [seen.path for seen in search.requests] == ["/search"]


def distinct_upstream_connections(gateway_url: str, api: RecordingUpstream, requests: int = 40) -> int:
    """Send requests over fresh client connections; count the upstream connections they came on.

    A worker reuses its one idle upstream connection for sequential requests, so the count
    is the number of workers that served (the kernel spreads fresh connections over them).
    """
    for _ in range(requests):
        response = httpx.get(f"{gateway_url}/healthz", headers={"Host": API})
        assert response.status_code == 200
    return len({seen.client for seen in api.requests[-requests:]})


def health(port: int) -> dict[str, Any]:
    return {"name": "health", "host": API, "path": "/healthz", "upstreams": [f"127.0.0.1:{port}"]}


def test_one_worker_serves_sequential_requests_on_one_upstream_connection(
    program: Callable[..., ProgramProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    gateway = program([health(api.port)])

    assert distinct_upstream_connections(gateway.url, api) == 1  # the control for the two-worker tests


def test_serve_runs_two_workers_that_both_answer_and_stop_cleanly(
    program: Callable[..., ProgramProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    gateway = program([health(api.port)], workers=2)

    assert distinct_upstream_connections(gateway.url, api) == 2
    assert gateway.stop() == 0


def test_a_missing_routes_file_stops_the_program_before_it_listens(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PROGRAM), str(tmp_path / "nope.yaml"), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read routes file ")
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_of_error_not_a_traceback(tmp_path: Path) -> None:
    routes = write_routes(tmp_path / "routes.yaml", [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(PROGRAM), str(routes), "--listen", f"127.0.0.1:{port}", "--https-listen", ""],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_uvicorn_factory_mode_serves_the_proxy_with_two_workers(
    tmp_path: Path, upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    routes = write_routes(tmp_path / "routes.yaml", [health(api.port)])
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "tenant_gateway:proxy_app", "--app-dir", str(EXAMPLE)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = {**os.environ, "TENANT_GATEWAY_ROUTES": str(routes), "GATEWAY_LOG__LEVEL": "warning"}
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:

        def serving() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": API}).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=30, message="uvicorn serving the proxy")
        # The workers share one socket: a fresh connection goes to whichever accepts first, so
        # wait (generously) until the second worker is up and has taken some.
        connections: set[tuple[str, int]] = set()

        def both_serve() -> bool:
            distinct_upstream_connections(f"http://127.0.0.1:{port}", api, requests=10)
            connections.update(seen.client for seen in api.requests)
            return len(connections) >= 2

        wait_until(both_serve, timeout=30, message="both uvicorn workers serving")
        assert len(connections) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
