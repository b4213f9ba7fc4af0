"""The ``gateway`` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway_core.testing import free_port, ingress, path, routed_service, service, wait_until, write_manifests

ROOT = Path(__file__).resolve().parents[1]


def gateway(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway_core", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_check_accepts_the_quickstart() -> None:
    result = gateway("check", str(ROOT / "examples" / "quickstart"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors" in result.stdout


def test_check_reports_each_problem_with_object_and_field(manifests_dir: Path) -> None:
    (manifests_dir / "broken.yaml").write_text("kind: Ingress\nmetadata: [unclosed\n")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", 8080),
            ingress(
                "unknown-plugin",
                rules=[("a.local", [path("/", "api")])],
                annotations={"meta-native.io/plugins": "no-such-plugin"},
            ),
            ingress("no-service", rules=[("b.local", [path("/", "missing")])]),
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "bad-type"},
                "spec": {
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Sometimes",
                                        "backend": {"service": {"name": "api", "port": {"number": 80}}},
                                    }
                                ]
                            }
                        }
                    ]
                },
            },
        ],
        filename="objects.yaml",
    )
    result = gateway("check", str(manifests_dir))
    assert result.returncode == 1
    out = result.stdout
    assert "error: broken.yaml: invalid YAML at line 3, column 1" in out
    assert "Ingress bad-type: spec.rules[0].http.paths[0].pathType: Input should be" in out
    assert "error: Ingress default/unknown-plugin: plugin 'no-such-plugin' is not installed" in out
    assert "warning: Ingress default/no-service (b.local/): service default/missing not found" in out
    assert "Traceback" not in out + result.stderr


def test_check_strict_fails_on_warnings(manifests_dir: Path) -> None:
    write_manifests(manifests_dir, [service("api"), ingress("app", rules=[("a.local", [path("/", "api")])])])
    assert gateway("check", str(manifests_dir)).returncode == 0  # no endpoints: a warning
    assert gateway("check", "--strict", str(manifests_dir)).returncode == 1


def test_plugins_lists_installed_plugins() -> None:
    result = gateway("plugins", "--json")
    assert result.returncode == 0
    assert isinstance(json.loads(result.stdout), list)


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["--manifests", "/nonexistent/dir"], None, "manifests directory /nonexistent/dir does not exist"),
        ([], "server: {adr: ':1'}", "server.adr: Extra inputs are not permitted"),
        ([], "plugins: {global: [missing]}", "plugins.global names plugins that are not installed: missing"),
        ([], None, "no route source"),
    ],
)
def test_run_refuses_bad_configuration_clearly(
    tmp_path: Path, manifests_dir: Path, args: list[str], config: str | None, message: str
) -> None:
    command = ["run", "--port", str(free_port()), "--admin-port", str(free_port()), *args]
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        command += ["--config", str(tmp_path / "c.yaml"), "--manifests", str(manifests_dir)]
    result = gateway(*command)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_busy_port(manifests_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gateway(
            "run",
            "--manifests",
            str(manifests_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--admin-port",
            str(free_port()),
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_demo_routes_by_host_and_path_and_stops_on_sigterm() -> None:
    port, admin = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_core", "demo", "--port", str(port), "--admin-port", str(admin)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=20, message="demo readiness")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/api/orders", headers={"host": "shop.localhost"}).json()["service"] == "api"
        assert httpx.get(base + "/", headers={"host": "shop.localhost"}).json()["service"] == "web"
        assert httpx.get(base + "/x", headers={"host": "team-a.apps.localhost"}).json()["service"] == "api"
        assert httpx.get(base + "/x", headers={"host": "unknown.example"}).json()["service"] == "fallback"
        canary = {"host": "canary.localhost", "x-canary": "always"}
        assert httpx.get(base + "/", headers=canary).json()["service"] == "api"
        # The protected route shows the three answers the quickstart promises: 401, 200, 429.
        account = base + "/account"
        assert httpx.get(account, headers={"host": "shop.localhost"}).status_code == 401
        keyed = {"host": "shop.localhost", "x-api-key": "demo-key-123"}
        answers = [httpx.get(account, headers=keyed) for _ in range(6)]
        assert [answer.status_code for answer in answers] == [200] * 5 + [429]
        assert [answer.headers["ratelimit-remaining"] for answer in answers[:5]] == ["4", "3", "2", "1", "0"]
        assert answers[0].json()["service"] == "api"
        limited = httpx.get(account, headers=keyed)
        assert int(limited.headers["retry-after"]) > 0
        assert limited.headers["ratelimit-limit"] == "5"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "curl -H 'Host: shop.localhost'" in output
    assert "Traceback" not in output


def test_version() -> None:
    result = gateway("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("gateway, version ")


def test_plugins_add_cli_commands_through_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import click
    from click.testing import CliRunner

    from gateway_core import cli, hookimpl
    from gateway_core.plugin_manager import get_plugin_manager

    class Commands:
        @hookimpl
        def gateway_cli_commands(self) -> list[click.Command]:
            @click.command("hello")
            def hello() -> None:
                """Say hello."""
                click.echo("hello from a plugin")

            return [hello]

    monkeypatch.setattr(
        cli, "get_plugin_manager", lambda **_: get_plugin_manager(plugins=[Commands()], load_entry_points=False)
    )
    runner = CliRunner()
    assert runner.invoke(cli.main, ["hello"]).output == "hello from a plugin\n"
    assert "hello" in runner.invoke(cli.main, ["--help"]).output
    assert runner.invoke(cli.main, ["nope"]).exit_code == 2
