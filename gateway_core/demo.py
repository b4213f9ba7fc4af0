"""``gateway demo``: the quickstart manifests, three echo upstreams and a gateway, in one process.

The echo upstreams answer JSON naming themselves, so routing by host and path is visible
with curl. They listen where the quickstart's EndpointSlices say: 127.0.0.1:9101-9103.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

DEMO_UPSTREAMS = {"web": 9101, "api": 9102, "fallback": 9103}

Scope = dict[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]
]


def quickstart_dir() -> Path:
    """The quickstart manifests: inside the installed wheel, or in the source checkout."""
    packaged = Path(str(resources.files("gateway_core"))) / "_quickstart"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def echo_app(service: str) -> ASGI:
    """An ASGI app answering JSON that names ``service`` and echoes the request line."""

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        payload = {
            "service": service,
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1")
            + (("?" + scope["query_string"].decode()) if scope["query_string"] else ""),
            "host": headers.get("host"),
            "x-forwarded-for": headers.get("x-forwarded-for"),
        }
        body = (json.dumps(payload, indent=2) + "\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def upstream_configs() -> list[uvicorn.Config]:
    """uvicorn configs for the demo upstreams."""
    return [
        uvicorn.Config(
            echo_app(name), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off", ws="none"
        )
        for name, port in DEMO_UPSTREAMS.items()
    ]


def curl_examples(port: int, admin_port: int) -> str:
    """The commands ``gateway demo`` prints."""
    base = f"http://127.0.0.1:{port}"
    return "\n".join(
        [
            "Meta-Native Gateway demo is running. Try:",
            "",
            f"  curl -H 'Host: shop.localhost' {base}/             # -> web (Prefix /)",
            f"  curl -H 'Host: shop.localhost' {base}/api/orders   # -> api (Prefix /api, longest match)",
            f"  curl -H 'Host: shop.localhost' {base}/healthz      # -> api (Exact /healthz)",
            f"  curl -H 'Host: team-a.apps.localhost' {base}/      # -> api (wildcard host)",
            f"  curl -H 'Host: unknown.example' {base}/anything    # -> fallback (default backend)",
            "",
            "  # /account is bound to key-auth and rate-limit (5 a minute per consumer):",
            f"  curl -i -H 'Host: shop.localhost' {base}/account   # -> 401, no API key",
            f"  curl -i -H 'Host: shop.localhost' -H 'X-API-Key: demo-key-123' {base}/account"
            "   # -> 200 as consumer demo; the 6th in a minute -> 429",
            "  # canary.localhost is web, with api as a canary (50-canary.yaml) and a mirror to fallback:",
            f"  curl -H 'Host: canary.localhost' {base}/           # -> web, or api one time in four",
            f"  curl -H 'Host: canary.localhost' -H 'X-Canary: always' {base}/   # -> api (header match)",
            f"  curl http://127.0.0.1:{admin_port}/routes           # the route table",
            f"  curl http://127.0.0.1:{admin_port}/metrics          # Prometheus metrics",
            "",
            f"Manifests: {quickstart_dir()} (edit them: routes reload on save). Ctrl-C stops.",
        ]
    )
