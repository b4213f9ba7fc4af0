"""jwt-auth's key loading: what a Secret may hold, what is refused at bind time, and why."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from gateway_plugin_jwt_auth import JwtAuth, JwtAuthConfig
from gateway_plugin_jwt_auth.keys import KeyMaterialError, key_from_shared_secret, keys_from_jwks, keys_from_pem
from jwt_auth_support import HMAC_SECRET, ec_key, ed_key, public_jwk, public_pem, rsa_key

from gateway_core import Binding, PluginConfigError, RouteInfo

ROUTE = RouteInfo(id="r", namespace="shop", ingress="api", host="", path="/", path_type="Prefix", service="api")


def _binding(secrets: Mapping[str, Mapping[str, bytes]]) -> Binding:
    return Binding(plugin="jwt-auth", route=ROUTE, secrets=secrets.get)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2021, 1, 1))  # long expired: a certificate is only a key container
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_pem_keys_and_certificates_load_for_every_algorithm_they_fit() -> None:
    data = public_pem(rsa_key()) + b"\n" + public_pem(ec_key()) + public_pem(ed_key()) + _certificate(rsa_key("b"))
    keys = keys_from_pem(data, ["RS256", "PS256", "ES256", "EdDSA"])
    assert len(keys.candidates("RS256", None)) == 2
    assert len(keys.candidates("PS256", "any-kid")) == 2  # PEM keys have no kid: a token's kid matches them all
    assert len(keys.candidates("ES256", None)) == 1
    assert len(keys.candidates("EdDSA", None)) == 1
    assert keys.candidates("ES384", None) == ()


@pytest.mark.parametrize(
    ("data", "allowed", "fragment"),
    [
        (b"not a key", ["RS256"], "no PEM block"),
        (public_pem(ec_key()), ["RS256"], "EC secp256r1 key, which none of RS256"),
        (public_pem(ec_key()), ["ES384"], "none of ES384"),
        (
            rsa_key().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            ["RS256"],
            "private key",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", ["RS256"], "cannot be read"),
    ],
)
def test_unusable_pem_is_refused(data: bytes, allowed: list[str], fragment: str) -> None:
    with pytest.raises(KeyMaterialError, match=fragment):
        keys_from_pem(data, allowed)


def test_a_weak_rsa_key_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyMaterialError, match="1024 bits is too weak"):
        keys_from_pem(public_pem(weak), ["RS256"])


def test_a_jwks_keeps_signing_keys_by_kid_and_skips_the_rest() -> None:
    document: dict[str, Any] = {
        "keys": [
            public_jwk(rsa_key(), "rsa-1", "RS256"),
            public_jwk(ec_key(), "ec-1"),
            {**public_jwk(rsa_key("b"), "enc-1"), "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**public_jwk(rsa_key("c"), "private"), "d": "AQAB"},
            public_jwk(ec_key(), "declares-es384", "ES384"),
            "junk",
        ]
    }
    keys, skipped = keys_from_jwks(json.dumps(document).encode(), ["RS256", "ES256"])
    assert len(keys.candidates("RS256", "rsa-1")) == 1
    assert len(keys.candidates("ES256", "ec-1")) == 1
    assert keys.candidates("RS256", "ec-1") == ()
    assert keys.candidates("RS256", "unknown") == ()  # every key has a kid: an unknown one matches nothing
    assert len(skipped) == 5
    assert any("use is not 'sig'" in reason for reason in skipped)
    assert any("shared_secret" in reason for reason in skipped)
    assert any("private key material" in reason for reason in skipped)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "not a JSON document"),
        (b"[]", "not a JWKS"),
        (b'{"keys": []}', "no key usable"),
        (json.dumps({"keys": [public_jwk(ec_key(), "ec")]}).encode(), "no key usable with RS256"),
    ],
)
def test_an_unusable_jwks_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(KeyMaterialError, match=fragment):
        keys_from_jwks(data, ["RS256"])


def test_a_shared_secret_must_be_long_enough_and_not_a_public_key() -> None:
    assert len(key_from_shared_secret(HMAC_SECRET, ["HS256"])) == 1
    with pytest.raises(KeyMaterialError, match="HS512 needs at least 64"):
        key_from_shared_secret(HMAC_SECRET, ["HS256", "HS512"])
    with pytest.raises(KeyMaterialError, match="looks like a PEM"):
        key_from_shared_secret(public_pem(rsa_key()), ["HS256"])


def test_binding_names_the_secret_and_key_that_are_missing_or_wrong() -> None:
    config = JwtAuthConfig.model_validate(
        {"algorithms": ["RS256"], "public_keys": {"secret": "jwt-keys", "key": "public.pem"}}
    )
    with pytest.raises(PluginConfigError, match="Secret 'jwt-keys' not found in namespace 'shop'"):
        JwtAuth.from_binding(config, _binding({}))
    with pytest.raises(PluginConfigError, match=r"has no key 'public.pem' \(it has: other\)"):
        JwtAuth.from_binding(config, _binding({"jwt-keys": {"other": b""}}))
    with pytest.raises(PluginConfigError, match=r"'public\.pem': PEM block 1 is an EC"):
        JwtAuth.from_binding(config, _binding({"jwt-keys": {"public.pem": public_pem(ec_key())}}))
    plugin = JwtAuth.from_binding(config, _binding({"jwt-keys": {"public.pem": public_pem(rsa_key())}}))
    assert isinstance(plugin, JwtAuth)
