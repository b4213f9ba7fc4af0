"""Plugin-owned request headers (identity and the like) never come from the client.

Each installed plugin's ``owned_headers`` and the headers its bindings' configs name are
stripped from every client request on every route — also where the plugin is not bound —
before any plugin runs; only the plugin itself can then set them. ``Outcome.plugins`` tells
``on_log`` which plugins ran, up to the one that answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core import (
    Binding,
    Headers,
    IdentityConfig,
    LocalResponse,
    Outcome,
    Plugin,
    PluginSpec,
    RequestContext,
    UpstreamRequest,
    UpstreamResponse,
    hookimpl,
    load_settings,
    set_identity,
)
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


class PasswordConfig(IdentityConfig):
    """Identity from a fixed password header; ``extra_header`` is owned too."""

    password: str
    extra_header: str = "X-Auth-Groups"

    def owned_headers(self) -> Iterable[str]:
        return (*super().owned_headers(), self.extra_header)


class PasswordAuth(Plugin):
    def __init__(self, config: PasswordConfig, seen: list[Outcome]) -> None:
        self.config = config
        self.seen = seen

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        given = ctx.request.headers.get("x-password")
        if given != self.config.password:
            return LocalResponse.error(401, "unauthorized", "wrong password")
        name = ctx.request.headers.get("x-name", "someone") or "someone"
        if not set_identity(ctx, name, self.config.identity_header):
            return LocalResponse.error(401, "unauthorized", "unusable name")
        ctx.request.headers.set(self.config.extra_header, "staff")
        return None

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.seen.append(outcome)


class Observer(Plugin):
    """Runs after auth (lower priority); records what it saw."""

    def __init__(self, seen: list[tuple[str | None, str | None]]) -> None:
        self.seen = seen

    async def on_upstream_request(self, ctx: RequestContext, request: UpstreamRequest) -> None:
        self.seen.append((ctx.identity, request.headers.get("x-auth-user")))


class Hooks:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.observed: list[tuple[str | None, str | None]] = []

    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        def auth(config: PasswordConfig, binding: Binding) -> PasswordAuth:
            return PasswordAuth(config, self.outcomes)

        def observer(config: Any, binding: Binding) -> Observer:
            return Observer(self.observed)

        return [
            PluginSpec(
                name="password", factory=auth, config_model=PasswordConfig, priority=100, owned_headers=("X-Auth-User",)
            ),
            PluginSpec(name="observer", factory=observer, priority=10),
            PluginSpec(name="owns-a-header", factory=lambda c, b: Plugin(), owned_headers=("X-Internal-Token",)),
        ]


@pytest.fixture
def setup(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream, Hooks]:
    backend = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            ingress(
                "secured",
                rules=[("secured.test", [path("/", "api")])],
                annotations=plugin_annotations(
                    {
                        "password": {"password": "pw", "identity_header": "X-User", "extra_header": "X-Roles"},
                        "observer": None,
                    }
                ),
            ),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    hooks = Hooks()
    settings = load_settings(None, {"manifests": {"dir": str(manifests_dir)}, "log": {"level": "warning"}})
    gateway = in_process_gateway(settings=settings, plugins=[hooks], load_entry_points=False)
    return gateway, backend, hooks


FORGED = {
    "X-Auth-User": "root",
    "X-User": "root",
    "x-roles": "admin",
    "X-Internal-Token": "t",
    "X-Unrelated": "kept",
}


def test_owned_headers_are_stripped_on_a_route_without_the_plugin(
    setup: tuple[InProcessGateway, RecordingUpstream, Hooks],
) -> None:
    gateway, backend, _ = setup
    response = httpx.get(f"{gateway.url}/", headers={**FORGED, "Host": "open.test"})
    assert response.status_code == 200
    received = backend.requests[-1].headers
    for name in ("x-auth-user", "x-user", "x-roles", "x-internal-token"):
        assert name not in received
    assert received["x-unrelated"] == "kept"


def test_only_the_owning_plugin_sets_them_after_success(
    setup: tuple[InProcessGateway, RecordingUpstream, Hooks],
) -> None:
    gateway, backend, hooks = setup
    headers = {**FORGED, "Host": "secured.test", "X-Password": "pw", "X-Name": "alice"}
    assert httpx.get(f"{gateway.url}/", headers=headers).status_code == 200
    received = backend.requests[-1].header_list
    assert [value for name, value in received if name == "x-user"] == ["alice"]
    assert [value for name, value in received if name == "x-roles"] == ["staff"]
    assert not any(name in ("x-auth-user", "x-auth-groups", "x-internal-token") for name, _ in received)
    assert hooks.observed[-1] == ("alice", None)  # the observer saw ctx.identity, not a forged header


def test_outcome_names_the_plugins_that_ran_up_to_the_one_that_answered(
    setup: tuple[InProcessGateway, RecordingUpstream, Hooks],
) -> None:
    gateway, _, hooks = setup
    httpx.get(f"{gateway.url}/", headers={"Host": "secured.test"})
    httpx.get(f"{gateway.url}/", headers={"Host": "secured.test", "X-Password": "pw"})
    denied, allowed = hooks.outcomes[-2:]
    assert (denied.status, denied.plugins) == (401, ("password",))
    assert (allowed.status, allowed.plugins) == (200, ("password", "observer"))


def test_routes_page_lists_the_stripped_headers(setup: tuple[InProcessGateway, RecordingUpstream, Hooks]) -> None:
    gateway, _, _ = setup
    stripped = httpx.get(f"{gateway.admin_url}/routes").json()["stripped_request_headers"]
    assert stripped == ["x-auth-user", "x-internal-token", "x-roles", "x-user"]


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "nul\0", "snow\u2603"])
def test_header_values_that_could_split_a_request_are_refused(value: str) -> None:
    headers = Headers()
    with pytest.raises(ValueError, match=r"CR, LF or NUL|latin-1"):
        headers.set("x-test", value)
    with pytest.raises(ValueError, match=r"CR, LF or NUL|latin-1"):
        headers.add("x-test", value)
    assert len(headers) == 0


def test_set_identity_refuses_what_cannot_travel_in_a_header() -> None:
    request = UpstreamRequest("GET", b"/", Headers())
    ctx = RequestContext(
        scope={},
        method="GET",
        host="h",
        path="/",
        scheme="http",
        client_ip="1.2.3.4",
        peer_ip="1.2.3.4",
        route=None,
        request=request,
    )
    assert not set_identity(ctx, "eve\r\nX-Admin: 1")
    assert (ctx.identity, len(request.headers)) == (None, 0)
    assert set_identity(ctx, "alice", "X-User")
    assert (ctx.identity, request.headers.get("x-user")) == ("alice", "alice")


@pytest.mark.parametrize("name", ["Authorization", "cookie", "Host", "X-Forwarded-For", "Content-Length"])
def test_identity_cannot_go_in_a_header_the_gateway_relies_on(name: str) -> None:
    with pytest.raises(ValueError, match="cannot carry the identity"):
        PasswordConfig.model_validate({"password": "pw", "identity_header": name})


def test_a_plugin_that_would_own_a_reserved_header_is_refused_at_binding() -> None:
    from gateway_core.manifests.annotations import PluginAnnotations
    from gateway_core.routing.binding import BindingPolicy, resolve_plugins

    class GreedyConfig(PasswordConfig):
        def owned_headers(self) -> Iterable[str]:
            return (*super().owned_headers(), "Cookie")

    spec = PluginSpec(name="greedy", factory=lambda c, b: Plugin(), config_model=GreedyConfig)
    annotations = PluginAnnotations(listed=("greedy",), configs={"greedy": {"password": "pw"}})
    resolved = resolve_plugins(annotations, BindingPolicy(), {"greedy": spec})
    assert resolved.plugins == []
    assert resolved.problems == ["plugin 'greedy': may not own the request header(s) cookie"]


class Stamper(Plugin):
    """Stamps every answer, the upstream's and the gateway's own."""

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        response.headers.set("x-stamp", "upstream")

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        response.headers.append((b"x-stamp", f"local-{response.status}".encode()))


class Broken(Plugin):
    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        raise RuntimeError("plugin bug")


class StampHooks(Hooks):
    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        specs = list(super().gateway_plugin_specs())
        specs.append(PluginSpec(name="stamper", factory=lambda c, b: Stamper(), priority=1000))
        specs.append(PluginSpec(name="broken", factory=lambda c, b: Broken(), priority=1001))
        return specs


def test_on_local_response_stamps_the_gateways_own_answers(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    backend = upstream("api")
    annotations = plugin_annotations({"stamper": None, "broken": None, "password": {"password": "pw"}})
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            *routed_service("dead", free_port()),
            ingress("ok", rules=[("ok.test", [path("/", "api")])], annotations=annotations),
            ingress("dead", rules=[("dead.test", [path("/", "dead")])], annotations=annotations),
        ],
    )
    settings = load_settings(None, {"manifests": {"dir": str(manifests_dir)}, "log": {"level": "error"}})
    gateway = in_process_gateway(settings=settings, plugins=[StampHooks()], load_entry_points=False)
    denied = httpx.get(f"{gateway.url}/", headers={"Host": "ok.test"})
    assert (denied.status_code, denied.headers["x-stamp"]) == (401, "local-401")
    passed = httpx.get(f"{gateway.url}/", headers={"Host": "ok.test", "X-Password": "pw"})
    assert (passed.status_code, passed.headers["x-stamp"]) == (200, "upstream")
    failed = httpx.get(f"{gateway.url}/", headers={"Host": "dead.test", "X-Password": "pw"})
    assert (failed.status_code, failed.headers["x-stamp"]) == (502, "local-502")
    missing = httpx.get(f"{gateway.url}/", headers={"Host": "unknown.test"})
    assert (missing.status_code, "x-stamp" in missing.headers) == (404, False)  # no route: no plugins
