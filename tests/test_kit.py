"""The plugin author's kit itself: the docs-table renderer and the redis-server fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from gateway_core.testing import RedisServer, plugin_annotations, secret
from gateway_core.testing.docs import END, START, config_table, main, page_table, write_table


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("X-Key", description="A header | with a pipe.")


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: str = Field(description="The limit.")
    strategy: Literal["fixed", "moving"] = Field("fixed", description="How to count.")
    hosts: list[str] = Field(default_factory=list, description="Hosts.")
    inner: Inner | None = Field(None, description="Nested.")


def test_the_table_lists_every_field_with_type_default_and_description() -> None:
    table = config_table(Sample)
    assert table.splitlines() == [
        "| Field | Type | Default | Description |",
        "|---|---|---|---|",
        "| `limit` | string | required | The limit. |",
        '| `strategy` | `"fixed"` \\| `"moving"` | `"fixed"` | How to count. |',
        "| `hosts` | list of string | `[]` | Hosts. |",
        "| `inner` | object \\| null | `null` | Nested. |",
        '| `inner.name` | string | `"X-Key"` | A header \\| with a pipe. |',
    ]


def test_a_page_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{START}\nstale\n{END}\n\nAfter.\n")
    assert write_table(page, Sample)
    text = page.read_text()
    assert page_table(text) == config_table(Sample)
    assert text.startswith("# Title\n")
    assert text.endswith("\n\nAfter.\n")
    assert not write_table(page, Sample)
    assert main([str(page), "tests.test_kit:Sample"]) == 0
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- config-table:start -->"):
        write_table(tmp_path / "bare.md", Sample)


def test_builders_encode_secrets_and_annotations() -> None:
    made = secret("keys", {"alice": "k1", "raw": b"\x00\xff"})
    assert made["data"] == {"alice": "azE=", "raw": "AP8="}
    annotations = plugin_annotations({"key-auth": {"secret": "keys"}, "access-log": None})
    assert annotations == {
        "meta-native.io/plugins": "key-auth, access-log",
        "meta-native.io/plugin.key-auth": '{"secret": "keys"}',
    }


def test_redis_server_starts_answers_and_stops(redis_server: RedisServer) -> None:
    assert redis_server.command("SET", "k", "v").startswith(b"+OK")
    assert redis_server.command("GET", "k") == b"$1\r\nv\r\n"
    redis_server.flush()
    assert redis_server.command("GET", "k") == b"$-1\r\n"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    redis_server.stop()
    assert not redis_server.ping()
