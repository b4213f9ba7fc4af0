"""HTTPS benchmark: the gateway terminating TLS against nginx terminating TLS, in one run.

Both present the same certificate (EC P-256, made for the run) with the same protocols and
ciphers (TLS 1.2+, ``ECDHE+AESGCM:ECDHE+CHACHA20``) and proxy to the same nginx upstream over
plain HTTP. The gateway's certificate comes from a ``kubernetes.io/tls`` Secret named in the
Ingress's ``spec.tls`` and is chosen by SNI, as in production. Measured with wrk (its
OpenSSL), on 127.0.0.1 only, in interleaved rounds; each figure is the median:

  - ``nginx-https`` and ``gateway-https``: keep-alive connections (one handshake each, then
    requests): the cost of encrypting requests and responses;
  - ``gateway-http``: the same gateway on its plain listener, to show what TLS costs it;
  - with ``--handshakes``: ``nginx-handshake`` and ``gateway-handshake`` send
    ``Connection: close``, so every request is a new TLS connection (full handshake).

    python bench/https_bench.py                       # c=50, 10 s per run, 3 rounds
    python bench/https_bench.py --duration 3 --connections 50 200 --handshakes --json out.json

It installs nginx and wrk if missing (apt-get, as root) and stops everything it started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import textwrap
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import yaml
from bench_tools import Result, ensure_tools, free_port, median_result, nginx, process, run_wrk
from proxy_bench import BODY, UPSTREAM_CONF

from gateway_core.testing import ingress, path, pooled_service, tls_secret
from gateway_core.tls.certificates import self_signed

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
NAME = "127.0.0.1"
"""The certificate's DNS name and the SNI wrk sends (it sends the URL's host, an address here)."""

TLS_PROXY_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/tls-proxy.pid;
error_log {dir}/tls-proxy-error.log warn;
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
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {dir}/bench.crt;
        ssl_certificate_key {dir}/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {ciphers};
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

Target = tuple[str, dict[str, str], int]


def wait_https(url: str, timeout: float = 20.0) -> None:
    """Wait for ``url`` to answer 200 (any certificate: this checks readiness, not trust)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")


def presented_fingerprint(port: int) -> str:
    """SHA-256 of the certificate a server on 127.0.0.1:``port`` presents for SNI ``NAME``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), 5), server_hostname=NAME) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--connections", type=int, nargs="+", default=[50], help="wrk -c values (default 50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target; medians (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway and nginx workers (default 2)")
    parser.add_argument("--handshakes", action="store_true", help="also measure a new connection per request")
    parser.add_argument("--json", dest="json_out", help="also write results as JSON to this file")
    args = parser.parse_args()

    ensure_tools()
    gateway_bin = shutil.which("gateway") or str(Path(sys.executable).with_name("gateway"))
    with tempfile.TemporaryDirectory(prefix="gateway-https-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        cert_pem, key_pem = self_signed("https bench", dns_name=NAME, days=2)
        (work / "bench.crt").write_bytes(cert_pem)
        (work / "bench.key").write_bytes(key_pem)
        (work / "bench.key").chmod(0o600)
        upstream, nginx_tls, gateway, gateway_https, admin = (free_port() for _ in range(5))
        listen = f"        listen 127.0.0.1:{upstream} reuseport backlog=4096;"
        stack.enter_context(
            nginx(UPSTREAM_CONF.format(workers=1, dir=work, listen=listen, body=BODY), work, "upstream")
        )
        tls_conf = TLS_PROXY_CONF.format(
            workers=args.workers, dir=work, upstream=upstream, port=nginx_tls, ciphers=CIPHERS
        )
        nginx_server = stack.enter_context(nginx(tls_conf, work, "tls-proxy"))
        objects = [
            *pooled_service("bench", [upstream]),
            tls_secret("bench-tls", cert_pem, key_pem),
            ingress("bench", rules=[(None, [path("/", "bench")])], tls=[([NAME], "bench-tls")]),
        ]
        (work / "manifests").mkdir()
        (work / "manifests" / "bench.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        config = work / "gateway.yaml"
        config.write_text(
            textwrap.dedent(f"""
            log: {{level: warning}}
            gateway: {{max_idle_conns: 320}}
            tls:
              ciphers: "{CIPHERS}"
              ssl_redirect: false
              default_cert_file: {work / "bench.crt"}   # the same certificate without SNI too
              default_key_file: {work / "bench.key"}
        """)
        )
        command = [
            gateway_bin,
            "run",
            "--manifests",
            str(work / "manifests"),
            "--host",
            "127.0.0.1",
            "--port",
            str(gateway),
            "--https-port",
            str(gateway_https),
            "--admin-port",
            str(admin),
            "--workers",
            str(args.workers),
            "--config",
            str(config),
        ]
        gateway_server = stack.enter_context(process(command, work / "gateway.log"))
        close = {"Connection": "close"}
        targets: dict[str, Target] = {
            "nginx-https": (f"https://{NAME}:{nginx_tls}/", {}, nginx_server.pid),
            "gateway-https": (f"https://{NAME}:{gateway_https}/", {}, gateway_server.pid),
            "gateway-http": (f"http://{NAME}:{gateway}/", {}, gateway_server.pid),
        }
        if args.handshakes:
            targets["nginx-handshake"] = (f"https://{NAME}:{nginx_tls}/", close, nginx_server.pid)
            targets["gateway-handshake"] = (f"https://{NAME}:{gateway_https}/", close, gateway_server.pid)
        try:
            wait_https(f"https://{NAME}:{nginx_tls}/")
            wait_https(f"https://{NAME}:{gateway_https}/")
        except RuntimeError:
            for log in sorted(work.glob("*.log")) + sorted(work.glob("*.out")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        fingerprints = {presented_fingerprint(port) for port in (nginx_tls, gateway_https)}
        if len(fingerprints) != 1:
            print("nginx and the gateway present different certificates", file=sys.stderr)
            return 1
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
        for _ in range(args.rounds):
            for name, (url, headers, server) in targets.items():
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


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nHTTPS benchmark: {args.workers} workers (gateway and nginx), wrk -t{args.threads}, "
        f"{args.duration:g}s per run, median of {args.rounds} interleaved rounds, one EC P-256 certificate, "
        f"{os.cpu_count()} CPUs"
    )
    width = max(len(r.target) for r in results)
    print(f"{'conns':>5} {'target':<{width}} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'cpu µs':>7}")
    for result in results:
        print(
            f"{result.connections:>5} {result.target:<{width}} {result.requests_per_second:>10.0f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>7} {result.cpu_us:>7.1f}"
        )
    print()
    for connections in sorted({r.connections for r in results}):
        by = {r.target: r for r in results if r.connections == connections}

        def ratio(a: str, b: str, by: dict[str, Result] = by) -> str:
            return f"{by[a].requests_per_second / by[b].requests_per_second:.2f}x"

        line = f"c={connections}: gateway-https/nginx-https req/s {ratio('gateway-https', 'nginx-https')}"
        line += f", p99 {by['gateway-https'].p99_ms / by['nginx-https'].p99_ms:.2f}x"
        line += f"; gateway-https/gateway-http req/s {ratio('gateway-https', 'gateway-http')}"
        if "gateway-handshake" in by:
            line += f"; handshakes gateway/nginx {ratio('gateway-handshake', 'nginx-handshake')}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
