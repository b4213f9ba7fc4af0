"""The request-id config model: defaults, every knob, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugin_request_id import SPEC, RequestIdConfig
from pydantic import ValidationError

from gateway_core import Binding, RouteInfo
from gateway_core.plugin_api import implemented_phases


def _bound(config: RequestIdConfig) -> object:
    route = RouteInfo("r", "default", "api", "", "/", "Prefix", "api")
    return SPEC.factory(config, Binding("request-id", route, lambda name: None))


def test_defaults() -> None:
    config = RequestIdConfig()
    assert (config.header, config.trust_incoming, config.max_length, config.response_header) == (
        "X-Request-ID",
        True,
        200,
        True,
    )
    assert SPEC.priority == 3000
    assert SPEC.headers_owned_by(config) == frozenset()  # propagated, so never stripped


def test_every_knob_is_accepted() -> None:
    config = RequestIdConfig.model_validate(
        {"header": "X-Correlation-ID", "trust_incoming": False, "max_length": 64, "response_header": False}
    )
    assert (config.header, config.trust_incoming, config.max_length, config.response_header) == (
        "X-Correlation-ID",
        False,
        64,
        False,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"headers": "X-Request-ID"}, "Extra inputs are not permitted"),
        ({"header": "X Request ID"}, "String should match pattern"),
        ({"header": ""}, "String should match pattern"),
        ({"header": "Authorization"}, "cannot carry a request id"),
        ({"header": "x-forwarded-for"}, "cannot carry a request id"),
        ({"max_length": 0}, "greater than or equal to 1"),
        ({"max_length": 1025}, "less than or equal to 1024"),
        ({"trust_incoming": "maybe"}, "valid boolean"),
        ({"response_header": [1]}, "valid boolean"),
    ],
)
def test_invalid_configs_are_refused_with_a_clear_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RequestIdConfig.model_validate(data)


def test_the_response_echo_is_a_phase_only_when_asked_for() -> None:
    assert implemented_phases(_bound(RequestIdConfig())) == ("on_request", "on_response", "on_local_response")
    assert implemented_phases(_bound(RequestIdConfig(response_header=False))) == ("on_request",)
