"""Kubernetes manifests as the gateway understands them: typed objects, annotations, routes.

Pure: nothing in this package does I/O or imports the ``kubernetes`` client; providers
hand it text and objects.
"""

from gateway_core.manifests.documents import parse_documents
from gateway_core.manifests.objects import (
    EndpointSlice,
    Ingress,
    IngressClass,
    KubeObject,
    Secret,
    Service,
    parse_object,
)
from gateway_core.manifests.snapshot import Problem, Snapshot, build_snapshot, merge_objects, parse_objects
from gateway_core.manifests.translate import (
    BackendTarget,
    ClassPolicy,
    IngressTranslation,
    ObjectIndex,
    RouteKind,
    RouteSpec,
    is_served,
    translate_ingress,
)

__all__ = [
    "BackendTarget",
    "ClassPolicy",
    "EndpointSlice",
    "Ingress",
    "IngressClass",
    "IngressTranslation",
    "KubeObject",
    "ObjectIndex",
    "Problem",
    "RouteKind",
    "RouteSpec",
    "Secret",
    "Service",
    "Snapshot",
    "build_snapshot",
    "is_served",
    "merge_objects",
    "parse_documents",
    "parse_object",
    "parse_objects",
    "translate_ingress",
]
