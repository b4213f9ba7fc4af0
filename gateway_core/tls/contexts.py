"""``ssl.SSLContext`` objects: one per served certificate, one per upstream TLS setting.

The standard library loads a certificate and key only from files, so a pair is written to
one file in a fresh directory only this process can enter (mode 0700, the file 0600; in
``/dev/shm`` when there is one, so the key never reaches a disk), loaded, and removed at
once. Every server context has the same settings: TLS 1.2 or newer, the configured TLS 1.2
ciphers (forward-secret AEAD only by default), ALPN ``http/1.1``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from gateway_core.messages import UpstreamTLS
from gateway_core.tls.certificates import CertificateError, KeyPair

ALPN_PROTOCOLS = ["http/1.1"]
"""The only application protocol offered: the gateway speaks HTTP/1.1 to clients."""

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class ServerTlsOptions:
    """What every server context of the HTTPS listener is built with (from the ``tls`` settings)."""

    min_version: str = "TLSv1.2"
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(pair: KeyPair, options: ServerTlsOptions) -> ssl.SSLContext:
    """A server context presenting ``pair``; :class:`CertificateError` if OpenSSL refuses it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[options.min_version]
    context.set_ciphers(options.ciphers)
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    context.options |= ssl.OP_NO_RENEGOTIATION
    with tempfile.TemporaryDirectory(prefix="gateway-tls-", dir=_private_tmp()) as directory:
        path = os.path.join(directory, "pair.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pair.cert_pem.rstrip(b"\n") + b"\n" + pair.key_pem)
        try:
            context.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise CertificateError(f"OpenSSL refused the certificate and key: {exc.reason or exc}") from None
    return context


def client_context(tls: UpstreamTLS) -> ssl.SSLContext:
    """A client context for upstreams reached with ``tls``: its CA (or the system's), or no checks."""
    if tls.verify:
        cadata = tls.ca_pem.decode("ascii") if tls.ca_pem is not None else None
        context = ssl.create_default_context(cadata=cadata)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


def _private_tmp() -> str | None:
    """``/dev/shm`` (memory) when usable, else the system's temporary directory."""
    shm = "/dev/shm"  # noqa: S108 - only the parent of a fresh 0700 directory (mkdtemp)
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
