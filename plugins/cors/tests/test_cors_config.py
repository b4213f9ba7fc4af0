"""cors's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from gateway_plugin_cors import SPEC, CorsConfig
from gateway_plugin_cors.config import DEFAULT_METHODS
from pydantic import ValidationError


def test_defaults_allow_the_usual_methods_no_headers_and_no_credentials() -> None:
    config = CorsConfig.model_validate({"allow_origins": ["https://app.example.com"]})
    assert config.allow_methods == list(DEFAULT_METHODS)
    assert config.allow_headers == []
    assert config.expose_headers == []
    assert config.allow_credentials is False
    assert config.max_age == 600


def test_a_single_string_is_a_one_item_list() -> None:
    config = CorsConfig.model_validate(
        {"allow_origins": "*", "allow_methods": "*", "allow_headers": "*", "expose_headers": "X-Id"}
    )
    assert (config.allow_origins, config.allow_methods, config.allow_headers) == (["*"], ["*"], ["*"])
    assert config.expose_headers == ["X-Id"]


def test_the_spec_runs_before_the_authentication_plugins() -> None:
    assert SPEC.name == "cors"
    assert SPEC.priority == 2500
    assert SPEC.headers_owned_by(CorsConfig.model_validate({"allow_origins": "*"})) == frozenset()


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "HTTPS://App.Example.COM",
        "http://localhost:3000",
        "https://*.example.com",
        "https://*.example.co.uk:8443",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "chrome-extension://abc:1",
    ],
)
def test_origin_patterns_that_are_accepted(origin: str) -> None:
    assert CorsConfig.model_validate({"allow_origins": [origin]}).allow_origins == [origin]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "allow_origins"),
        ({"allow_origins": []}, "allow_origins"),
        ({"allow_origins": ["https://app.example.com/"]}, "not an origin"),
        ({"allow_origins": ["https://app.example.com/path"]}, "not an origin"),
        ({"allow_origins": ["app.example.com"]}, "not an origin"),
        ({"allow_origins": ["https://user@app.example.com"]}, "not an origin"),
        ({"allow_origins": ["https://app.example.com:99999"]}, "not an origin"),
        ({"allow_origins": ["chrome-extension://abc"]}, "needs its port"),
        ({"allow_origins": ["null"]}, "null"),
        ({"allow_origins": ["https://*.com"]}, "too wide"),
        ({"allow_origins": ["https://*"]}, "origin pattern"),
        ({"allow_origins": ["https://a.*.example.com"]}, "origin pattern"),
        ({"allow_origins": ["https://*.*.example.com"]}, "origin pattern"),
        ({"allow_origins": ["*.example.com"]}, "origin pattern"),
        ({"allow_origins": ["*", "https://app.example.com"]}, "list it alone"),
        ({"allow_origins": "*", "allow_credentials": True}, "allow_credentials"),
        ({"allow_origins": "*", "allow_methods": []}, "allow_methods"),
        ({"allow_origins": "*", "allow_methods": ["GET", "*"]}, "list it alone"),
        ({"allow_origins": "*", "allow_methods": ["GET POST"]}, "not an HTTP token"),
        ({"allow_origins": "*", "allow_headers": ["X-Ok", "X Bad"]}, "not an HTTP token"),
        ({"allow_origins": "*", "allow_headers": ["X-Evil\r\nSet-Cookie: a"]}, "not an HTTP token"),
        ({"allow_origins": "*", "expose_headers": ["*", "X-Id"]}, "list it alone"),
        (
            {"allow_origins": "https://app.example.com", "expose_headers": "*", "allow_credentials": True},
            "expose_headers",
        ),
        ({"allow_origins": "*", "max_age": -1}, "max_age"),
        ({"allow_origins": "*", "max_age": 86401}, "max_age"),
        ({"allow_origins": "*", "allow_origin": "*"}, "allow_origin"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        CorsConfig.model_validate(data)


def test_methods_and_headers_wildcards_are_fine_with_credentials() -> None:
    config = CorsConfig.model_validate(
        {
            "allow_origins": "https://app.example.com",
            "allow_methods": "*",
            "allow_headers": "*",
            "allow_credentials": True,
            "max_age": None,
        }
    )
    assert config.allow_credentials is True
    assert config.max_age is None


def test_the_docs_page_examples_are_valid_configs() -> None:
    page = Path(__file__).resolve().parents[3] / "docs" / "plugins" / "cors.md"
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
    configs = []
    for block in blocks:
        annotations = yaml.safe_load(block)["metadata"]["annotations"]
        configs.append(yaml.safe_load(annotations["meta-native.io/plugin.cors"]))
    assert len(configs) == 3
    for config in configs:
        CorsConfig.model_validate(config)
