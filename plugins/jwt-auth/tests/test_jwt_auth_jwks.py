"""jwt-auth with a JWKS URL, served by a real local HTTP server that counts its fetches."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwt_auth_support import JwksServer, bearer, claims, public_jwk, rsa_key, sign, write_route

from gateway_core.testing import InProcessGateway, RecordingUpstream, free_port, wait_until

K1 = public_jwk(rsa_key("k1"), "k1", "RS256")
K2 = public_jwk(rsa_key("k2"), "k2", "RS256")


def token(name: str, kid: str | None = None, **header: Any) -> str:
    return sign(claims(), rsa_key(name), kid=kid if kid is not None else name, **header)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer([K1]).start()
    yield server
    server.stop()


@pytest.fixture
def start(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> Callable[..., str]:
    """``start(url, ttl=..., min_refresh_interval=...)``: a gateway verifying with that JWKS; its URL."""

    def make(url: str, **cache: float) -> str:
        config = {"algorithms": ["RS256"], "jwks_url": url, "jwks_cache": {"timeout": 2, **cache}}
        write_route(manifests_dir, upstream("api").port, config, [])
        return in_process_gateway(manifests=manifests_dir).url

    return make


def test_keys_are_fetched_on_first_use_and_then_served_from_the_cache(
    jwks: JwksServer, start: Callable[..., str]
) -> None:
    url = start(jwks.url)
    assert jwks.fetches == 0
    for _ in range(5):
        assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200
    assert jwks.fetches == 1


def test_an_unknown_kid_refreshes_but_a_flood_of_random_kids_does_not_hammer_the_issuer(
    jwks: JwksServer, start: Callable[..., str]
) -> None:
    evil = JwksServer([public_jwk(rsa_key("evil"), "evil", "RS256")]).start()
    try:
        url = start(jwks.url, min_refresh_interval=1)
        assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200
        jwks.keys = [K1, K2]  # the issuer rotates in a new key
        wait_until(
            lambda: httpx.get(f"{url}/x", headers=bearer(token("k2"))).status_code == 200,
            timeout=5,
            message="the new kid to be fetched",
        )
        assert jwks.fetches == 2
        before, started = jwks.fetches, time.monotonic()
        with httpx.Client() as client:
            for _ in range(40):
                forged = token("evil", kid=secrets.token_hex(8), jku=evil.url)
                assert client.get(f"{url}/x", headers=bearer(forged)).status_code == 401
        allowed = 1 + int(time.monotonic() - started)  # at most one fetch per started interval
        assert jwks.fetches - before <= allowed
        assert evil.fetches == 0
        assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200
    finally:
        evil.stop()


def test_no_keys_yet_is_503_and_retried_only_after_the_interval(jwks: JwksServer, start: Callable[..., str]) -> None:
    jwks.status = 500
    url = start(jwks.url, min_refresh_interval=1)
    first = httpx.get(f"{url}/x", headers=bearer(token("k1")))
    assert (first.status_code, first.json()["error"]) == (503, "jwks_unavailable")
    assert first.headers["retry-after"] == "1"
    assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 503
    assert jwks.fetches == 1  # the second request did not fetch again
    jwks.status = 200
    wait_until(lambda: httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200, timeout=5)
    assert httpx.get(f"{url}/x").status_code == 401  # no token: a challenge, not a fetch


def test_an_unreachable_jwks_url_is_503_not_500(start: Callable[..., str]) -> None:
    url = start(f"http://127.0.0.1:{free_port()}/jwks.json")
    response = httpx.get(f"{url}/x", headers=bearer(token("k1")))
    assert (response.status_code, response.json()["error"]) == (503, "jwks_unavailable")


def test_a_failing_refresh_keeps_the_cached_keys(jwks: JwksServer, start: Callable[..., str]) -> None:
    url = start(jwks.url, ttl=0.2, min_refresh_interval=0.1)
    assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200
    jwks.status = 503

    def refreshed_and_failed() -> bool:
        assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 200
        return jwks.fetches >= 3

    wait_until(refreshed_and_failed, timeout=5, message="two failed refreshes")


def test_keys_are_fetched_again_after_the_ttl(jwks: JwksServer, start: Callable[..., str]) -> None:
    url = start(jwks.url, ttl=0.3, min_refresh_interval=0.1)
    without_kid = sign(claims(), rsa_key("k2"))  # no kid: only the TTL can bring its key in
    assert httpx.get(f"{url}/x", headers=bearer(without_kid)).status_code == 401
    jwks.keys = [K2]
    wait_until(lambda: httpx.get(f"{url}/x", headers=bearer(without_kid)).status_code == 200, timeout=5)
    assert httpx.get(f"{url}/x", headers=bearer(token("k1"))).status_code == 401  # k1 left the set
