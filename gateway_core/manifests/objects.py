"""Typed views of the Kubernetes objects the gateway reads.

Only the fields the gateway uses are modelled; everything else in a manifest is ignored,
so objects exported from a live cluster (with status, managedFields, ...) load as they are.
Validation errors name the field in the manifest's own spelling
(``spec.rules[0].http.paths[1].pathType``), which ``gateway check`` prints.

Pure: no I/O, no ``kubernetes`` import.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from gateway_core.errors import ManifestError


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ObjectMeta(_Model):
    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = None
    uid: str | None = None
    resource_version: str | None = None


class _Object(_Model):
    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""

    @property
    def ref(self) -> str:
        """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped), for messages."""
        if self.metadata.namespace:
            return f"{self.kind} {self.metadata.namespace}/{self.metadata.name}"
        return f"{self.kind} {self.metadata.name}"


# --- networking.k8s.io/v1 Ingress ----------------------------------------------------------


class ServiceBackendPort(_Model):
    name: str | None = None
    number: Annotated[int, Field(ge=1, le=65535)] | None = None


class IngressServiceBackend(_Model):
    name: str = Field(min_length=1)
    port: ServiceBackendPort


class TypedLocalObjectReference(_Model):
    api_group: str | None = None
    kind: str
    name: str


class IngressBackend(_Model):
    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


PathType = Literal["Exact", "Prefix", "ImplementationSpecific"]


class HTTPIngressPath(_Model):
    path: str | None = None
    path_type: PathType
    backend: IngressBackend


class HTTPIngressRuleValue(_Model):
    paths: list[HTTPIngressPath] = Field(min_length=1)


class IngressRule(_Model):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(_Model):
    hosts: list[str] = Field(default_factory=list)
    secret_name: str | None = None


class IngressSpec(_Model):
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    rules: list[IngressRule] = Field(default_factory=list)
    tls: list[IngressTLS] = Field(default_factory=list)


class Ingress(_Object):
    kind: Literal["Ingress"]
    spec: IngressSpec = Field(default_factory=IngressSpec)


class IngressClassSpec(_Model):
    controller: str | None = None


class IngressClass(_Object):
    kind: Literal["IngressClass"]
    spec: IngressClassSpec = Field(default_factory=IngressClassSpec)


# --- v1 Service -----------------------------------------------------------------------------


class ServicePort(_Model):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = None
    protocol: str = "TCP"


class ServiceSpec(_Model):
    type: str = "ClusterIP"
    ports: list[ServicePort] = Field(default_factory=list)
    external_name: str | None = None


class Service(_Object):
    kind: Literal["Service"]
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


# --- discovery.k8s.io/v1 EndpointSlice ----------------------------------------------------


class EndpointPort(_Model):
    name: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: str = "TCP"


class EndpointConditions(_Model):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class SliceEndpoint(_Model):
    addresses: list[str] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)


class EndpointSlice(_Object):
    kind: Literal["EndpointSlice"]
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: list[SliceEndpoint] = Field(default_factory=list)
    ports: list[EndpointPort] | None = None

    @property
    def service_name(self) -> str | None:
        """The Service this slice belongs to (the ``kubernetes.io/service-name`` label)."""
        return self.metadata.labels.get("kubernetes.io/service-name")


# --- v1 Secret ------------------------------------------------------------------------------


class Secret(_Object):
    kind: Literal["Secret"]
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)

    def decoded(self) -> dict[str, bytes]:
        """The Secret's data, base64-decoded, with ``stringData`` winning as the API server does."""
        values: dict[str, bytes] = {}
        for key, value in self.data.items():
            try:
                values[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ManifestError(f"{self.ref}: data.{key} is not valid base64") from exc
        values.update({key: value.encode() for key, value in self.string_data.items()})
        return values


KubeObject = Ingress | IngressClass | Service | EndpointSlice | Secret

_KINDS: dict[tuple[str, str], type[KubeObject]] = {
    ("networking.k8s.io/v1", "Ingress"): Ingress,
    ("networking.k8s.io/v1", "IngressClass"): IngressClass,
    ("v1", "Service"): Service,
    ("discovery.k8s.io/v1", "EndpointSlice"): EndpointSlice,
    ("v1", "Secret"): Secret,
}

CLUSTER_SCOPED_KINDS = frozenset({"IngressClass"})


def supported_kind(document: dict[str, Any]) -> type[KubeObject] | None:
    """The model for a manifest's apiVersion and kind, or None if the gateway ignores it."""
    return _KINDS.get((str(document.get("apiVersion")), str(document.get("kind"))))


def format_validation_error(error: ValidationError) -> list[str]:
    """One ``field.path: message`` line per pydantic error, in manifest spelling."""
    lines = []
    for item in error.errors(include_url=False):
        parts: list[str] = []
        for part in item["loc"]:
            if isinstance(part, int):
                parts.append(f"[{part}]")
            else:
                parts.append(("." if parts else "") + str(part))
        location = "".join(parts) or "(object)"
        lines.append(f"{location}: {item['msg']}")
    return lines


def parse_object(document: dict[str, Any], *, default_namespace: str) -> KubeObject | None:
    """Turn one manifest document into its typed view.

    Returns None for kinds the gateway does not use. Raises :class:`ManifestError` with one
    line per invalid field otherwise. Namespaced objects without a namespace get
    ``default_namespace``, as ``kubectl apply`` would give them.
    """
    model = supported_kind(document)
    if model is None:
        return None
    try:
        obj = model.model_validate(document)
    except ValidationError as exc:
        metadata = document.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        name, namespace, kind = metadata.get("name"), metadata.get("namespace"), str(document.get("kind"))
        label = f"{kind} {name or '(unnamed)'}"
        object_ref = None
        if isinstance(name, str) and name:
            scope = (
                ""
                if kind in CLUSTER_SCOPED_KINDS
                else (namespace if isinstance(namespace, str) and namespace else default_namespace)
            )
            object_ref = (kind, scope, name)
        raise ManifestError(f"{label}: " + "; ".join(format_validation_error(exc)), object_ref=object_ref) from None
    if obj.kind not in CLUSTER_SCOPED_KINDS and not obj.metadata.namespace:
        obj = obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"namespace": default_namespace})})
    return obj
