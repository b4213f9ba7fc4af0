"""A route table's certificates: the ``spec.tls`` entries of the Ingresses it serves.

The Ingresses are those whose routes the table serves (a rejected Ingress's last good
version included), oldest first by the same order as route conflicts, so the Ingress that
wins a host's routes also wins its certificate. The Secrets are the snapshot's, looked up in
each Ingress's own namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway_core.errors import ManifestError
from gateway_core.manifests.objects import Ingress
from gateway_core.manifests.translate import ObjectIndex
from gateway_core.routing.table import Route
from gateway_core.tls.certificate_set import CertificateRequest, CertificateSet, build_certificate_set
from gateway_core.tls.certificates import CertificateError
from gateway_core.tls.contexts import ServerTlsOptions


def table_certificates(
    served: Mapping[str, Ingress],
    routes: Iterable[Route],
    index: ObjectIndex,
    *,
    previous: CertificateSet | None,
    options: ServerTlsOptions,
) -> CertificateSet:
    """The certificate set of the Ingresses in ``served`` (``namespace/name`` -> Ingress)."""
    ages = {route.info.ingress_ref: route.spec.age for route in routes}
    ordered = sorted(served.items(), key=lambda item: (ages.get(item[0], (2, "", "", "")), item[0]))
    requests = [
        CertificateRequest(
            ingress=ref,
            namespace=ingress.namespace,
            secret_name=entry.secret_name or None,
            hosts=tuple(entry.hosts),
        )
        for ref, ingress in ordered
        for entry in ingress.spec.tls
    ]

    def secret_data(namespace: str, name: str) -> Mapping[str, bytes] | None:
        secret = index.secret(namespace, name)
        if secret is None:
            return None
        try:
            return secret.decoded()
        except ManifestError as exc:
            raise CertificateError(str(exc)) from None

    return build_certificate_set(requests, secret_data, previous=previous, options=options)
