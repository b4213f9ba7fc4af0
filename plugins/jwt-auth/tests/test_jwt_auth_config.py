"""jwt-auth's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugin_jwt_auth import SPEC, JwtAuthConfig
from pydantic import ValidationError

PEM = {"secret": "jwt-keys", "key": "public.pem"}


def test_defaults_read_a_bearer_token_and_forward_it() -> None:
    config = JwtAuthConfig.model_validate({"algorithms": ["RS256"], "public_keys": PEM})
    assert (config.header, config.scheme, config.cookie, config.query_param) == ("Authorization", "Bearer", None, None)
    assert config.forward_token is True
    assert config.require_exp is True
    assert config.leeway == 30
    assert config.identity_claim == "sub"
    assert config.identity_header == "X-Auth-User"
    assert (config.jwks_cache.ttl, config.jwks_cache.min_refresh_interval) == (300, 30)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"public_keys": PEM}, "algorithms"),
        ({"algorithms": [], "public_keys": PEM}, "algorithms"),
        ({"algorithms": ["none"], "public_keys": PEM}, "never accepted"),
        ({"algorithms": ["RS256", "None"], "public_keys": PEM}, "never accepted"),
        ({"algorithms": ["RS1"], "public_keys": PEM}, "algorithms"),
        ({"algorithms": ["RS256"]}, "exactly one"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "jwks_url": "https://idp.test/jwks"}, "exactly one"),
        ({"algorithms": ["HS256"], "public_keys": PEM}, "needs `shared_secret`"),
        ({"algorithms": ["RS256", "HS256"], "jwks_url": "https://idp.test/jwks"}, "needs `shared_secret`"),
        ({"algorithms": ["RS256"], "shared_secret": PEM}, "only with HS256"),
        ({"algorithms": ["HS256", "ES256"], "shared_secret": PEM}, "only with HS256"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "jwks_cache": {"ttl": 60}}, "only to `jwks_url`"),
        ({"algorithms": ["RS256"], "jwks_url": "ftp://idp.test/jwks"}, "jwks_url"),
        ({"algorithms": ["RS256"], "jwks_url": "https://u:p@idp.test/jwks"}, "no credentials"),
        (
            {
                "algorithms": ["RS256"],
                "jwks_url": "https://idp.test/",
                "jwks_cache": {"ttl": 10, "min_refresh_interval": 20},
            },
            "must not exceed",
        ),
        ({"algorithms": ["RS256"], "public_keys": PEM, "header": None}, "come from somewhere"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "header": None, "cookie": "jwt", "scheme": "Bearer"}, "scheme"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "cookie": "bad cookie"}, "cookie"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "claims_to_headers": {"sub": "Authorization"}}, "reserved"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "claims_to_headers": {"sub": "x-forwarded-for"}}, "reserved"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "claims_to_headers": {"sub": "X-Auth-User"}}, "reserved"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "claims_to_headers": {"a": "X-A", "b": "x-a"}}, "both go"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "claims_to_headers": {"sub": "X Bad"}}, "claims_to_headers"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "identity_header": "Authorization"}, "identity_header"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "header": "X-Token", "identity_header": "x-token"}, "identity"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "realm": 'a"b'}, "realm"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "audiences": []}, "audiences"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "leeway": -1}, "leeway"),
        ({"algorithms": ["RS256"], "public_keys": {"secret": "jwt-keys"}}, "key"),
        ({"algorithms": ["RS256"], "public_keys": PEM, "secret": "jwt-keys"}, "secret"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_reason(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        JwtAuthConfig.model_validate(data)


@pytest.mark.parametrize(
    "data",
    [
        {"algorithms": ["HS256", "HS512"], "shared_secret": PEM},
        {"algorithms": ["RS256", "PS256", "ES256", "EdDSA"], "jwks": PEM},
        {"algorithms": ["ES256"], "jwks_url": "http://keycloak.auth.svc/certs", "jwks_cache": {"ttl": 60}},
        {"algorithms": ["RS256"], "public_keys": PEM, "header": None, "cookie": "session"},
        {"algorithms": ["RS256"], "public_keys": PEM, "header": "X-Token", "scheme": None, "query_param": "jwt"},
    ],
)
def test_good_configs_are_accepted(data: dict[str, Any]) -> None:
    JwtAuthConfig.model_validate(data)


def test_the_identity_and_claim_headers_are_owned() -> None:
    config = JwtAuthConfig.model_validate(
        {
            "algorithms": ["RS256"],
            "public_keys": PEM,
            "identity_header": "X-User",
            "claims_to_headers": {"email": "X-User-Email", "groups": "X-User-Groups"},
        }
    )
    assert SPEC.headers_owned_by(config) == {"x-auth-user", "x-user", "x-user-email", "x-user-groups"}
    assert SPEC.priority == 2000
