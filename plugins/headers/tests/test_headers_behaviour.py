"""headers through a real gateway (in process, real sockets) and real upstreams."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core import Binding, LocalResponse, PluginSpec, RequestContext, hookimpl
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

CONFIG: dict[str, Any] = {
    "request": {
        "set": {
            "X-Client": "${client_ip}",
            "X-Seen": "${method} ${scheme}://${host}${path}",
            "X-Price": "$$5 (${request_id})",
            "X-Replaced": "ours",
        },
        "add": {"X-Tag": "edge", "X-Trace": "${request_id}"},
        "remove": ["Cookie", "X-Internal"],
    },
    "response": {
        "set": {"X-Frame-Options": "DENY", "X-Served-Path": "${path}"},
        "add": {"Cache-Control": "no-store", "X-Request-Id-Echo": "${request_id}"},
        "remove": ["X-Powered-By", "Server"],
    },
}


class _RequestIdForTests:
    """A tiny stand-in for an earlier plugin that sets X-Request-ID (priority 3000)."""

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        ctx.request.headers.set("X-Request-ID", "generated-1")
        return None


class _TestPlugins:
    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        def make(config: Any, binding: Binding) -> _RequestIdForTests:
            return _RequestIdForTests()

        return [PluginSpec(name="test-request-id", factory=make, priority=3000)]


def _write(directory: Path, backend: RecordingUpstream, other: RecordingUpstream) -> None:
    dead = free_port()  # nothing listens: the gateway answers 502 itself
    write_manifests(
        directory,
        [
            *routed_service("api", backend.port),
            *routed_service("other", other.port),
            *routed_service("dead", dead),
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"headers": CONFIG})),
            ingress(
                "with-id",
                rules=[("id.test", [path("/", "other")])],
                annotations=plugin_annotations({"test-request-id": None, "headers": CONFIG}),
            ),
            ingress(
                "dead",
                rules=[("dead.test", [path("/", "dead")])],
                annotations=plugin_annotations({"headers": CONFIG}),
            ),
        ],
    )


@pytest.fixture
def backends(upstream: Callable[..., RecordingUpstream]) -> tuple[RecordingUpstream, RecordingUpstream]:
    extra = {"X-Powered-By": "php/5", "X-Frame-Options": "SAMEORIGIN", "Cache-Control": "private"}
    return upstream("api", extra_headers=extra), upstream("other", extra_headers=extra)


@pytest.fixture
def gateway(
    backends: tuple[RecordingUpstream, RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> InProcessGateway:
    _write(manifests_dir, *backends)
    return in_process_gateway(manifests=manifests_dir, plugins=[_TestPlugins()])


def test_request_headers_are_removed_set_and_added(
    gateway: InProcessGateway, backends: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    backend, _ = backends
    sent = [
        ("Cookie", "session=secret"),
        ("X-Internal", "1"),
        ("X-Replaced", "client-1"),
        ("X-Replaced", "client-2"),
        ("X-Tag", "client"),
        ("X-Kept", "yes"),
    ]
    response = httpx.get(f"{gateway.url}/orders", headers=sent)
    assert response.status_code == 200
    seen = backend.requests[-1].header_list
    assert [value for name, value in seen if name == "x-replaced"] == ["ours"]
    assert [value for name, value in seen if name == "x-tag"] == ["client", "edge"]
    assert ("x-kept", "yes") in seen
    assert not {"cookie", "x-internal"} & {name for name, _ in seen}


def test_response_headers_are_removed_set_and_added(gateway: InProcessGateway) -> None:
    response = httpx.get(f"{gateway.url}/orders")
    assert response.status_code == 200
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers.get_list("cache-control") == ["private", "no-store"]
    assert "x-powered-by" not in response.headers
    assert "server" not in response.headers
    assert response.json()["upstream"] == "api"  # the body streams untouched


def test_variables_expand_and_dollar_dollar_is_a_literal_dollar(
    gateway: InProcessGateway, backends: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    backend, _ = backends
    response = httpx.post(
        f"{gateway.url}/a/../orders/%C3%A9?q=1",
        headers={"Host": "Shop.Example:8080", "X-Request-ID": "abc-123", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200
    seen = backend.requests[-1].headers
    assert seen["x-client"] == "127.0.0.1"
    # Untrusted peer: its X-Forwarded-Proto does not make the scheme https.
    assert seen["x-seen"] == "POST http://shop.example/orders/\xe9"  # the decoded path, sent as Latin-1
    assert seen["x-price"] == "$5 (abc-123)"
    assert seen["x-trace"] == "abc-123"
    assert response.headers["x-request-id-echo"] == "abc-123"
    assert response.headers["x-served-path"] == "/orders/\xe9"


def test_request_id_comes_from_the_plugin_that_ran_before(
    gateway: InProcessGateway, backends: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    _, other = backends
    response = httpx.get(f"{gateway.url}/x", headers={"Host": "id.test", "X-Request-ID": "from-client"})
    assert other.requests[-1].headers["x-trace"] == "generated-1"
    assert other.requests[-1].headers["x-price"] == "$5 (generated-1)"
    assert response.headers["x-request-id-echo"] == "generated-1"


def test_an_empty_variable_skips_add_and_set_drops_the_clients_value(
    gateway: InProcessGateway, backends: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    backend, _ = backends
    response = httpx.get(f"{gateway.url}/x", headers={"X-Trace": "client-trace"})
    assert response.status_code == 200
    seen = backend.requests[-1].header_list
    assert [value for name, value in seen if name == "x-trace"] == ["client-trace"]  # add skipped, client's kept
    assert ("x-price", "$5 ()") in seen  # literal text around an empty variable is still a value
    assert "x-request-id-echo" not in response.headers


@pytest.mark.parametrize("hostile", ["/a%0D%0AX-Evil:%201", "/a%0aX-Evil:1", "/a%00b", "/a%01b", "/%E2%82%AC"])
def test_a_path_that_cannot_be_a_header_value_skips_the_header_never_injects(
    gateway: InProcessGateway, backends: tuple[RecordingUpstream, RecordingUpstream], hostile: str
) -> None:
    backend, _ = backends
    response = httpx.get(f"{gateway.url}{hostile}", headers={"X-Seen": "client-forged"})
    assert response.status_code == 200
    seen = backend.requests[-1].header_list
    names = {name for name, _ in seen}
    assert "x-seen" not in names  # set failed: the client's value is removed, not forwarded
    assert "x-evil" not in names
    assert backend.requests[-1].headers["x-client"] == "127.0.0.1"  # the other edits still apply
    assert "x-served-path" not in response.headers
    assert "x-evil" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


def test_answers_the_gateway_makes_itself_get_the_response_edits_too(gateway: InProcessGateway) -> None:
    response = httpx.get(f"{gateway.url}/x", headers={"Host": "dead.test"})
    assert response.status_code == 502
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "upstream_connect_failed"


def test_trusted_proxy_information_feeds_client_ip_and_scheme(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    backend = upstream("api")
    config = {"request": {"set": {"X-Seen": "${client_ip} ${scheme}"}}}
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"headers": config})),
        ],
    )
    gateway = in_process_gateway(manifests=manifests_dir, overrides={"server": {"trusted_proxies": ["127.0.0.1/32"]}})
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert httpx.get(f"{gateway.url}/", headers=forwarded).status_code == 200
    assert backend.requests[-1].headers["x-seen"] == "203.0.113.9 https"
