"""redirect's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_redirect import SPEC, HstsConfig, RedirectConfig
from pydantic import ValidationError


def test_defaults_are_308_without_the_path_and_443_for_https() -> None:
    config = RedirectConfig.model_validate({"to": "/new"})
    assert (config.code, config.preserve_path, config.https_port, config.https_code) == (308, False, 443, 308)
    assert config.hsts is None
    assert SPEC.priority == 2400
    assert SPEC.headers_owned_by(config) == frozenset()


@pytest.mark.parametrize(
    "target",
    ["/new", "/new/?a=1#top", "https://new.example.com", "http://new.example.com:8080/v2?x=%2F", "https://[::1]/x"],
)
def test_good_targets_are_accepted(target: str) -> None:
    assert RedirectConfig.model_validate({"to": target}).to == target


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "at least one of"),
        ({"to": "//evil.com"}, "protocol-relative"),
        ({"to": "//evil.com/x"}, "protocol-relative"),
        ({"to": "/\\evil.com"}, "backslash"),
        ({"to": "new"}, "starting with '/'"),
        ({"to": "javascript:alert(1)"}, "absolute http"),
        ({"to": "ftp://files.example.com/"}, "absolute http"),
        ({"to": "https:evil.com"}, "absolute http"),
        ({"to": "https://"}, "valid host"),
        ({"to": "https://good.example.com@evil.com/"}, "userinfo"),
        ({"to": "https://evil.com:99999/"}, "port"),
        ({"to": "/a b"}, "spaces"),
        ({"to": "/new\r\nSet-Cookie: x=1"}, "control"),
        ({"to": "/caf\u00e9"}, "non-ASCII"),
        ({"to": ""}, "to"),
        ({"to": "/new", "code": 200}, "code"),
        ({"to": "/new", "app_root": "/app"}, "set one of them"),
        ({"app_root": "/"}, "to itself"),
        ({"app_root": "app"}, "starting with '/'"),
        ({"app_root": "//evil.com"}, "protocol-relative"),
        ({"app_root": "/app?x=1"}, "no query"),
        ({"app_root": "/app", "code": 301}, "only with `to`"),
        ({"app_root": "/app", "preserve_path": True}, "only with `to`"),
        ({"to": "/new", "https_port": 8443}, "https_redirect"),
        ({"to": "/new", "https_code": 301}, "https_redirect"),
        ({"https_redirect": True, "https_port": 0}, "https_port"),
        ({"https_redirect": True, "https_code": 303}, "https_code"),
        ({"hsts": {"max_age": -1}}, "max_age"),
        ({"hsts": {"preload": True}}, "preload needs"),
        ({"hsts": {"preload": True, "include_subdomains": True, "max_age": 600}}, "preload needs"),
        ({"hsts": {"maxage": 600}}, "maxage"),
        ({"to": "/new", "preserve": True}, "preserve"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RedirectConfig.model_validate(data)


@pytest.mark.parametrize(
    ("data", "header"),
    [
        ({}, "max-age=31536000"),
        ({"max_age": 0}, "max-age=0"),
        ({"max_age": 600, "include_subdomains": True}, "max-age=600; includeSubDomains"),
        (
            {"max_age": 63072000, "include_subdomains": True, "preload": True},
            "max-age=63072000; includeSubDomains; preload",
        ),
    ],
)
def test_the_hsts_header_value_follows_each_knob(data: dict[str, object], header: str) -> None:
    assert HstsConfig.model_validate(data).header_value() == header
