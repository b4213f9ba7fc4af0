"""The line itself: field order, values, and valid JSON whatever the request held."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from gateway_plugin_access_log.config import FIELDS
from gateway_plugin_access_log.line import LineFormat

from gateway_core import Endpoint, Headers, Outcome, RequestContext, RouteInfo, UpstreamRequest

ROUTE = RouteInfo(
    id="shop/orders/shop.example.com/orders%2",
    namespace="shop",
    ingress="orders",
    host="shop.example.com",
    path="/orders",
    path_type="Prefix",
    service="orders",
)


def _context(
    *,
    path: str = "/orders/1",
    target: bytes = b"/orders/1?page=2",
    headers: list[tuple[bytes, bytes]] | None = None,
    identity: str | None = None,
    client_ip: str = "203.0.113.9",
) -> RequestContext:
    ctx = RequestContext(
        scope={"headers": headers or []},
        method="GET",
        host="shop.example.com",
        path=path,
        scheme="http",
        client_ip=client_ip,
        peer_ip="10.0.0.1",
        route=ROUTE,
        request=UpstreamRequest("GET", target, Headers([])),
    )
    ctx.identity = identity
    return ctx


def _outcome(**changes: Any) -> Outcome:
    values: dict[str, Any] = {
        "status": 200,
        "bytes_received": 12,
        "bytes_sent": 345,
        "duration": 0.0123456,
        "upstream_latency": 0.0101,
        "endpoint": Endpoint("fd00::5", 8080),
        "plugins": ("key-auth", "access-log"),
    }
    values.update(changes)
    return Outcome(**values)


def _parse(line: str) -> list[tuple[str, Any]]:
    assert line.endswith("\n")
    assert "\n" not in line[:-1]
    line.encode("ascii")  # ASCII only, whatever the input
    pairs: list[tuple[str, Any]] = json.loads(line, object_pairs_hook=list)
    return pairs


def test_every_field_in_the_configured_order_with_its_value() -> None:
    fields = list(reversed(FIELDS))
    line = LineFormat(fields, ROUTE, headers=["X-Tenant"]).render(
        _context(
            identity="alice",
            headers=[
                (b"user-agent", b"curl/8"),
                (b"referer", b"https://a.example/"),
                (b"x-request-id", b"r-1"),
                (b"x-tenant", b"t1"),
                (b"x-tenant", b"t2"),
            ],
        ),
        _outcome(error="upstream_timeout"),
    )
    pairs = _parse(line)
    assert [name for name, _ in pairs] == [*fields, "headers"]
    values = dict(pairs)
    assert values["client"] == "203.0.113.9"
    assert values["peer"] == "10.0.0.1"
    assert (values["method"], values["scheme"], values["host"]) == ("GET", "http", "shop.example.com")
    assert (values["path"], values["uri"]) == ("/orders/1", "/orders/1?page=2")
    assert (values["status"], values["bytes_in"], values["bytes_out"]) == (200, 12, 345)
    assert values["duration_ms"] == 12.346
    assert values["upstream"] == "[fd00::5]:8080"
    assert values["upstream_latency_ms"] == 10.1
    assert values["route"] == ROUTE.id  # the '%' in it is not a template slot
    assert values["ingress"] == "shop/orders"
    assert values["service"] == "orders"
    assert values["plugins"] == ["key-auth", "access-log"]
    assert values["identity"] == "alice"
    assert values["error"] == "upstream_timeout"
    assert (values["user_agent"], values["referer"], values["request_id"]) == ("curl/8", "https://a.example/", "r-1")
    assert values["headers"] == [("x-tenant", "t1, t2")]


def test_time_is_rfc3339_utc_with_milliseconds_at_the_end_of_the_request() -> None:
    before = time.time()
    values = dict(_parse(LineFormat(["time"], ROUTE).render(_context(), _outcome())))
    after = time.time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", values["time"])
    stamp = datetime.fromisoformat(values["time"].replace("Z", "+00:00"))
    assert stamp.tzinfo == UTC
    assert before - 0.001 <= stamp.timestamp() <= after


def test_what_did_not_happen_is_null() -> None:
    fields = ["upstream", "upstream_latency_ms", "identity", "error", "user_agent", "referer", "request_id"]
    line = LineFormat(fields, ROUTE, headers=["X-Tenant"]).render(
        _context(), _outcome(endpoint=None, upstream_latency=None, plugins=())
    )
    values = dict(_parse(line))
    assert all(values[name] is None for name in fields)
    assert values["headers"] == [("x-tenant", None)]


def test_one_field_and_only_constant_fields_work_too() -> None:
    assert _parse(LineFormat(["status"], ROUTE).render(_context(), _outcome())) == [("status", 200)]
    assert _parse(LineFormat(["route", "service"], ROUTE).render(_context(), _outcome())) == [
        ("route", ROUTE.id),
        ("service", "orders"),
    ]


def test_plugin_lists_and_endpoints_that_change_between_requests_are_logged_as_they_are() -> None:
    line = LineFormat(["plugins", "upstream"], ROUTE)
    first = dict(_parse(line.render(_context(), _outcome(plugins=("a", "b"), endpoint=Endpoint("10.0.0.1", 80)))))
    second = dict(_parse(line.render(_context(), _outcome(plugins=("a",), endpoint=Endpoint("10.0.0.2", 81)))))
    again = dict(_parse(line.render(_context(), _outcome(plugins=("a", "b"), endpoint=Endpoint("10.0.0.1", 80)))))
    assert (first["plugins"], first["upstream"]) == (["a", "b"], "10.0.0.1:80")
    assert (second["plugins"], second["upstream"]) == (["a"], "10.0.0.2:81")
    assert again == first


HOSTILE = [
    'a"b',
    "back\\slash\\",
    "line\nbreak\r\n",
    "nul\x00tab\t\x1b[31mred",
    "caf\u00e9 \u2603 \U0001f600",
    "lone \udcff surrogate",
    '{"status": 999}',
    "%s %d %(x)s %%",
    "\u2028\u2029",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_values_always_give_one_valid_json_line(text: str) -> None:
    fields = list(FIELDS)
    raw = text.encode("utf-8", "surrogateescape")
    headers = [(b"user-agent", raw), (b"x-tenant", b"\xff\xfe\x80")]
    ctx = _context(path=text, target=raw, headers=headers, identity=text, client_ip=text)
    line = LineFormat(fields, ROUTE, headers=["X-Tenant"]).render(ctx, _outcome(error=text))
    values = dict(_parse(line))
    assert [name for name, _ in _parse(line)] == [*fields, "headers"]
    assert values["path"] == text
    assert values["identity"] == text
    assert values["client"] == text
    assert values["status"] == 200
    assert values["uri"] == values["user_agent"] == raw.decode("latin-1")
    assert values["headers"] == [("x-tenant", "\xff\xfe\x80")]
