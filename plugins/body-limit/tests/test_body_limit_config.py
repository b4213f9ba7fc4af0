"""body-limit's config model: sizes as ingress-nginx writes them, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugin_body_limit import SPEC, BodyLimitConfig, parse_size
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1, 1),
        (1_000_000, 1_000_000),
        ("0", 0),
        ("512", 512),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("10m", 10 * 1024**2),
        ("10M", 10 * 1024**2),
        ("1g", 1024**3),
        (" 2 k ", 2048),
    ],
)
def test_sizes_parse_as_ingress_nginx_proxy_body_size(value: Any, size: int) -> None:
    assert parse_size(value) == size
    assert BodyLimitConfig.model_validate({"max_size": value}).max_size == size


def test_the_default_is_one_mebibyte_like_nginx() -> None:
    assert BodyLimitConfig().max_size == 1024**2
    assert BodyLimitConfig.model_validate({}).max_size == 1024**2


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "negative"),
        ("-1", "not a size"),
        ("10mb", "not a size"),
        ("1.5m", "not a size"),
        ("m", "not a size"),
        ("", "not a size"),
        ("1t", "not a size"),
        ("\u0661\u0660", "not a size"),  # Arabic-Indic digits: ASCII only
        ("9" * 30, "not a size"),
        ("10m; evil", "not a size"),
        (2**63, "at most"),
        ("9999999999999999999g", "at most"),
        (True, "boolean"),
        (1.5, "number of bytes"),
        (None, "number of bytes"),
        ([1], "number of bytes"),
    ],
)
def test_bad_sizes_are_refused_with_a_clear_message(value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as caught:
        BodyLimitConfig.model_validate({"max_size": value})
    assert "max_size" in str(caught.value)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_bytes"):
        BodyLimitConfig.model_validate({"max_bytes": 10})


def test_the_spec_runs_first_and_its_schema_admits_strings() -> None:
    assert (SPEC.name, SPEC.priority) == ("body-limit", 2200)
    assert SPEC.headers_owned_by(BodyLimitConfig()) == frozenset()
    schema = SPEC.config_schema()["properties"]["max_size"]
    assert [option["type"] for option in schema["anyOf"]] == ["integer", "string"]
    assert schema["default"] == 1024**2
