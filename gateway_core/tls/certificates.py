"""PEM certificates and keys: read, checked, and the self-signed default made.

A Secret's ``tls.crt``/``tls.key`` are checked here before anything serves them, with
``cryptography`` (the standard ``ssl`` module can load a pair but cannot read a
certificate's dates or names, nor make one). A pair is refused, with the reason in words,
when either part is not PEM, the key is encrypted or does not belong to the certificate, or
the certificate is expired or not valid yet. Only the leaf (the first certificate of the
chain) is checked; intermediates are sent as they are.

Pure: no I/O.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_COMMON_NAME = "meta-native-gateway default"
"""Subject of the generated default certificate (like ingress-nginx's "Fake Certificate")."""
DEFAULT_DNS_NAME = "meta-native-gateway.invalid"
"""The generated certificate's one DNS name: ``.invalid`` can never be a real host."""

_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class CertificateError(ValueError):
    """A certificate or key that cannot be served; the message says why."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A checked certificate chain and its private key, with what the leaf says about itself."""

    cert_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]
    """DNS names of the leaf: its subjectAltName entries, else its common name; lowercase."""
    subject: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str
    """SHA-256 of the leaf certificate (DER), hex."""

    def covers(self, host: str) -> bool:
        """Whether a client asking for ``host`` would accept this certificate (RFC 6125 §6.4)."""
        return any(name_matches(name, host) for name in self.names)


def name_matches(name: str, host: str) -> bool:
    """Whether certificate name ``name`` matches ``host``.

    ``*.example.com`` matches exactly one extra label (``a.example.com``, not
    ``example.com`` nor ``a.b.example.com``), and a host that is itself the wildcard
    ``*.example.com`` only by the same wildcard name.
    """
    name, host = name.lower().rstrip("."), host.lower().rstrip(".")
    if name == host:
        return True
    if not name.startswith("*.") or host.startswith("*."):
        return False
    label, dot, rest = host.partition(".")
    return bool(label) and bool(dot) and rest == name[2:]


def load_key_pair(cert_pem: bytes, key_pem: bytes, *, now: datetime.datetime | None = None) -> KeyPair:
    """Check a PEM certificate chain and key; :class:`CertificateError` says what is wrong."""
    if not cert_pem.strip():
        raise CertificateError("tls.crt is empty")
    if not key_pem.strip():
        raise CertificateError("tls.key is empty")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"tls.crt is not a PEM certificate ({_short(exc)})") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError("tls.key is encrypted; the gateway needs the key without a passphrase") from None
    except ValueError as exc:
        raise CertificateError(f"tls.key is not a PEM private key ({_short(exc)})") from None
    except UnsupportedAlgorithm as exc:
        raise CertificateError(f"tls.key uses an unsupported algorithm ({_short(exc)})") from None
    if key.public_key().public_bytes(*_PUBLIC) != leaf.public_key().public_bytes(*_PUBLIC):
        raise CertificateError("tls.key does not match the certificate in tls.crt (a different key pair)")
    now = now or datetime.datetime.now(datetime.UTC)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_after < now:
        raise CertificateError(f"the certificate expired on {_when(not_after)}")
    if not_before > now:
        raise CertificateError(f"the certificate is not valid before {_when(not_before)}")
    return KeyPair(
        cert_pem=cert_pem,
        key_pem=key_pem,
        names=_dns_names(leaf),
        subject=leaf.subject.rfc4514_string(),
        not_before=not_before,
        not_after=not_after,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def load_ca_bundle(pem: bytes) -> int:
    """Check PEM CA certificates (a ``ca.crt``); the number found, or :class:`CertificateError`."""
    if not pem.strip():
        raise CertificateError("ca.crt is empty")
    try:
        return len(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise CertificateError(f"ca.crt is not PEM certificates ({_short(exc)})") from None


def self_signed(
    common_name: str = DEFAULT_COMMON_NAME, *, dns_name: str = DEFAULT_DNS_NAME, days: int = 365
) -> tuple[bytes, bytes]:
    """A new self-signed certificate and key (EC P-256), PEM, valid from now for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a client clock a little behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(attribute.value).lower() for attribute in common[:1])
    return tuple(name.lower() for name in extension.value.get_values_for_type(x509.DNSName))


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__
