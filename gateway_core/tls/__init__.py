"""TLS: certificates from Secrets, the HTTPS listener's SNI choice, and TLS to upstreams.

- :mod:`~gateway_core.tls.certificates` reads and checks PEM certificates and keys (with
  ``cryptography``) and makes the self-signed default certificate;
- :mod:`~gateway_core.tls.contexts` turns them into ``ssl.SSLContext`` objects (server side
  per certificate, client side per upstream TLS setting);
- :mod:`~gateway_core.tls.certificate_set` builds the immutable host -> certificate map a
  route table carries, keeping a host's previous certificate when its Secret turns bad;
- :mod:`~gateway_core.tls.listener` is the HTTPS listener's context, whose SNI callback picks
  a certificate from the current table for each new connection;
- :mod:`~gateway_core.tls.edge` redirects plain HTTP to HTTPS and adds HSTS.

Nothing here imports the manifests, the routing table or a provider: callers hand in
Secret bytes and host names, so the package sits low in the layers (see ``pyproject.toml``).
"""

from gateway_core.tls.certificate_set import (
    CertificateProblem,
    CertificateRequest,
    CertificateSet,
    ServedCertificate,
    build_certificate_set,
)
from gateway_core.tls.certificates import CertificateError, KeyPair, load_ca_bundle, load_key_pair, self_signed
from gateway_core.tls.contexts import ServerTlsOptions, client_context, server_context

__all__ = [
    "CertificateError",
    "CertificateProblem",
    "CertificateRequest",
    "CertificateSet",
    "KeyPair",
    "ServedCertificate",
    "ServerTlsOptions",
    "build_certificate_set",
    "client_context",
    "load_ca_bundle",
    "load_key_pair",
    "self_signed",
    "server_context",
]
