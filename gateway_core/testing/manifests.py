"""Builders for the Kubernetes objects tests need: Services, EndpointSlices, Ingresses, Secrets.

They return plain dicts in manifest form, ready to dump into a manifests directory or to
post to an API server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


def service(
    name: str,
    *,
    port: int = 80,
    port_name: str | None = "http",
    namespace: str | None = None,
    external_name: str | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service with one port (or an ExternalName Service)."""
    spec: dict[str, Any] = {"ports": [{"port": port, **({"name": port_name} if port_name else {})}]}
    if external_name is not None:
        spec.update(type="ExternalName", externalName=external_name)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace), "spec": spec}


def endpoint_slice(
    service_name: str,
    addresses: Iterable[str | tuple[str, bool]],
    *,
    port: int,
    port_name: str | None = "http",
    namespace: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """An EndpointSlice for ``service_name``; an address given as ``(ip, False)`` is not ready."""
    endpoints = []
    for item in addresses:
        address, ready = item if isinstance(item, tuple) else (item, True)
        endpoints.append({"addresses": [address], "conditions": {"ready": ready}})
    meta = _meta(name or f"{service_name}-slice", namespace)
    meta["labels"] = {"kubernetes.io/service-name": service_name}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "ports": [{"port": port, **({"name": port_name} if port_name else {})}],
        "endpoints": endpoints,
    }


def backend(service_name: str, port: int | str = "http") -> dict[str, Any]:
    """An Ingress backend naming a Service port by number or name."""
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service_name, "port": port_ref}}


def path(path: str, service_name: str, *, path_type: str = "Prefix", port: int | str = "http") -> dict[str, Any]:
    """One entry of ``spec.rules[].http.paths``."""
    return {"path": path, "pathType": path_type, "backend": backend(service_name, port)}


def ingress(
    name: str,
    *,
    rules: Sequence[tuple[str | None, Sequence[dict[str, Any]]]] = (),
    default_backend: str | None = None,
    annotations: Mapping[str, str] | None = None,
    ingress_class: str | None = None,
    namespace: str | None = None,
    created: str | None = None,
    tls: Sequence[tuple[Sequence[str], str | None]] = (),
) -> dict[str, Any]:
    """An Ingress from ``(host or None, [path(...), ...])`` rules; ``tls`` as ``(hosts, secretName)``."""
    spec: dict[str, Any] = {}
    if rules:
        spec["rules"] = [{**({"host": host} if host else {}), "http": {"paths": list(paths)}} for host, paths in rules]
    if tls:
        spec["tls"] = [
            {"hosts": list(hosts), **({"secretName": secret_name} if secret_name else {})} for hosts, secret_name in tls
        ]
    if default_backend is not None:
        spec["defaultBackend"] = backend(default_backend)
    if ingress_class is not None:
        spec["ingressClassName"] = ingress_class
    meta = _meta(name, namespace)
    if annotations:
        meta["annotations"] = dict(annotations)
    if created is not None:
        meta["creationTimestamp"] = created
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def secret(
    name: str,
    data: Mapping[str, str | bytes],
    *,
    namespace: str | None = None,
    secret_type: str = "Opaque",  # noqa: S107
) -> dict[str, Any]:
    """A Secret; ``data`` values are base64-encoded here, as Kubernetes stores them."""
    encoded = {
        key: base64.b64encode(value.encode() if isinstance(value, str) else value).decode()
        for key, value in data.items()
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace),
        "type": secret_type,
        "data": encoded,
    }


def tls_secret(name: str, cert_pem: bytes, key_pem: bytes, *, namespace: str | None = None) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret holding a PEM certificate (chain) and its key."""
    data = {"tls.crt": cert_pem, "tls.key": key_pem}
    return secret(name, data, namespace=namespace, secret_type="kubernetes.io/tls")  # noqa: S106 - a type


def plugin_annotations(plugins: Mapping[str, Mapping[str, Any] | None]) -> dict[str, str]:
    """Ingress annotations binding ``plugins`` in order, each with its config (None: defaults).

    ``plugin_annotations({"key-auth": {"secret": "keys"}, "access-log": None})``
    """
    annotations = {"meta-native.io/plugins": ", ".join(plugins)}
    for name, config in plugins.items():
        if config is not None:
            annotations[f"meta-native.io/plugin.{name}"] = json.dumps(config)
    return annotations


def routed_service(
    name: str, upstream_port: int, *, address: str = "127.0.0.1", namespace: str | None = None
) -> list[dict[str, Any]]:
    """A Service plus an EndpointSlice sending it to ``address:upstream_port``."""
    return [
        service(name, namespace=namespace),
        endpoint_slice(name, [address], port=upstream_port, namespace=namespace),
    ]


def pooled_service(
    name: str, upstream_ports: Iterable[int], *, address: str = "127.0.0.1", namespace: str | None = None
) -> list[dict[str, Any]]:
    """A Service whose endpoints are ``address`` on each of ``upstream_ports`` (one EndpointSlice per port).

    Several local upstream servers behind one Service, as several pods would be.
    """
    return [
        service(name, namespace=namespace),
        *(
            endpoint_slice(name, [address], port=port, namespace=namespace, name=f"{name}-slice-{index}")
            for index, port in enumerate(upstream_ports)
        ),
    ]


def write_manifests(directory: Path, objects: Iterable[dict[str, Any]], *, filename: str = "manifests.yaml") -> Path:
    """Write ``objects`` as one multi-document YAML file in ``directory``; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    tmp = directory / f".{filename}.tmp"
    tmp.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    tmp.replace(target)  # atomic, so a watcher never reads half a file
    return target


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    return {"name": name, **({"namespace": namespace} if namespace else {})}
