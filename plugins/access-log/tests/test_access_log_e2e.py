"""access-log through real ``gateway run`` processes: a file shared by workers, and stdout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    wait_until,
    write_manifests,
)


def _manifests(directory: Path, upstream: RecordingUpstream, config: dict[str, Any] | None) -> Path:
    write_manifests(
        directory,
        [
            *routed_service("api", upstream.port),
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"access-log": config})),
        ],
    )
    return directory


@pytest.mark.e2e
def test_two_workers_append_whole_lines_to_one_file_and_flush_at_shutdown(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    config = {"output": str(log), "fields": ["method", "path", "status", "client"], "headers": ["X-Seq"]}
    process = gateway_process(_manifests(manifests_dir, upstream("api"), config), workers=2)
    sent = 40
    with httpx.Client(base_url=process.url, headers={"Connection": "close"}) as client:
        for index in range(sent):  # a new connection each time: the kernel spreads them over both workers
            assert client.get(f"/item/{index}%22%5C", headers={"X-Seq": str(index)}).status_code == 200
    assert process.stop() == 0  # SIGTERM: each worker writes what it still holds before exiting
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(int(entry["headers"]["x-seq"]) for entry in entries) == list(range(sent))
    assert {entry["path"] for entry in entries} == {f'/item/{index}"\\' for index in range(sent)}
    assert {(entry["method"], entry["status"], entry["client"]) for entry in entries} == {("GET", 200, "127.0.0.1")}
    assert "Traceback" not in process.log()


@pytest.mark.e2e
def test_the_default_output_is_the_process_stdout(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    process = gateway_process(_manifests(manifests_dir, upstream("api"), None))
    assert httpx.get(f"{process.url}/hello?secret=1", headers={"Host": "stdout.test"}).status_code == 200
    assert httpx.get(f"{process.url}/missing-upstream-header").status_code == 200

    def entries() -> list[dict[str, Any]]:
        return [json.loads(line) for line in process.log().splitlines() if line.startswith('{"time":')]

    wait_until(lambda: len(entries()) == 2, timeout=5, message=f"two access log lines on stdout\n{process.log()}")
    first, second = entries()
    assert (first["host"], first["path"], first["status"]) == ("stdout.test", "/hello", 200)
    assert first["plugins"] == ["access-log"]
    assert first["ingress"] == "default/api"
    assert second["path"] == "/missing-upstream-header"
    assert "secret=1" not in process.log()
