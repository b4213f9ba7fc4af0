"""Plugin binding: config precedence, validation, run order, and plugin object reuse."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from gateway_core.errors import PluginError
from gateway_core.manifests.annotations import PluginAnnotations
from gateway_core.messages import LocalResponse, Outcome, RequestContext, RouteInfo
from gateway_core.plugin_api import PHASES, Binding, EmptyConfig, Plugin, PluginSpec, implemented_phases
from gateway_core.routing.binding import (
    BindingPolicy,
    BoundPlugin,
    PluginInstances,
    SecretLookup,
    SecretsView,
    plugin_config,
    resolve_plugins,
)

# --- in-code plugins ------------------------------------------------------------------------


class LimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int
    window: str = "1m"


class LimitPlugin(Plugin):
    def __init__(self, config: LimitConfig, binding: Binding) -> None:
        self.config = config
        self.binding = binding
        self.count = 0

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        self.count += 1
        return LocalResponse(429) if self.count > self.config.limit else None


class LogPlugin(Plugin):
    def __init__(self, config: EmptyConfig, binding: Binding) -> None:
        self.binding = binding

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        return None


def _limit_spec(priority: int = 10, version: str = "1") -> PluginSpec[LimitConfig]:
    return PluginSpec(name="limit", factory=LimitPlugin, config_model=LimitConfig, priority=priority, version=version)


def _log_spec(name: str = "log", priority: int = 0) -> PluginSpec[EmptyConfig]:
    return PluginSpec(name=name, factory=LogPlugin, priority=priority)


def _annotations(
    listed: tuple[str, ...] = (), configs: Mapping[str, Mapping[str, Any]] | None = None
) -> PluginAnnotations:
    return PluginAnnotations(listed=listed, configs=configs or {})


def _route(route_id: str = "default/web:example.com:Prefix:/") -> RouteInfo:
    return RouteInfo(
        id=route_id, namespace="default", ingress="web", host="example.com", path="/", path_type="Prefix", service="api"
    )


def _no_secrets(name: str) -> Mapping[str, bytes] | None:
    return None


# --- plugin_config --------------------------------------------------------------------------


def test_annotation_config_is_used_whole() -> None:
    policy = BindingPolicy(defaults={"limit": {"limit": 5, "window": "1h"}})
    annotations = _annotations(("limit",), {"limit": {"limit": 100}})
    assert dict(plugin_config("limit", annotations, policy)) == {"limit": 100}  # no "window" merged in


def test_global_default_when_no_annotation() -> None:
    policy = BindingPolicy(defaults={"limit": {"limit": 5, "window": "1h"}})
    assert dict(plugin_config("limit", _annotations(("limit",)), policy)) == {"limit": 5, "window": "1h"}


def test_empty_annotation_config_still_wins_over_default() -> None:
    policy = BindingPolicy(defaults={"cors": {"origins": ["*"]}})
    assert dict(plugin_config("cors", _annotations(("cors",), {"cors": {}}), policy)) == {}


def test_no_config_anywhere_is_empty() -> None:
    assert dict(plugin_config("cors", _annotations(("cors",)), BindingPolicy())) == {}


def test_defaults_of_other_plugins_are_not_used() -> None:
    policy = BindingPolicy(defaults={"other": {"x": 1}})
    assert dict(plugin_config("cors", _annotations(), policy)) == {}


# --- resolve_plugins ------------------------------------------------------------------------


def test_resolve_validates_configs_with_the_model() -> None:
    resolved = resolve_plugins(
        _annotations(("limit",), {"limit": {"limit": "7"}}), BindingPolicy(), {"limit": _limit_spec()}
    )
    assert resolved.problems == []
    [(spec, config)] = resolved.plugins
    assert spec.name == "limit"
    assert isinstance(config, LimitConfig)
    assert (config.limit, config.window) == (7, "1m")


def test_unknown_plugin_is_a_problem() -> None:
    resolved = resolve_plugins(
        _annotations(("limit", "nope")), BindingPolicy(defaults={"limit": {"limit": 1}}), {"limit": _limit_spec()}
    )
    assert resolved.problems == ["plugin 'nope' is not installed (or is disabled)"]
    assert [spec.name for spec, _ in resolved.plugins] == ["limit"]


def test_missing_required_field_is_named() -> None:
    resolved = resolve_plugins(_annotations(("limit",)), BindingPolicy(), {"limit": _limit_spec()})
    assert resolved.problems == ["plugin 'limit': invalid config: limit: Field required"]
    assert resolved.plugins == []


def test_unknown_config_key_is_named() -> None:
    resolved = resolve_plugins(
        _annotations(("limit",), {"limit": {"limit": 1, "limt": 2}}), BindingPolicy(), {"limit": _limit_spec()}
    )
    assert resolved.problems == ["plugin 'limit': invalid config: limt: Extra inputs are not permitted"]


def test_wrong_type_is_named() -> None:
    resolved = resolve_plugins(
        _annotations(("limit",), {"limit": {"limit": "many"}}), BindingPolicy(), {"limit": _limit_spec()}
    )
    assert len(resolved.problems) == 1
    assert resolved.problems[0].startswith("plugin 'limit': invalid config: limit: Input should be a valid integer")


def test_several_config_errors_are_joined() -> None:
    resolved = resolve_plugins(
        _annotations(("limit",), {"limit": {"window": 1, "x": 1}}), BindingPolicy(), {"limit": _limit_spec()}
    )
    [problem] = resolved.problems
    assert problem.startswith("plugin 'limit': invalid config: ")
    assert "limit: Field required" in problem
    assert "window: Input should be a valid string" in problem
    assert "x: Extra inputs are not permitted" in problem
    assert problem.count("; ") == 2


def test_invalid_global_default_is_a_problem() -> None:
    resolved = resolve_plugins(
        _annotations(("limit",)), BindingPolicy(defaults={"limit": {"limit": -1, "y": 0}}), {"limit": _limit_spec()}
    )
    assert resolved.problems == ["plugin 'limit': invalid config: y: Extra inputs are not permitted"]


def test_configured_but_not_bound_is_a_problem() -> None:
    resolved = resolve_plugins(_annotations((), {"limit": {"limit": 1}}), BindingPolicy(), {"limit": _limit_spec()})
    assert resolved.problems == [
        "annotation meta-native.io/plugin.limit: plugin 'limit' is configured but not bound "
        "(add it to meta-native.io/plugins)"
    ]
    assert resolved.plugins == []


def test_global_plugins_are_bound_everywhere() -> None:
    policy = BindingPolicy(bound=("log",))
    resolved = resolve_plugins(_annotations(), policy, {"log": _log_spec()})
    assert resolved.problems == []
    assert [spec.name for spec, _ in resolved.plugins] == ["log"]


def test_global_plugins_may_be_configured_per_ingress() -> None:
    policy = BindingPolicy(bound=("limit",), defaults={"limit": {"limit": 1000}})
    resolved = resolve_plugins(_annotations((), {"limit": {"limit": 5}}), policy, {"limit": _limit_spec()})
    assert resolved.problems == []
    [(_, config)] = resolved.plugins
    assert isinstance(config, LimitConfig)
    assert config.limit == 5
    assert resolve_plugins(_annotations(), policy, {"limit": _limit_spec()}).plugins[0][1] == LimitConfig(limit=1000)


def test_plugin_listed_and_global_is_bound_once() -> None:
    policy = BindingPolicy(bound=("log",))
    resolved = resolve_plugins(_annotations(("log", "log2")), policy, {"log": _log_spec(), "log2": _log_spec("log2")})
    assert [spec.name for spec, _ in resolved.plugins] == ["log", "log2"]


def test_missing_global_plugin_is_a_problem() -> None:
    resolved = resolve_plugins(_annotations(), BindingPolicy(bound=("gone",)), {})
    assert resolved.problems == ["plugin 'gone' is not installed (or is disabled)"]


def test_run_order_is_priority_descending_then_name() -> None:
    specs: dict[str, PluginSpec[Any]] = {
        "zeta": _log_spec("zeta", priority=5),
        "alpha": _log_spec("alpha", priority=5),
        "low": _log_spec("low", priority=-10),
        "limit": _limit_spec(priority=100),
        "mid": _log_spec("mid", priority=0),
    }
    annotations = _annotations(("low", "zeta", "mid", "alpha"), {"limit": {"limit": 1}})
    resolved = resolve_plugins(annotations, BindingPolicy(bound=("limit",)), specs)
    assert resolved.problems == []
    assert [spec.name for spec, _ in resolved.plugins] == ["limit", "alpha", "zeta", "mid", "low"]


def test_every_problem_is_reported_at_once() -> None:
    annotations = _annotations(("nope", "limit"), {"limit": {}, "stray": {}})
    resolved = resolve_plugins(annotations, BindingPolicy(), {"limit": _limit_spec()})
    assert len(resolved.problems) == 3
    assert any("stray" in problem and "not bound" in problem for problem in resolved.problems)
    assert any("'nope' is not installed" in problem for problem in resolved.problems)
    assert any("plugin 'limit': invalid config" in problem for problem in resolved.problems)


# --- PluginInstances ------------------------------------------------------------------------


def _bind(
    instances: PluginInstances, config: BaseModel, spec: PluginSpec[Any] | None = None, route: RouteInfo | None = None
) -> BoundPlugin:
    bound, problems = instances.bind(route or _route(), [(spec or _limit_spec(), config)], _no_secrets)
    assert problems == []
    [item] = bound
    return item


def test_factory_gets_config_and_binding() -> None:
    instances = PluginInstances()
    item = _bind(instances, LimitConfig(limit=3))
    plugin = item.instance
    assert isinstance(plugin, LimitPlugin)
    assert plugin.config == LimitConfig(limit=3)
    assert plugin.binding.plugin == "limit"
    assert plugin.binding.route == _route()
    assert plugin.binding.secrets("any") is None
    assert item.phases == ("on_request",)
    assert item.config == LimitConfig(limit=3)
    assert item.spec.name == "limit"


def test_same_key_reuses_the_object_across_builds() -> None:
    first = PluginInstances()
    item = _bind(first, LimitConfig(limit=3))
    assert isinstance(item.instance, LimitPlugin)
    item.instance.count = 2  # limiter state
    second = PluginInstances(first.current)
    again = _bind(second, LimitConfig(limit=3))
    assert again is item
    assert again.instance is item.instance
    third = PluginInstances(second.current)
    assert _bind(third, LimitConfig(limit=3)).instance is item.instance


def test_equal_config_from_a_new_model_object_is_the_same_key() -> None:
    first = PluginInstances()
    item = _bind(first, LimitConfig.model_validate({"limit": 3, "window": "1m"}))
    second = PluginInstances(first.current)
    assert _bind(second, LimitConfig.model_validate({"limit": 3})).instance is item.instance


def test_changed_config_makes_a_new_object() -> None:
    first = PluginInstances()
    item = _bind(first, LimitConfig(limit=3))
    second = PluginInstances(first.current)
    changed = _bind(second, LimitConfig(limit=4))
    assert changed.instance is not item.instance
    [key] = second.current  # the old key is not carried over
    assert key[:3] == (_route().id, "limit", "1")
    assert '"limit": 4' in key[3]


def test_changed_version_makes_a_new_object() -> None:
    first = PluginInstances()
    item = _bind(first, LimitConfig(limit=3), _limit_spec(version="1"))
    second = PluginInstances(first.current)
    assert _bind(second, LimitConfig(limit=3), _limit_spec(version="2")).instance is not item.instance


def test_each_route_gets_its_own_object() -> None:
    instances = PluginInstances()
    a = _bind(instances, LimitConfig(limit=3), route=_route("default/web:a:Prefix:/"))
    b = _bind(instances, LimitConfig(limit=3), route=_route("default/web:b:Prefix:/"))
    assert a.instance is not b.instance
    assert len(instances.current) == 2


def test_same_key_twice_in_one_build_is_one_object() -> None:
    calls: list[str] = []

    def factory(config: LimitConfig, binding: Binding) -> LimitPlugin:
        calls.append(binding.route.id)
        return LimitPlugin(config, binding)

    spec = PluginSpec(name="limit", factory=factory, config_model=LimitConfig)
    instances = PluginInstances()
    first = _bind(instances, LimitConfig(limit=1), spec)
    second = _bind(instances, LimitConfig(limit=1), spec)
    assert first is second
    assert len(calls) == 1


def test_objects_not_bound_again_are_dropped() -> None:
    first = PluginInstances()
    _bind(first, LimitConfig(limit=3))
    second = PluginInstances(first.current)
    assert second.current == {}


def test_factory_exception_is_a_problem_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    def broken(config: EmptyConfig, binding: Binding) -> object:
        raise RuntimeError("no redis")

    spec = PluginSpec(name="broken", factory=broken)
    instances = PluginInstances()
    with caplog.at_level(logging.ERROR, logger="gateway_core.routing"):
        bound, problems = instances.bind(_route(), [(spec, EmptyConfig()), (_log_spec(), EmptyConfig())], _no_secrets)
    assert problems == ["plugin 'broken' failed to initialise: no redis"]
    assert [item.spec.name for item in bound] == ["log"]
    assert len(instances.current) == 1
    assert any("broken" in record.getMessage() for record in caplog.records)


def test_bound_plugins_keep_the_given_order() -> None:
    instances = PluginInstances()
    plugins: list[tuple[PluginSpec[Any], BaseModel]] = [
        (_log_spec("b"), EmptyConfig()),
        (_limit_spec(), LimitConfig(limit=1)),
        (_log_spec("a"), EmptyConfig()),
    ]
    bound, problems = instances.bind(_route(), plugins, _no_secrets)
    assert problems == []
    assert [item.spec.name for item in bound] == ["b", "limit", "a"]


# --- Secrets through the binding ------------------------------------------------------------


class SecretPlugin(Plugin):
    def __init__(self, config: EmptyConfig, binding: Binding) -> None:
        self.binding = binding
        self.keys = binding.secrets("keys")

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        return None


def _secrets(value: bytes | None) -> SecretLookup:
    def lookup(name: str) -> Mapping[str, bytes] | None:
        return {"key": value} if name == "keys" and value is not None else None

    return lookup


def test_secret_lookup_follows_the_newest_snapshot() -> None:
    spec = PluginSpec(name="auth", factory=SecretPlugin)
    first = PluginInstances()
    [item], _ = first.bind(_route(), [(spec, EmptyConfig())], _secrets(b"one"))
    plugin = item.instance
    assert isinstance(plugin, SecretPlugin)
    assert plugin.keys == {"key": b"one"}
    # Endpoint churn: the Secret is unchanged, the object is reused ...
    second = PluginInstances(first.current)
    lookup_calls: list[str] = []

    def same(name: str) -> Mapping[str, bytes] | None:
        lookup_calls.append(name)
        return _secrets(b"one")(name)

    [again], _ = second.bind(_route(), [(spec, EmptyConfig())], same)
    assert again.instance is plugin
    # ... and its lookup now reads the new snapshot.
    lookup_calls.clear()
    assert plugin.binding.secrets("keys") == {"key": b"one"}
    assert lookup_calls == ["keys"]


def test_changed_secret_makes_a_new_object() -> None:
    spec = PluginSpec(name="auth", factory=SecretPlugin)
    first = PluginInstances()
    [item], _ = first.bind(_route(), [(spec, EmptyConfig())], _secrets(b"one"))
    second = PluginInstances(first.current)
    [rotated], _ = second.bind(_route(), [(spec, EmptyConfig())], _secrets(b"two"))
    assert rotated.instance is not item.instance
    assert isinstance(rotated.instance, SecretPlugin)
    assert rotated.instance.keys == {"key": b"two"}
    third = PluginInstances(second.current)
    [removed], _ = third.bind(_route(), [(spec, EmptyConfig())], _secrets(None))
    assert removed.instance is not rotated.instance
    assert isinstance(removed.instance, SecretPlugin)
    assert removed.instance.keys is None


def test_secret_that_fails_to_decode_makes_a_new_object() -> None:
    spec = PluginSpec(name="auth", factory=SecretPlugin)
    first = PluginInstances()
    first.bind(_route(), [(spec, EmptyConfig())], _secrets(b"one"))

    def broken(name: str) -> Mapping[str, bytes] | None:
        raise ValueError("data.key is not valid base64")

    second = PluginInstances(first.current)
    bound, problems = second.bind(_route(), [(spec, EmptyConfig())], broken)
    assert bound == []
    assert problems == ["plugin 'auth' failed to initialise: data.key is not valid base64"]


def test_secrets_view_records_reads() -> None:
    view = SecretsView(_secrets(b"x"))
    assert view("keys") == {"key": b"x"}
    assert view("other") is None
    assert view.seen == {"keys": {"key": b"x"}, "other": None}
    assert not view.changed(_secrets(b"x"))
    assert view.changed(_secrets(b"y"))


# --- PluginSpec and implemented_phases ------------------------------------------------------


class LooseConfig(BaseModel):
    limit: int = 1


class IgnoringConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")


def test_plugin_spec_refuses_models_without_extra_forbid() -> None:
    with pytest.raises(PluginError, match="extra='forbid'"):
        PluginSpec(name="loose", factory=lambda config, binding: object(), config_model=LooseConfig)
    with pytest.raises(PluginError, match="extra='forbid'"):
        PluginSpec(name="loose", factory=lambda config, binding: object(), config_model=IgnoringConfig)


@pytest.mark.parametrize("name", ["", "Limit", "rate_limit", "-limit", "limit-", "rate.limit", "a" * 64, "é"])
def test_plugin_spec_refuses_bad_names(name: str) -> None:
    with pytest.raises(PluginError, match="must be lowercase letters, digits and '-'"):
        PluginSpec(name=name, factory=lambda config, binding: object())


def test_plugin_spec_defaults() -> None:
    spec: PluginSpec[EmptyConfig] = PluginSpec(name="x", factory=lambda config, binding: object())
    assert spec.config_model is EmptyConfig
    assert (spec.priority, spec.version) == (0, "0")
    assert spec.config_schema()["type"] == "object"
    assert _limit_spec().config_schema()["required"] == ["limit"]


def test_implemented_phases_of_a_plugin_subclass() -> None:
    assert implemented_phases(LimitPlugin(LimitConfig(limit=1), Binding("limit", _route(), _no_secrets))) == (
        "on_request",
    )
    assert implemented_phases(Plugin()) == ()


def test_implemented_phases_of_a_plain_object() -> None:
    class Everything:
        async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
            return None

        async def on_request(self, ctx: RequestContext) -> None:
            return None

        async def around_upstream(self, ctx: RequestContext, call_next: Any) -> Any:
            return await call_next()

        async def unrelated(self) -> None:
            return None

    # In phase order, whatever the definition order.
    assert implemented_phases(Everything()) == ("on_request", "around_upstream", "on_log")
    assert implemented_phases(object()) == ()


def test_implemented_phases_ignores_instance_attributes() -> None:
    async def on_request(ctx: RequestContext) -> LocalResponse | None:
        return None

    plugin = Plugin()
    plugin.on_request = on_request  # type: ignore[method-assign]
    assert implemented_phases(plugin) == ()


def test_phases_constant() -> None:
    assert PHASES == (
        "on_request",
        "on_upstream_request",
        "around_upstream",
        "on_response",
        "on_local_response",
        "on_log",
    )
