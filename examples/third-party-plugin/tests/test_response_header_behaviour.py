"""The plugin in a gateway served from a thread of the test process, before a real upstream.

The module is registered in code (``plugins=[...]``) with ``load_entry_points=False``: the
test sees only this plugin, whatever else is installed, and needs no installation at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gateway_plugin_response_header
import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)

Gateway = Callable[..., InProcessGateway]


def serve(
    in_process_gateway: Gateway,
    manifests_dir: Path,
    backend: RecordingUpstream,
    config: dict[str, Any] | None,
    *,
    overrides: dict[str, Any] | None = None,
) -> InProcessGateway:
    """``shop.test`` with the plugin bound by annotation (``config`` None: bound without one),
    and ``open.test`` with no annotation, both routed to ``backend``."""
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            ingress(
                "shop",
                rules=[("shop.test", [path("/", "api")])],
                annotations=plugin_annotations({"response-header": config}),
            ),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return in_process_gateway(
        manifests=manifests_dir,
        plugins=[gateway_plugin_response_header],
        load_entry_points=False,
        overrides=overrides,
    )


def test_the_header_is_added_on_the_bound_route_only(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    api = upstream("api")
    gateway = serve(in_process_gateway, manifests_dir, api, {"value": "edge-1"})

    bound = httpx.get(f"{gateway.url}/cart?id=7", headers={"Host": "shop.test"})
    other = httpx.get(f"{gateway.url}/cart", headers={"Host": "open.test"})

    assert bound.status_code == 200
    assert bound.headers.get_list("x-served-by") == ["edge-1"]
    assert bound.json()["path"] == "/cart?id=7"  # the body streamed through untouched
    assert "x-served-by" not in other.headers
    assert [seen.path for seen in api.requests] == ["/cart?id=7", "/cart"]


def test_overwrite_replaces_every_value_the_upstream_sent(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    # Two values, in two spellings: header names are case-insensitive, both are replaced.
    api = upstream("api", extra_headers={"X-Served-By": "app-pod-3", "x-served-by": "app-pod-3b"})
    gateway = serve(in_process_gateway, manifests_dir, api, {"name": "X-Served-By", "value": "edge-1"})

    response = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})

    assert response.headers.get_list("x-served-by") == ["edge-1"]


def test_without_overwrite_the_upstream_header_wins_and_a_missing_one_is_added(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    api = upstream("api", extra_headers={"Cache-Control": "no-store"})
    config = {"name": "cache-control", "value": "max-age=60", "overwrite": False}
    gateway = serve(in_process_gateway, manifests_dir, api, config)
    assert httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"}).headers.get_list("cache-control") == ["no-store"]

    api.extra_headers.clear()  # the same route, the upstream no longer sends one
    assert httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"}).headers["cache-control"] == "max-age=60"


def test_answers_the_gateway_makes_itself_are_left_alone(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    dead = RecordingUpstream(name="gone", port=free_port())  # never started: nothing listens there
    gateway = serve(in_process_gateway, manifests_dir, dead, {"value": "edge-1"})

    response = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})

    assert (response.status_code, response.json()["error"]) == (502, "upstream_connect_failed")
    assert "x-served-by" not in response.headers


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"value": "edge-1", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"value": "edge-1\r\nSet-Cookie: session=stolen"}, "value: Value error, must be printable ASCII"),
        ({"name": "content-length", "value": "0"}, "framing or hop-by-hop"),
        (None, "value: Field required"),
    ],
)
def test_an_invalid_config_rejects_the_ingress_and_nothing_else(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Gateway,
    config: dict[str, Any] | None,
    reason: str,
) -> None:
    api = upstream("api")
    gateway = serve(in_process_gateway, manifests_dir, api, config)

    refused = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})
    other = httpx.get(f"{gateway.url}/", headers={"Host": "open.test"})

    assert (refused.status_code, refused.json()["error"]) == (503, "route_unavailable")
    assert other.status_code == 200
    assert len(api.requests) == 1  # only the request to open.test
    rejected = httpx.get(f"{gateway.admin_url}/routes").json()["rejected"]
    assert [item["ingress"] for item in rejected] == ["default/shop"]
    assert reason in " ".join(rejected[0]["reasons"])


def test_settings_bind_it_everywhere_and_an_annotation_replaces_the_default_whole(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    api = upstream("api")
    overrides = {
        "plugins": {
            "global": ["response-header"],
            "config": {"response-header": {"name": "x-edge", "value": "global"}},
        }
    }
    gateway = serve(in_process_gateway, manifests_dir, api, {"value": "shop"}, overrides=overrides)

    unannotated = httpx.get(f"{gateway.url}/", headers={"Host": "open.test"})
    annotated = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})

    assert unannotated.headers["x-edge"] == "global"
    # The annotation is used whole: `name` falls back to the model's default, not to x-edge.
    assert annotated.headers["x-served-by"] == "shop"
    assert "x-edge" not in annotated.headers
