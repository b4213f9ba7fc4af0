"""Certificates for tests: a throwaway CA that issues server certificates for any names.

Tests of HTTPS (SNI choice, rotation, expired or mismatched Secrets, TLS to upstreams) need
real certificates; this makes them in memory with ``cryptography``. Never for production.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class IssuedCertificate:
    """A server certificate (PEM) and its private key (PEM, unencrypted)."""

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str
    """SHA-256 of the certificate (DER), hex: what a client can compare."""

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate (for a test upstream)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "pair.pem")
            with open(path, "wb") as out:
                out.write(self.cert_pem + self.key_pem)
            context.load_cert_chain(path)
        return context


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class TestCertificateAuthority:
    """A CA made on the spot; :meth:`issue` signs server certificates with it."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "meta-native test CA") -> None:
        self._key = _key()
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._certificate.public_bytes(_PEM)
        """The CA certificate, PEM: what a client trusts (a ``ca.crt``)."""

    def issue(
        self,
        *names: str,
        valid_from: datetime.datetime | None = None,
        valid_until: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """A certificate for ``names`` (DNS names, ``*.`` wildcards, or IP addresses).

        Valid from a minute ago for 30 days unless told otherwise (give past dates for an
        expired one). The first name is also the subject's common name.
        """
        now = datetime.datetime.now(datetime.UTC)
        key = _key()
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "test")]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - datetime.timedelta(minutes=1))
            .not_valid_after(valid_until or now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if alternative:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert_pem=certificate.public_bytes(_PEM),
            key_pem=_key_pem(key),
            fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        )

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA (hostname checks on)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))
