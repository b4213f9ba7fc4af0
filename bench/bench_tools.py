"""What the proxy benchmark drives and measures with: nginx, wrk, processes and free ports.

Shared by ``proxy_bench.py``; no gateway specifics here. Processes start in their own session
and are stopped (TERM, then KILL) when their context ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    target: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = float("nan")
    """CPU time the measured server's processes spent per request, in microseconds."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk")) if not _which(tool)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(Path(d) / tool) for d in ("/usr/sbin", "/usr/local/sbin", "/sbin") if (Path(d) / tool).exists()), None
    )


def wait_http(url: str, timeout: float = 20.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers=headers or {})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def nginx(conf: str, workdir: Path, name: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    binary = _which("nginx") or "nginx"
    return process(
        [binary, "-c", str(path), "-p", str(workdir), "-e", str(workdir / f"{name}-error.log")], workdir / f"{name}.out"
    )


def run_wrk(
    url: str,
    *,
    connections: int,
    threads: int,
    duration: float,
    headers: dict[str, str] | None = None,
    server: int | None = None,
) -> Result:
    """One wrk run; with ``server`` (a process group id) also that group's CPU time per request."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    for name, value in (headers or {}).items():
        args[1:1] = ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(server) if server is not None else 0.0
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(server) - cpu_before if server is not None else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    cpu_us = cpu / requests * 1e6 if requests else float("nan")
    return Result(url, connections, rps, _percentile(out, "50%"), _percentile(out, "99%"), errors, cpu_us)


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds used so far by the live processes of process group ``group``."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[2]) == group:  # after the name: state, ppid, pgrp, ..., utime (11), stime (12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def median_result(target: str, connections: int, runs: list[Result]) -> Result:
    """The median of each figure over the rounds (errors are summed)."""
    return Result(
        target=target,
        connections=connections,
        requests_per_second=statistics.median(r.requests_per_second for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
    )


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
