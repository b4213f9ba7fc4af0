"""circuit-breaker's config model and factory: what an annotation may say, and what is refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from gateway_plugin_circuit_breaker import (
    SPEC,
    BreakerRegistry,
    CircuitBreakerConfig,
    EndpointCircuitBreaker,
    ServiceCircuitBreaker,
)
from gateway_plugin_circuit_breaker.plugin import plugin_factory
from pydantic import ValidationError

from gateway_core import Binding, PluginConfigError, RouteInfo
from gateway_core.plugin_api import implemented_phases


def _route(service: str = "api", route_id: str = "default/api:*:Prefix:/") -> RouteInfo:
    return RouteInfo(
        id=route_id, namespace="default", ingress="api", host="*", path="/", path_type="Prefix", service=service
    )


def _binding(route: RouteInfo | None = None, secrets: Mapping[str, Mapping[str, bytes]] | None = None) -> Binding:
    found = secrets or {}
    return Binding(plugin="circuit-breaker", route=route or _route(), secrets=found.get)


def test_defaults_count_five_consecutive_server_errors_per_service() -> None:
    config = CircuitBreakerConfig.model_validate({})
    assert (config.per, config.fail_max, config.reset_timeout, config.success_threshold) == ("service", 5, 30, 1)
    assert config.failure_ratio is None
    assert config.failure_statuses == [500, 502, 503, 504]
    assert config.redis is None


def test_statuses_are_deduplicated_and_sorted() -> None:
    config = CircuitBreakerConfig.model_validate({"failure_statuses": [503, 429, 503]})
    assert config.failure_statuses == [429, 503]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"fail_max": 0}, "fail_max"),
        ({"fail_max": 10**9}, "fail_max"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": "soon"}, "reset_timeout"),
        ({"reset_timeout": float("nan")}, "reset_timeout"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"per": "route"}, "per"),
        ({"failure_ratio": 0}, "failure_ratio"),
        ({"failure_ratio": 1.5}, "failure_ratio"),
        ({"failure_statuses": [200]}, "400-599"),
        ({"failure_statuses": [-1, 600]}, "400-599"),
        ({"failure_statuses": "500"}, "failure_statuses"),
        ({"window": 5}, "only apply with `failure_ratio`"),
        ({"min_requests": 5}, "only apply with `failure_ratio`"),
        ({"failure_ratio": 0.5, "fail_max": 3}, "min_requests"),
        ({"sync_interval": 1}, "only apply when `redis` is set"),
        ({"redis_secret": "redis-auth"}, "only apply when `redis` is set"),
        ({"redis": "http://redis:6379"}, "redis://"),
        ({"redis": "redis://"}, "name a host"),
        ({"redis": "redis://:hunter2@redis:6379/0"}, "redis_secret"),
        ({"redis": "redis://admin@redis:6379/0"}, "redis_secret"),
        ({"redis": "redis://redis:99999/0"}, "valid Redis URL"),
        ({"redis": "redis://redis:6379/zero"}, "database number"),
        ({"redis": "redis://redis:6379/0\r\nFLUSHALL"}, "control characters"),
        ({"redis": "redis://redis :6379"}, "spaces"),
        ({"redis": "redis://" + "r" * 3000}, "redis"),
        ({"fail_maxx": 3}, "fail_maxx"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        CircuitBreakerConfig.model_validate(data)


def test_a_ratio_config_and_a_redis_config_validate() -> None:
    config = CircuitBreakerConfig.model_validate(
        {"failure_ratio": 0.5, "window": 30, "min_requests": 10, "redis": "rediss://redis.infra:6380/2"}
    )
    assert (config.failure_ratio, config.window, config.min_requests) == (0.5, 30, 10)


def test_the_spec_has_priority_500_and_the_phases_of_its_scope() -> None:
    assert (SPEC.name, SPEC.priority) == ("circuit-breaker", 500)
    make = plugin_factory(BreakerRegistry())
    service = make(CircuitBreakerConfig(), _binding())
    endpoint = make(CircuitBreakerConfig(per="endpoint"), _binding())
    assert isinstance(service, ServiceCircuitBreaker)
    assert isinstance(endpoint, EndpointCircuitBreaker)
    assert implemented_phases(service) == ("on_request", "around_upstream")
    assert implemented_phases(endpoint) == ("on_upstream_request", "around_upstream")


def test_routes_share_a_breaker_per_service_and_config() -> None:
    make = plugin_factory(BreakerRegistry())
    config = CircuitBreakerConfig()
    first = make(config, _binding(_route(route_id="a")))
    second = make(config, _binding(_route(route_id="b")))
    other_service = make(config, _binding(_route("billing")))
    other_config = make(CircuitBreakerConfig(fail_max=2), _binding(_route(route_id="c")))
    assert isinstance(first, ServiceCircuitBreaker)
    assert isinstance(second, ServiceCircuitBreaker)
    assert isinstance(other_service, ServiceCircuitBreaker)
    assert isinstance(other_config, ServiceCircuitBreaker)
    assert first.breaker is second.breaker
    assert first.breaker is not other_service.breaker
    assert first.breaker is not other_config.breaker


def test_redis_credentials_come_from_a_secret() -> None:
    make = plugin_factory(BreakerRegistry())
    config = CircuitBreakerConfig(redis="redis://redis:6379/0", redis_secret="redis-auth")
    with pytest.raises(PluginConfigError, match="not found"):
        make(config, _binding())
    with pytest.raises(PluginConfigError, match="no `password`"):
        make(config, _binding(secrets={"redis-auth": {"user": b"x"}}))
    with pytest.raises(PluginConfigError, match="UTF-8"):
        make(config, _binding(secrets={"redis-auth": {"password": b"\xff\xfe"}}))
    plugin = make(config, _binding(secrets={"redis-auth": {"password": b"s3cret", "username": b"gw"}}))
    assert isinstance(plugin, ServiceCircuitBreaker)
    assert plugin.breaker.shared  # until Redis says otherwise; nothing connects at bind time
