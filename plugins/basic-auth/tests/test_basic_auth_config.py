"""basic-auth's config model and htpasswd parsing: what is accepted, and what is refused and why."""

from __future__ import annotations

import base64
import hashlib
import re

import bcrypt
import pytest
from gateway_plugin_basic_auth import SPEC, BasicAuthConfig
from gateway_plugin_basic_auth.htpasswd import HashKind, parse_htpasswd, usual_bcrypt_cost
from pydantic import ValidationError

from gateway_core import PluginConfigError

BCRYPT_HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
SHA_HASH = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
SOURCE = "Secret 'users' key 'auth'"


def test_defaults() -> None:
    config = BasicAuthConfig.model_validate({"secret": "users"})
    assert (config.secret_key, config.realm, config.identity_header) == ("auth", "Restricted", "X-Auth-User")
    assert config.forward_authorization is False
    assert (config.cache_ttl, config.cache_size) == (30.0, 1024)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "secret"),
        ({"secret": ""}, "secret"),
        ({"secret": "users", "secret_key": "a/b"}, "secret_key"),
        ({"secret": "users", "realm": 'say "hi"'}, "printable ASCII"),
        ({"secret": "users", "realm": "line\r\nX-Evil: 1"}, "printable ASCII"),
        ({"secret": "users", "realm": "Bücher"}, "printable ASCII"),
        ({"secret": "users", "realm": ""}, "realm"),
        ({"secret": "users", "cache_ttl": -1}, "cache_ttl"),
        ({"secret": "users", "cache_size": 0}, "cache_size"),
        ({"secret": "users", "identity_header": "X-User\r\nEvil: 1"}, "identity_header"),
        ({"secret": "users", "relm": "typo"}, "relm"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        BasicAuthConfig.model_validate(data)


def test_the_identity_header_it_sets_is_owned() -> None:
    config = BasicAuthConfig.model_validate({"secret": "users", "identity_header": "X-Staff"})
    assert SPEC.headers_owned_by(config) == {"x-staff", "x-auth-user"}
    assert SPEC.priority == 2000


def test_bcrypt_and_sha_entries_parse_with_comments_blank_lines_and_crlf() -> None:
    text = (
        f"# staff\r\nalice:{BCRYPT_HASH}\r\n\r\n"
        f"bob:{SHA_HASH}:a comment\n"
        f"carol:{BCRYPT_HASH.replace('$2b$', '$2y$')}\n"
        f"dave:{BCRYPT_HASH.replace('$2b$', '$2a$')}"
    )
    users = parse_htpasswd(text.encode(), source=SOURCE)
    assert sorted(users) == ["alice", "bob", "carol", "dave"]
    assert users["alice"].kind is HashKind.BCRYPT
    assert users["alice"].cost == 4
    assert users["bob"].kind is HashKind.SHA1
    assert users["bob"].value == hashlib.sha1(b"pw").digest()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("bob:$apr1$abcdefgh$0123456789abcdefghijkl", "line 2 (user 'bob'): apr1-MD5 hashes are not supported"),
        ("bob:$1$salt$hash", "MD5-crypt"),
        ("bob:$6$rounds=5000$salt$hash", "SHA-512-crypt"),
        ("bob:" + BCRYPT_HASH.replace("$2b$", "$2x$"), "bcrypt $2x$"),
        ("bob:rl5wXpPEhzhXE", "unrecognised hash"),
        ("bob:hunter2", "unrecognised hash"),
        ("bob:{SHA}not-base64!", "20-byte SHA-1"),
        ("bob:{SHA}" + base64.b64encode(b"short").decode(), "20-byte SHA-1"),
        ("bob:$2y$04$tooshort", "malformed bcrypt hash"),
        ("bob:" + BCRYPT_HASH[:28] + "A" + BCRYPT_HASH[29:], "malformed bcrypt hash"),
        ("bob:" + BCRYPT_HASH.replace("$04$", "$31$"), "cost 31 is outside 4-17"),
        ("bob:" + BCRYPT_HASH.replace("$04$", "$03$"), "cost 3 is outside 4-17"),
        ("alice:" + SHA_HASH, "line 2 (user 'alice'): the user is already defined on line 1"),
        ("bob", "line 2: expected 'user:hash'"),
        (":" + SHA_HASH, "user name is empty"),
        ("b\tob:" + SHA_HASH, "control characters"),
        ("李:" + SHA_HASH, "Latin-1"),
    ],
)
def test_unusable_lines_are_refused_naming_line_and_user_but_not_the_hash(line: str, fragment: str) -> None:
    text = f"alice:{BCRYPT_HASH}\n{line}\n"
    with pytest.raises(PluginConfigError, match=re.escape(fragment)) as raised:
        parse_htpasswd(text.encode(), source=SOURCE)
    message = str(raised.value)
    assert message.startswith(SOURCE + " line 2")
    assert "hunter2" not in message
    assert BCRYPT_HASH[7:] not in message


def test_a_file_that_is_not_utf8_or_holds_no_users_is_refused() -> None:
    with pytest.raises(PluginConfigError, match="line 2: not valid UTF-8"):
        parse_htpasswd(b"alice:" + SHA_HASH.encode() + b"\n\xff\xfe:x", source=SOURCE)
    with pytest.raises(PluginConfigError, match="holds no users"):
        parse_htpasswd(b"# nobody\n\n", source=SOURCE)


def test_the_decoy_cost_is_the_most_common_bcrypt_cost() -> None:
    cost5 = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5)).decode()
    users = parse_htpasswd(f"a:{BCRYPT_HASH}\nb:{cost5}\nc:{cost5}\nd:{SHA_HASH}".encode(), source=SOURCE)
    assert usual_bcrypt_cost(users) == 5
    assert usual_bcrypt_cost(parse_htpasswd(f"d:{SHA_HASH}".encode(), source=SOURCE)) is None
