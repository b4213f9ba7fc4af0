"""Reading and checking PEM pairs; the generated default certificate; server contexts."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway_core.testing import TestCertificateAuthority
from gateway_core.tls.certificates import (
    DEFAULT_COMMON_NAME,
    CertificateError,
    load_ca_bundle,
    load_key_pair,
    name_matches,
    self_signed,
)
from gateway_core.tls.contexts import ServerTlsOptions, server_context

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


def test_a_good_pair_is_read_with_its_names_dates_and_fingerprint(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("shop.example.com", "*.shop.example.com")
    pair = load_key_pair(issued.cert_pem, issued.key_pem)
    assert pair.names == ("shop.example.com", "*.shop.example.com")
    assert pair.subject == "CN=shop.example.com"
    assert pair.fingerprint == issued.fingerprint
    assert pair.not_before < datetime.datetime.now(datetime.UTC) < pair.not_after
    assert pair.covers("shop.example.com")
    assert pair.covers("eu.shop.example.com")
    assert not pair.covers("example.com")


def test_a_chain_is_accepted_and_only_the_leaf_is_checked(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test")
    pair = load_key_pair(issued.cert_pem + ca.cert_pem, issued.key_pem)
    assert pair.names == ("a.test",)


@pytest.mark.parametrize(
    ("name", "host", "expected"),
    [
        ("a.example.com", "a.example.com", True),
        ("A.Example.com", "a.example.COM.", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "*.example.com", True),
        ("a.example.com", "*.example.com", False),
        ("*.example.com", ".example.com", False),
        ("b.example.com", "a.example.com", False),
    ],
)
def test_certificate_names_match_hosts_as_clients_do(name: str, host: str, expected: bool) -> None:
    assert name_matches(name, host) is expected


def _other_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_each_bad_pair_is_refused_with_its_reason(ca: TestCertificateAuthority) -> None:
    good = ca.issue("a.test")
    expired = ca.issue(
        "a.test", valid_from=NOW - datetime.timedelta(days=10), valid_until=NOW - datetime.timedelta(days=1)
    )
    future = ca.issue("a.test", valid_from=NOW + datetime.timedelta(days=1))
    encrypted = serialization.load_pem_private_key(good.key_pem, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    cases = [
        (b"", good.key_pem, "tls.crt is empty"),
        (good.cert_pem, b"  \n", "tls.key is empty"),
        (
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            good.key_pem,
            "not a PEM certificate",
        ),
        (good.cert_pem, b"garbage", "tls.key is not a PEM private key"),
        (good.cert_pem, _other_key_pem(), "tls.key does not match the certificate"),
        (good.cert_pem, encrypted, "tls.key is encrypted"),
        (expired.cert_pem, expired.key_pem, "the certificate expired on"),
        (future.cert_pem, future.key_pem, "the certificate is not valid before"),
    ]
    for cert_pem, key_pem, reason in cases:
        with pytest.raises(CertificateError, match=reason):
            load_key_pair(cert_pem, key_pem)


def test_the_generated_default_is_a_self_signed_ec_certificate_for_a_year() -> None:
    cert_pem, key_pem = self_signed()
    pair = load_key_pair(cert_pem, key_pem)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    assert pair.subject == f"CN={DEFAULT_COMMON_NAME}"
    assert certificate.issuer == certificate.subject
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert pair.names == ("meta-native-gateway.invalid",)
    now = datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < pair.not_after - now <= datetime.timedelta(days=365)
    assert self_signed()[0] != cert_pem  # a new one each time


def test_ca_bundles_are_checked(ca: TestCertificateAuthority) -> None:
    assert load_ca_bundle(ca.cert_pem) == 1
    assert load_ca_bundle(ca.cert_pem + TestCertificateAuthority().cert_pem) == 2
    with pytest.raises(CertificateError, match=r"ca\.crt is empty"):
        load_ca_bundle(b"")
    with pytest.raises(CertificateError, match=r"ca\.crt is not PEM certificates"):
        load_ca_bundle(b"hello")


def test_server_contexts_are_tls12_plus_with_forward_secret_ciphers(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test")
    context = server_context(load_key_pair(issued.cert_pem, issued.key_pem), ServerTlsOptions())
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    tls12 = [cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 cipher left"
    assert all(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name) for name in tls12), tls12
    strict = server_context(load_key_pair(issued.cert_pem, issued.key_pem), ServerTlsOptions(min_version="TLSv1.3"))
    assert strict.minimum_version is ssl.TLSVersion.TLSv1_3
