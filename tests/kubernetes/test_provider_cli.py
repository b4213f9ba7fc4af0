"""``gateway run --kubernetes``: configuration mistakes fail at start-up, clearly.

(The flags reaching the settings is shown by every process test: ``--kubernetes
--kubeconfig`` on top of a config file, and ``--namespace`` in test_provider_process.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway_core.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", "--port", "0", "--admin-port", "0", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_both_route_sources_at_once_is_an_error(tmp_path: Path) -> None:
    code, output = run("--kubernetes", "--manifests", str(tmp_path))
    assert code == 2
    assert "either the Kubernetes API (--kubernetes) or a manifests directory (--manifests DIR), not both" in output


def test_an_unreadable_kubeconfig_is_an_error(tmp_path: Path) -> None:
    code, output = run("--kubernetes", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 2
    assert f"cannot load the Kubernetes client configuration from kubeconfig {tmp_path / 'missing'}" in output
    assert "Traceback" not in output


def test_without_a_kubeconfig_outside_a_cluster_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, output = run("--kubernetes")
    assert code == 2
    assert "in-cluster service account" in output
    assert "give --kubeconfig PATH" in output
