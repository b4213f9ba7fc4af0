"""The benchmark scripts still run (briefly) and print their tables; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.bench


@pytest.mark.parametrize("preset", [None, "policy", "balancing-3"])
def test_proxy_bench_compares_gateway_with_direct_and_nginx(preset: str | None) -> None:
    extra = ["--preset", preset] if preset else []
    result = subprocess.run(
        [
            sys.executable,
            "bench/proxy_bench.py",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--connections",
            "10",
            "--rounds",
            "1",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(r"^\s+10 (direct|nginx|gateway)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s+[\d.]+$", result.stdout, re.M)
    assert sorted(name for name, _, _ in rows) == ["direct", "gateway", "nginx"]
    assert all(int(rps) > 0 and errors == "0" for _, rps, errors in rows)
    assert re.search(r"c=10: gateway/nginx req/s [\d.]+x, p99 [\d.]+x; gateway/direct req/s [\d.]+x", result.stdout)
    if preset == "balancing-3":  # one Ingress per strategy, over three upstream endpoints, in the same rounds
        assert "3 upstream endpoints" in result.stdout
        routes = re.findall(r"^\s+10 gateway:([\w-]+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s+[\d.]+$", result.stdout, re.M)
        assert [name for name, _, _ in routes] == ["round-robin", "least-request", "ewma"]
        assert all(int(rps) > 0 and errors == "0" for _, rps, errors in routes)
        for strategy in ("least-request", "ewma"):
            ratios = (
                rf"c=10: gateway:{strategy}/gateway:round-robin req/s [\d.]+x, p99 [\d.]+x, CPU per request [\d.]+x"
            )
            assert re.search(ratios, result.stdout)


def test_table_build_bench_prints_times() -> None:
    result = subprocess.run(
        [sys.executable, "bench/table_build.py", "--sizes", "100", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+100\s+300\s+200(\s+[\d.]+){4}$", result.stdout, re.M), result.stdout


def test_balancer_pick_bench_prints_costs() -> None:
    result = subprocess.run(
        [sys.executable, "bench/balancer_pick.py", "--endpoints", "3", "--number", "200", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for strategy in (
        "round-robin",
        "random",
        "least-request",
        "ewma",
        "hash header",
        "round-robin \\+ affinity \\(hit\\)",
    ):
        assert re.search(rf"^{strategy}\s+\d+\s+\d+\s+\d+$", result.stdout, re.M), result.stdout
