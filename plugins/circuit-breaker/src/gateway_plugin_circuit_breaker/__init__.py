"""``circuit-breaker``: stop calling a failing upstream for a while, then try it again.

Built on pybreaker's state machine (closed, open, half-open), driven from asyncio by
:mod:`.breaker`; state in process memory, or shared between workers and replicas through
Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_circuit_breaker.breaker import Breaker, Refusal, Ticket
from gateway_plugin_circuit_breaker.config import CircuitBreakerConfig
from gateway_plugin_circuit_breaker.machine import State
from gateway_plugin_circuit_breaker.plugin import (
    CircuitOpenError,
    EndpointCircuitBreaker,
    ServiceCircuitBreaker,
    plugin_factory,
)
from gateway_plugin_circuit_breaker.registry import BreakerRegistry

__all__ = [
    "REGISTRY",
    "SPEC",
    "Breaker",
    "BreakerRegistry",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "EndpointCircuitBreaker",
    "Refusal",
    "ServiceCircuitBreaker",
    "State",
    "Ticket",
]

REGISTRY = BreakerRegistry()
"""This process's breakers: routes to the same Service with the same config share one."""

SPEC: PluginSpec[CircuitBreakerConfig] = PluginSpec(
    name="circuit-breaker",
    factory=plugin_factory(REGISTRY),
    config_model=CircuitBreakerConfig,
    priority=500,
    version="0.1.0",
    description="Opens on upstream failures (consecutive or by ratio), answers 503 while open, "
    "probes with one trial; state optionally shared through Redis.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
