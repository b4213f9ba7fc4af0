"""rewrite's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_rewrite import SPEC, RewriteConfig
from gateway_plugin_rewrite.template import Template
from pydantic import ValidationError


def test_defaults_and_spec() -> None:
    config = RewriteConfig.model_validate({"strip_prefix": "/api/"})
    assert config.strip_prefix == "/api"  # trailing slash dropped: prefixes match whole segments
    assert (config.max_path_length, config.x_original_uri) == (2048, False)
    assert (SPEC.name, SPEC.priority) == ("rewrite", 800)
    assert SPEC.headers_owned_by(config) == frozenset()


def test_replace_prefix_is_written_with_from_and_to() -> None:
    config = RewriteConfig.model_validate({"replace_prefix": {"from": "/api", "to": "/internal/"}})
    assert config.replace_prefix is not None
    assert (config.replace_prefix.from_, config.replace_prefix.to) == ("/api", "/internal")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "exactly one"),
        ({"strip_prefix": "/a", "regex": "^/b", "replacement": "/c"}, "exactly one"),
        ({"strip_prefix": "api"}, "start with '/'"),
        ({"strip_prefix": "/"}, "remove nothing"),
        ({"strip_prefix": "/a/../b"}, r"'\.\.'"),
        ({"strip_prefix": "/a?x=1"}, "'\\?'"),
        ({"strip_prefix": "/a//b"}, "empty segments"),
        ({"strip_prefix": "/a\nb"}, "control"),
        ({"strip_prefix": "/100%"}, "percent-escape"),
        ({"replace_prefix": {"from": "/api"}}, "to"),
        ({"replace_prefix": {"from": "/api", "to": "internal"}}, "replace_prefix.to"),
        ({"replace_prefix": {"from": "/api", "to": "/x", "extra": 1}}, "extra"),
        ({"regex": "^/a"}, "go together"),
        ({"replacement": "/a"}, "exactly one"),
        ({"regex": "^/a(", "replacement": "/b"}, "does not compile"),
        ({"regex": "^/(a+)+$", "replacement": "/b"}, "nests an unbounded repeat"),
        ({"regex": "^/(?:x|(y*))*$", "replacement": "/b"}, "nests an unbounded repeat"),
        ({"regex": "^/" + "a" * 600, "replacement": "/b"}, "512"),
        ({"regex": "^/(a)$", "replacement": "b/$1"}, "start with '/'"),
        ({"regex": "^/(a)$", "replacement": "/$2"}, "group \\$2"),
        ({"regex": "^/(a)$", "replacement": "/${id}"}, "does not name"),
        ({"regex": "^/(a)$", "replacement": "/${a-b}"}, "not a group"),
        ({"regex": "^/(a)$", "replacement": "/x$"}, "followed by"),
        ({"regex": "^/(a)$", "replacement": "/x#frag"}, "fragment"),
        ({"regex": "^/(a)$", "replacement": "/../$1"}, "segments"),
        ({"regex": "^/(a)$", "replacement": "/$1", "max_path_length": 8}, "max_path_length"),
        ({"strip_prefix": "/a", "x_original_url": True}, "x_original_url"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RewriteConfig.model_validate(data)


@pytest.mark.parametrize("regex", [r"^/(a++)+$", r"^/((?>a+))+$", r"^/(\d+)/(\w+)$", r"^/(a{1,3})+$"])
def test_regexes_that_cannot_backtrack_without_bound_are_accepted(regex: str) -> None:
    assert RewriteConfig.model_validate({"regex": regex, "replacement": "/$1"}).regex == regex


def test_replacement_references_are_resolved_at_config_time() -> None:
    config = RewriteConfig.model_validate(
        {"regex": r"^/u/(?P<user>\w+)/(\d+)$", "replacement": "/users/${user}/$2/$$cost?v=${2}"}
    )
    template = config.template()
    assert template == Template(path=("/users/", 1, "/", 2, "/", "$", "cost"), query=("v=", 2))
    whole = RewriteConfig.model_validate({"regex": "^/old$", "replacement": "/new$0"}).template()
    assert whole == Template(path=("/new", 0), query=None)
