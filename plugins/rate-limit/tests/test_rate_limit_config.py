"""rate-limit's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_rate_limit import SPEC, RateLimit, RateLimitConfig
from gateway_plugin_rate_limit.plugin import RateLimitWithHeaders
from pydantic import ValidationError

from gateway_core import Binding, PluginConfigError, RouteInfo

ROUTE = RouteInfo(
    id="shop/orders:shop.test:Prefix:/orders",
    namespace="shop",
    ingress="orders",
    host="shop.test",
    path="/orders",
    path_type="Prefix",
    service="orders",
)


def binding(secrets: dict[str, dict[str, bytes]] | None = None) -> Binding:
    found = secrets or {}
    return Binding(plugin="rate-limit", route=ROUTE, secrets=found.get)


def test_defaults_count_per_client_ip_per_ingress_in_memory_failing_open() -> None:
    config = RateLimitConfig.model_validate({"limit": "100/minute"})
    assert (config.strategy, config.key, config.scope) == ("fixed-window", "client_ip", "ingress")
    assert (config.storage, config.on_storage_error, config.response_headers) == ("memory://", "allow", False)
    assert SPEC.priority == 1000  # after the authentication plugins (2000), so `identity` is known


def test_limits_come_as_one_string_several_or_a_list_and_are_checked_shortest_first() -> None:
    single = RateLimitConfig.model_validate({"limit": "10 per 2 seconds"})
    assert [str(item) for item in single.rate_limits()] == ["10 per 2 second"]
    listed = RateLimitConfig.model_validate({"limit": ["1000/hour", "10/second"]})
    assert [(item.amount, item.get_expiry()) for item in listed.rate_limits()] == [(10, 1), (1000, 3600)]
    joined = RateLimitConfig.model_validate({"limit": "1000/hour; 10/second"})
    assert joined.rate_limits() == listed.rate_limits()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "limit"),
        ({"limit": ""}, "must not be empty"),
        ({"limit": []}, "at least one"),
        ({"limit": "lots"}, "'lots' is not a rate limit"),
        ({"limit": "10/fortnight"}, "fortnight"),
        ({"limit": "0/second"}, "between 1 and"),
        ({"limit": "10000000000/second"}, "between 1 and"),
        ({"limit": ["10/second", "10 per 1 second"]}, "given twice"),
        ({"limit": [f"{count}/hour" for count in range(1, 10)]}, "at most 8"),
        ({"limit": 100}, "limit"),
        ({"limit": "20000/second", "strategy": "moving-window"}, "sliding-window-counter"),
        ({"limit": "1/second", "strategy": "leaky-bucket"}, "strategy"),
        ({"limit": "1/second", "key": "header"}, "needs `header`"),
        ({"limit": "1/second", "header": "X-Tenant"}, "only used with `key: header`"),
        ({"limit": "1/second", "key": "header", "header": "X Bad"}, "header"),
        ({"limit": "1/second", "scope": "namespace"}, "scope"),
        ({"limit": "1/second", "storage": "memcached://cache:11211"}, "must be `memory://` or `redis://"),
        ({"limit": "1/second", "storage": "memory://elsewhere"}, "must be `memory://`"),
        ({"limit": "1/second", "storage": "redis://:hunter2@redis:6379/0"}, "no credentials"),
        ({"limit": "1/second", "storage": "redis://user:pw@redis:6379/0"}, "no credentials"),
        ({"limit": "1/second", "storage": "redis:///0"}, "needs a host"),
        ({"limit": "1/second", "storage": "redis://redis:99999/0"}, "not a storage URL"),
        ({"limit": "1/second", "storage": "redis://redis:6379/zero"}, "must be a number"),
        ({"limit": "1/second", "storage": "redis://redis:6379/0?socket_timeout=60"}, "no query"),
        ({"limit": "1/second", "storage_secret": "redis-auth"}, "only used with a Redis storage"),
        ({"limit": "1/second", "storage_timeout": 0}, "storage_timeout"),
        ({"limit": "1/second", "storage_timeout": 60}, "storage_timeout"),
        ({"limit": "1/second", "on_storage_error": "maybe"}, "on_storage_error"),
        ({"limit": "1/second", "limits": "2/second"}, "limits"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RateLimitConfig.model_validate(data)


@pytest.mark.parametrize(
    "url", ["redis://:hunter2@redis:6379/0", "redis://:hunter2@redis:99999/0", "memcached://u:hunter2@x"]
)
def test_the_refusal_of_a_url_with_credentials_never_repeats_them(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RateLimitConfig.model_validate({"limit": "1/second", "storage": url})
    messages = " ".join(error["msg"] for error in refused.value.errors())  # what /routes and the log show
    assert "no credentials" in messages
    assert "hunter2" not in messages


def test_redis_urls_that_are_accepted() -> None:
    for url in (
        "redis://redis.cache:6379/0",
        "redis://redis.cache",
        "rediss://redis.cache:6380/2",
        "redis://[::1]:6379",
    ):
        assert RateLimitConfig.model_validate({"limit": "1/second", "storage": url}).storage == url


def test_the_factory_reads_the_redis_password_from_the_secret() -> None:
    config = RateLimitConfig.model_validate(
        {"limit": "1/second", "storage": "redis://redis:6379/0", "storage_secret": "redis-auth"}
    )
    with pytest.raises(PluginConfigError, match="not found in namespace 'shop'"):
        RateLimit.from_binding(config, binding())
    with pytest.raises(PluginConfigError, match="no `password` entry"):
        RateLimit.from_binding(config, binding({"redis-auth": {"username": b"app"}}))
    RateLimit.from_binding(config, binding({"redis-auth": {"username": b"app", "password": b"pw"}}))


def test_only_bindings_with_response_headers_run_an_on_response_phase() -> None:
    plain = RateLimit.from_binding(RateLimitConfig.model_validate({"limit": "1/second"}), binding())
    with_headers = RateLimit.from_binding(
        RateLimitConfig.model_validate({"limit": "1/second", "response_headers": True}), binding()
    )
    assert not hasattr(plain, "on_response")
    assert isinstance(with_headers, RateLimitWithHeaders)
    assert hasattr(with_headers, "on_response")
