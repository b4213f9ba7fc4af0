"""Canary selection (routing/canary.py) and the canary annotation's validation.

Routes are built from real manifests by ``build_table``, so the annotation goes through the
same parsing and resolving as in the gateway; selection is then asked per request.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import pytest

from gateway_core.manifests import build_snapshot
from gateway_core.manifests.upstream_policy import CANARY, LoadBalancing, parse_upstream_policy
from gateway_core.messages import Balancer, Endpoint, Headers, RequestContext, UpstreamRequest
from gateway_core.routing import BuildOptions, Route, build_table
from gateway_core.routing.canary import choose_backend
from gateway_core.testing import ingress, path, routed_service, service


class _First:
    """The first endpoint, always: these tests are about the backend, not the endpoint."""

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        return self.endpoints[0] if self.endpoints else None


def _first(endpoints: tuple[Endpoint, ...], config: LoadBalancing) -> Balancer:
    return _First(endpoints)


SERVICES = [
    *routed_service("stable", 8080, address="10.0.0.1"),
    *routed_service("beta", 8080, address="10.0.0.2"),
    *routed_service("gamma", 8080, address="10.0.0.3"),
    service("empty"),  # no EndpointSlice: no ready endpoint
]


def _route(canaries: Any) -> Route:
    """The route of an Ingress on a.com/ to ``stable`` with the canary annotation ``canaries``."""
    site = ingress("site", rules=[("a.com", [path("/", "stable")])], annotations={CANARY: json.dumps(canaries)})
    snapshot = build_snapshot(("test.yaml", document) for document in [*SERVICES, site])
    table = build_table(snapshot, BuildOptions(specs={}, balancer_factory=_first))
    assert not table.rejected, table.rejected
    route = table.match("a.com", "/")
    assert route is not None
    return route


def _ctx(route: Route, headers: Sequence[tuple[str, str]] = ()) -> RequestContext:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return RequestContext(
        scope={},
        method="GET",
        host="a.com",
        path="/",
        scheme="http",
        client_ip="1.2.3.4",
        peer_ip="1.2.3.4",
        route=route.info,
        request=UpstreamRequest("GET", b"/", Headers(raw)),
    )


def _served(route: Route, headers: Sequence[tuple[str, str]] = ()) -> str:
    ctx = _ctx(route, headers)
    backend = choose_backend(route, ctx)
    assert ctx.service == backend.target.service, "ctx.service names the Service that serves"
    return backend.target.service


def _share(route: Route, requests: int, headers: Sequence[tuple[str, str]] = ()) -> dict[str, float]:
    counts = Counter(_served(route, headers) for _ in range(requests))
    return {name: count / requests for name, count in counts.items()}


# --- header and cookie matches --------------------------------------------------------------


def test_a_route_without_canaries_serves_its_own_service() -> None:
    site = ingress("site", rules=[("a.com", [path("/", "stable")])])
    table = build_table(build_snapshot(("t.yaml", d) for d in [*SERVICES, site]), BuildOptions({}, _first))
    route = table.match("a.com", "/")
    assert route is not None
    assert route.canary_plan is None
    assert _served(route) == "stable"


def test_header_values_select_the_canary_exactly() -> None:
    route = _route({"service": "beta", "port": "http", "header": {"name": "X-Canary", "values": ["v2", "beta"]}})
    assert _served(route, [("x-canary", "v2")]) == "beta"
    assert _served(route, [("X-Canary", "beta")]) == "beta"  # header names are case-insensitive
    assert _served(route, [("x-canary", "V2")]) == "stable"  # values are not
    assert _served(route, [("x-canary", "v3")]) == "stable"
    assert _served(route) == "stable"


def test_a_header_without_values_matches_on_presence() -> None:
    route = _route({"service": "beta", "port": "http", "header": {"name": "x-beta"}})
    assert _served(route, [("x-beta", "anything")]) == "beta"
    assert _served(route, [("x-beta", "")]) == "beta"
    assert _served(route, [("x-other", "1")]) == "stable"


def test_the_first_value_of_a_repeated_header_decides() -> None:
    route = _route({"service": "beta", "port": "http", "header": {"name": "x-canary", "values": ["yes"]}})
    assert _served(route, [("x-canary", "yes"), ("x-canary", "no")]) == "beta"
    assert _served(route, [("x-canary", "no"), ("x-canary", "yes")]) == "stable"


def test_header_matches_go_in_list_order() -> None:
    route = _route(
        [
            {"service": "beta", "port": "http", "header": {"name": "x-canary", "values": ["beta", "any"]}},
            {"service": "gamma", "port": "http", "header": {"name": "x-canary", "values": ["gamma", "any"]}},
        ]
    )
    assert _served(route, [("x-canary", "beta")]) == "beta"
    assert _served(route, [("x-canary", "gamma")]) == "gamma"
    assert _served(route, [("x-canary", "any")]) == "beta"


def test_cookie_matches_with_the_default_value_always() -> None:
    route = _route({"service": "beta", "port": "http", "cookie": {"name": "canary"}})
    assert _served(route, [("cookie", "canary=always")]) == "beta"
    assert _served(route, [("cookie", "session=abc; canary=always; theme=dark")]) == "beta"
    assert _served(route, [("cookie", 'canary="always"')]) == "beta"  # a quoted value
    assert _served(route, [("cookie", "a=1"), ("cookie", "canary=always")]) == "beta"  # several Cookie headers
    assert _served(route, [("cookie", "canary=sometimes")]) == "stable"
    assert _served(route, [("cookie", "xcanary=always")]) == "stable"
    assert _served(route, [("cookie", "canary")]) == "stable"  # no '='
    assert _served(route, [("x-cookie", "canary=always")]) == "stable"


def test_cookie_values_can_be_listed() -> None:
    route = _route({"service": "beta", "port": "http", "cookie": {"name": "group", "values": ["staff", "beta"]}})
    assert _served(route, [("cookie", "group=beta")]) == "beta"
    assert _served(route, [("cookie", "group=staff")]) == "beta"
    assert _served(route, [("cookie", "group=always")]) == "stable"


def test_headers_come_before_cookies_whatever_the_list_order() -> None:
    route = _route(
        [
            {"service": "beta", "port": "http", "cookie": {"name": "canary"}},
            {"service": "gamma", "port": "http", "header": {"name": "x-gamma"}},
        ]
    )
    both = [("cookie", "canary=always"), ("x-gamma", "1")]
    assert _served(route, both) == "gamma"
    assert _served(route, both[:1]) == "beta"


def test_matches_come_before_weights() -> None:
    route = _route(
        [
            {"service": "beta", "port": "http", "weight": 100},
            {"service": "gamma", "port": "http", "header": {"name": "x-gamma"}},
        ]
    )
    assert _served(route, [("x-gamma", "1")]) == "gamma"
    assert _share(route, 200) == {"beta": 1.0}


# --- never ----------------------------------------------------------------------------------


def test_the_header_value_never_keeps_a_request_off_that_canary_and_its_weight() -> None:
    route = _route([{"service": "beta", "port": "http", "weight": 100, "header": {"name": "x-canary"}}])
    assert _share(route, 200, [("x-canary", "never")]) == {"stable": 1.0}
    assert _served(route, [("x-canary", "yes")]) == "beta"
    assert _share(route, 200) == {"beta": 1.0}


def test_a_cookie_never_keeps_a_request_off_the_weight_share() -> None:
    route = _route([{"service": "beta", "port": "http", "weight": 100, "cookie": {"name": "canary"}}])
    assert _share(route, 200, [("cookie", "canary=never")]) == {"stable": 1.0}


def test_never_applies_to_its_own_canary_only() -> None:
    route = _route(
        [
            {"service": "beta", "port": "http", "header": {"name": "x-canary", "values": ["v2"]}},
            {"service": "gamma", "port": "http", "header": {"name": "x-gamma"}},
        ]
    )
    assert _served(route, [("x-canary", "never"), ("x-gamma", "1")]) == "gamma"


def test_a_header_match_beats_a_cookie_never_of_the_same_canary() -> None:
    route = _route([{"service": "beta", "port": "http", "header": {"name": "x-beta"}, "cookie": {"name": "beta"}}])
    assert _served(route, [("x-beta", "1"), ("cookie", "beta=never")]) == "beta"
    assert _served(route, [("x-beta", "never"), ("cookie", "beta=always")]) == "stable"


# --- weights --------------------------------------------------------------------------------


def test_weights_split_traffic_over_many_requests() -> None:
    route = _route(
        [{"service": "beta", "port": "http", "weight": 10}, {"service": "gamma", "port": "http", "weight": 30}]
    )
    share = _share(route, 20_000)
    # Binomial standard deviations at n=20,000 are 0.2-0.35 points; 2 points is over 5 of them.
    assert share["beta"] == pytest.approx(0.10, abs=0.02)
    assert share["gamma"] == pytest.approx(0.30, abs=0.02)
    assert share["stable"] == pytest.approx(0.60, abs=0.02)


def test_fractional_weights_and_the_whole_share() -> None:
    tiny = _share(_route({"service": "beta", "port": "http", "weight": 0.5}), 20_000)
    assert tiny.get("beta", 0.0) == pytest.approx(0.005, abs=0.003)
    assert _share(_route({"service": "beta", "port": "http", "weight": 100}), 500) == {"beta": 1.0}


# --- canaries without endpoints -------------------------------------------------------------


@pytest.mark.parametrize("canary_service", ["empty", "missing"])
def test_a_canary_without_ready_endpoints_is_skipped(canary_service: str) -> None:
    route = _route(
        [
            {"service": canary_service, "port": "http", "weight": 50, "header": {"name": "x-canary"}},
            {"service": "gamma", "port": "http", "weight": 20},
        ]
    )
    assert _served(route, [("x-canary", "1")]) == "stable"
    share = _share(route, 10_000)
    assert set(share) == {"stable", "gamma"}
    assert share["gamma"] == pytest.approx(0.20, abs=0.03)  # the other canary keeps its own share
    assert share["stable"] == pytest.approx(0.80, abs=0.03)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ([{"service": "b", "port": 80, "weight": 60}, {"service": "c", "port": 80, "weight": 50}], "more than 100"),
        ({"service": "b", "port": 80, "weight": 101}, "less than or equal to 100"),
        ({"service": "b", "port": 80, "weight": -1}, "greater than or equal to 0"),
        ({"service": "b", "port": 80}, "needs a weight, a header or a cookie"),
        ({"service": "b", "port": 80, "weight": 0}, "needs a weight, a header or a cookie"),
        ({"service": "b", "port": 80, "header": {"name": "x-c", "values": ["never"]}}, "'never' is reserved"),
        ({"service": "b", "port": 80, "cookie": {"name": "c", "values": ["never"]}}, "'never' is reserved"),
        ({"service": "b", "port": 80, "cookie": {"name": "c", "values": []}}, "at least one value"),
        ({"service": "b", "port": 80, "header": {"name": "x c"}}, "header name"),
        ({"service": "b", "port": 80, "header": {"name": "x", "values": ["a\nb"]}}, "cannot be a header value"),
        ({"service": "b", "port": 80, "cookie": {"name": "a;b"}}, "cookie name"),
        ({"service": "b", "port": 70000, "weight": 5}, "between 1 and 65535"),
        ({"service": "b", "weight": 5}, "port"),
        ({"service": "b", "port": 80, "weight": 5, "shadow": True}, "Extra inputs are not permitted"),
        ("just text", "must be a mapping or a list of mappings"),
    ],
)
def test_invalid_canaries_are_refused_with_the_reason(annotation: Any, message: str) -> None:
    policy, problems = parse_upstream_policy({CANARY: json.dumps(annotation)})
    assert problems, annotation
    assert all(problem.startswith(f"annotation {CANARY}") for problem in problems)
    assert message in " ".join(problems)
    assert policy.canaries == ()


def test_an_invalid_canary_rejects_the_ingress() -> None:
    site = ingress(
        "site",
        rules=[("a.com", [path("/", "stable")])],
        annotations={CANARY: json.dumps({"service": "beta", "port": "http"})},
    )
    table = build_table(build_snapshot(("t.yaml", d) for d in [*SERVICES, site]), BuildOptions({}, _first))
    assert "default/site" in table.rejected
    route = table.match("a.com", "/")
    assert route is None or route.unavailable is not None


def test_yaml_lists_of_several_canaries_are_accepted() -> None:
    text = """
- service: beta
  port: http
  header: {name: X-Canary, values: [beta]}
- service: gamma
  port: 80
  weight: 12.5
  cookie: {name: gamma}
"""
    policy, problems = parse_upstream_policy({CANARY: text})
    assert problems == ()
    assert [(canary.service, canary.weight) for canary in policy.canaries] == [("beta", 0), ("gamma", 12.5)]
    header = policy.canaries[0].header
    assert header is not None
    assert header.name == "x-canary"
