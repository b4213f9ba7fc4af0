"""Proxy benchmark: the gateway against a direct connection and against nginx, in one run.

Starts, on 127.0.0.1 only:
  - an upstream: nginx (Debian package) answering a small body, on --upstreams ports
    (each port one endpoint of the gateway's Service, as several pods would be);
  - nginx as a reverse proxy with the same worker count as the gateway, the same upstream
    servers (round robin) and ``keepalive 320``, as ingress-nginx configures it;
  - the gateway (``gateway run --manifests``, no plugins unless --plugins) on one route;
then drives each with wrk at every --connections value and prints req/s, p50, p99, the CPU
time the measured server's processes spent per request (hardly moved by a busy neighbour,
unlike req/s) and the ratios gateway/nginx and gateway/direct. The targets are measured in
interleaved rounds (direct, nginx, gateway, then nginx, gateway, direct, ...) and each figure
is the median over the rounds, so a neighbour's burst of load on a shared machine cannot bias
one target. It installs nginx and wrk if missing (apt-get, as root) and stops everything it
started.

    python bench/proxy_bench.py                   # c=50 and c=200, 10 s each
    python bench/proxy_bench.py --duration 3 --connections 50 --json out.json
    python bench/proxy_bench.py --preset policy   # with bench/presets/policy.yaml's plugins bound
    python bench/proxy_bench.py --preset balancing-3 --duration 5   # strategies side by side

A preset (``bench/presets/NAME.yaml``) names the plugins to bind, their configs, other Ingress
annotations (``meta-native.io/load-balance``, say), the number of upstream endpoints, extra
objects for the manifests (a Secret of API keys, say) and headers wrk sends to every target;
``{work}`` in a config value is the run's scratch directory. Its ``routes`` add Ingresses on
hosts ``NAME.bench``, each with its own annotations, measured as targets ``gateway:NAME`` in the
same rounds and compared with the first of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from bench_tools import Result, ensure_tools, free_port, median_result, nginx, process, run_wrk, wait_http

from gateway_core.testing import ingress, path, pooled_service

BODY = "x" * 64

Target = tuple[str, dict[str, str], int]
"""A measured target: URL, headers wrk sends, process group of the server doing the work."""

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
{listen}
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
{servers}
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


def manifests(
    upstreams: list[int], annotations: dict[str, str], routes: dict[str, dict[str, str]]
) -> list[dict[str, Any]]:
    """The Service over the upstream ports, the host-less Ingress and one Ingress per extra route."""
    objects = [
        *pooled_service("bench", upstreams),
        ingress("bench", rules=[(None, [path("/", "bench")])], annotations=annotations),
    ]
    for name, extra in routes.items():
        objects.append(
            ingress(
                f"bench-{name}", rules=[(f"{name}.bench", [path("/", "bench")])], annotations={**annotations, **extra}
            )
        )
    return objects


def annotation_values(values: dict[str, Any]) -> dict[str, str]:
    """Annotations as Kubernetes holds them: strings (a mapping or list as JSON)."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--connections", type=int, nargs="+", default=[50, 200], help="wrk -c values")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target; medians (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway and nginx-proxy workers (default 2)")
    parser.add_argument("--upstreams", type=int, help="upstream endpoints (ports) behind the Service (default 1)")
    parser.add_argument("--plugins", default="", help="annotation meta-native.io/plugins for the route")
    parser.add_argument(
        "--plugin-config",
        action="append",
        default=[],
        metavar="NAME=YAML",
        help="meta-native.io/plugin.NAME annotation (repeatable)",
    )
    parser.add_argument("--gateway-config", help="extra YAML config file for the gateway")
    parser.add_argument("--preset", help="bench/presets/NAME.yaml: plugins, configs, annotations, objects, headers")
    parser.add_argument("--json", dest="json_out", help="also write results as JSON to this file")
    args = parser.parse_args()

    ensure_tools()
    gateway_bin = shutil.which("gateway") or str(Path(sys.executable).with_name("gateway"))
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        preset = load_preset(args.preset, work) if args.preset else {}
        if preset:
            args.plugins = preset.get("plugins", args.plugins)
        args.upstreams = args.upstreams or int(preset.get("upstreams", 1))
        upstreams = [free_port() for _ in range(args.upstreams)]
        proxy, gateway, admin = free_port(), free_port(), free_port()
        listen = "\n".join(f"        listen 127.0.0.1:{port} reuseport backlog=4096;" for port in upstreams)
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in upstreams)
        upstream_server = stack.enter_context(
            nginx(UPSTREAM_CONF.format(workers=1, dir=work, listen=listen, body=BODY), work, "upstream")
        )
        proxy_server = stack.enter_context(
            nginx(PROXY_CONF.format(workers=args.workers, dir=work, port=proxy, servers=servers), work, "proxy")
        )
        annotations = annotation_values(preset.get("annotations", {}))
        if args.plugins:
            annotations["meta-native.io/plugins"] = args.plugins
        for name, config in preset.get("config", {}).items():
            annotations[f"meta-native.io/plugin.{name}"] = json.dumps(config)
        for item in args.plugin_config:
            name, _, value = item.partition("=")
            annotations[f"meta-native.io/plugin.{name}"] = value
        routes = {name: annotation_values(extra or {}) for name, extra in preset.get("routes", {}).items()}
        objects = manifests(upstreams, annotations, routes) + list(preset.get("objects", []))
        (work / "manifests").mkdir()
        (work / "manifests" / "bench.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
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
            str(work / "manifests"),
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
        gateway_server = stack.enter_context(process(command, work / "gateway.log"))
        # name: (url, headers, process group of the server whose CPU time is counted)
        targets: dict[str, Target] = {
            "direct": (f"http://127.0.0.1:{upstreams[0]}/", headers, upstream_server.pid),
            "nginx": (f"http://127.0.0.1:{proxy}/", headers, proxy_server.pid),
            "gateway": (f"http://127.0.0.1:{gateway}/", headers, gateway_server.pid),
        }
        for name in routes:
            route_headers = {**headers, "Host": f"{name}.bench"}
            targets[f"gateway:{name}"] = (f"http://127.0.0.1:{gateway}/", route_headers, gateway_server.pid)
        try:
            wait_http(f"http://127.0.0.1:{admin}/ready")
            for url, target_headers, _ in targets.values():
                wait_http(url, headers=target_headers)
        except RuntimeError:
            for log in sorted(work.glob("*.log")) + sorted(work.glob("*.out")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        results = measure(targets, args)
        print_table(results, args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps([asdict(r) for r in results], indent=2))
        gateway_log = (work / "gateway.log").read_text()
        if "Traceback" in gateway_log:
            print("\nthe gateway logged a traceback:\n" + gateway_log[-4000:], file=sys.stderr)
            return 1
    return 0


def measure(targets: dict[str, Target], args: argparse.Namespace) -> list[Result]:
    """Every target at every connection count: a warm-up, then interleaved rounds; medians."""
    results: list[Result] = []
    for connections in args.connections:
        if args.warmup > 0:
            for url, headers, _ in targets.values():
                run_wrk(url, connections=connections, threads=args.threads, duration=args.warmup, headers=headers)
        rounds: dict[str, list[Result]] = {name: [] for name in targets}
        names = list(targets)
        for number in range(args.rounds):
            start = number % len(names)  # each round starts one target later: no target always follows another
            for name in names[start:] + names[:start]:
                url, headers, server = targets[name]
                rounds[name].append(
                    run_wrk(
                        url,
                        connections=connections,
                        threads=args.threads,
                        duration=args.duration,
                        headers=headers,
                        server=server,
                    )
                )
        results += [median_result(name, connections, runs) for name, runs in rounds.items()]
    return results


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
        f"{args.upstreams} upstream endpoint{'s' if args.upstreams != 1 else ''}, {os.cpu_count()} CPUs"
    )
    width = max(8, *(len(r.target) for r in results))
    print(f"{'conns':>5} {'target':<{width}} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'cpu µs':>7}")
    for result in results:
        print(
            f"{result.connections:>5} {result.target:<{width}} {result.requests_per_second:>10.0f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>7} {result.cpu_us:>7.1f}"
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
        routes = [r for r in by.values() if r.target.startswith("gateway:")]
        for route in routes[1:]:
            base = routes[0]
            print(
                f"c={connections}: {route.target}/{base.target} req/s "
                f"{route.requests_per_second / base.requests_per_second:.3f}x, p99 {route.p99_ms / base.p99_ms:.2f}x, "
                f"CPU per request {route.cpu_us / base.cpu_us:.3f}x"
            )


if __name__ == "__main__":
    sys.exit(main())
