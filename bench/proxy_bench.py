"""Proxy benchmark: the gateway against a direct connection and against nginx, in one run.

Starts, on 127.0.0.1 only:
  - an upstream: nginx (Debian package) answering a small body;
  - nginx as a reverse proxy with the same worker count as the gateway and
    ``keepalive 320`` to the upstream, as ingress-nginx configures it;
  - the gateway (``gateway run --manifests``, no plugins unless --plugins) on one route;
then drives each with wrk at every --connections value and prints req/s, p50, p99 and the
ratios gateway/nginx and gateway/direct. The targets are measured in interleaved rounds
(direct, nginx, gateway, direct, ...) and each figure is the median over the rounds, so a
neighbour's burst of load on a shared machine cannot bias one target. It installs nginx and wrk if missing (apt-get, as
root) and stops everything it started.

    python bench/proxy_bench.py                   # c=50 and c=200, 10 s each
    python bench/proxy_bench.py --duration 3 --connections 50 --json out.json
    python bench/proxy_bench.py --preset policy   # with bench/presets/policy.yaml's plugins bound

A preset (``bench/presets/NAME.yaml``) names the plugins to bind, their configs, extra
objects for the manifests (a Secret of API keys, say) and headers wrk sends to every target;
``{work}`` in a config value is the run's scratch directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

BODY = "x" * 64

UPSTREAM_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/upstream.pid;
error_log {dir}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""

PROXY_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 320;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""

MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {{name: bench}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-1
  labels: {{kubernetes.io/service-name: bench}}
addressType: IPv4
ports: [{{name: http, port: {upstream}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  annotations: {annotations}
spec:
  rules:
  - http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: bench, port: {{name: http}}}}}}}}
"""


@dataclass
class Result:
    target: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


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
    url: str, *, connections: int, threads: int, duration: float, headers: dict[str, str] | None = None
) -> Result:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    for name, value in (headers or {}).items():
        args[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Result(url, connections, rps, _percentile(out, "50%"), _percentile(out, "99%"), errors)


def median_result(target: str, connections: int, runs: list[Result]) -> Result:
    """The median of each figure over the rounds (errors are summed)."""
    return Result(
        target=target,
        connections=connections,
        requests_per_second=statistics.median(r.requests_per_second for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--connections", type=int, nargs="+", default=[50, 200], help="wrk -c values")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target; medians (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway and nginx-proxy workers (default 2)")
    parser.add_argument("--plugins", default="", help="annotation meta-native.io/plugins for the route")
    parser.add_argument(
        "--plugin-config",
        action="append",
        default=[],
        metavar="NAME=YAML",
        help="meta-native.io/plugin.NAME annotation (repeatable)",
    )
    parser.add_argument("--gateway-config", help="extra YAML config file for the gateway")
    parser.add_argument("--preset", help="bench/presets/NAME.yaml: plugins, configs, objects and headers to use")
    parser.add_argument("--json", dest="json_out", help="also write results as JSON to this file")
    args = parser.parse_args()

    ensure_tools()
    gateway_bin = shutil.which("gateway") or str(Path(sys.executable).with_name("gateway"))
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        upstream, proxy, gateway, admin = free_port(), free_port(), free_port(), free_port()
        stack.enter_context(
            nginx(UPSTREAM_CONF.format(workers=1, dir=work, port=upstream, body=BODY), work, "upstream")
        )
        stack.enter_context(
            nginx(PROXY_CONF.format(workers=args.workers, dir=work, port=proxy, upstream=upstream), work, "proxy")
        )
        manifests = work / "manifests"
        manifests.mkdir()
        preset = load_preset(args.preset, work) if args.preset else {}
        if preset:
            args.plugins = preset.get("plugins", args.plugins)
        annotations = {}
        if args.plugins:
            annotations["meta-native.io/plugins"] = args.plugins
        for name, config in preset.get("config", {}).items():
            annotations[f"meta-native.io/plugin.{name}"] = json.dumps(config)
        for item in args.plugin_config:
            name, _, value = item.partition("=")
            annotations[f"meta-native.io/plugin.{name}"] = value
        (manifests / "bench.yaml").write_text(MANIFESTS.format(upstream=upstream, annotations=json.dumps(annotations)))
        if preset.get("objects"):
            (manifests / "preset.yaml").write_text(yaml.safe_dump_all(preset["objects"]))
        headers: dict[str, str] = preset.get("headers", {})
        config = work / "gateway.yaml"
        config.write_text(
            textwrap.dedent("""
            log: {level: warning}
            gateway: {max_idle_conns: 320}
        """)
        )
        command = [
            gateway_bin,
            "run",
            "--manifests",
            str(manifests),
            "--port",
            str(gateway),
            "--host",
            "127.0.0.1",
            "--admin-port",
            str(admin),
            "--workers",
            str(args.workers),
            "--config",
            args.gateway_config or str(config),
        ]
        stack.enter_context(process(command, work / "gateway.log"))
        try:
            for url in (
                f"http://127.0.0.1:{upstream}/",
                f"http://127.0.0.1:{proxy}/",
                f"http://127.0.0.1:{admin}/ready",
                f"http://127.0.0.1:{gateway}/",
            ):
                wait_http(url, headers=headers)
        except RuntimeError:
            for log in sorted(work.glob("*.log")) + sorted(work.glob("*.out")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        targets = {
            "direct": f"http://127.0.0.1:{upstream}/",
            "nginx": f"http://127.0.0.1:{proxy}/",
            "gateway": f"http://127.0.0.1:{gateway}/",
        }
        results: list[Result] = []
        for connections in args.connections:
            if args.warmup > 0:
                for url in targets.values():
                    run_wrk(url, connections=connections, threads=args.threads, duration=args.warmup, headers=headers)
            rounds: dict[str, list[Result]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, url in targets.items():
                    rounds[name].append(
                        run_wrk(
                            url,
                            connections=connections,
                            threads=args.threads,
                            duration=args.duration,
                            headers=headers,
                        )
                    )
            results += [median_result(name, connections, runs) for name, runs in rounds.items()]
        print_table(results, args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps([asdict(r) for r in results], indent=2))
        gateway_log = (work / "gateway.log").read_text()
        if "Traceback" in gateway_log:
            print("\nthe gateway logged a traceback:\n" + gateway_log[-4000:], file=sys.stderr)
            return 1
    return 0


def load_preset(name: str, work: Path) -> dict[str, Any]:
    """``bench/presets/NAME.yaml`` with ``{work}`` in config strings replaced by the scratch dir."""
    path = Path(__file__).resolve().parent / "presets" / f"{name}.yaml"
    preset: dict[str, Any] = yaml.safe_load(path.read_text())

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{work}", str(work))
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    preset["config"] = fill(preset.get("config", {}))
    return preset


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    plugins = args.plugins or "none"
    print(
        f"\nproxy benchmark: {args.workers} workers (gateway and nginx), wrk -t{args.threads}, "
        f"{args.duration:g}s per run, median of {args.rounds} interleaved rounds, plugins: {plugins}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'conns':>5} {'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for result in results:
        print(
            f"{result.connections:>5} {result.target:<8} {result.requests_per_second:>10.0f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>7}"
        )
    print()
    for connections in sorted({r.connections for r in results}):
        by = {r.target: r for r in results if r.connections == connections}
        gw, ng, direct = by["gateway"], by["nginx"], by["direct"]
        print(
            f"c={connections}: gateway/nginx req/s {gw.requests_per_second / ng.requests_per_second:.2f}x, "
            f"p99 {gw.p99_ms / ng.p99_ms:.2f}x; gateway/direct req/s "
            f"{gw.requests_per_second / direct.requests_per_second:.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
