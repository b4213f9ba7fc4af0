"""rate-limit through a real in-process gateway, real sockets and a real upstream (memory storage)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)

Gateway = Callable[..., InProcessGateway]


def limited(name: str, host: str, config: dict[str, Any], *paths: str, **plugins: Any) -> dict[str, Any]:
    """An Ingress for ``host`` (paths default to ``/``) binding rate-limit (after any ``plugins``)."""
    bound = {**{key.replace("_", "-"): value for key, value in plugins.items()}, "rate-limit": config}
    return ingress(
        name,
        rules=[(host, [path(item, "api") for item in paths or ("/",)])],
        annotations=plugin_annotations(bound),
    )


@pytest.fixture
def serve(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> Callable[..., tuple[InProcessGateway, RecordingUpstream]]:
    """``serve(objects, **gateway_options)``: an upstream ``api`` and a gateway routing to it."""

    def make(objects: list[dict[str, Any]], **options: Any) -> tuple[InProcessGateway, RecordingUpstream]:
        backend = upstream("api", **options.pop("upstream_options", {}))
        write_manifests(manifests_dir, [*routed_service("api", backend.port), *objects])
        return in_process_gateway(manifests=manifests_dir, **options), backend

    return make


def statuses(url: str, count: int, **kwargs: Any) -> list[int]:
    with httpx.Client() as client:
        return [client.get(url, **kwargs).status_code for _ in range(count)]


def away_from_a_second_boundary() -> None:
    """Start a burst early in a wall-clock second (sliding windows are aligned to the clock)."""
    wait_until(lambda: time.time() % 1 < 0.5, timeout=2, interval=0.01, message="the first half of a second")


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
def test_each_strategy_allows_exactly_the_limit_then_429_then_resets(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]], strategy: str
) -> None:
    gateway, backend = serve([limited("api", "api.test", {"limit": "3/second", "strategy": strategy})])
    headers = {"Host": "api.test"}
    away_from_a_second_boundary()
    assert statuses(f"{gateway.url}/x", 5, headers=headers) == [200, 200, 200, 429, 429]
    assert len(backend.requests) == 3
    wait_until(
        lambda: httpx.get(f"{gateway.url}/x", headers=headers).status_code == 200,
        timeout=3,
        message="the window to reset",
    )
    assert len(backend.requests) == 4


def test_the_429_says_when_to_come_back_in_json_and_ietf_headers(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, backend = serve([limited("api", "api.test", {"limit": "2 per 5 seconds"})])
    assert statuses(f"{gateway.url}/x", 2, headers={"Host": "api.test"}) == [200, 200]
    refused = httpx.get(f"{gateway.url}/x", headers={"Host": "api.test"})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {"error": "rate_limited", "message": "too many requests: the limit is 2 per 5 second"}
    assert refused.headers["retry-after"] in {"4", "5"}
    assert refused.headers["ratelimit-reset"] == refused.headers["retry-after"]
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-policy"] == "2;w=5"
    assert len(backend.requests) == 2


def test_several_limits_at_once_each_refuses_with_its_own_numbers(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, _ = serve([limited("api", "api.test", {"limit": ["3 per 4 seconds", "2/second"]})])
    url, headers = f"{gateway.url}/x", {"Host": "api.test"}
    assert statuses(url, 2, headers=headers) == [200, 200]
    short = httpx.get(url, headers=headers)
    assert (short.status_code, short.headers["ratelimit-limit"], short.headers["retry-after"]) == (429, "2", "1")
    assert short.headers["ratelimit-policy"] == "2;w=1, 3;w=4"
    # A second later the per-second limit has room again, the 4-second one only one request.
    wait_until(lambda: httpx.get(url, headers=headers).status_code == 200, timeout=3, message="the 1 s window")
    long = httpx.get(url, headers=headers)
    assert (long.status_code, long.headers["ratelimit-limit"]) == (429, "3")
    assert 1 <= int(long.headers["retry-after"]) <= 4


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, _ = serve([limited("api", "api.test", {"limit": "2/minute"})])
    url = f"{gateway.url}/x"
    spoofed = [
        httpx.get(url, headers={"Host": "api.test", "X-Forwarded-For": f"203.0.113.{number}"}).status_code
        for number in range(1, 5)
    ]
    assert spoofed == [200, 200, 429, 429]


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, _ = serve(
        [limited("api", "api.test", {"limit": "2/minute"})],
        overrides={"server": {"trusted_proxies": ["127.0.0.1/32"]}},
    )
    url = f"{gateway.url}/x"

    def from_client(address: str, count: int) -> list[int]:
        return statuses(url, count, headers={"Host": "api.test", "X-Forwarded-For": address})

    assert from_client("203.0.113.7", 3) == [200, 200, 429]
    assert from_client("198.51.100.9", 2) == [200, 200]
    # The client cannot pick its bucket: the right-most untrusted hop is the one counted.
    assert from_client("198.51.100.99, 203.0.113.7", 1) == [429]
    assert from_client("x" * 5000, 3) == [200, 200, 429]  # garbage is a key like any other, never a 500


def test_key_by_header_counts_each_value_and_falls_back_to_the_client_ip(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    config = {"limit": "2/minute", "key": "header", "header": "X-Tenant"}
    gateway, _ = serve([limited("api", "api.test", config)])
    url = f"{gateway.url}/x"

    def tenant(value: str | None, count: int) -> list[int]:
        headers = {"Host": "api.test"} if value is None else {"Host": "api.test", "X-Tenant": value}
        return statuses(url, count, headers=headers)

    assert tenant("acme", 3) == [200, 200, 429]
    assert tenant("globex", 2) == [200, 200]
    assert tenant(None, 3) == [200, 200, 429]  # no header: counted by client IP
    assert tenant("", 1) == [429]  # an empty value is no value: the same client IP bucket
    long_a, long_b = "a" * 4000 + "1", "a" * 4000 + "2"
    assert tenant(long_a, 3) == [200, 200, 429]
    assert tenant(long_b, 1) == [200]  # long values are hashed whole, not cut short


def test_key_by_identity_counts_the_consumer_across_its_keys(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    keys = secret("api-keys", {"alice": "alice-1\nalice-2", "bob": "bob-1"})
    rate = {"limit": "2/minute", "key": "identity"}
    auth = {"secret": "api-keys"}
    gateway, backend = serve([keys, limited("api", "api.test", rate, key_auth=auth)])
    url = f"{gateway.url}/x"

    def with_key(key: str | None) -> int:
        headers = {"Host": "api.test"} | ({"X-API-Key": key} if key else {})
        return httpx.get(url, headers=headers).status_code

    assert [with_key("alice-1"), with_key("alice-2"), with_key("alice-1")] == [200, 200, 429]
    assert [with_key("bob-1"), with_key("bob-1"), with_key("bob-1")] == [200, 200, 429]
    assert [with_key(None), with_key("wrong")] == [401, 401]  # refused by key-auth first, never counted
    assert [request.headers["x-auth-user"] for request in backend.requests] == ["alice", "alice", "bob", "bob"]


def test_key_by_identity_without_an_identity_counts_the_client_ip(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, _ = serve([limited("api", "api.test", {"limit": "2/minute", "key": "identity"})])
    forged = {"Host": "api.test", "X-Auth-User": "someone-else"}
    assert statuses(f"{gateway.url}/x", 3, headers=forged) == [200, 200, 429]


def test_scope_ingress_shares_paths_route_splits_them_global_spans_ingresses(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    gateway, _ = serve(
        [
            limited("shared", "shared.test", {"limit": "2/minute"}, "/a", "/b"),
            limited("split", "split.test", {"limit": "2/minute", "scope": "route"}, "/a", "/b"),
            limited("one", "one.test", {"limit": "2/minute", "scope": "global"}),
            limited("two", "two.test", {"limit": "2/minute", "scope": "global"}),
            limited("own", "own.test", {"limit": "2/minute"}),
        ]
    )

    def get(host: str, where: str = "/") -> int:
        return httpx.get(f"{gateway.url}{where}", headers={"Host": host}).status_code

    assert [get("shared.test", "/a"), get("shared.test", "/a"), get("shared.test", "/b")] == [200, 200, 429]
    assert [get("split.test", "/a"), get("split.test", "/a"), get("split.test", "/b")] == [200, 200, 200]
    assert [get("one.test"), get("two.test"), get("one.test")] == [200, 200, 429]
    assert [get("own.test"), get("own.test")] == [200, 200]  # not in the global pool


def test_response_headers_give_the_closest_quota_on_passing_responses(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    config = {"limit": ["100/hour", "3/minute"], "response_headers": True}
    gateway, _ = serve(
        [limited("api", "api.test", config), limited("plain", "plain.test", {"limit": "3/minute"})],
        upstream_options={"extra_headers": {"RateLimit-Limit": "999"}},
    )
    first = httpx.get(f"{gateway.url}/x", headers={"Host": "api.test"})
    assert first.status_code == 200
    assert first.headers.get_list("ratelimit-limit") == ["3"]  # the upstream's own value is replaced
    assert first.headers["ratelimit-remaining"] == "2"
    assert 1 <= int(first.headers["ratelimit-reset"]) <= 60
    assert first.headers["ratelimit-policy"] == "3;w=60, 100;w=3600"
    second = httpx.get(f"{gateway.url}/x", headers={"Host": "api.test"})
    assert second.headers["ratelimit-remaining"] == "1"
    plain = httpx.get(f"{gateway.url}/x", headers={"Host": "plain.test"})
    assert plain.headers.get_list("ratelimit-limit") == ["999"]  # off by default: untouched
    assert "ratelimit-remaining" not in plain.headers


def test_hostile_header_values_never_cause_a_500(
    serve: Callable[..., tuple[InProcessGateway, RecordingUpstream]],
) -> None:
    config = {"limit": "50/minute", "key": "header", "header": "X-Tenant"}
    gateway, _ = serve([limited("api", "api.test", config)])
    hostile = [b"\xff\xfe\x80", b"a/b|c:d;e", b"%00%0d%0a", b"{}[]*?", b"\xe9" * 7000]
    with httpx.Client() as client:
        for value in hostile:
            response = client.get(f"{gateway.url}/x", headers=[(b"Host", b"api.test"), (b"X-Tenant", value)])
            assert response.status_code == 200, value
        doubled = client.get(f"{gateway.url}/x", headers=[("Host", "api.test"), ("X-Tenant", "a"), ("X-Tenant", "b")])
        assert doubled.status_code == 200


@pytest.mark.e2e
def test_gateway_run_limits_and_rejects_an_unparseable_limit_with_the_reason(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    backend = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            limited("api", "api.test", {"limit": "2/minute"}),
            limited("broken", "broken.test", {"limit": "10/fortnight"}),
        ],
    )
    process = gateway_process(manifests_dir)
    assert statuses(f"{process.url}/x", 3, headers={"Host": "api.test"}) == [200, 200, 429]
    broken = httpx.get(f"{process.url}/x", headers={"Host": "broken.test"})
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    reasons = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "no granularity matched for fortnight" in reasons
    plugins = httpx.get(f"{process.admin_url}/plugins").json()["plugins"]
    assert {"name": "rate-limit", "priority": 1000} in [
        {"name": plugin["name"], "priority": plugin["priority"]} for plugin in plugins
    ]
