"""key-auth's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_key_auth import SPEC, KeyAuthConfig
from gateway_plugin_key_auth.plugin import load_keys
from pydantic import ValidationError

from gateway_core import PluginConfigError


def test_defaults_read_the_x_api_key_header() -> None:
    config = KeyAuthConfig.model_validate({"secret": "keys"})
    assert config.header == "X-API-Key"
    assert config.query_param is None
    assert config.identity_header == "X-Auth-User"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "secret"),
        ({"secret": ""}, "secret"),
        ({"secret": "keys", "header": None}, "somewhere"),
        ({"secret": "keys", "header": "X Bad"}, "header"),
        ({"secret": "keys", "identity_header": "X-User\r\nEvil: 1"}, "identity_header"),
        ({"secret": "keys", "headr": "X-Key"}, "headr"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        KeyAuthConfig.model_validate(data)


def test_the_identity_header_it_sets_is_owned() -> None:
    config = KeyAuthConfig.model_validate({"secret": "keys", "identity_header": "X-Consumer"})
    assert SPEC.headers_owned_by(config) == {"x-consumer", "x-auth-user"}


def test_keys_load_one_per_line_and_a_shared_key_is_refused() -> None:
    keys = load_keys({"alice": b"k1\nk2\n", "bob": b"k3"}, "keys")
    assert sorted(keys.values()) == ["alice", "alice", "bob"]
    with pytest.raises(PluginConfigError, match="both"):
        load_keys({"alice": b"same", "bob": b"same"}, "keys")
    with pytest.raises(PluginConfigError, match="no API keys"):
        load_keys({"alice": b"\n \n"}, "keys")
