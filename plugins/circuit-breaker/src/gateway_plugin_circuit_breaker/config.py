"""The ``meta-native.io/plugin.circuit-breaker`` annotation, validated.

Two ways to trip: ``fail_max`` consecutive failures (the default), or a failure ratio over a
rolling window (``failure_ratio`` with ``window`` and ``min_requests``). Settings that belong
to the other mode, or to Redis when no Redis is configured, are refused rather than ignored.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_FAILURE_STATUSES = (500, 502, 503, 504)
_RATIO_ONLY = ("window", "min_requests")
_REDIS_ONLY = ("redis_secret", "sync_interval")


class CircuitBreakerConfig(BaseModel):
    """When a breaker opens, how long it stays open, and where its state lives."""

    model_config = ConfigDict(extra="forbid")

    per: Literal["service", "endpoint"] = Field(
        "service",
        description="What one breaker guards: `service` (one breaker per upstream Service, shared by every "
        "route pointing at it) or `endpoint` (one breaker per endpoint address of that Service).",
    )
    fail_max: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Consecutive failures that open the breaker. Not used when `failure_ratio` is set.",
    )
    reset_timeout: float = Field(
        30,
        gt=0,
        le=86_400,
        description="Seconds the breaker stays open before it lets one trial request through (half-open).",
    )
    success_threshold: int = Field(
        1,
        ge=1,
        le=1_000,
        description="Successful trial requests (one at a time) that close a half-open breaker.",
    )
    failure_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Failure-ratio mode: open when, within the last `window` seconds and at least "
        "`min_requests` calls, this share of calls failed (e.g. `0.5`). `null`: count consecutive failures.",
    )
    window: float = Field(
        10, gt=0, le=3_600, description="Failure-ratio mode: length in seconds of the rolling window."
    )
    min_requests: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="Failure-ratio mode: calls the window must hold before the ratio is judged.",
    )
    failure_statuses: list[int] = Field(
        default_factory=lambda: list(DEFAULT_FAILURE_STATUSES),
        max_length=200,
        description="Upstream response statuses counted as failures (400-599). Connection failures and "
        "timeouts always are; every other status is a success.",
    )
    redis: str | None = Field(
        None,
        max_length=2_048,
        description="Redis URL (`redis://host:6379/0`, `rediss://` for TLS) to share breaker state between "
        "workers and replicas; `null` keeps it in this process. No password here: use `redis_secret`.",
    )
    redis_secret: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="Name of a Secret (in the Ingress's namespace) with the Redis `password`, and "
        "optionally `username`.",
    )
    sync_interval: float = Field(
        0.5,
        gt=0,
        le=60,
        description="With Redis: seconds a worker trusts its copy of the shared state before reading it again.",
    )

    @field_validator("failure_statuses")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        bad = [status for status in value if not 400 <= status <= 599]
        if bad:
            raise ValueError(f"failure statuses must be 400-599 (4xx/5xx answers), not {bad}")
        return sorted(set(value))

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("the Redis URL must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid Redis URL: {exc}") from None
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("the Redis URL must start with redis:// or rediss://")
        if not parts.hostname:
            raise ValueError("the Redis URL must name a host, e.g. redis://redis.infra:6379/0")
        if parts.username or parts.password:
            raise ValueError("put no credentials in the Redis URL: name a Secret in `redis_secret` instead")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"the Redis URL path must be a database number, not {parts.path!r}")
        if port == 0:
            raise ValueError("the Redis URL port must be 1-65535")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> CircuitBreakerConfig:
        given = self.model_fields_set
        if self.failure_ratio is None:
            stray = [name for name in _RATIO_ONLY if name in given]
            if stray:
                raise ValueError(f"{' and '.join(stray)} only apply with `failure_ratio` (failure-ratio mode)")
        elif "fail_max" in given:
            raise ValueError("`fail_max` counts consecutive failures; with `failure_ratio` use `min_requests`")
        if self.redis is None:
            stray = [name for name in _REDIS_ONLY if name in given]
            if stray:
                raise ValueError(f"{' and '.join(stray)} only apply when `redis` is set")
        return self
