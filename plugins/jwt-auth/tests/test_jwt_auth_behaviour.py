"""jwt-auth through a real in-process gateway and a real upstream: what passes, what goes upstream."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwt_auth_support import (
    HMAC_SECRET,
    bearer,
    claims,
    ec_key,
    ed_key,
    public_pem,
    rsa_key,
    sign,
    write_route,
)

from gateway_core.testing import InProcessGateway, RecordingUpstream, secret, wait_until

Gateway = tuple[InProcessGateway, RecordingUpstream]
PEM_SOURCE = {"secret": "jwt-keys", "key": "public.pem"}


@pytest.fixture
def start(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> Callable[..., Gateway]:
    """``start(config, keys=...)``: a gateway whose route ``/`` is bound to jwt-auth with ``config``."""

    def make(config: dict[str, Any], keys: dict[str, bytes] | None = None) -> Gateway:
        backend = upstream("api")
        data = keys if keys is not None else {"public.pem": public_pem(rsa_key())}
        write_route(manifests_dir, backend.port, config, [secret("jwt-keys", data)])
        return in_process_gateway(manifests=manifests_dir), backend

    return make


RS256 = {
    "algorithms": ["RS256"],
    "public_keys": PEM_SOURCE,
    "claims_to_headers": {"email": "X-User-Email", "groups": "X-User-Groups", "admin": "X-User-Admin"},
}


def test_a_valid_token_passes_with_identity_and_claims_and_the_token_is_kept(start: Callable[..., Gateway]) -> None:
    gw, backend = start(RS256)
    token = sign(claims(email="alice@example.com", groups=["eng", "ops"], admin=False))
    response = httpx.get(f"{gw.url}/orders", headers=bearer(token))
    assert response.status_code == 200
    seen = backend.requests[-1].headers
    assert seen["x-auth-user"] == "alice"
    assert seen["x-user-email"] == "alice@example.com"
    assert seen["x-user-groups"] == '["eng","ops"]'
    assert seen["x-user-admin"] == "false"
    assert seen["authorization"] == f"Bearer {token}"


def test_no_token_gets_a_bare_challenge_and_never_reaches_the_upstream(start: Callable[..., Gateway]) -> None:
    gw, backend = start(RS256)
    for headers in ({}, {"Authorization": "Basic YWxpY2U6c2VjcmV0"}):
        response = httpx.get(f"{gw.url}/x", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
        assert response.json() == {"error": "unauthorized", "message": "a bearer token is required"}
    assert backend.requests == []


def test_forged_identity_and_claim_headers_are_stripped_on_every_route(start: Callable[..., Gateway]) -> None:
    gw, backend = start(RS256)
    forged = {"X-Auth-User": "admin", "X-User-Email": "root@example.com", "X-User-Admin": "true"}
    open_route = httpx.get(f"{gw.url}/x", headers={**forged, "Host": "open.test"})
    assert open_route.status_code == 200
    assert not {"x-auth-user", "x-user-email", "x-user-admin"} & set(backend.requests[-1].headers)
    authed = httpx.get(f"{gw.url}/x", headers={**forged, **bearer(sign(claims(email=None)))})
    assert authed.status_code == 200
    seen = backend.requests[-1]
    assert seen.header_list.count(("x-auth-user", "alice")) == 1
    assert "x-user-email" not in seen.headers  # the claim is absent: no header, and the forged one is gone
    assert "x-user-admin" not in seen.headers


@pytest.mark.parametrize(
    ("config", "keys", "token"),
    [
        pytest.param(
            {"algorithms": ["ES256"], "public_keys": PEM_SOURCE},
            {"public.pem": public_pem(ec_key())},
            lambda: sign(claims(), ec_key(), "ES256"),
            id="ES256",
        ),
        pytest.param(
            {"algorithms": ["EdDSA"], "public_keys": PEM_SOURCE},
            {"public.pem": public_pem(ed_key())},
            lambda: sign(claims(), ed_key(), "EdDSA"),
            id="EdDSA",
        ),
        pytest.param(
            {"algorithms": ["HS256"], "shared_secret": {"secret": "jwt-keys", "key": "hmac"}},
            {"hmac": HMAC_SECRET},
            lambda: sign(claims(), HMAC_SECRET, "HS256"),
            id="HS256",
        ),
        pytest.param(
            {"algorithms": ["PS256", "RS256"], "public_keys": PEM_SOURCE},
            {"public.pem": public_pem(rsa_key())},
            lambda: sign(claims(), rsa_key(), "PS256"),
            id="PS256",
        ),
    ],
)
def test_each_algorithm_family_verifies_with_its_own_keys(
    start: Callable[..., Gateway], config: dict[str, Any], keys: dict[str, bytes], token: Callable[[], str]
) -> None:
    gw, backend = start(config, keys)
    assert httpx.get(f"{gw.url}/x", headers=bearer(token())).status_code == 200
    assert backend.requests[-1].headers["x-auth-user"] == "alice"
    hmac = "HS256" in config["algorithms"]
    forged = sign(claims(), b"another-secret-of-at-least-32-bytes", "HS256") if hmac else sign(claims(), rsa_key("x"))
    assert httpx.get(f"{gw.url}/x", headers=bearer(forged)).status_code == 401


def test_the_token_can_come_from_a_cookie_and_be_removed_before_forwarding(start: Callable[..., Gateway]) -> None:
    gw, backend = start({**RS256, "header": None, "cookie": "session", "forward_token": False})
    token = sign(claims())
    response = httpx.get(f"{gw.url}/x", headers={"Cookie": f"theme=dark; session={token}; lang=en"})
    assert response.status_code == 200
    assert backend.requests[-1].headers["cookie"] == "theme=dark; lang=en"
    assert httpx.get(f"{gw.url}/x", headers=bearer(token)).status_code == 401  # the header is not a source here


def test_the_token_can_come_from_the_query_and_be_removed_keeping_the_rest_raw(start: Callable[..., Gateway]) -> None:
    gw, backend = start({**RS256, "query_param": "access_token", "forward_token": False})
    token = sign(claims())
    response = httpx.get(f"{gw.url}/x?a=1&access_token={token}&b=%2F")
    assert response.status_code == 200
    assert backend.requests[-1].path == "/x?a=1&b=%2F"
    both = httpx.get(f"{gw.url}/x?access_token={token}", headers=bearer(token))
    assert both.status_code == 401
    assert 'error="invalid_request"' in both.headers["www-authenticate"]


def test_forward_token_false_removes_the_authorization_header(start: Callable[..., Gateway]) -> None:
    gw, backend = start({**RS256, "forward_token": False})
    assert httpx.get(f"{gw.url}/x", headers=bearer(sign(claims()))).status_code == 200
    assert "authorization" not in backend.requests[-1].headers


def test_identity_and_claim_values_must_be_able_to_travel_in_a_header(start: Callable[..., Gateway]) -> None:
    gw, backend = start(RS256)
    refused = [
        (claims(sub=None), "no usable identity"),
        (claims(sub=""), "no usable identity"),
        (claims(email="a@example.com\r\nX-Admin: 1"), "cannot be forwarded"),
        (claims(email="a\x01b"), "cannot be forwarded"),
        (claims(email="世界"), "cannot be forwarded"),  # not latin-1
    ]
    for token_claims, message in refused:
        response = httpx.get(f"{gw.url}/x", headers=bearer(sign(token_claims)))
        assert response.status_code == 401, token_claims
        assert message in response.json()["message"]
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert backend.requests == []
    assert httpx.get(f"{gw.url}/x", headers=bearer(sign(claims(email="Jos\u00e9")))).status_code == 200
    assert backend.requests[-1].headers["x-user-email"] == "Jos\u00e9"


def test_the_identity_can_come_from_another_claim_and_an_integer_is_accepted(start: Callable[..., Gateway]) -> None:
    gw, backend = start({**RS256, "identity_claim": "uid", "identity_header": "X-User-Id"})
    assert httpx.get(f"{gw.url}/x", headers=bearer(sign(claims(uid=42)))).status_code == 200
    assert backend.requests[-1].headers["x-user-id"] == "42"
    assert "x-auth-user" not in backend.requests[-1].headers
    for uid in (True, 1.5, ["a"], None):
        assert httpx.get(f"{gw.url}/x", headers=bearer(sign(claims(uid=uid)))).status_code == 401, uid


def test_clock_skew_leeway_and_time_claims(start: Callable[..., Gateway]) -> None:
    gw, _ = start({**RS256, "leeway": 30})
    now = int(time.time())
    cases = [
        (claims(exp=now - 10), 200),
        (claims(exp=now - 90), 401),
        (claims(nbf=now + 10), 200),
        (claims(nbf=now + 90), 401),
        (claims(iat=now + 90), 401),
    ]
    for token_claims, status in cases:
        assert httpx.get(f"{gw.url}/x", headers=bearer(sign(token_claims))).status_code == status, token_claims


def test_issuers_and_audiences_are_allow_lists(start: Callable[..., Gateway]) -> None:
    gw, _ = start({**RS256, "issuers": ["https://a.test/", "https://b.test/"], "audiences": ["orders", "billing"]})
    good = [claims(iss="https://b.test/", aud="orders"), claims(iss="https://a.test/", aud=["other", "billing"])]
    bad = [
        claims(iss="https://c.test/", aud="orders"),
        claims(iss=None, aud="orders"),
        claims(iss="https://a.test/", aud="other"),
        claims(iss="https://a.test/", aud=None),
    ]
    for token_claims in good:
        assert httpx.get(f"{gw.url}/x", headers=bearer(sign(token_claims))).status_code == 200, token_claims
    for token_claims in bad:
        assert httpx.get(f"{gw.url}/x", headers=bearer(sign(token_claims))).status_code == 401, token_claims


def test_require_exp_can_be_turned_off(start: Callable[..., Gateway]) -> None:
    gw, _ = start({**RS256, "require_exp": False})
    assert httpx.get(f"{gw.url}/x", headers=bearer(sign(claims(exp=None)))).status_code == 200


def test_a_rotated_secret_rebinds_the_route_with_the_new_key(
    start: Callable[..., Gateway], manifests_dir: Path
) -> None:
    gw, backend = start(RS256)
    old, new = sign(claims()), sign(claims(), rsa_key("rotated"))
    assert httpx.get(f"{gw.url}/x", headers=bearer(old)).status_code == 200
    rotated = secret("jwt-keys", {"public.pem": public_pem(rsa_key("rotated"))})
    write_route(manifests_dir, backend.port, RS256, [rotated])
    wait_until(lambda: httpx.get(f"{gw.url}/x", headers=bearer(new)).status_code == 200, message="the new key")
    assert httpx.get(f"{gw.url}/x", headers=bearer(old)).status_code == 401
