"""build_table: translate, bind, merge and index a snapshot into a route table."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from gateway_core.manifests import Problem, Snapshot, build_snapshot
from gateway_core.manifests.translate import ClassPolicy, RouteKind
from gateway_core.messages import Endpoint, LocalResponse, Outcome, RequestContext, RouteInfo
from gateway_core.plugin_api import Binding, EmptyConfig, Plugin, PluginSpec
from gateway_core.routing import BindingPolicy, BuildOptions, Route, RouteTable, build_table
from gateway_core.routing.table import Conflict, RejectedIngress
from gateway_core.testing import endpoint_slice, ingress, path, routed_service, service
from gateway_core.transport.balancing import round_robin

# --- in-code plugins ------------------------------------------------------------------------


class LimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int


class Limiter(Plugin):
    made = 0

    def __init__(self, config: LimitConfig, binding: Binding) -> None:
        Limiter.made += 1
        self.config = config
        self.route = binding.route
        self.seen = 0

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        self.seen += 1
        return LocalResponse(429) if self.seen > self.config.limit else None


class Auth(Plugin):
    def __init__(self, config: EmptyConfig, binding: Binding) -> None:
        self.keys = binding.secrets("api-keys")

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        return None

    async def on_response(self, ctx: RequestContext, response: Any) -> None:
        return None


class Logger(Plugin):
    def __init__(self, config: EmptyConfig, binding: Binding) -> None:
        pass

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        return None

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        return None


def _broken(config: EmptyConfig, binding: Binding) -> object:
    raise RuntimeError("cannot start")


SPECS: dict[str, PluginSpec[Any]] = {
    "limit": PluginSpec(name="limit", factory=Limiter, config_model=LimitConfig, priority=10),
    "auth": PluginSpec(name="auth", factory=Auth, priority=100),
    "logger": PluginSpec(name="logger", factory=Logger, priority=-5),
    "broken": PluginSpec(name="broken", factory=_broken),
}


def _options(**overrides: Any) -> BuildOptions:
    values: dict[str, Any] = {"specs": SPECS, "balancer_factory": round_robin}
    values.update(overrides)
    return BuildOptions(**values)


def _snapshot(*documents: dict[str, Any], problems: Sequence[Problem] = ()) -> Snapshot:
    snapshot = build_snapshot((("test.yaml", document) for document in documents), problems=problems)
    assert snapshot.problems == tuple(problems)
    return snapshot


def _build(
    *documents: dict[str, Any], previous: RouteTable | None = None, options: BuildOptions | None = None
) -> RouteTable:
    return build_table(_snapshot(*documents), options or _options(), previous)


def _match(table: RouteTable, host: str, request_path: str) -> Route:
    route = table.match(host, request_path)
    assert route is not None, (host, request_path)
    return route


def _ids(table: RouteTable) -> list[str]:
    return sorted(route.info.id for route in table.routes)


def _plugins(*names: str, **configs: str) -> dict[str, str]:
    annotations = {"meta-native.io/plugins": ", ".join(names)}
    annotations.update({f"meta-native.io/plugin.{name}": text for name, text in configs.items()})
    return annotations


API = routed_service("api", 8080, address="10.0.0.1")
WEB = routed_service("web", 8080, address="10.0.0.2")


# --- basics ---------------------------------------------------------------------------------


def test_empty_snapshot_builds_an_empty_table() -> None:
    table = build_table(Snapshot(), _options())
    assert table.routes == ()
    assert table.rejected == {}
    assert table.conflicts == ()
    assert table.generation == 1
    assert table.match("a.com", "/") is None


def test_routes_carry_their_backend_and_a_balancer() -> None:
    table = _build(*API, ingress("site", rules=[("a.com", [path("/", "api")])]))
    route = _match(table, "a.com", "/x")
    assert route.info.id == "default/site:a.com:Prefix:/"
    assert route.unavailable is None
    assert route.spec.backend.endpoints == (Endpoint("10.0.0.1", 8080),)
    assert route.balancer.pick(None) == Endpoint("10.0.0.1", 8080)
    assert route.service_label == "default/api"
    assert table.last_good.keys() == {"default/site"}


def test_backend_without_endpoints_is_served_not_rejected() -> None:
    table = _build(ingress("site", rules=[("a.com", [path("/", "missing")])]))
    route = _match(table, "a.com", "/")
    assert table.rejected == {}
    assert route.unavailable is None
    assert route.spec.backend.problem == "service default/missing not found"
    assert route.balancer.pick(None) is None


def test_generation_increments() -> None:
    first = _build(*API, ingress("site", default_backend="api"))
    second = _build(*API, ingress("site", default_backend="api"), previous=first)
    third = _build(previous=second)
    assert (first.generation, second.generation, third.generation) == (1, 2, 3)


def test_snapshot_problems_are_carried() -> None:
    problem = Problem("bad.yaml", "invalid YAML at line 3")
    table = build_table(_snapshot(*API, problems=[problem]), _options())
    assert table.problems == (problem,)


def test_invalid_object_in_snapshot_becomes_a_problem_and_others_serve() -> None:
    broken = ingress("broken", rules=[("a.com", [path("/", "api", path_type="Regex")])])
    snapshot = build_snapshot(
        [("a.yaml", d) for d in API]
        + [("b.yaml", broken), ("c.yaml", ingress("fine", rules=[("b.com", [path("/", "api")])]))]
    )
    table = build_table(snapshot, _options())
    assert [problem.source for problem in table.problems] == ["b.yaml"]
    assert "spec.rules[0].http.paths[0].pathType" in table.problems[0].message
    assert _match(table, "b.com", "/").info.ingress == "fine"
    assert table.match("a.com", "/") is None


# --- merging and conflicts ------------------------------------------------------------------


def test_several_ingresses_merge_on_one_host() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("api", rules=[("shop.com", [path("/api", "api")])]),
        ingress("web", rules=[("shop.com", [path("/", "web"), path("/login", "web", path_type="Exact")])]),
    )
    assert _match(table, "shop.com", "/api/items").info.ingress == "api"
    assert _match(table, "shop.com", "/login").info.ingress == "web"
    assert _match(table, "shop.com", "/other").info.ingress == "web"
    assert table.conflicts == ()


def test_conflicting_path_oldest_ingress_wins() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("newer", rules=[("a.com", [path("/app", "api")])], created="2024-06-01T00:00:00Z"),
        ingress("older", rules=[("a.com", [path("/app", "web")])], created="2023-01-01T00:00:00Z"),
    )
    assert _match(table, "a.com", "/app").info.ingress == "older"
    assert table.conflicts == (
        Conflict(route="default/newer:a.com:Prefix:/app", winner="default/older:a.com:Prefix:/app"),
    )
    assert _ids(table) == ["default/older:a.com:Prefix:/app"]


def test_conflict_timestamps_compare_in_utc() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("utc", rules=[("a.com", [path("/", "api")])], created="2024-01-01T09:00:00Z"),
        ingress("east", rules=[("a.com", [path("/", "web")])], created="2024-01-01T10:00:00+02:00"),
    )
    assert _match(table, "a.com", "/").info.ingress == "east"  # 08:00 UTC


def test_conflict_tie_broken_by_namespace_then_name() -> None:
    stamp = "2024-01-01T00:00:00Z"
    table = _build(
        *routed_service("api", 80, namespace="b"),
        *routed_service("api", 80, namespace="a"),
        ingress("z", namespace="b", rules=[("a.com", [path("/", "api")])], created=stamp),
        ingress("y", namespace="a", rules=[("a.com", [path("/", "api")])], created=stamp),
        ingress("x", namespace="b", rules=[("a.com", [path("/", "api")])], created=stamp),
    )
    assert _match(table, "a.com", "/").info.ingress_ref == "a/y"
    assert sorted(conflict.route for conflict in table.conflicts) == ["b/x:a.com:Prefix:/", "b/z:a.com:Prefix:/"]
    assert {conflict.winner for conflict in table.conflicts} == {"a/y:a.com:Prefix:/"}


def test_ingress_without_timestamp_loses_to_one_with() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("a-unstamped", rules=[("a.com", [path("/", "api")])]),
        ingress("b-stamped", rules=[("a.com", [path("/", "web")])], created="2030-01-01T00:00:00Z"),
    )
    assert _match(table, "a.com", "/").info.ingress == "b-stamped"


def test_prefix_paths_differing_only_by_trailing_slash_conflict() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("old", rules=[("a.com", [path("/app/", "api")])], created="2020-01-01T00:00:00Z"),
        ingress("new", rules=[("a.com", [path("/app", "web")])], created="2021-01-01T00:00:00Z"),
    )
    assert _match(table, "a.com", "/app").info.ingress == "old"
    assert len(table.conflicts) == 1


def test_exact_and_prefix_on_the_same_path_do_not_conflict() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("old", rules=[("a.com", [path("/app", "api")])], created="2020-01-01T00:00:00Z"),
        ingress("new", rules=[("a.com", [path("/app", "web", path_type="Exact")])], created="2021-01-01T00:00:00Z"),
    )
    assert table.conflicts == ()
    assert _match(table, "a.com", "/app").info.ingress == "new"
    assert _match(table, "a.com", "/app/x").info.ingress == "old"


def test_same_path_on_other_hosts_does_not_conflict() -> None:
    table = _build(
        *API,
        ingress("one", rules=[("a.com", [path("/", "api")])]),
        ingress("two", rules=[("b.com", [path("/", "api")]), (None, [path("/", "api")])]),
    )
    assert table.conflicts == ()
    assert len(table.routes) == 3


# --- default backends -----------------------------------------------------------------------


def test_default_backend_prefers_an_ingress_without_rules() -> None:
    table = _build(
        *API,
        *WEB,
        ingress(
            "with-rules", rules=[("a.com", [path("/x", "api")])], default_backend="api", created="2020-01-01T00:00:00Z"
        ),
        ingress("standalone", default_backend="web", created="2024-01-01T00:00:00Z"),
    )
    assert _match(table, "other.com", "/").info.id == "default/standalone:default"
    # The host default of the Ingress with rules still serves its own host.
    assert _match(table, "a.com", "/y").info.id == "default/with-rules:a.com:default"
    assert Conflict(route="default/with-rules:default", winner="default/standalone:default") in table.conflicts


def test_default_backend_oldest_among_standalone_ingresses() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("newer", default_backend="api", created="2024-01-01T00:00:00Z"),
        ingress("older", default_backend="web", created="2023-01-01T00:00:00Z"),
    )
    route = _match(table, "any.com", "/")
    assert route.info.id == "default/older:default"
    assert route.spec.kind is RouteKind.DEFAULT
    assert table.conflicts == (Conflict(route="default/newer:default", winner="default/older:default"),)
    assert [r.info.id for r in table.routes] == ["default/older:default"]


def test_default_backend_oldest_among_ingresses_with_rules() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("newer", rules=[("a.com", [path("/a", "api")])], default_backend="api", created="2024-01-01T00:00:00Z"),
        ingress("older", rules=[("b.com", [path("/b", "web")])], default_backend="web", created="2023-01-01T00:00:00Z"),
    )
    assert _match(table, "c.com", "/").info.id == "default/older:default"
    assert _match(table, "a.com", "/zzz").info.id == "default/newer:a.com:default"
    assert _match(table, "b.com", "/zzz").info.id == "default/older:b.com:default"


def test_host_default_conflict_oldest_wins() -> None:
    table = _build(
        *API,
        *WEB,
        ingress("newer", rules=[("a.com", [path("/n", "api")])], default_backend="api", created="2024-01-01T00:00:00Z"),
        ingress("older", rules=[("a.com", [path("/o", "web")])], default_backend="web", created="2023-01-01T00:00:00Z"),
    )
    assert _match(table, "a.com", "/zzz").info.id == "default/older:a.com:default"
    assert Conflict(route="default/newer:a.com:default", winner="default/older:a.com:default") in table.conflicts


# --- rejection and the last good version ----------------------------------------------------


def test_rejected_ingress_without_a_good_version_answers_503() -> None:
    bad = ingress("bad", rules=[("a.com", [path("/", "api")])], default_backend="api", annotations=_plugins("nope"))
    table = _build(*API, bad, *WEB, ingress("good", rules=[("b.com", [path("/", "web")])]))
    rejected = table.rejected["default/bad"]
    assert rejected == RejectedIngress(
        "default/bad", ("plugin 'nope' is not installed (or is disabled)",), serving_last_good=False
    )
    route = _match(table, "a.com", "/")
    assert route.unavailable == "Ingress rejected: plugin 'nope' is not installed (or is disabled)"
    assert route.plugins == ()
    assert route.on_request == ()
    assert _match(table, "a.com", "/zzz").unavailable is not None  # host default too
    assert "default/bad" not in table.last_good
    # Nothing else is affected.
    good = _match(table, "b.com", "/")
    assert good.unavailable is None
    assert table.rejected.keys() == {"default/bad"}


@pytest.mark.parametrize(
    ("annotations", "reason"),
    [
        (_plugins("limit"), "plugin 'limit': invalid config: limit: Field required"),
        (
            _plugins("limit", limit="limit: 1\nburst: 2"),
            "plugin 'limit': invalid config: burst: Extra inputs are not permitted",
        ),
        (
            {"meta-native.io/plugin.limit": "limit: 1"},
            "annotation meta-native.io/plugin.limit: plugin 'limit' is configured",
        ),
        ({"meta-native.io/plugins": "Limit"}, "annotation meta-native.io/plugins: 'Limit' is not a valid plugin name"),
        ({"meta-native.io/typo": "x"}, "annotation meta-native.io/typo: unknown meta-native.io/ annotation"),
        (
            _plugins("limit", limit="[1, 2]"),
            "annotation meta-native.io/plugin.limit: invalid config: must be a mapping",
        ),
        (
            _plugins("limit", limit="a: " + "[" * 3000 + "]" * 3000),
            "annotation meta-native.io/plugin.limit: invalid config: nested too deeply",
        ),
        (_plugins("broken"), "plugin 'broken' failed to initialise: cannot start"),
    ],
)
def test_reasons_that_reject(annotations: dict[str, str], reason: str) -> None:
    table = _build(*API, ingress("bad", rules=[("a.com", [path("/", "api")])], annotations=annotations))
    rejected = table.rejected["default/bad"]
    assert rejected.serving_last_good is False
    assert any(item.startswith(reason) for item in rejected.reasons), rejected.reasons
    route = _match(table, "a.com", "/")
    assert route.unavailable is not None
    assert route.plugins == ()


def test_spec_problems_reject() -> None:
    table = _build(*API, ingress("bad", rules=[("a.com", [path("/", "api")]), ("bad_host", [path("/", "api")])]))
    assert table.rejected["default/bad"].reasons[0].startswith("spec.rules[1].host: 'bad_host'")
    assert _match(table, "a.com", "/").unavailable is not None


def test_ingress_without_rules_or_backend_is_rejected_with_no_routes() -> None:
    table = _build(ingress("empty"))
    assert table.rejected["default/empty"].reasons == ("spec: an Ingress needs rules or a defaultBackend",)
    assert table.routes == ()


def test_rejected_new_version_keeps_the_previous_one_serving_re_resolved() -> None:
    good = ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 5"))
    first = _build(*API, good)
    assert first.rejected == {}
    old_route = _match(first, "a.com", "/")
    limiter = old_route.plugins[0].instance

    bad = ingress(
        "site",
        rules=[("a.com", [path("/", "api")]), ("b.com", [path("/", "api")])],
        annotations=_plugins("limit", limit="limit: lots"),
    )
    moved = routed_service("api", 9090, address="10.0.0.9")  # the endpoints moved meanwhile
    second = _build(*moved, bad, previous=first)
    rejected = second.rejected["default/site"]
    assert rejected.serving_last_good is True
    assert rejected.reasons[0].startswith("plugin 'limit': invalid config: limit: Input should be a valid integer")
    route = _match(second, "a.com", "/")
    assert route.unavailable is None
    assert route.spec.backend.endpoints == (Endpoint("10.0.0.9", 9090),)  # re-resolved, not stale
    assert route.plugins[0].instance is limiter  # the old policy, same object
    assert second.match("b.com", "/") is None  # the new version's routes are not served
    assert second.last_good["default/site"] == first.last_good["default/site"]

    # Still broken a build later: the last good version still serves.
    third = _build(*moved, bad, previous=second)
    assert third.rejected["default/site"].serving_last_good is True
    assert _match(third, "a.com", "/").plugins[0].instance is limiter

    # Fixing it clears the rejection and serves the new version.
    fixed = ingress(
        "site",
        rules=[("a.com", [path("/", "api")]), ("b.com", [path("/", "api")])],
        annotations=_plugins("limit", limit="limit: 5"),
    )
    fourth = _build(*moved, fixed, previous=third)
    assert fourth.rejected == {}
    assert _match(fourth, "b.com", "/").unavailable is None
    assert _match(fourth, "a.com", "/").plugins[0].instance is limiter  # same route, same config
    assert fourth.last_good["default/site"].spec.rules[1].host == "b.com"


def test_fixing_a_never_good_ingress_clears_the_rejection() -> None:
    first = _build(*API, ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("nope")))
    assert first.rejected["default/site"].serving_last_good is False
    second = _build(*API, ingress("site", rules=[("a.com", [path("/", "api")])]), previous=first)
    assert second.rejected == {}
    assert _match(second, "a.com", "/").unavailable is None


def test_unchanged_ingress_that_now_fails_answers_503() -> None:
    document = ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 1"))
    first = _build(*API, document)
    without_limit = {name: spec for name, spec in SPECS.items() if name != "limit"}
    second = _build(*API, document, previous=first, options=_options(specs=without_limit))
    rejected = second.rejected["default/site"]
    assert rejected.serving_last_good is False  # never served without its policy
    assert rejected.reasons == ("plugin 'limit' is not installed (or is disabled)",)
    assert _match(second, "a.com", "/").unavailable is not None


def test_last_good_version_that_fails_too_answers_503() -> None:
    good = ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 1"))
    first = _build(*API, good)
    bad = ingress("site", rules=[("a.com", [path("/v2", "api")])], annotations=_plugins("nope"))
    without_limit = {name: spec for name, spec in SPECS.items() if name != "limit"}
    second = _build(*API, bad, previous=first, options=_options(specs=without_limit))
    assert second.rejected["default/site"].serving_last_good is False
    assert _match(second, "a.com", "/v2").unavailable is not None
    assert "default/site" not in second.last_good


def test_deleted_ingress_is_forgotten() -> None:
    first = _build(*API, ingress("site", rules=[("a.com", [path("/", "api")])]))
    second = _build(*API, previous=first)
    assert second.last_good == {}
    assert second.match("a.com", "/") is None
    # Coming back broken, it has no last good version to fall back to.
    third = _build(
        *API, ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("nope")), previous=second
    )
    assert third.rejected["default/site"].serving_last_good is False


def test_older_rejected_ingress_still_wins_its_paths() -> None:
    # Its routes answer 503 rather than letting a newer Ingress take its traffic without its policy.
    table = _build(
        *API,
        *WEB,
        ingress(
            "old", rules=[("a.com", [path("/", "api")])], annotations=_plugins("nope"), created="2020-01-01T00:00:00Z"
        ),
        ingress("new", rules=[("a.com", [path("/", "web")])], created="2024-01-01T00:00:00Z"),
    )
    route = _match(table, "a.com", "/")
    assert route.info.ingress == "old"
    assert route.unavailable is not None


def test_validate_hook_problems_reject() -> None:
    seen: list[tuple[str, list[str]]] = []

    def validate(info: RouteInfo, plugins: Sequence[str]) -> Sequence[str]:
        seen.append((info.id, list(plugins)))
        return ["/admin must use auth"] if info.path.startswith("/admin") and "auth" not in plugins else []

    options = _options(validate=validate)
    table = _build(
        *API,
        ingress("open", rules=[("a.com", [path("/admin", "api")])], annotations=_plugins("logger")),
        ingress("closed", rules=[("b.com", [path("/admin", "api")])], annotations=_plugins("logger", "auth")),
        options=options,
    )
    assert table.rejected["default/open"].reasons == ("/admin must use auth",)
    assert _match(table, "a.com", "/admin").unavailable == "Ingress rejected: /admin must use auth"
    assert _match(table, "b.com", "/admin").unavailable is None
    assert ("default/closed:b.com:Prefix:/admin", ["auth", "logger"]) in seen


# --- class filtering ------------------------------------------------------------------------


def test_ingresses_of_other_classes_are_ignored_and_listed() -> None:
    table = _build(
        *API,
        ingress("theirs", rules=[("a.com", [path("/", "api")])], ingress_class="nginx"),
        ingress("ours", rules=[("b.com", [path("/", "api")])], ingress_class="meta-native"),
        ingress("classless", rules=[("c.com", [path("/", "api")])]),
    )
    assert table.ignored == ("default/theirs (nginx)",)
    assert table.match("a.com", "/") is None
    assert _match(table, "b.com", "/").info.ingress == "ours"
    assert _match(table, "c.com", "/").info.ingress == "classless"


def test_classless_ingresses_ignored_when_not_watched() -> None:
    options = _options(class_policy=ClassPolicy(watch_without_class=False))
    table = _build(*API, ingress("classless", rules=[("c.com", [path("/", "api")])]), options=options)
    assert table.ignored == ("default/classless (no class)",)
    assert table.routes == ()


def test_ignored_ingress_is_not_rejected_even_when_invalid() -> None:
    table = _build(ingress("theirs", ingress_class="nginx", annotations={"meta-native.io/typo": "x"}))
    assert table.rejected == {}
    assert table.ignored == ("default/theirs (nginx)",)


# --- plugins on routes ----------------------------------------------------------------------


def test_phases_are_split_per_route_in_priority_order() -> None:
    table = _build(
        *API,
        ingress(
            "site",
            rules=[("a.com", [path("/", "api"), path("/bare", "api")])],
            annotations=_plugins("logger", "limit", "auth", limit="limit: 3"),
        ),
        ingress("plain", rules=[("b.com", [path("/", "api")])]),
    )
    route = _match(table, "a.com", "/")
    assert [bound.spec.name for bound in route.plugins] == ["auth", "limit", "logger"]
    instances = {bound.spec.name: bound.instance for bound in route.plugins}
    assert [m.__self__ for m in route.on_request] == [instances["auth"], instances["limit"], instances["logger"]]  # type: ignore[attr-defined]
    assert [m.__self__ for m in route.on_response] == [instances["auth"]]  # type: ignore[attr-defined]
    assert [m.__self__ for m in route.on_log] == [instances["logger"]]  # type: ignore[attr-defined]
    assert route.on_upstream_request == ()
    assert route.around_upstream == ()
    assert [m.__name__ for m in route.on_request] == ["on_request"] * 3
    # Every route of the Ingress has its own objects.
    other = _match(table, "a.com", "/bare")
    assert {id(b.instance) for b in other.plugins}.isdisjoint({id(b.instance) for b in route.plugins})
    # Other Ingresses are unaffected.
    assert _match(table, "b.com", "/").plugins == ()


def test_global_plugins_bind_to_every_served_route() -> None:
    options = _options(binding=BindingPolicy(bound=("logger",)))
    table = _build(
        *API,
        ingress("one", rules=[("a.com", [path("/", "api")])], default_backend="api"),
        ingress("two", rules=[("b.com", [path("/", "api")])], annotations=_plugins("auth")),
        options=options,
    )
    for route in table.routes:
        assert "logger" in [bound.spec.name for bound in route.plugins], route.info.id
    assert [bound.spec.name for bound in _match(table, "b.com", "/").plugins] == ["auth", "logger"]


def test_global_default_config_used_unless_annotated() -> None:
    options = _options(binding=BindingPolicy(bound=("limit",), defaults={"limit": {"limit": 100}}))
    table = _build(
        *API,
        ingress("one", rules=[("a.com", [path("/", "api")])]),
        ingress("two", rules=[("b.com", [path("/", "api")])], annotations={"meta-native.io/plugin.limit": "limit: 2"}),
        options=options,
    )
    assert _match(table, "a.com", "/").plugins[0].config == LimitConfig(limit=100)
    assert _match(table, "b.com", "/").plugins[0].config == LimitConfig(limit=2)


async def test_plugin_objects_survive_endpoint_churn() -> None:
    site = ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 2"))
    first = _build(*API, site)
    route = _match(first, "a.com", "/")
    limiter = route.plugins[0].instance
    assert isinstance(limiter, Limiter)
    ctx: Any = None
    assert await route.on_request[0](ctx) is None
    assert await route.on_request[0](ctx) is None  # two of two used

    churned = [service("api"), endpoint_slice("api", ["10.0.0.3", "10.0.0.4"], port=8080)]
    made_before = Limiter.made
    second = _build(*churned, site, previous=first)
    again = _match(second, "a.com", "/")
    assert again is not route
    assert again.plugins[0].instance is limiter
    assert Limiter.made == made_before
    assert again.spec.backend.endpoints == (Endpoint("10.0.0.3", 8080), Endpoint("10.0.0.4", 8080))
    response = await again.on_request[0](ctx)
    assert isinstance(response, LocalResponse)
    assert response.status == 429  # the count survived the rebuild
    assert second.instances.keys() == first.instances.keys()


def test_changed_plugin_config_makes_new_objects() -> None:
    first = _build(
        *API, ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 2"))
    )
    second = _build(
        *API,
        ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 3")),
        previous=first,
    )
    assert _match(second, "a.com", "/").plugins[0].instance is not _match(first, "a.com", "/").plugins[0].instance
    assert len(second.instances) == 1


def test_changed_route_makes_new_objects() -> None:
    first = _build(*API, ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("auth")))
    second = _build(
        *API, ingress("site", rules=[("a.com", [path("/v2", "api")])], annotations=_plugins("auth")), previous=first
    )
    assert _match(second, "a.com", "/v2").plugins[0].instance is not _match(first, "a.com", "/").plugins[0].instance


def _secret(value: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "api-keys"},
        "data": {"key": base64.b64encode(value).decode()},
    }


def test_plugin_sees_the_secrets_of_its_namespace() -> None:
    other_namespace = {**_secret(b"theirs"), "metadata": {"name": "api-keys", "namespace": "other"}}
    table = _build(
        *API,
        other_namespace,
        _secret(b"ours"),
        ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("auth")),
    )
    auth = _match(table, "a.com", "/").plugins[0].instance
    assert isinstance(auth, Auth)
    assert auth.keys == {"key": b"ours"}


def test_rotated_secret_makes_a_new_plugin_object() -> None:
    site = ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("auth"))
    first = _build(*API, _secret(b"one"), site)
    auth = _match(first, "a.com", "/").plugins[0].instance
    churned = _build(*routed_service("api", 8080, address="10.0.0.7"), _secret(b"one"), site, previous=first)
    assert _match(churned, "a.com", "/").plugins[0].instance is auth  # unchanged Secret: reused
    rotated = _build(*API, _secret(b"two"), site, previous=churned)
    fresh = _match(rotated, "a.com", "/").plugins[0].instance
    assert fresh is not auth
    assert isinstance(fresh, Auth)
    assert fresh.keys == {"key": b"two"}


def test_secret_with_bad_base64_rejects_the_ingress() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-keys"}, "data": {"key": "%%%"}}
    table = _build(*API, secret, ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("auth")))
    [reason] = table.rejected["default/site"].reasons
    assert reason == "plugin 'auth' failed to initialise: Secret default/api-keys: data.key is not valid base64"


# --- the table as /routes shows it ----------------------------------------------------------


def test_describe() -> None:
    table = _build(
        *API,
        ingress("site", rules=[("a.com", [path("/", "api")])], annotations=_plugins("limit", limit="limit: 1")),
        ingress("bad", rules=[("b.com", [path("/", "api")])], annotations=_plugins("nope")),
        ingress("theirs", ingress_class="nginx", default_backend="api"),
    )
    described = table.describe()
    assert described["generation"] == 1
    routes: list[dict[str, Any]] = described["routes"]
    site = next(r for r in routes if r["ingress"] == "default/site")
    upstream = site.pop("upstream")
    assert upstream["load_balance"]["strategy"] == "round-robin"
    assert upstream["timeouts"] == {"connect": 5.0, "read": 60.0, "write": 60.0, "per_try": None}
    assert upstream["retries"]["attempts"] == 3
    assert upstream["outlier_detection"]["enabled"] is True
    assert site == {
        "id": "default/site:a.com:Prefix:/",
        "ingress": "default/site",
        "kind": "rule",
        "host": "a.com",
        "path": "/",
        "path_type": "Prefix",
        "backend": {"service": "default/api:http", "endpoints": ["10.0.0.1:8080"], "problem": None},
        "canaries": [],
        "mirrors": [],
        "plugins": [{"name": "limit", "priority": 10, "phases": ["on_request"]}],
        "unavailable": None,
    }
    assert described["rejected"] == [
        {
            "ingress": "default/bad",
            "reasons": ["plugin 'nope' is not installed (or is disabled)"],
            "serving_last_good": False,
        }
    ]
    assert described["ignored"] == ["default/theirs (nginx)"]


def test_rejected_ingress_resource_paths_answer_503_not_someone_elses_backend() -> None:
    resource = {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}
    mixed = ingress("mixed", rules=[("a.com", [path("/svc", "api")])], created="2020-01-01T00:00:00Z")
    mixed["spec"]["rules"][0]["http"]["paths"].append({"path": "/res", "pathType": "Prefix", "backend": resource})
    catch_all = ingress("catch-all", rules=[(None, [path("/", "web")])], created="2024-01-01T00:00:00Z")
    table = _build(*API, *WEB, mixed, catch_all)
    assert table.rejected["default/mixed"].reasons == (
        "spec.rules[0].http.paths[1].backend.resource: resource backends are not supported; use a service backend",
    )
    for request_path in ("/svc", "/res", "/res/x"):
        route = _match(table, "a.com", request_path)
        assert route.info.ingress == "mixed"
        assert route.unavailable is not None
        assert route.balancer.pick(None) is None
    assert _match(table, "b.com", "/res").info.ingress == "catch-all"
