"""The HTTPS listener's TLS context: the default certificate, and SNI to pick the others.

One front context per worker, presenting the default certificate. Its SNI callback runs in
each new handshake, looks the client's server name up in the *current* route table's
:class:`~gateway_core.tls.certificate_set.CertificateSet` (exact host, then ``*.`` wildcard)
and switches the connection to that certificate's context. A new table therefore changes
the certificate of new connections only; open connections keep theirs. The protocol
version and cipher choice follow the front context, so every context is built alike.

The default certificate comes from ``tls.default_cert_file``/``default_key_file``, else it is
generated (self-signed, like ingress-nginx's fake certificate) and logged as such.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from gateway_core.errors import ConfigError
from gateway_core.tls.certificate_set import CertificateSet, ServedCertificate, default_certificate
from gateway_core.tls.certificates import CertificateError, KeyPair, load_key_pair, self_signed
from gateway_core.tls.contexts import ServerTlsOptions, server_context

logger = logging.getLogger("gateway_core.tls")

GENERATED = "(generated self-signed)"
"""How the generated default certificate is named on ``/routes`` and in logs."""


def load_default_certificate(cert_file: str, key_file: str, options: ServerTlsOptions) -> ServedCertificate:
    """The configured default certificate; :class:`ConfigError` naming the file and the fault."""
    try:
        cert_pem, key_pem = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls: cannot read the default certificate: {exc.filename}: {exc.strerror}") from None
    try:
        return default_certificate(cert_pem, key_pem, options, source=cert_file)
    except CertificateError as exc:
        raise ConfigError(f"tls: the default certificate {cert_file} cannot be served: {exc}") from None


def generated_default_certificate(options: ServerTlsOptions) -> ServedCertificate:
    """A fresh self-signed default certificate, logged with its fingerprint."""
    cert_pem, key_pem = self_signed()
    served = default_certificate(cert_pem, key_pem, options, source=GENERATED)
    _log_generated(served.pair)
    return served


def write_generated_default(directory: str) -> tuple[str, str]:
    """Generate the self-signed default pair into ``directory`` (files 0600); their paths.

    The supervisor of several workers makes one, so every worker presents the same.
    """
    cert_pem, key_pem = self_signed()
    paths = (os.path.join(directory, "default.crt"), os.path.join(directory, "default.key"))
    for path, data in zip(paths, (cert_pem, key_pem), strict=True):
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(data)
    _log_generated(load_key_pair(cert_pem, key_pem))
    return paths


def _log_generated(pair: KeyPair) -> None:
    logger.warning(
        "no default certificate configured (tls.default_cert_file): clients whose server name has no "
        "certificate get a generated self-signed one (%s, SHA-256 %s)",
        pair.subject,
        pair.fingerprint,
    )


class ListenerTls:
    """The server context of the HTTPS listener, choosing a certificate per connection by SNI."""

    def __init__(
        self,
        default: ServedCertificate,
        certificates: Callable[[], CertificateSet],
        options: ServerTlsOptions,
    ) -> None:
        self.default = default
        self._certificates = certificates
        self.context = server_context(default.pair, options)
        self.context.sni_callback = self._choose

    def _choose(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        """OpenSSL's servername callback: must not raise (the handshake would fail)."""
        if not server_name:
            return
        try:
            served = self._certificates().lookup(server_name.lower().rstrip("."))
            if served is not None:
                connection.context = served.context
        except Exception:
            logger.exception("choosing the certificate for %r failed; presenting the default one", server_name)
