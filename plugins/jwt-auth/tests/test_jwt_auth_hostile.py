"""Hostile tokens against a real gateway: every one is a 401 (never a 500) and never reaches the upstream.

Two routes share one gateway: the default host verifies with a JWKS held in a Secret (keys
by ``kid``), ``pem.test`` with a PEM public key. Each attack runs against both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from jwt.algorithms import RSAAlgorithm
from jwt.utils import base64url_encode
from jwt_auth_support import JwksServer, claims, forge, public_jwk, public_pem, rsa_key, sign

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    write_manifests,
)

CHECKS = {"algorithms": ["RS256"], "issuers": ["https://issuer.test/"], "audiences": ["orders"]}
HOSTS = ["api.test", "pem.test"]


def good(**overrides: object) -> dict[str, object]:
    return claims(aud="orders", **overrides)


def signed_raw(header: dict[str, object], payload: bytes, sign_input: Callable[[bytes], bytes]) -> str:
    """A token over exactly ``payload`` (bytes), signed by ``sign_input``."""
    signing_input = base64url_encode(json.dumps(header).encode()) + b"." + base64url_encode(payload)
    return (signing_input + b"." + base64url_encode(sign_input(signing_input))).decode()


def rsa_signed(header: dict[str, object], payload: bytes) -> str:
    return signed_raw(header, payload, lambda data: RSAAlgorithm(RSAAlgorithm.SHA256).sign(data, rsa_key()))


def tampered_payload() -> str:
    header, _, signature = sign(good(), kid="main").split(".")
    payload = base64url_encode(json.dumps(good(sub="admin")).encode()).decode()
    return f"{header}.{payload}.{signature}"


def tampered_signature() -> str:
    token = sign(good(), kid="main")
    last = "A" if token[-2] != "A" else "B"
    return token[:-2] + last + token[-1]


def hs256_with_the_public_key() -> str:
    """The classic confusion: HMAC over the token with the RSA public key's PEM as the secret."""
    pem = public_pem(rsa_key())
    return signed_raw(
        {"alg": "HS256", "typ": "JWT", "kid": "main"},
        json.dumps(good()).encode(),
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )


@pytest.fixture(scope="module")
def evil_jwks() -> Iterator[JwksServer]:
    """The attacker's own JWKS server, which the gateway must never be made to call."""
    server = JwksServer([public_jwk(rsa_key("attacker"), "attacker", "RS256")]).start()
    yield server
    server.stop()


ATTACKS: dict[str, Callable[[JwksServer], str]] = {
    "alg-none": lambda _: forge({"alg": "none", "typ": "JWT"}, good()),
    "alg-None-with-signature": lambda _: forge({"alg": "None", "kid": "main"}, good(), b"sig"),
    "hs256-signed-with-the-rsa-public-key": lambda _: hs256_with_the_public_key(),
    "alg-not-allowed-rs512": lambda _: sign(good(), rsa_key(), "RS512", kid="main"),
    "expired": lambda _: sign(good(exp=int(time.time()) - 3600), kid="main"),
    "not-yet-valid": lambda _: sign(good(nbf=int(time.time()) + 3600), kid="main"),
    "issued-in-the-future": lambda _: sign(good(iat=int(time.time()) + 3600), kid="main"),
    "wrong-audience": lambda _: sign(claims(aud="billing"), kid="main"),
    "missing-audience": lambda _: sign(claims(), kid="main"),
    "wrong-issuer": lambda _: sign(good(iss="https://evil.test/"), kid="main"),
    "missing-issuer": lambda _: sign(good(iss=None), kid="main"),
    "missing-exp": lambda _: sign(good(exp=None), kid="main"),
    "exp-infinity": lambda _: sign(good(exp=float("inf")), kid="main"),
    "exp-not-a-number": lambda _: sign(good(exp="tomorrow"), kid="main"),
    "tampered-payload": lambda _: tampered_payload(),
    "tampered-signature": lambda _: tampered_signature(),
    "signed-by-another-key": lambda _: sign(good(), rsa_key("attacker"), kid="main"),
    "unknown-kid": lambda _: sign(good(), rsa_key("attacker"), kid="nope"),
    "jku-pointing-elsewhere": lambda evil: sign(good(), rsa_key("attacker"), kid="attacker", jku=evil.url),
    "x5u-pointing-elsewhere": lambda evil: sign(good(), rsa_key("attacker"), kid="attacker", x5u=evil.url),
    "embedded-jwk": lambda _: sign(
        good(), rsa_key("attacker"), jwk=public_jwk(rsa_key("attacker"), None, "RS256"), kid="main"
    ),
    "crit-unknown-extension": lambda _: jwt.encode(
        good(), rsa_key(), "RS256", headers={"kid": "main", "crit": ["exp-ext"], "exp-ext": 1}
    ),
    "unencoded-payload-b64-false": lambda _: forge({"alg": "RS256", "b64": False, "crit": ["b64"]}, good()),
    "kid-not-a-string": lambda _: forge({"alg": "RS256", "kid": 123}, good(), b"x"),
    "alg-a-list": lambda _: forge({"alg": ["RS256"]}, good(), b"x"),
    "header-not-an-object": lambda _: "W10." + sign(good()).split(".", 1)[1],
    "deeply-nested-payload": lambda _: rsa_signed(
        {"alg": "RS256", "kid": "main"}, b'{"sub":"a","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    ),
    "payload-not-an-object": lambda _: rsa_signed({"alg": "RS256", "kid": "main"}, b'"alice"'),
    "garbage": lambda _: "garbage",
    "three-empty-segments": lambda _: "..",
    "bad-base64": lambda _: "!!!.???.###",
    "one-segment": lambda _: "eyJhbGciOiJSUzI1NiJ9",
    "too-long": lambda _: sign(good(pad="x" * 20_000), kid="main"),
}


REASONS = {
    "alg-none": "signature, algorithm or key",
    "hs256-signed-with-the-rsa-public-key": "signature, algorithm or key",
    "tampered-payload": "signature, algorithm or key",
    "unknown-kid": "signature, algorithm or key",
    "jku-pointing-elsewhere": "signature, algorithm or key",
    "expired": "has expired",
    "not-yet-valid": "not valid yet",
    "wrong-audience": "audience",
    "missing-audience": "audience",
    "wrong-issuer": "issuer",
    "missing-exp": "required claim",
    "garbage": "cannot be read",
    "deeply-nested-payload": "cannot be read",
}
"""The reason given for some attacks (the others only have to be refused)."""


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One keep-alive client for the module's many requests."""
    with httpx.Client() as shared:
        yield shared


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessGateway, RecordingUpstream]]:
    backend = RecordingUpstream(name="api").start()
    directory: Path = tmp_path_factory.mktemp("manifests")
    jwks = json.dumps({"keys": [public_jwk(rsa_key(), "main", "RS256")]})
    by_jwks = {**CHECKS, "jwks": {"secret": "jwt-keys", "key": "jwks.json"}}
    by_pem = {**CHECKS, "public_keys": {"secret": "jwt-keys", "key": "public.pem"}}
    write_manifests(
        directory,
        [
            *routed_service("api", backend.port),
            secret("jwt-keys", {"jwks.json": jwks, "public.pem": public_pem(rsa_key())}),
            ingress(
                "jwks",
                rules=[("api.test", [path("/", "api")])],
                annotations=plugin_annotations({"jwt-auth": by_jwks}),
            ),
            ingress(
                "pem", rules=[("pem.test", [path("/", "api")])], annotations=plugin_annotations({"jwt-auth": by_pem})
            ),
        ],
    )
    gw = InProcessGateway(manifests=directory).start()
    yield gw, backend
    gw.stop()
    backend.stop()


@pytest.mark.parametrize("host", HOSTS)
def test_the_good_token_passes_so_the_refusals_below_mean_something(
    gateway: tuple[InProcessGateway, RecordingUpstream], client: httpx.Client, host: str
) -> None:
    gw, backend = gateway
    response = client.get(f"{gw.url}/x", headers={"Host": host, "Authorization": f"Bearer {sign(good(), kid='main')}"})
    assert response.status_code == 200
    assert backend.requests[-1].headers["x-auth-user"] == "alice"


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_token_is_refused_with_401(
    gateway: tuple[InProcessGateway, RecordingUpstream],
    client: httpx.Client,
    evil_jwks: JwksServer,
    host: str,
    attack: str,
) -> None:
    gw, backend = gateway
    seen = len(backend.requests)
    token = ATTACKS[attack](evil_jwks)
    response = client.get(f"{gw.url}/x", headers={"Host": host, "Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    assert REASONS.get(attack, "") in response.json()["message"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="gateway", error="invalid_token"')
    assert len(backend.requests) == seen
    assert evil_jwks.fetches == 0


@pytest.mark.parametrize("host", HOSTS)
def test_hostile_requests_around_the_token_are_refused(
    gateway: tuple[InProcessGateway, RecordingUpstream], host: str
) -> None:
    gw, backend = gateway
    seen = len(backend.requests)
    token = sign(good(), kid="main")
    repeated = [("Host", host), ("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    two = httpx.get(f"{gw.url}/x", headers=repeated)
    assert two.status_code == 401
    assert 'error="invalid_request"' in two.headers["www-authenticate"]
    for value in (b"Bearer", b"Bearer .", b"Bearer \xff\xfe.\xff.\xff", b"bearer " + token.encode() + b" extra"):
        response = httpx.get(f"{gw.url}/x", headers=[(b"Host", host.encode()), (b"Authorization", value)])
        assert response.status_code == 401, value
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert len(backend.requests) == seen
