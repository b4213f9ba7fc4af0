"""ip-filter through real gateways (in-process and ``gateway run``) and real upstreams.

Every request comes from 127.0.0.1. Other client addresses (IPv6, IPv4-mapped, unparsable)
reach the plugin the only way they can: named in X-Forwarded-For by a trusted proxy.
"""

from __future__ import annotations

import json
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
    write_manifests,
)

Backends = dict[str, RecordingUpstream]


def _filtered(name: str, host: str, service: str, config: dict[str, Any]) -> dict[str, Any]:
    return ingress(name, rules=[(host, [path("/", service)])], annotations=plugin_annotations({"ip-filter": config}))


def _write(directory: Path, backends: Backends, ingresses: list[dict[str, Any]]) -> None:
    services = [obj for name, backend in backends.items() for obj in routed_service(name, backend.port)]
    write_manifests(directory, [*services, *ingresses, ingress("open", rules=[("open.test", [path("/", "web")])])])


def _get(url: str, host: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"Host": host}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return httpx.get(f"{url}/x", headers=headers)


def _assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "forbidden", "message": "requests from this client address are not allowed"}


@pytest.fixture
def backends(upstream: Callable[..., RecordingUpstream]) -> Backends:
    return {"api": upstream("api"), "web": upstream("web")}


@pytest.fixture
def direct(
    backends: Backends, manifests_dir: Path, in_process_gateway: Callable[..., InProcessGateway]
) -> InProcessGateway:
    """No trusted proxies: the client is always the socket peer, 127.0.0.1."""
    _write(
        manifests_dir,
        backends,
        [
            _filtered("allow-me", "allow-me.test", "api", {"allow": ["127.0.0.1"]}),
            _filtered("allow-other", "allow-other.test", "api", {"allow": ["10.0.0.0/8", "2001:db8::/32"]}),
            _filtered("deny-me", "deny-me.test", "web", {"deny": ["127.0.0.0/8"]}),
            _filtered("deny-other", "deny-other.test", "web", {"deny": ["10.0.0.0/8", "::1"]}),
            _filtered("both", "both.test", "api", {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1"]}),
            _filtered("both-ok", "both-ok.test", "web", {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.2"]}),
        ],
    )
    return in_process_gateway(manifests=manifests_dir)


@pytest.fixture
def behind_proxy(
    backends: Backends, manifests_dir: Path, in_process_gateway: Callable[..., InProcessGateway]
) -> InProcessGateway:
    """127.0.0.1 is a trusted proxy: the client is the right-most X-Forwarded-For entry it added."""
    corp = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16", "2001:db8:bad::/48"]}
    _write(
        manifests_dir,
        backends,
        [
            _filtered("corp", "corp.test", "api", corp),
            _filtered("blocklist", "blocklist.test", "web", {"deny": ["10.66.0.0/16", "2001:db8:bad::/48"]}),
        ],
    )
    return in_process_gateway(manifests=manifests_dir, overrides={"server": {"trusted_proxies": ["127.0.0.1/32"]}})


def test_allow_only_admits_listed_clients_and_refuses_the_rest(direct: InProcessGateway, backends: Backends) -> None:
    assert _get(direct.url, "allow-me.test").status_code == 200
    assert len(backends["api"].requests) == 1
    _assert_forbidden(_get(direct.url, "allow-other.test"))
    assert len(backends["api"].requests) == 1


def test_deny_only_refuses_listed_clients_and_admits_the_rest(direct: InProcessGateway, backends: Backends) -> None:
    _assert_forbidden(_get(direct.url, "deny-me.test"))
    assert backends["web"].requests == []
    assert _get(direct.url, "deny-other.test").status_code == 200
    assert len(backends["web"].requests) == 1


def test_deny_wins_over_allow(direct: InProcessGateway, backends: Backends) -> None:
    _assert_forbidden(_get(direct.url, "both.test"))
    assert backends["api"].requests == []
    assert _get(direct.url, "both-ok.test").status_code == 200


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    direct: InProcessGateway, backends: Backends
) -> None:
    for spoof in ("10.1.2.3", "10.1.2.3, 2001:db8::1", "2001:db8::1"):
        _assert_forbidden(_get(direct.url, "allow-other.test", spoof))
        _assert_forbidden(_get(direct.url, "deny-me.test", spoof))
    spoofed_headers = {"Host": "deny-me.test", "X-Real-IP": "10.1.2.3", "Forwarded": "for=10.1.2.3"}
    _assert_forbidden(httpx.get(f"{direct.url}/x", headers=spoofed_headers))
    assert backends["api"].requests == backends["web"].requests == []
    # A route without the plugin is not affected by it.
    assert _get(direct.url, "open.test", "10.66.0.1").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(
    behind_proxy: InProcessGateway, backends: Backends
) -> None:
    assert _get(behind_proxy.url, "corp.test", "10.1.2.3").status_code == 200
    assert backends["api"].requests[-1].headers["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    _assert_forbidden(_get(behind_proxy.url, "corp.test", "10.66.0.1"))
    _assert_forbidden(_get(behind_proxy.url, "corp.test"))  # the proxy itself, 127.0.0.1, is not allowed
    # The client forged the left entry; the right-most one the proxy appended is what counts.
    _assert_forbidden(_get(behind_proxy.url, "corp.test", "10.1.2.3, 203.0.113.9"))
    assert _get(behind_proxy.url, "blocklist.test", "203.0.113.9").status_code == 200
    _assert_forbidden(_get(behind_proxy.url, "blocklist.test", "203.0.113.9, 10.66.4.4"))
    assert len(backends["api"].requests) == 1
    assert len(backends["web"].requests) == 1


def test_ipv6_clients_are_matched_against_ipv6_networks(behind_proxy: InProcessGateway) -> None:
    assert _get(behind_proxy.url, "corp.test", "2001:db8::5").status_code == 200
    assert _get(behind_proxy.url, "corp.test", "2001:DB8:0:0::7").status_code == 200
    _assert_forbidden(_get(behind_proxy.url, "corp.test", "2001:db8:bad::1"))
    _assert_forbidden(_get(behind_proxy.url, "corp.test", "2001:db9::1"))
    _assert_forbidden(_get(behind_proxy.url, "blocklist.test", "2001:db8:bad:ffff::1"))
    assert _get(behind_proxy.url, "blocklist.test", "2001:db8:bae::1").status_code == 200


def test_ipv4_mapped_ipv6_clients_are_matched_as_ipv4(behind_proxy: InProcessGateway) -> None:
    assert _get(behind_proxy.url, "corp.test", "::ffff:10.1.2.3").status_code == 200
    _assert_forbidden(_get(behind_proxy.url, "corp.test", "::ffff:10.66.0.1"))
    _assert_forbidden(_get(behind_proxy.url, "blocklist.test", "::ffff:a42:101"))  # 10.66.1.1
    assert _get(behind_proxy.url, "blocklist.test", "::ffff:10.67.0.1").status_code == 200


def test_an_unparsable_client_is_refused_by_an_allow_list_and_passed_by_a_deny_list(
    behind_proxy: InProcessGateway, backends: Backends
) -> None:
    for garbage in ("unknown", "10.1.2", "_hidden", "10.1.2.3:port"):
        _assert_forbidden(_get(behind_proxy.url, "corp.test", garbage))
        assert _get(behind_proxy.url, "blocklist.test", garbage).status_code == 200
    assert backends["api"].requests == []


def test_a_port_or_brackets_a_proxy_wrote_are_not_part_of_the_address(
    behind_proxy: InProcessGateway, backends: Backends
) -> None:
    for allowed in ("10.1.2.3:5000", "[2001:db8::5]", "[2001:db8::5]:443"):
        assert _get(behind_proxy.url, "corp.test", allowed).status_code == 200
    for denied in ("10.66.0.1:5000", "[2001:db8:bad::1]:443"):
        _assert_forbidden(_get(behind_proxy.url, "corp.test", denied))


HOSTILE_FORWARDED_FOR = [
    ("x" * 6000, 403),
    ("," * 500, 403),  # no client named: the proxy, 127.0.0.1, is the client
    ("10.1.2.3" + ",," * 300, 200),
    ("10.1.2.3%eth0", 403),
    ("fe80::1%" + "a" * 200, 403),
    ("\u00e9\u00e9", 403),
    ("0x0a.1.2.3", 403),
    ("012.1.2.3", 403),
    ("::ffff:10.1.2.3/104", 403),
    ("10.1.2.3 \t 10.66.0.1", 403),
]


def test_hostile_forwarded_for_values_are_refused_never_a_server_error(behind_proxy: InProcessGateway) -> None:
    for value, status in HOSTILE_FORWARDED_FOR:
        raw = [(b"Host", b"corp.test"), (b"X-Forwarded-For", value.encode("latin-1"))]
        response = httpx.get(f"{behind_proxy.url}/x", headers=raw)
        assert response.status_code == status, value[:40]
        if status == 403:
            _assert_forbidden(response)


@pytest.mark.e2e
def test_gateway_run_admits_and_refuses_127_0_0_1_and_rejects_a_bad_cidr(
    backends: Backends, manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    _write(
        manifests_dir,
        backends,
        [
            _filtered("allowed", "allowed.test", "api", {"allow": ["127.0.0.1", "::1"]}),
            _filtered("denied", "denied.test", "web", {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1/32"]}),
            _filtered("broken", "broken.test", "api", {"allow": ["127.0.0.1/33"]}),
        ],
    )
    process = gateway_process(manifests_dir, workers=2)
    for _ in range(4):  # both workers
        assert _get(process.url, "allowed.test", "10.9.9.9").status_code == 200
        _assert_forbidden(_get(process.url, "denied.test", "10.9.9.9"))
    assert len(backends["api"].requests) == 4
    assert backends["web"].requests == []
    broken = _get(process.url, "broken.test")
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    assert backends["api"].requests[-1].path == "/x"
    reasons = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "allow[0]: '127.0.0.1/33' is not an IPv4 or IPv6 address or CIDR" in reasons


@pytest.mark.e2e
def test_gateway_run_behind_a_trusted_proxy_checks_the_forwarded_client(
    backends: Backends, manifests_dir: Path, tmp_path: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    _write(
        manifests_dir,
        backends,
        [_filtered("corp", "corp.test", "api", {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16"]})],
    )
    config = tmp_path / "gateway.yaml"
    config.write_text('server:\n  trusted_proxies: ["127.0.0.1/32"]\n')
    process = gateway_process(manifests_dir, config=config)
    assert _get(process.url, "corp.test", "10.1.2.3").status_code == 200
    assert _get(process.url, "corp.test", "::ffff:10.1.2.3").status_code == 200
    assert _get(process.url, "corp.test", "2001:db8::9").status_code == 200
    _assert_forbidden(_get(process.url, "corp.test", "10.66.1.1"))
    _assert_forbidden(_get(process.url, "corp.test"))
    _assert_forbidden(_get(process.url, "corp.test", "10.1.2.3, 192.0.2.1"))
    assert [request.headers["x-forwarded-for"] for request in backends["api"].requests] == [
        "10.1.2.3, 127.0.0.1",
        "::ffff:10.1.2.3, 127.0.0.1",
        "2001:db8::9, 127.0.0.1",
    ]
