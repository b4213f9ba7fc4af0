"""Cookie session affinity: the cookie round trip, its attributes and value, and re-picking when
the named endpoint is gone, ejected or already tried. Also the cookie reader itself."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from gateway_core.manifests.upstream_policy import LoadBalancing
from gateway_core.messages import Endpoint, Headers, RequestContext, UpstreamRequest, UpstreamResponse
from gateway_core.transport.balancing import Balancers, CookieAffinity, affinity_token
from gateway_core.transport.balancing.cookies import cookie_value
from gateway_core.transport.endpoint_state import EndpointStates

A, B, C = (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080), Endpoint("10.0.0.3", 8080))
ABC = (A, B, C)


def sticky(states: EndpointStates | None = None, strategy: str = "round-robin", **affinity: Any) -> CookieAffinity:
    config = LoadBalancing.model_validate({"strategy": strategy, "affinity": affinity})
    balancer = Balancers(states if states is not None else EndpointStates())(ABC, config)
    assert isinstance(balancer, CookieAffinity)
    return balancer


def request(cookie: str | None = None) -> RequestContext:
    headers = Headers([(b"cookie", cookie.encode())] if cookie is not None else [])
    return RequestContext(
        scope={},
        method="GET",
        host="app.test",
        path="/",
        scheme="http",
        client_ip="192.0.2.7",
        peer_ip="192.0.2.7",
        route=None,
        request=UpstreamRequest("GET", b"/", headers),
    )


def serve(
    balancer: CookieAffinity, ctx: RequestContext, avoid: tuple[Endpoint, ...] = ()
) -> tuple[Endpoint, str | None]:
    """Pick as the pipeline does, then stamp the response; the endpoint and any Set-Cookie."""
    endpoint = balancer.pick(ctx, avoid)
    assert endpoint is not None
    response = UpstreamResponse(200, Headers(), endpoint=endpoint)
    balancer.stamp(ctx, endpoint, response)
    return endpoint, response.headers.get("set-cookie")


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";")[0]


def test_the_first_response_sets_the_cookie_and_later_requests_stick_to_its_endpoint() -> None:
    balancer = sticky()
    first, set_cookie = serve(balancer, request())
    assert set_cookie is not None
    for _ in range(50):  # round robin alone would rotate through all three
        endpoint, again = serve(balancer, request(f"theme=dark; {cookie_pair(set_cookie)}"))
        assert endpoint == first
        assert again is None, "the request already names this endpoint: no new cookie"


def test_clients_without_the_cookie_are_spread_by_the_strategy() -> None:
    balancer = sticky()
    assert Counter(serve(balancer, request())[0] for _ in range(300)) == {A: 100, B: 100, C: 100}


def test_the_cookie_carries_the_configured_attributes() -> None:
    _, default = serve(sticky(), request())
    assert default == f"mng-affinity={affinity_token(default_endpoint(default))}; Path=/; HttpOnly; SameSite=Lax"
    _, custom = serve(
        sticky(name="route", path="/shop", max_age=3600, secure=True, same_site="None"),
        request(),
    )
    assert custom is not None
    name_value, *attributes = custom.split("; ")
    assert name_value.startswith("route=")
    assert attributes == ["Path=/shop", "Max-Age=3600", "HttpOnly", "SameSite=None", "Secure"]


def default_endpoint(set_cookie: str | None) -> Endpoint:
    assert set_cookie is not None
    value = cookie_pair(set_cookie).partition("=")[2]
    return next(endpoint for endpoint in ABC if affinity_token(endpoint) == value)


def test_the_cookie_value_hides_the_address_and_is_the_same_everywhere() -> None:
    token = affinity_token(A)
    assert "10.0.0.1" not in token
    assert "8080" not in token
    assert len(token) == 20
    assert int(token, 16) >= 0
    assert token != affinity_token(B) != affinity_token(Endpoint("10.0.0.1", 8081))
    # Pinned: every worker, replica and version must name the endpoint alike.
    assert token == affinity_token(Endpoint("10.0.0.1", 8080)) == "fb1ed5970710a92fbec6"


def test_a_cookie_naming_an_unknown_endpoint_is_replaced() -> None:
    balancer = sticky()
    endpoint, set_cookie = serve(balancer, request("mng-affinity=0123456789abcdef0123"))
    assert set_cookie is not None
    assert cookie_pair(set_cookie) == f"mng-affinity={affinity_token(endpoint)}"


def test_a_cookie_naming_an_ejected_endpoint_is_replaced_until_it_returns() -> None:
    states = EndpointStates()
    balancer = sticky(states)
    ctx = request(f"mng-affinity={affinity_token(A)}")
    states.get(A).ejected_until = time.monotonic() + 0.2
    states.changed()
    endpoint, set_cookie = serve(balancer, ctx)
    assert endpoint != A
    assert set_cookie is not None
    assert cookie_pair(set_cookie) == f"mng-affinity={affinity_token(endpoint)}"
    time.sleep(0.3)
    assert serve(balancer, ctx) == (A, None)


def test_a_retry_leaves_the_cookie_s_endpoint_and_moves_the_cookie() -> None:
    balancer = sticky()
    ctx = request(f"mng-affinity={affinity_token(A)}")
    endpoint, set_cookie = serve(balancer, ctx, avoid=(A,))
    assert endpoint != A
    assert set_cookie is not None
    assert affinity_token(endpoint) in set_cookie


def test_a_weight_zero_endpoint_takes_no_sticky_sessions() -> None:
    config = LoadBalancing.model_validate({"weights": {"10.0.0.1": 0}, "affinity": {}})
    balancer = Balancers(EndpointStates())(ABC, config)
    ctx = request(f"mng-affinity={affinity_token(A)}")
    assert all(balancer.pick(ctx) in (B, C) for _ in range(30))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([b"a=1; mng=abc; b=2"], b"abc"),
        ([b"mng=abc"], b"abc"),
        ([b'mng="quoted"'], b"quoted"),
        ([b"xmng=no; mng=yes"], b"yes"),
        ([b"a=mng=no"], None),
        ([b"other=1", b"mng=second-header"], b"second-header"),
        ([b"mng=first; mng=second"], b"first"),
        ([b"mng"], None),
        ([], None),
    ],
)
def test_the_cookie_reader(headers: list[bytes], expected: bytes | None) -> None:
    raw = [(b"cookie", value) for value in headers] + [(b"x-mng", b"mng=header-not-cookie")]
    assert cookie_value(raw, b"mng") == expected
