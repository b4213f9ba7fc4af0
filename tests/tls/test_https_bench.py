"""The HTTPS bench still runs (briefly) and prints its comparison; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
def test_https_bench_compares_the_gateway_with_nginx_on_one_certificate() -> None:
    command = [sys.executable, "bench/https_bench.py", "--duration", "1", "--warmup", "0", "--rounds", "1"]
    result = subprocess.run(
        [*command, "--connections", "10", "--handshakes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(r"^\s+10 ([\w-]+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s+[\d.]+$", result.stdout, re.M)
    assert [name for name, _, _ in rows] == [
        "nginx-https",
        "gateway-https",
        "gateway-http",
        "nginx-handshake",
        "gateway-handshake",
    ]
    assert all(int(rps) > 0 and errors == "0" for _, rps, errors in rows), rows
    assert re.search(
        r"c=10: gateway-https/nginx-https req/s [\d.]+x, p99 [\d.]+x; gateway-https/gateway-http req/s [\d.]+x; "
        r"handshakes gateway/nginx [\d.]+x",
        result.stdout,
    )
