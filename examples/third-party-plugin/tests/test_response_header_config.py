"""The config model: what the annotation may say, and what it is refused for."""

from __future__ import annotations

import importlib.metadata

import pytest
from gateway_plugin_response_header import SPEC, ResponseHeaderConfig
from pydantic import ValidationError


def test_only_the_value_is_required() -> None:
    config = ResponseHeaderConfig.model_validate({"value": "edge-1"})
    assert (config.name, config.value, config.overwrite) == ("x-served-by", "edge-1", True)


def test_a_tab_and_inner_spaces_are_fine() -> None:
    config = ResponseHeaderConfig.model_validate({"name": "X-Cache-Policy", "value": "max-age=60,\tpublic  here"})
    assert config.value == "max-age=60,\tpublic  here"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "value"),
        ({"value": ""}, "value"),
        ({"value": "a", "colour": "red"}, "colour"),
        ({"valeu": "a"}, "valeu"),
        ({"value": "a\r\nset-cookie: session=stolen"}, "line breaks"),
        ({"value": "a\nb"}, "line breaks"),
        ({"value": "nul\x00"}, "control characters"),
        ({"value": "caf\u00e9"}, "printable ASCII"),
        ({"value": " padded"}, "start or end"),
        ({"value": "x" * 1025}, "value"),
        ({"name": "x served by", "value": "a"}, "name"),
        ({"name": "x-a:b", "value": "a"}, "name"),
        ({"name": "", "value": "a"}, "name"),
        ({"name": "Content-Length", "value": "0"}, "framing or hop-by-hop"),
        ({"name": "transfer-encoding", "value": "chunked"}, "framing or hop-by-hop"),
        ({"name": "Connection", "value": "close"}, "framing or hop-by-hop"),
        ({"value": "a", "overwrite": "sometimes"}, "overwrite"),
        ({"value": ["a", "b"]}, "value"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ResponseHeaderConfig.model_validate(data)


def test_every_field_is_described_for_the_docs() -> None:
    undescribed = [name for name, field in ResponseHeaderConfig.model_fields.items() if not field.description]
    assert undescribed == []


def test_the_spec_matches_the_distribution() -> None:
    assert SPEC.name == "response-header"
    assert SPEC.config_model is ResponseHeaderConfig
    assert SPEC.version == importlib.metadata.version("gateway-plugin-response-header")
    assert SPEC.headers_owned_by(ResponseHeaderConfig(value="a")) == frozenset()
