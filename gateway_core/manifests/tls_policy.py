"""The TLS annotations of an Ingress: HTTPS redirect, and HTTPS to its backends.

- ``meta-native.io/ssl-redirect: "true" | "false"`` — redirect plain-HTTP requests for the
  Ingress's TLS hosts to HTTPS (default: the ``tls.ssl_redirect`` setting, on);
- ``meta-native.io/backend-protocol: HTTP | HTTPS`` — how the gateway speaks to the
  Ingress's Services (its own, canaries and mirrors);
- ``meta-native.io/backend-tls`` — a YAML/JSON mapping (:class:`BackendTlsConfig`): the CA
  Secret that signs the upstreams' certificates, or ``verify: false``, and the server name.

A value that does not parse rejects the Ingress (its last good version keeps serving), as
for every ``meta-native.io/`` annotation; so does a CA Secret that is missing or not PEM,
since serving the route without the check its author asked for is not an option.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway_core.errors import ManifestError
from gateway_core.manifests.annotations import DOMAIN, load_annotation_yaml
from gateway_core.manifests.objects import Secret
from gateway_core.messages import Endpoint, UpstreamTLS
from gateway_core.tls.certificates import CertificateError, load_ca_bundle

SSL_REDIRECT = DOMAIN + "ssl-redirect"
BACKEND_PROTOCOL = DOMAIN + "backend-protocol"
BACKEND_TLS = DOMAIN + "backend-tls"
TLS_ANNOTATIONS = frozenset({SSL_REDIRECT, BACKEND_PROTOCOL, BACKEND_TLS})
"""The annotation keys read here (known keys for the unknown-annotation check)."""

CA_KEY = "ca.crt"
"""The key of a CA Secret holding PEM certificates (as cert-manager and kubectl write it)."""

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class BackendTlsConfig(BaseModel):
    """How the gateway checks the certificates of an Ingress's HTTPS backends."""

    model_config = ConfigDict(extra="forbid")

    ca_secret: str | None = Field(
        None,
        max_length=253,
        pattern=_DNS_SUBDOMAIN,
        description="Secret in the Ingress's namespace whose `ca.crt` holds the PEM CA certificates the "
        "upstreams' certificates must chain to. Without it (and with `verify` on) the system's trust store.",
    )
    verify: bool = Field(
        True,
        description="Check the upstream's certificate and name. `false` encrypts without checking (what "
        "ingress-nginx does by default); it cannot go with `ca_secret`.",
    )
    server_name: str | None = Field(
        None,
        max_length=253,
        pattern=_DNS_SUBDOMAIN,
        description="Name sent as SNI and required in the upstream's certificate. Default: the endpoint's host "
        "when it is a DNS name (ExternalName Services), else `<service>.<namespace>.svc`.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BackendTlsConfig:
        if self.ca_secret is not None and not self.verify:
            raise ValueError("`ca_secret` and `verify: false` contradict each other: give one of them")
        return self


@dataclass(frozen=True, slots=True)
class IngressTls:
    """What an Ingress's TLS annotations say, resolved."""

    ssl_redirect: bool | None = None
    """``meta-native.io/ssl-redirect``; None: the gateway's default (``tls.ssl_redirect``)."""
    backend: BackendTlsConfig | None = None
    """Set when the backends speak HTTPS (``backend-protocol: HTTPS``)."""
    ca_pem: bytes | None = None
    """The CA certificates of ``backend.ca_secret``, read from the Secret."""

    def upstream_endpoints(self, endpoints: tuple[Endpoint, ...], service: str, namespace: str) -> tuple[Endpoint, ...]:
        """``endpoints`` as reached over HTTPS (unchanged when the backends speak HTTP)."""
        backend = self.backend
        if backend is None:
            return endpoints
        by_name: dict[str, UpstreamTLS] = {}

        def tls_for(host: str) -> UpstreamTLS:
            name = backend.server_name or (f"{service}.{namespace}.svc" if _is_ip(host) else host)
            found = by_name.get(name)
            if found is None:
                found = by_name[name] = UpstreamTLS(server_name=name, verify=backend.verify, ca_pem=self.ca_pem)
            return found

        return tuple(Endpoint(endpoint.host, endpoint.port, tls_for(endpoint.host)) for endpoint in endpoints)


DEFAULT_TLS = IngressTls()


def parse_tls_annotations(
    annotations: Mapping[str, str], namespace: str, secret: Callable[[str, str], Secret | None]
) -> tuple[IngressTls, list[str]]:
    """The Ingress's TLS annotations, and the problems that reject it."""
    problems: list[str] = []
    ssl_redirect: bool | None = None
    raw = annotations.get(SSL_REDIRECT)
    if raw is not None:
        value = raw.strip().lower()
        if value in ("true", "false"):
            ssl_redirect = value == "true"
        else:
            problems.append(f'annotation {SSL_REDIRECT}: must be "true" or "false", got {raw!r}')
    https = False
    raw = annotations.get(BACKEND_PROTOCOL)
    if raw is not None:
        value = raw.strip().upper()
        if value in ("HTTP", "HTTPS"):
            https = value == "HTTPS"
        else:
            problems.append(f"annotation {BACKEND_PROTOCOL}: {raw!r} is not supported (use HTTP or HTTPS)")
    config = BackendTlsConfig()
    raw = annotations.get(BACKEND_TLS)
    if raw is not None:
        try:
            config = _backend_tls(raw)
        except ValueError as exc:
            problems.append(f"annotation {BACKEND_TLS}: {exc}")
        else:
            if not https:
                problems.append(f"annotation {BACKEND_TLS}: applies only with {BACKEND_PROTOCOL}: HTTPS")
    ca_pem: bytes | None = None
    if https and config.ca_secret is not None:
        try:
            ca_pem = _ca_certificates(secret(namespace, config.ca_secret), namespace, config.ca_secret)
        except (CertificateError, ManifestError) as exc:
            problems.append(f"annotation {BACKEND_TLS}: ca_secret: {exc}")
    return IngressTls(ssl_redirect=ssl_redirect, backend=config if https else None, ca_pem=ca_pem), problems


def _backend_tls(text: str) -> BackendTlsConfig:
    try:
        value = load_annotation_yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {' '.join(str(exc).split())}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, got {type(value).__name__}")
    try:
        return BackendTlsConfig.model_validate(value)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(mapping)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(details) from None


def _ca_certificates(found: Secret | None, namespace: str, name: str) -> bytes:
    if found is None:
        raise CertificateError(f"Secret {namespace}/{name} not found")
    pem = found.decoded().get(CA_KEY)
    if pem is None:
        raise CertificateError(f"Secret {namespace}/{name} has no {CA_KEY}")
    try:
        load_ca_bundle(pem)
    except CertificateError as exc:
        raise CertificateError(f"Secret {namespace}/{name}: {exc}") from None
    return pem


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
