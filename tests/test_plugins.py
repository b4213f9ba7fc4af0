"""The plugin model end to end: in-code plugins on a gateway served over real sockets.

Plugins are registered in code (no entry points) on an in-process gateway; requests go
through the real proxy listener to real upstream servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from gateway_core import (
    Binding,
    CallNext,
    GatewayError,
    GatewaySettings,
    LocalResponse,
    Outcome,
    Plugin,
    PluginSpec,
    RequestContext,
    RouteInfo,
    UpstreamRequest,
    UpstreamResponse,
    hookimpl,
    load_settings,
)
from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    endpoint_slice,
    ingress,
    path,
    routed_service,
    service,
    wait_until,
    write_manifests,
)

UpstreamFactory = Callable[..., RecordingUpstream]
GatewayFactory = Callable[..., InProcessGateway]


class TagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str
    deny_path: str | None = None


class Tagger(Plugin):
    """Leaves a trace in every phase."""

    made = 0

    def __init__(self, name: str, config: TagConfig, journal: list[tuple[Any, ...]]) -> None:
        Tagger.made += 1
        self.name = name
        self.config = config
        self.journal = journal

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        self.journal.append(("on_request", self.name))
        if self.config.deny_path and ctx.path == self.config.deny_path:
            return LocalResponse.error(403, "denied", f"{self.name} says no")
        if ctx.path == "/explode":
            raise RuntimeError("plugin bug")
        return None

    async def on_upstream_request(self, ctx: RequestContext, request: UpstreamRequest) -> None:
        request.headers.add("x-tags", f"{self.name}={self.config.value}")

    async def around_upstream(self, ctx: RequestContext, call_next: CallNext) -> UpstreamResponse:
        self.journal.append(("before", self.name))
        response = await call_next()
        self.journal.append(("after", self.name))
        return response

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        response.headers.add("x-seen-by", self.name)

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.journal.append(("on_log", self.name, outcome.status, outcome.bytes_sent, ctx.route and ctx.route.id))


class InCodePlugins:
    """Hook implementations registered in code."""

    def __init__(self) -> None:
        self.journal: list[tuple[Any, ...]] = []
        self.loaded: list[tuple[list[str], list[str], list[str]]] = []
        self.lifecycle: list[str] = []

    def spec(self, name: str, priority: int) -> PluginSpec[TagConfig]:
        def factory(config: TagConfig, binding: Binding) -> Tagger:
            return Tagger(name, config, self.journal)

        return PluginSpec(name=name, factory=factory, config_model=TagConfig, priority=priority, version="1.0")

    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        return [self.spec("tag-a", 20), self.spec("tag-b", 10), self.spec("tag-c", 10)]

    @hookimpl
    async def gateway_routes_loaded(
        self, added: Sequence[RouteInfo], removed: Sequence[RouteInfo], rejected: Sequence[tuple[str, Sequence[str]]]
    ) -> None:
        await asyncio.sleep(0)
        self.loaded.append(([r.id for r in added], [r.id for r in removed], [ref for ref, _ in rejected]))

    @hookimpl
    def gateway_route_validate(self, route: RouteInfo, plugins: Sequence[str]) -> Sequence[str] | None:
        if route.host == "forbidden.local":
            return ["forbidden.local may not be served"]
        return None

    @hookimpl
    async def gateway_startup(self, settings: GatewaySettings) -> None:
        await asyncio.sleep(0)
        self.lifecycle.append("startup")

    @hookimpl
    async def gateway_shutdown(self, settings: GatewaySettings) -> None:
        await asyncio.sleep(0)
        self.lifecycle.append("shutdown")

    @hookimpl
    def gateway_admin_routers(self) -> Sequence[APIRouter]:
        router = APIRouter()

        @router.get("/custom")
        async def custom() -> dict[str, str]:
            return {"custom": "yes"}

        return [router]

    @hookimpl
    def gateway_asgi_wrappers(self) -> Sequence[Callable[[Any], Any]]:
        def wrap(app: Any) -> Any:
            async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
                async def send_with_header(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        message["headers"] = [*message.get("headers", []), (b"x-wrapped", b"1")]
                    await send(message)

                await app(scope, receive, send_with_header if scope["type"] == "http" else send)

            return wrapped

        return [wrap]


def annotated(name: str, host: str, service_name: str, annotations: dict[str, str], **extra: Any) -> dict[str, Any]:
    return ingress(name, rules=[(host, [path("/", service_name)])], annotations=annotations, **extra)


def start(factory: GatewayFactory, manifests: Path, hooks: object, **overrides: Any) -> InProcessGateway:
    settings = load_settings(None, {"manifests": {"dir": str(manifests)}, "log": {"level": "warning"}, **overrides})
    return factory(settings=settings, plugins=[hooks], load_entry_points=False)


def test_phases_run_in_priority_order_around_the_upstream(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    api = upstream("api")
    hooks = InCodePlugins()
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            annotated(
                "tagged",
                "app.local",
                "api",
                {
                    "meta-native.io/plugins": "tag-b, tag-a",
                    "meta-native.io/plugin.tag-a": "value: one",
                    "meta-native.io/plugin.tag-b": '{"value": "two", "deny_path": "/private"}',
                },
            ),
        ],
    )
    gateway = start(in_process_gateway, manifests_dir, hooks)
    assert hooks.lifecycle == ["startup"]

    response = httpx.get(gateway.url + "/hello", headers={"host": "app.local"})
    assert response.status_code == 200
    assert response.headers.get_list("x-seen-by") == ["tag-a", "tag-b"]  # priority 20 before 10
    assert response.headers["x-wrapped"] == "1"  # the ASGI wrapper from the hook
    assert [value for name, value in api.requests[-1].header_list if name == "x-tags"] == ["tag-a=one", "tag-b=two"]
    wait_until(lambda: any(entry[0] == "on_log" for entry in hooks.journal), message="on_log")
    phases = [entry[:2] for entry in hooks.journal if entry[0] != "on_log"]
    assert phases == [
        ("on_request", "tag-a"),
        ("on_request", "tag-b"),
        ("before", "tag-a"),
        ("before", "tag-b"),
        ("after", "tag-b"),
        ("after", "tag-a"),
    ]
    logs = [entry for entry in hooks.journal if entry[0] == "on_log"]
    assert {entry[1] for entry in logs} == {"tag-a", "tag-b"}
    assert all(entry[2] == 200 and entry[3] == len(response.content) for entry in logs)
    assert logs[0][4] == "default/tagged:app.local:Prefix:/"

    denied = httpx.get(gateway.url + "/private", headers={"host": "app.local"})
    assert denied.status_code == 403
    assert denied.json() == {"error": "denied", "message": "tag-b says no"}
    assert len(api.requests) == 1  # short-circuited: the upstream never saw it

    broken = httpx.get(gateway.url + "/explode", headers={"host": "app.local"})
    assert broken.status_code == 500
    assert broken.json()["error"] == "internal_error"
    assert "Traceback" not in broken.text
    assert httpx.get(gateway.url + "/again", headers={"host": "app.local"}).status_code == 200

    admin = httpx.get(gateway.admin_url + "/custom")
    assert admin.json() == {"custom": "yes"}
    plugins = httpx.get(gateway.admin_url + "/plugins").json()["plugins"]
    assert [p["name"] for p in plugins] == ["tag-a", "tag-b", "tag-c"]
    assert plugins[0]["config_schema"]["required"] == ["value"]

    gateway.stop()
    assert hooks.lifecycle == ["startup", "shutdown"]


def test_bad_plugin_bindings_reject_only_their_ingress(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    api = upstream("api")
    hooks = InCodePlugins()
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            annotated(
                "good",
                "good.local",
                "api",
                {"meta-native.io/plugins": "tag-a", "meta-native.io/plugin.tag-a": "value: x"},
            ),
            annotated(
                "invalid-config",
                "invalid.local",
                "api",
                {"meta-native.io/plugins": "tag-a", "meta-native.io/plugin.tag-a": "valu: typo"},
            ),
            annotated("unknown-plugin", "unknown.local", "api", {"meta-native.io/plugins": "no-such-plugin"}),
            annotated("unbound-config", "unbound.local", "api", {"meta-native.io/plugin.tag-a": "value: x"}),
            annotated(
                "bad-yaml",
                "yaml.local",
                "api",
                {"meta-native.io/plugins": "tag-a", "meta-native.io/plugin.tag-a": "value: [unclosed"},
            ),
            annotated("validated", "forbidden.local", "api", {}),
        ],
    )
    gateway = start(in_process_gateway, manifests_dir, hooks)

    assert httpx.get(gateway.url + "/", headers={"host": "good.local"}).status_code == 200
    for host in ("invalid.local", "unknown.local", "unbound.local", "yaml.local", "forbidden.local"):
        response = httpx.get(gateway.url + "/", headers={"host": host})
        assert response.status_code == 503, host
        assert response.json()["error"] == "route_unavailable"
    rejected = {item["ingress"]: item for item in httpx.get(gateway.admin_url + "/routes").json()["rejected"]}
    assert set(rejected) == {
        "default/invalid-config",
        "default/unknown-plugin",
        "default/unbound-config",
        "default/bad-yaml",
        "default/validated",
    }
    assert "valu" in " ".join(rejected["default/invalid-config"]["reasons"])
    assert "not installed" in " ".join(rejected["default/unknown-plugin"]["reasons"])
    assert "not bound" in " ".join(rejected["default/unbound-config"]["reasons"])
    assert "forbidden.local may not be served" in rejected["default/validated"]["reasons"]
    assert all(item["serving_last_good"] is False for item in rejected.values())
    assert len(api.requests) == 1
    assert set(hooks.loaded[-1][2]) == set(rejected)  # gateway_routes_loaded saw the rejections


def test_last_good_version_keeps_serving_and_plugin_objects_survive_endpoint_churn(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    first, second = upstream("first"), upstream("second")
    hooks = InCodePlugins()

    def objects(port: int, config: str) -> list[dict[str, Any]]:
        return [
            service("api"),
            endpoint_slice("api", ["127.0.0.1"], port=port),
            annotated(
                "app", "app.local", "api", {"meta-native.io/plugins": "tag-a", "meta-native.io/plugin.tag-a": config}
            ),
        ]

    write_manifests(manifests_dir, objects(first.port, "value: v1"))
    gateway = start(in_process_gateway, manifests_dir, hooks)

    def served_by() -> str:
        return str(httpx.get(gateway.url + "/", headers={"host": "app.local"}).json()["upstream"])

    assert served_by() == "first"
    made = Tagger.made
    generation = gateway.gateway.tables.current.generation

    write_manifests(manifests_dir, objects(second.port, "value: v1"))  # endpoints change only
    wait_until(lambda: served_by() == "second", message="the new endpoint")
    assert Tagger.made == made  # same plugin object: its state survived the rebuild
    assert gateway.gateway.tables.current.generation > generation

    write_manifests(manifests_dir, objects(first.port, "valu: broken"))  # bad config, endpoints change too
    wait_until(lambda: bool(httpx.get(gateway.admin_url + "/routes").json()["rejected"]), message="rejection")
    rejected = httpx.get(gateway.admin_url + "/routes").json()["rejected"]
    assert rejected[0]["serving_last_good"] is True
    assert served_by() == "first"  # the last good version, re-resolved against today's endpoints
    assert Tagger.made == made

    write_manifests(manifests_dir, objects(first.port, "value: v2"))  # fixed, new config: new object
    wait_until(lambda: not httpx.get(gateway.admin_url + "/routes").json()["rejected"], message="recovery")
    assert served_by() == "first"
    assert Tagger.made == made + 1


def test_global_plugins_and_defaults_from_settings(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    api = upstream("api")
    hooks = InCodePlugins()
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            annotated("plain", "plain.local", "api", {}),
            annotated("own-config", "own.local", "api", {"meta-native.io/plugin.tag-c": "value: mine"}),
        ],
    )
    gateway = start(
        in_process_gateway,
        manifests_dir,
        hooks,
        plugins={"global": ["tag-c"], "config": {"tag-c": {"value": "default"}}},
    )
    httpx.get(gateway.url + "/", headers={"host": "plain.local"})
    httpx.get(gateway.url + "/", headers={"host": "own.local"})
    tags = [dict(api.requests[i].header_list)["x-tags"] for i in (0, 1)]
    assert tags == ["tag-c=default", "tag-c=mine"]


def test_disabled_plugins_are_unknown(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    api = upstream("api")
    hooks = InCodePlugins()
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            annotated(
                "app",
                "app.local",
                "api",
                {"meta-native.io/plugins": "tag-a", "meta-native.io/plugin.tag-a": "value: x"},
            ),
        ],
    )
    gateway = start(in_process_gateway, manifests_dir, hooks, plugins={"disabled": ["tag-a"]})
    assert httpx.get(gateway.url + "/", headers={"host": "app.local"}).status_code == 503
    assert [p["name"] for p in httpx.get(gateway.admin_url + "/plugins").json()["plugins"]] == ["tag-b", "tag-c"]


def test_plugin_specs_refuse_lenient_config_models() -> None:
    class Lenient(BaseModel):
        value: str = ""

    with pytest.raises(Exception, match="extra='forbid'"):
        PluginSpec(name="lenient", factory=lambda config, binding: object(), config_model=Lenient)


class Busy(GatewayError):
    status = 503
    code = "busy"
    public = True


class Refuser(Plugin):
    """Raises the gateway's own errors from on_request, and retries the upstream call."""

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        if ctx.path == "/timeout":
            from gateway_core.errors import UpstreamTimeoutError

            raise UpstreamTimeoutError("the plugin's own side call timed out")
        if ctx.path == "/busy":
            raise Busy("try again in 7 seconds").with_headers(("Retry-After", "7"))
        if ctx.path == "/internal":
            raise GatewayError("secret detail: 10.0.0.7:6379 refused").with_headers(("X-Bad", "a\r\nb"))
        return None

    async def around_upstream(self, ctx: RequestContext, call_next: CallNext) -> UpstreamResponse:
        first = await call_next()
        if ctx.path != "/retry":
            return first
        first.body.close()
        return await call_next()  # a second attempt: fine without a body, refused with one


class RefuserPlugins:
    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        return [PluginSpec(name="refuser", factory=lambda config, binding: Refuser())]


def test_gateway_errors_from_plugins_keep_their_status_and_bodies_stream_once(
    upstream: UpstreamFactory, manifests_dir: Path, in_process_gateway: GatewayFactory
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            annotated("app", "app.local", "api", {"meta-native.io/plugins": "refuser"}),
        ],
    )
    gateway = start(in_process_gateway, manifests_dir, RefuserPlugins())
    timed_out = httpx.get(gateway.url + "/timeout", headers={"host": "app.local"})
    assert timed_out.status_code == 504
    assert timed_out.json()["error"] == "upstream_timeout"
    busy = httpx.get(gateway.url + "/busy", headers={"host": "app.local"})
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "7")
    assert busy.json() == {"error": "busy", "message": "try again in 7 seconds"}
    internal = httpx.get(gateway.url + "/internal", headers={"host": "app.local"})
    assert internal.status_code == 500  # a header value with CR/LF is a plugin bug: no injection
    assert "10.0.0.7" not in internal.text
    assert "x-bad" not in internal.headers

    assert httpx.get(gateway.url + "/retry", headers={"host": "app.local"}).status_code == 200
    assert [r.method for r in api.requests] == ["GET", "GET"]  # bodyless: sent twice
    refused = httpx.post(gateway.url + "/retry", headers={"host": "app.local"}, content=b"payload")
    assert refused.status_code == 502
    assert refused.json()["error"] == "body_not_replayable"
    assert [len(r.body) for r in api.requests[2:]] == [7]  # the one attempt that had the body
