"""access-log's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_access_log import SPEC, AccessLogConfig
from gateway_plugin_access_log.config import DEFAULT_FIELDS, FIELDS
from pydantic import ValidationError


def test_defaults_log_to_stdout_without_query_or_client_headers() -> None:
    config = AccessLogConfig.model_validate({})
    assert config.output == "stdout"
    assert config.fields == list(DEFAULT_FIELDS)
    assert "uri" not in config.fields
    assert not {"user_agent", "referer", "request_id"} & set(config.fields)
    assert config.headers == []
    assert config.queue_size == 10_000
    assert SPEC.priority == -1000
    assert SPEC.headers_owned_by(config) == frozenset()


def test_fields_keep_their_order_and_headers_are_lowercased() -> None:
    config = AccessLogConfig.model_validate(
        {"fields": ["status", "time", "uri"], "headers": ["X-Tenant", "Accept"], "output": "stderr"}
    )
    assert config.fields == ["status", "time", "uri"]
    assert config.headers == ["x-tenant", "accept"]
    assert AccessLogConfig.model_validate({"fields": list(FIELDS)}).fields == list(FIELDS)


def test_a_file_output_is_normalised() -> None:
    config = AccessLogConfig.model_validate({"output": "/var/log//gateway/./access.log"})
    assert config.output == "/var/log/gateway/access.log"
    assert AccessLogConfig.model_validate({"output": "/tmp/a.jsonl"}).output == "/tmp/a.jsonl"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"fields": ["time", "stauts"]}, "unknown field.*'stauts'.*known fields: time, client"),
        ({"fields": []}, "fields"),
        ({"fields": ["status", "status"]}, "listed twice: status"),
        ({"headers": ["Authorization"]}, "authorization carry credentials"),
        ({"headers": ["cookie"]}, "credentials"),
        ({"headers": ["X-API-Key"]}, "credentials"),
        ({"headers": ["X-A", "x-a"]}, "listed twice: x-a"),
        ({"headers": ["X Bad"]}, "headers"),
        ({"headers": [f"X-H{index}" for index in range(33)]}, "headers"),
        ({"request_id_header": "Proxy-Authorization"}, "credentials"),
        ({"output": "access.log"}, "absolute file path"),
        ({"output": "/var/log/../../etc/cron.d/x.log"}, r"'\.\.'"),
        ({"output": "/etc/passwd"}, r"must end in \.log or \.jsonl"),
        ({"output": "/proc/self/fd/1.log"}, "/proc"),
        ({"output": "/tmp/a\0.log"}, "NUL"),
        ({"output": ""}, "output"),
        ({"queue_size": 0}, "queue_size"),
        ({"feilds": ["time"]}, "feilds"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        AccessLogConfig.model_validate(data)
