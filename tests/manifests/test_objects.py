"""parse_object: typed views of the Kubernetes objects the gateway reads."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from gateway_core.errors import ManifestError
from gateway_core.manifests.objects import (
    EndpointSlice,
    Ingress,
    IngressClass,
    Secret,
    Service,
    parse_object,
)
from gateway_core.testing import endpoint_slice, ingress, path, service


def _ingress_doc(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", **metadata},
        "spec": spec,
    }


def _paths(*paths: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [{"host": "example.com", "http": {"paths": list(paths)}}]}


def _error(document: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_object(document, default_namespace="default")
    return str(caught.value)


# --- supported kinds ------------------------------------------------------------------------


def test_ingress_is_parsed_with_manifest_field_names() -> None:
    document = ingress(
        "web",
        namespace="shop",
        rules=[("example.com", [path("/api", "api", path_type="Exact", port=8080)])],
        default_backend="fallback",
        ingress_class="meta-native",
        annotations={"meta-native.io/plugins": "key-auth"},
        created="2024-05-01T12:00:00Z",
    )
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Ingress)
    assert obj.name == "web"
    assert obj.namespace == "shop"
    assert obj.ref == "Ingress shop/web"
    assert obj.spec.ingress_class_name == "meta-native"
    assert obj.metadata.annotations == {"meta-native.io/plugins": "key-auth"}
    assert obj.metadata.creation_timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    rule = obj.spec.rules[0]
    assert rule.host == "example.com"
    assert rule.http is not None
    http_path = rule.http.paths[0]
    assert (http_path.path, http_path.path_type) == ("/api", "Exact")
    assert http_path.backend.service is not None
    assert http_path.backend.service.name == "api"
    assert http_path.backend.service.port.number == 8080
    assert http_path.backend.service.port.name is None
    assert obj.spec.default_backend is not None
    assert obj.spec.default_backend.service is not None
    assert obj.spec.default_backend.service.port.name == "http"


def test_ingress_without_spec_gets_an_empty_spec() -> None:
    obj = parse_object(
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "x"}},
        default_namespace="default",
    )
    assert isinstance(obj, Ingress)
    assert obj.spec.rules == []
    assert obj.spec.default_backend is None
    assert obj.spec.ingress_class_name is None


def test_ingress_tls_and_resource_backend_are_read() -> None:
    obj = parse_object(
        _ingress_doc(
            {
                "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                "defaultBackend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}},
            }
        ),
        default_namespace="default",
    )
    assert isinstance(obj, Ingress)
    assert obj.spec.tls[0].hosts == ["a.example.com"]
    assert obj.spec.tls[0].secret_name == "a-tls"
    assert obj.spec.default_backend is not None
    assert obj.spec.default_backend.resource is not None
    assert obj.spec.default_backend.resource.kind == "Bucket"
    assert obj.spec.default_backend.resource.api_group == "k8s.example.com"


def test_service_is_parsed() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"port": 9000, "targetPort": 9001}]},
    }
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Service)
    assert obj.spec.type == "ClusterIP"
    assert [(p.name, p.port, p.target_port, p.protocol) for p in obj.spec.ports] == [
        ("http", 80, "web", "TCP"),
        (None, 9000, 9001, "TCP"),
    ]


def test_external_name_service_is_parsed() -> None:
    obj = parse_object(service("ext", external_name="api.example.com"), default_namespace="default")
    assert isinstance(obj, Service)
    assert obj.spec.type == "ExternalName"
    assert obj.spec.external_name == "api.example.com"


def test_endpoint_slice_is_parsed() -> None:
    document = endpoint_slice("api", ["10.0.0.1", ("10.0.0.2", False)], port=8080, namespace="shop")
    document["endpoints"].append({"addresses": ["10.0.0.3"]})
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, EndpointSlice)
    assert obj.service_name == "api"
    assert obj.address_type == "IPv4"
    assert obj.ports is not None
    assert [(p.name, p.port) for p in obj.ports] == [("http", 8080)]
    assert [e.conditions.ready for e in obj.endpoints] == [True, False, None]
    assert obj.endpoints[0].addresses == ["10.0.0.1"]


def test_endpoint_slice_without_service_label_has_no_service_name() -> None:
    document = endpoint_slice("api", ["10.0.0.1"], port=80)
    del document["metadata"]["labels"]
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, EndpointSlice)
    assert obj.service_name is None


def test_ingress_class_is_parsed() -> None:
    document = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "meta-native", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "meta-native.io/gateway"},
    }
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, IngressClass)
    assert obj.spec.controller == "meta-native.io/gateway"


def test_secret_is_parsed() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "keys"},
        "type": "Opaque",
        "data": {"a": "YQ=="},
    }
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Secret)
    assert obj.data == {"a": "YQ=="}
    assert obj.type == "Opaque"


def test_fields_the_gateway_does_not_use_are_ignored() -> None:
    document = service("api")
    document["status"] = {"loadBalancer": {}}
    document["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    document["spec"]["selector"] = {"app": "api"}
    document["spec"]["clusterIP"] = "10.96.0.10"
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Service)
    assert not hasattr(obj, "status")


def test_objects_are_immutable() -> None:
    obj = parse_object(service("api"), default_namespace="default")
    assert obj is not None
    with pytest.raises(ValidationError):
        obj.metadata.name = "other"  # type: ignore[misc]


# --- ignored kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
        {"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress", "metadata": {"name": "old"}},
        {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "older"}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}},
        {"kind": "Service", "metadata": {"name": "no-api-version"}},
        {"apiVersion": "v1", "metadata": {"name": "no-kind"}},
        {},
    ],
)
def test_unsupported_kinds_are_ignored(document: dict[str, Any]) -> None:
    assert parse_object(document, default_namespace="default") is None


def test_ignored_kind_is_not_validated() -> None:
    # A ConfigMap is not the gateway's business, even a broken one.
    assert parse_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": 42}, default_namespace="x") is None


# --- namespaces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        service("api"),
        endpoint_slice("api", ["10.0.0.1"], port=80),
        ingress("web", default_backend="api"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
    ],
)
def test_default_namespace_is_filled_in(document: dict[str, Any]) -> None:
    obj = parse_object(document, default_namespace="team-a")
    assert obj is not None
    assert obj.metadata.namespace == "team-a"
    assert obj.namespace == "team-a"
    assert obj.ref == f"{obj.kind} team-a/{obj.name}"


def test_empty_namespace_counts_as_absent() -> None:
    document = service("api")
    document["metadata"]["namespace"] = ""
    obj = parse_object(document, default_namespace="team-a")
    assert obj is not None
    assert obj.namespace == "team-a"


def test_explicit_namespace_is_kept() -> None:
    obj = parse_object(service("api", namespace="shop"), default_namespace="team-a")
    assert obj is not None
    assert obj.namespace == "shop"


def test_parse_object_does_not_modify_the_document() -> None:
    document = service("api")
    before = repr(document)
    parse_object(document, default_namespace="team-a")
    assert repr(document) == before


def test_ingress_class_is_cluster_scoped() -> None:
    document = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "mn"},
        "spec": {"controller": "meta-native.io/gateway"},
    }
    obj = parse_object(document, default_namespace="team-a")
    assert isinstance(obj, IngressClass)
    assert obj.metadata.namespace is None
    assert obj.namespace == ""
    assert obj.ref == "IngressClass mn"


# --- validation errors ----------------------------------------------------------------------


def test_invalid_path_type_is_named_in_manifest_spelling() -> None:
    message = _error(_ingress_doc(_paths({"path": "/", "pathType": "Regex", "backend": {}})))
    assert message.startswith("Ingress web: ")
    assert (
        "spec.rules[0].http.paths[0].pathType: Input should be 'Exact', 'Prefix' or 'ImplementationSpecific'"
    ) in message


def test_missing_path_type_is_named() -> None:
    message = _error(_ingress_doc(_paths(path("/", "api"), {"path": "/b", "backend": {}})))
    assert message == "Ingress web: spec.rules[0].http.paths[1].pathType: Field required"


def test_every_invalid_field_is_reported_in_one_message() -> None:
    spec = {
        "rules": [
            {"http": {"paths": []}},
            {
                "host": "a",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Exact",
                            "backend": {"service": {"name": "", "port": {"number": 70000}}},
                        }
                    ]
                },
            },
        ]
    }
    message = _error(_ingress_doc(spec))
    parts = message.removeprefix("Ingress web: ").split("; ")
    assert [part.split(":")[0] for part in parts] == [
        "spec.rules[0].http.paths",
        "spec.rules[1].http.paths[0].backend.service.name",
        "spec.rules[1].http.paths[0].backend.service.port.number",
    ]


def test_default_backend_port_number_range() -> None:
    message = _error(_ingress_doc({"defaultBackend": {"service": {"name": "api", "port": {"number": 0}}}}))
    assert message == (
        "Ingress web: spec.defaultBackend.service.port.number: Input should be greater than or equal to 1"
    )


def test_ingress_class_name_must_be_a_string() -> None:
    message = _error(_ingress_doc({"ingressClassName": ["a"]}))
    assert message.startswith("Ingress web: spec.ingressClassName: ")


def test_missing_name_is_reported_as_unnamed() -> None:
    message = _error({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "x"}})
    assert message == "Service (unnamed): metadata.name: Field required"


def test_empty_name_is_invalid() -> None:
    message = _error({"apiVersion": "v1", "kind": "Service", "metadata": {"name": ""}})
    assert message.startswith("Service (unnamed): metadata.name: ")


@pytest.mark.parametrize("metadata", [None, "web", ["web"]])
def test_metadata_must_be_an_object(metadata: Any) -> None:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Service"}
    if metadata is not None:
        document["metadata"] = metadata
    message = _error(document)
    assert message.startswith("Service (unnamed): metadata: ")


def test_service_port_range_is_checked() -> None:
    document = service("api")
    document["spec"]["ports"][0]["port"] = 65536
    assert _error(document) == "Service api: spec.ports[0].port: Input should be less than or equal to 65535"


def test_endpoint_slice_errors_use_manifest_spelling() -> None:
    document = endpoint_slice("api", ["10.0.0.1"], port=80)
    document["addressType"] = "IPv5"
    document["endpoints"] = [{"addresses": []}]
    document["ports"][0]["port"] = 0
    message = _error(document)
    assert message.startswith("EndpointSlice api-slice: addressType: ")
    assert "; endpoints[0].addresses: List should have at least 1 item" in message
    assert "; ports[0].port: Input should be greater than or equal to 1" in message


def test_annotation_values_must_be_strings() -> None:
    document = service("api")
    document["metadata"]["annotations"] = {"prometheus.io/port": 8080}
    assert _error(document) == "Service api: metadata.annotations.prometheus.io/port: Input should be a valid string"


def test_invalid_creation_timestamp_is_reported() -> None:
    message = _error(_ingress_doc({}, creationTimestamp="yesterday"))
    assert message.startswith("Ingress web: metadata.creationTimestamp: ")


def test_validation_error_does_not_chain_pydantic() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {}}, default_namespace="d")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- Secret.decoded -------------------------------------------------------------------------


def _secret(data: dict[str, str] | None = None, string_data: dict[str, str] | None = None) -> Secret:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "ns"}}
    if data is not None:
        document["data"] = data
    if string_data is not None:
        document["stringData"] = string_data
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Secret)
    return obj


def test_secret_data_is_base64_decoded() -> None:
    raw = bytes(range(256))
    secret = _secret({"text": base64.b64encode(b"hunter2").decode(), "binary": base64.b64encode(raw).decode()})
    assert secret.decoded() == {"text": b"hunter2", "binary": raw}


def test_secret_string_data_is_utf8_encoded() -> None:
    assert _secret(string_data={"greeting": "grüß"}).decoded() == {"greeting": "grüß".encode()}


def test_secret_string_data_wins_over_data() -> None:
    secret = _secret({"key": base64.b64encode(b"old").decode(), "other": "b3RoZXI="}, {"key": "new"})
    assert secret.decoded() == {"key": b"new", "other": b"other"}


def test_empty_secret_decodes_to_nothing() -> None:
    assert _secret().decoded() == {}


@pytest.mark.parametrize("value", ["not base64!", "YQ", "YQ==\n", "Y Q=="])
def test_secret_with_invalid_base64_names_the_key(value: str) -> None:
    secret = _secret({"good": "YQ==", "token": value})
    with pytest.raises(ManifestError, match=r"^Secret ns/keys: data\.token is not valid base64$"):
        secret.decoded()
