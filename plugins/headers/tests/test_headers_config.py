"""headers' config model and templates: what an annotation may say, and what it is refused for."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugin_headers import SPEC, HeadersConfig
from gateway_plugin_headers.config import MAX_HEADERS, MAX_VALUE_LENGTH
from gateway_plugin_headers.template import parse
from pydantic import ValidationError


def test_a_full_config_is_read_with_set_as_the_key() -> None:
    config = HeadersConfig.model_validate(
        {
            "request": {"set": {"X-Client-IP": "${client_ip}"}, "add": {"X-Tag": "a"}, "remove": ["Cookie"]},
            "response": {"set": {"X-Frame-Options": "DENY"}, "remove": ["Server"]},
        }
    )
    assert config.request.set_ == {"X-Client-IP": "${client_ip}"}
    assert config.request.add == {"X-Tag": "a"}
    assert config.request.remove == ["Cookie"]
    assert config.response.set_ == {"X-Frame-Options": "DENY"}
    assert config.request_id_header == "X-Request-ID"
    assert SPEC.priority == 100
    assert SPEC.headers_owned_by(config) == frozenset()


def test_templates_parse_into_literals_and_variables() -> None:
    assert parse("plain") == ["plain"]
    assert parse("$$5 for ${method} ${path}$$") == ["$5 for ", ("method",), " ", ("path",), "$"]
    assert parse("${client_ip}${request_id}") == [("client_ip",), ("request_id",)]
    assert parse("tab\tand latin-1 \xe9") == ["tab\tand latin-1 \xe9"]


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("${unknown}", "unknown variable `${unknown}`"),
        ("${}", "unknown variable"),
        ("${CLIENT_IP}", "unknown variable"),
        ("${client_ip", "literal `$`"),
        ("5$", "literal `$`"),
        ("$client_ip", "literal `$`"),
        ("a\r\nEvil: 1", "control characters"),
        ("a\nb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\x7fb", "control characters"),
        ("\u20ac", "Latin-1"),
    ],
)
def test_bad_templates_are_refused_with_a_clear_message(template: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("$", r"\$").replace("{", r"\{")):
        parse(template)
    with pytest.raises(ValidationError, match="X-A"):
        HeadersConfig.model_validate({"response": {"set": {"X-A": template}}})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "nothing to do"),
        ({"request": {}, "response": {"remove": []}}, "nothing to do"),
        ({"request": {"set": {"X Bad": "v"}}}, "not a header name"),
        ({"request": {"add": {"X-Bad:": "v"}}}, "not a header name"),
        ({"request": {"remove": ["X\r\nEvil"]}}, "not a header name"),
        ({"request": {"set": {"X-Empty": ""}}}, "empty"),
        ({"request": {"set": {"X-Long": "v" * (MAX_VALUE_LENGTH + 1)}}}, "longer than"),
        ({"request": {"set": {"X-A": "1", "x-a": "2"}}}, "named twice"),
        ({"request": {"remove": ["X-A", "x-A"]}}, "named twice"),
        ({"request": {"set": {"X-A": "1"}, "add": {"x-a": "2"}}}, "both `set` and `add`"),
        ({"response": {"remove": ["X-A"], "add": {"X-A": "2"}}}, "both `add` and `remove`"),
        ({"request": {"remove": [f"X-{n}" for n in range(MAX_HEADERS + 1)]}}, "at most"),
        ({"request": {"set_": {"X-A": "1"}}}, "set_"),
        ({"request": {"rename": {"X-A": "X-B"}}}, "rename"),
        ({"headers": {"X-A": "1"}}, "headers"),
        ({"request": {"set": {"X-A": "1"}}, "request_id_header": "X Id"}, "request_id_header"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("$", r"\$")):
        HeadersConfig.model_validate(data)


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Expect",
        "Forwarded",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Forwarded-Prefix",
        "X-Real-IP",
        "Via",
    ],
)
@pytest.mark.parametrize("operation", ["set", "add", "remove"])
def test_request_headers_the_gateway_manages_are_refused_for_every_operation(name: str, operation: str) -> None:
    edit: Any = [name] if operation == "remove" else {name: "value"}
    with pytest.raises(ValidationError, match="managed by the gateway"):
        HeadersConfig.model_validate({"request": {operation: edit}})


@pytest.mark.parametrize("name", ["Authorization", "Proxy-Authorization", "Cookie", "X-Auth-User"])
def test_credential_headers_may_be_removed_but_never_written(name: str) -> None:
    assert HeadersConfig.model_validate({"request": {"remove": [name]}}).request.remove == [name]
    for operation in ("set", "add"):
        with pytest.raises(ValidationError, match="credentials or the identity"):
            HeadersConfig.model_validate({"request": {operation: {name: "Bearer x"}}})


@pytest.mark.parametrize(
    "name", ["Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "Trailer", "Upgrade"]
)
def test_response_framing_headers_are_refused(name: str) -> None:
    for data in ({"set": {name: "1"}}, {"add": {name: "1"}}, {"remove": [name]}):
        with pytest.raises(ValidationError, match="frames the body"):
            HeadersConfig.model_validate({"response": data})


def test_headers_managed_only_on_requests_may_be_edited_on_responses() -> None:
    config = HeadersConfig.model_validate({"response": {"set": {"Via": "edge", "Set-Cookie": "a=1"}}})
    assert config.response.set_ == {"Via": "edge", "Set-Cookie": "a=1"}
