"""translate_ingress, ObjectIndex, is_served and resolve_endpoints: Ingress -> route specs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from gateway_core.manifests.objects import Ingress, KubeObject, parse_object
from gateway_core.manifests.translate import (
    BackendTarget,
    ClassPolicy,
    IngressTranslation,
    ObjectIndex,
    RouteKind,
    RouteSpec,
    is_served,
    resolve_endpoints,
    translate_ingress,
)
from gateway_core.messages import Endpoint
from gateway_core.testing import endpoint_slice, ingress, path, routed_service, service


def _objects(documents: Iterable[dict[str, Any]], namespace: str = "default") -> list[KubeObject]:
    objects = []
    for document in documents:
        obj = parse_object(document, default_namespace=namespace)
        assert obj is not None, document
        objects.append(obj)
    return objects


def _index(*documents: dict[str, Any]) -> ObjectIndex:
    return ObjectIndex(_objects(documents))


def _ingress(document: dict[str, Any]) -> Ingress:
    obj = parse_object(document, default_namespace="default")
    assert isinstance(obj, Ingress)
    return obj


def _translate(
    document: dict[str, Any], *others: dict[str, Any], known: frozenset[str] = frozenset()
) -> IngressTranslation:
    return translate_ingress(_ingress(document), _index(*others), known_annotations=known)


def _ingress_with_paths(*paths: dict[str, Any], host: str | None = "example.com") -> dict[str, Any]:
    document = ingress("web", rules=[(host, list(paths))])
    return document


def _only_route(translation: IngressTranslation) -> RouteSpec:
    assert translation.problems == ()
    assert len(translation.routes) == 1
    return translation.routes[0]


API = routed_service("api", 8080, address="10.0.0.1")


# --- hosts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "a.b.example.com"),
        ("localhost", "localhost"),
        ("Example.COM", "example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Example.com", "*.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-1.example.com", "a-1.example.com"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_valid_hosts(declared: str, expected: str) -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api"), host=declared), *API))
    assert route.host == expected
    assert route.info.host == expected


@pytest.mark.parametrize(
    "host",
    [
        "*",
        "*.",
        "*example.com",
        "foo.*.com",
        "*.*.example.com",
        "example.*",
        "foo_bar.example.com",
        "-foo.example.com",
        "foo-.example.com",
        "example.com.",
        ".example.com",
        "example..com",
        "example.com:8080",
        "http://example.com",
        "example.com/path",
        "exa mple.com",
        "a" * 64 + ".com",
        "bücher.example",
    ],
)
def test_invalid_hosts_reject(host: str) -> None:
    translation = _translate(_ingress_with_paths(path("/", "api"), host=host), *API)
    assert translation.problems == (
        f"spec.rules[0].host: {host!r} is not a valid host (a DNS name, optionally '*.' + a DNS name)",
    )
    assert translation.routes == ()


def test_invalid_host_problem_names_the_rule_and_keeps_other_rules() -> None:
    document = ingress("web", rules=[("good.example.com", [path("/", "api")]), ("bad_host", [path("/", "api")])])
    translation = _translate(document, *API)
    assert len(translation.problems) == 1
    assert translation.problems[0].startswith("spec.rules[1].host: 'bad_host' ")
    assert [route.host for route in translation.routes] == ["good.example.com"]


def test_rule_without_host_matches_any_host() -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api"), host=None), *API))
    assert route.host == ""
    assert route.info.host == "*"
    assert route.info.id == "default/web:*:Prefix:/"


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path_type", "match"), [("Exact", "Exact"), ("Prefix", "Prefix"), ("ImplementationSpecific", "Prefix")]
)
def test_path_types(path_type: str, match: str) -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/api", "api", path_type=path_type)), *API))
    assert route.match == match
    assert route.path == "/api"
    assert route.info.path_type == path_type
    assert route.kind is RouteKind.RULE


@pytest.mark.parametrize("declared", ["", None])
def test_implementation_specific_without_path_is_root_prefix(declared: str | None) -> None:
    entry = path("/", "api", path_type="ImplementationSpecific")
    if declared is None:
        del entry["path"]
    else:
        entry["path"] = declared
    route = _only_route(_translate(_ingress_with_paths(entry), *API))
    assert (route.path, route.match) == ("/", "Prefix")
    assert route.info.path_type == "ImplementationSpecific"


@pytest.mark.parametrize("path_type", ["Exact", "Prefix"])
@pytest.mark.parametrize("declared", ["", "api", "api/v1", "*", "./api"])
def test_relative_or_empty_paths_reject(path_type: str, declared: str) -> None:
    translation = _translate(_ingress_with_paths(path("/ok", "api"), path(declared, "api", path_type=path_type)), *API)
    assert translation.problems == (
        f"spec.rules[0].http.paths[1].path: {declared!r} must be an absolute path starting with '/'",
    )
    assert [route.path for route in translation.routes] == ["/ok"]


@pytest.mark.parametrize("path_type", ["Exact", "Prefix"])
def test_missing_path_rejects_for_exact_and_prefix(path_type: str) -> None:
    entry = path("/", "api", path_type=path_type)
    del entry["path"]
    translation = _translate(_ingress_with_paths(entry), *API)
    assert translation.problems == (
        "spec.rules[0].http.paths[0].path: None must be an absolute path starting with '/'",
    )


def test_implementation_specific_relative_path_rejects() -> None:
    translation = _translate(_ingress_with_paths(path("api", "api", path_type="ImplementationSpecific")), *API)
    assert translation.problems[0].startswith("spec.rules[0].http.paths[0].path: 'api' must be an absolute path")


def test_paths_keep_declaration_order_and_case() -> None:
    translation = _translate(
        _ingress_with_paths(path("/B", "api"), path("/a/", "api", path_type="Exact"), path("/", "api")), *API
    )
    assert [(r.path, r.match) for r in translation.routes] == [("/B", "Prefix"), ("/a/", "Exact"), ("/", "Prefix")]


# --- service ports and endpoints ------------------------------------------------------------


def test_service_port_by_number() -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port=80)), *API))
    assert route.backend == BackendTarget("default", "api", "80", (Endpoint("10.0.0.1", 8080),), None)
    assert route.info.service == "api"
    assert route.backend.label == "default/api:80"


def test_service_port_by_name() -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port="http")), *API))
    assert route.backend == BackendTarget("default", "api", "http", (Endpoint("10.0.0.1", 8080),), None)
    assert route.backend.label == "default/api:http"


def _two_port_service() -> list[dict[str, Any]]:
    svc = service("multi")
    svc["spec"]["ports"] = [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "admin", "port": 81, "targetPort": 9090},
    ]
    web = endpoint_slice("multi", ["10.0.0.1", "10.0.0.2"], port=8080, port_name="http")
    web["ports"].append({"name": "admin", "port": 9090})
    return [svc, web]


@pytest.mark.parametrize(("port", "expected"), [(80, 8080), ("http", 8080), (81, 9090), ("admin", 9090)])
def test_slice_port_is_the_one_named_like_the_service_port(port: int | str, expected: int) -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "multi", port=port)), *_two_port_service()))
    assert route.backend.endpoints == (Endpoint("10.0.0.1", expected), Endpoint("10.0.0.2", expected))
    assert route.backend.problem is None


def test_slice_port_number_is_not_matched_against_the_service_port() -> None:
    # targetPort semantics: the slice port carries the pod port; a slice whose only port
    # has the Service port's *number* but another name is not this Service port.
    svc = service("api", port=80, port_name="http")
    slice_doc = endpoint_slice("api", ["10.0.0.1"], port=80, port_name="metrics")
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port=80)), svc, slice_doc))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/api has no ready endpoints for port http"


def test_unnamed_ports_match_each_other() -> None:
    svc = service("api", port=80, port_name=None)
    slice_doc = endpoint_slice("api", ["10.0.0.1"], port=3000, port_name=None)
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port=80)), svc, slice_doc))
    assert route.backend.endpoints == (Endpoint("10.0.0.1", 3000),)
    assert route.backend.port == "80"


def test_unnamed_service_port_does_not_take_a_named_slice_port() -> None:
    svc = service("api", port=80, port_name=None)
    slice_doc = endpoint_slice("api", ["10.0.0.1"], port=3000, port_name="http")
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port=80)), svc, slice_doc))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/api has no ready endpoints for port 80"


def test_slice_port_without_number_is_skipped() -> None:
    svc = service("api")
    slice_doc = endpoint_slice("api", ["10.0.0.1"], port=3000)
    del slice_doc["ports"][0]["port"]
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), svc, slice_doc))
    assert route.backend.endpoints == ()
    assert route.backend.problem is not None


def test_slice_without_ports_is_skipped() -> None:
    svc = service("api")
    slice_doc = endpoint_slice("api", ["10.0.0.1"], port=3000)
    del slice_doc["ports"]
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), svc, slice_doc))
    assert route.backend.endpoints == ()


def test_not_ready_endpoints_are_excluded_and_unset_ready_counts_as_ready() -> None:
    slice_doc = endpoint_slice("api", ["10.0.0.1", ("10.0.0.2", False), "10.0.0.3"], port=8080)
    slice_doc["endpoints"][2]["conditions"] = {}
    slice_doc["endpoints"].append({"addresses": ["10.0.0.4"]})
    slice_doc["endpoints"].append({"addresses": ["10.0.0.5"], "conditions": {"ready": None, "serving": True}})
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), service("api"), slice_doc))
    assert [e.host for e in route.backend.endpoints] == ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5"]


def test_only_not_ready_endpoints_is_no_endpoints() -> None:
    slice_doc = endpoint_slice("api", [("10.0.0.1", False)], port=8080)
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), service("api"), slice_doc))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/api has no ready endpoints for port http"


def test_endpoints_from_several_slices_are_merged_deduplicated_and_sorted() -> None:
    first = endpoint_slice("api", ["10.0.0.9", "10.0.0.1"], port=8080, name="api-a")
    second = endpoint_slice("api", ["10.0.0.5", "10.0.0.1"], port=8080, name="api-b")
    first["endpoints"][0]["addresses"].append("10.0.0.7")
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), service("api"), first, second))
    assert route.backend.endpoints == tuple(
        Endpoint(address, 8080) for address in ["10.0.0.1", "10.0.0.5", "10.0.0.7", "10.0.0.9"]
    )


def test_slices_of_other_services_are_ignored() -> None:
    # Everything in one namespace, nothing filtered by a label selector beforehand.
    other = endpoint_slice("other", ["10.9.9.9"], port=8080, name="other-slice")
    unlabelled = endpoint_slice("api", ["10.8.8.8"], port=8080, name="stray")
    del unlabelled["metadata"]["labels"]
    elsewhere = endpoint_slice("api", ["10.7.7.7"], port=8080, name="api-slice", namespace="elsewhere")
    mine = endpoint_slice("api", ["10.0.0.1"], port=8080)
    index = ObjectIndex(
        _objects([service("api"), service("other"), other, unlabelled, mine])
        + _objects([elsewhere, service("api")], namespace="elsewhere")
    )
    translation = translate_ingress(_ingress(_ingress_with_paths(path("/", "api"))), index)
    assert _only_route(translation).backend.endpoints == (Endpoint("10.0.0.1", 8080),)


def test_services_are_looked_up_in_the_ingress_namespace() -> None:
    index = ObjectIndex(_objects(routed_service("api", 8080), namespace="other"))
    route = _only_route(translate_ingress(_ingress(_ingress_with_paths(path("/", "api"))), index))
    assert route.backend.problem == "service default/api not found"
    assert route.backend.endpoints == ()


def test_ipv6_and_fqdn_slices() -> None:
    v6 = endpoint_slice("api", ["fd00::2", "fd00::1"], port=8080)
    v6["addressType"] = "IPv6"
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), service("api"), v6))
    assert [e.address for e in route.backend.endpoints] == ["[fd00::1]:8080", "[fd00::2]:8080"]


# --- ExternalName ---------------------------------------------------------------------------


def test_external_name_service_by_port_number_not_in_ports() -> None:
    ext = service("ext", port=443, external_name="API.Example.com.")
    route = _only_route(_translate(_ingress_with_paths(path("/", "ext", port=8443)), ext))
    assert route.backend.endpoints == (Endpoint("api.example.com", 8443),)
    assert route.backend.problem is None


def test_external_name_service_by_port_name() -> None:
    ext = service("ext", port=443, port_name="https", external_name="api.example.com")
    route = _only_route(_translate(_ingress_with_paths(path("/", "ext", port="https")), ext))
    assert route.backend.endpoints == (Endpoint("api.example.com", 443),)


def test_external_name_service_by_unknown_port_name() -> None:
    ext = service("ext", port=443, port_name="https", external_name="api.example.com")
    route = _only_route(_translate(_ingress_with_paths(path("/", "ext", port="grpc")), ext))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/ext has no port named 'grpc'"


def test_external_name_service_ignores_slices() -> None:
    ext = service("ext", port=443, external_name="api.example.com")
    route = _only_route(
        _translate(_ingress_with_paths(path("/", "ext", port=443)), ext, endpoint_slice("ext", ["10.0.0.1"], port=443))
    )
    assert route.backend.endpoints == (Endpoint("api.example.com", 443),)


def test_external_name_without_external_name() -> None:
    ext = service("ext", port=443)
    ext["spec"]["type"] = "ExternalName"
    route = _only_route(_translate(_ingress_with_paths(path("/", "ext", port=443)), ext))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/ext is ExternalName without spec.externalName"


# --- backends with nowhere to go are not rejections ----------------------------------------


def test_missing_service_is_a_backend_problem_not_a_rejection() -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "nope"))))
    assert route.backend == BackendTarget("default", "nope", "http", (), "service default/nope not found")


@pytest.mark.parametrize(("port", "wanted"), [(81, "81"), ("grpc", "'grpc'")])
def test_missing_service_port_is_a_backend_problem(port: int | str, wanted: str) -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api", port=port)), *API))
    assert route.backend.endpoints == ()
    assert route.backend.problem == f"service default/api has no port {wanted}"


def test_service_without_slices_is_a_backend_problem() -> None:
    route = _only_route(_translate(_ingress_with_paths(path("/", "api")), service("api")))
    assert route.backend.endpoints == ()
    assert route.backend.problem == "service default/api has no ready endpoints for port http"


# --- backends that reject -------------------------------------------------------------------


RESOURCE_REASON = "resource backends are not supported; use a service backend"


def test_resource_backend_rejects_but_its_route_is_declared() -> None:
    # Declared so that, while the Ingress is rejected, the path answers 503 instead of 404
    # or another Ingress's backend.
    entry = {
        "path": "/res",
        "pathType": "Prefix",
        "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}},
    }
    translation = _translate(_ingress_with_paths(path("/ok", "api"), entry), *API)
    reason = f"spec.rules[0].http.paths[1].backend.resource: {RESOURCE_REASON}"
    assert translation.problems == (reason,)
    ok, res = translation.routes
    assert ok.backend.endpoints == (Endpoint("10.0.0.1", 8080),)
    assert (res.path, res.match, res.kind) == ("/res", "Prefix", RouteKind.RULE)
    assert res.backend == BackendTarget("default", "", "", (), reason)
    assert res.info.id == "default/web:example.com:Prefix:/res"


def test_resource_default_backend_rejects_but_its_route_is_declared() -> None:
    document = ingress("web")
    document["spec"]["defaultBackend"] = {"resource": {"kind": "Bucket", "name": "b"}}
    translation = _translate(document)
    assert translation.problems == (f"spec.defaultBackend.resource: {RESOURCE_REASON}",)
    [route] = translation.routes
    assert route.kind is RouteKind.DEFAULT
    assert route.backend.endpoints == ()
    assert route.backend.problem == translation.problems[0]


def test_each_unusable_backend_reports_its_own_problem() -> None:
    resource = {"resource": {"kind": "Bucket", "name": "b"}}
    document = ingress("web", rules=[("a.com", [{"path": "/a", "pathType": "Prefix", "backend": resource}])])
    document["spec"]["defaultBackend"] = resource
    translation = _translate(document)
    assert translation.problems == (
        f"spec.rules[0].http.paths[0].backend.resource: {RESOURCE_REASON}",
        f"spec.defaultBackend.resource: {RESOURCE_REASON}",
        f"spec.defaultBackend.resource: {RESOURCE_REASON}",
    )
    assert [(r.kind, r.backend.problem) for r in translation.routes] == [
        (RouteKind.RULE, translation.problems[0]),
        (RouteKind.HOST_DEFAULT, translation.problems[1]),
        (RouteKind.DEFAULT, translation.problems[2]),
    ]


def test_backend_without_service_rejects() -> None:
    entry = {"path": "/", "pathType": "Prefix", "backend": {}}
    translation = _translate(_ingress_with_paths(entry), *API)
    assert translation.problems == ("spec.rules[0].http.paths[0].backend: a backend must name a service",)
    [route] = translation.routes
    assert route.backend.endpoints == ()


@pytest.mark.parametrize("port", [{}, {"name": "http", "number": 80}])
def test_service_port_needs_exactly_one_of_name_and_number(port: dict[str, Any]) -> None:
    entry = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": port}}}
    translation = _translate(_ingress_with_paths(entry), *API)
    reason = "spec.rules[0].http.paths[0].backend.service.port: set exactly one of name and number"
    assert translation.problems == (reason,)
    [route] = translation.routes
    assert route.backend == BackendTarget("default", "api", "", (), reason)  # never resolved to endpoints


def test_ingress_without_rules_or_default_backend_rejects() -> None:
    translation = _translate(ingress("empty"))
    assert translation.problems == ("spec: an Ingress needs rules or a defaultBackend",)
    assert translation.routes == ()


def test_rules_without_http_are_not_a_rejection() -> None:
    document = ingress("web")
    document["spec"]["rules"] = [{"host": "example.com"}]
    translation = _translate(document)
    assert translation.problems == ()
    assert translation.routes == ()


# --- default backends -----------------------------------------------------------------------


def test_default_backend_only() -> None:
    route = _only_route(_translate(ingress("fallback", default_backend="api"), *API))
    assert route.kind is RouteKind.DEFAULT
    assert (route.host, route.path, route.match) == ("", "/", "Prefix")
    assert route.info.id == "default/fallback:default"
    assert route.standalone is True
    assert route.backend.endpoints == (Endpoint("10.0.0.1", 8080),)


def test_default_backend_gives_one_host_default_per_host_and_one_default() -> None:
    document = ingress(
        "web",
        rules=[
            ("a.example.com", [path("/x", "api")]),
            ("b.example.com", [path("/y", "api")]),
            ("a.example.com", [path("/z", "api")]),
            ("*.example.com", [path("/w", "api")]),
            (None, [path("/v", "api")]),
        ],
        default_backend="api",
    )
    translation = _translate(document, *API)
    assert translation.problems == ()
    by_kind: dict[RouteKind, list[tuple[str, str]]] = {}
    for route in translation.routes:
        by_kind.setdefault(route.kind, []).append((route.host, route.info.id))
        assert route.standalone is False
    assert by_kind[RouteKind.HOST_DEFAULT] == [
        ("a.example.com", "default/web:a.example.com:default"),
        ("b.example.com", "default/web:b.example.com:default"),
        ("*.example.com", "default/web:*.example.com:default"),
    ]
    assert by_kind[RouteKind.DEFAULT] == [("", "default/web:default")]
    assert len(by_kind[RouteKind.RULE]) == 5


def test_host_default_routes_are_root_prefixes_to_the_default_service() -> None:
    document = ingress("web", rules=[("a.example.com", [path("/x", "api")])], default_backend="fallback")
    translation = _translate(document, *API, *routed_service("fallback", 9000, address="10.0.0.2"))
    host_default = next(r for r in translation.routes if r.kind is RouteKind.HOST_DEFAULT)
    assert (host_default.path, host_default.match) == ("/", "Prefix")
    assert host_default.info.service == "fallback"
    assert host_default.backend.endpoints == (Endpoint("10.0.0.2", 9000),)


def test_rules_without_http_still_get_host_defaults() -> None:
    document = ingress("web", default_backend="api")
    document["spec"]["rules"] = [{"host": "only-default.example.com"}]
    translation = _translate(document, *API)
    assert [(r.kind, r.host) for r in translation.routes] == [
        (RouteKind.HOST_DEFAULT, "only-default.example.com"),
        (RouteKind.DEFAULT, ""),
    ]


def test_invalid_host_gets_no_host_default() -> None:
    document = ingress("web", rules=[("bad_host", [path("/", "api")])], default_backend="api")
    translation = _translate(document, *API)
    assert translation.problems != ()
    assert [r.kind for r in translation.routes] == [RouteKind.DEFAULT]


# --- identity and age -----------------------------------------------------------------------


def test_route_ids() -> None:
    document = ingress(
        "web",
        namespace="shop",
        rules=[("Example.com", [path("/a", "api", path_type="Exact"), path("/b/", "api")]), (None, [path("/", "api")])],
    )
    translation = translate_ingress(_ingress(document), ObjectIndex([]))
    assert [r.info.id for r in translation.routes] == [
        "shop/web:example.com:Exact:/a",
        "shop/web:example.com:Prefix:/b/",
        "shop/web:*:Prefix:/",
    ]
    assert [r.info.ingress_ref for r in translation.routes] == ["shop/web"] * 3
    assert translation.ref == "shop/web"


def test_route_ids_are_stable_across_translations_and_endpoint_changes() -> None:
    document = ingress("web", rules=[("a.example.com", [path("/", "api")])], default_backend="api")
    first = _translate(document, *routed_service("api", 8080, address="10.0.0.1"))
    second = _translate(document, *routed_service("api", 9090, address="10.0.0.2"))
    assert [r.info for r in first.routes] == [r.info for r in second.routes]
    assert [r.backend for r in first.routes] != [r.backend for r in second.routes]


def test_age_is_creation_timestamp_then_namespace_and_name() -> None:
    stamped = _only_route(_translate(ingress("web", default_backend="api", created="2024-01-02T03:04:05Z"), *API))
    assert stamped.age == (0, "2024-01-02T03:04:05+00:00", "default", "web")
    unstamped = _only_route(_translate(ingress("web", default_backend="api"), *API))
    assert unstamped.age == (1, "", "default", "web")
    assert stamped.age < unstamped.age


def test_age_compares_timestamps_in_utc() -> None:
    # 10:00 at +02:00 is 08:00 UTC: older than 09:00 UTC.
    east = _only_route(_translate(ingress("east", default_backend="api", created="2024-01-01T10:00:00+02:00"), *API))
    utc = _only_route(_translate(ingress("utc", default_backend="api", created="2024-01-01T09:00:00Z"), *API))
    assert east.age < utc.age
    naive = _only_route(_translate(ingress("naive", default_backend="api", created="2024-01-01T08:30:00"), *API))
    assert east.age < naive.age < utc.age


def test_age_fractional_seconds_are_newer() -> None:
    whole = _only_route(_translate(ingress("a", default_backend="api", created="2024-01-01T00:00:00Z"), *API))
    later = _only_route(_translate(ingress("b", default_backend="api", created="2024-01-01T00:00:00.5Z"), *API))
    assert whole.age < later.age


# --- annotations ----------------------------------------------------------------------------


def test_plugin_annotations_are_carried() -> None:
    document = ingress(
        "web",
        default_backend="api",
        annotations={"meta-native.io/plugins": "cors", "meta-native.io/plugin.cors": "a: 1"},
    )
    translation = _translate(document, *API)
    assert translation.problems == ()
    assert translation.plugins.listed == ("cors",)
    assert dict(translation.plugins.configs) == {"cors": {"a": 1}}


def test_annotation_problems_reject_but_routes_are_still_declared() -> None:
    document = ingress("web", rules=[(None, [path("/", "api")])], annotations={"meta-native.io/plugin": "x"})
    translation = _translate(document, *API)
    assert translation.problems == ("annotation meta-native.io/plugin: unknown meta-native.io/ annotation",)
    assert len(translation.routes) == 1


def test_known_annotations_are_passed_to_the_parser() -> None:
    document = ingress("web", default_backend="api", annotations={"meta-native.io/timeout": "5s"})
    assert _translate(document, *API).problems != ()
    assert _translate(document, *API, known=frozenset({"meta-native.io/timeout"})).problems == ()


# --- ObjectIndex ----------------------------------------------------------------------------


def test_object_index_sorts_objects_by_kind() -> None:
    documents = [
        *routed_service("api", 8080),
        ingress("web", default_backend="api"),
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "mn"}, "spec": {}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"k": "v"}},
    ]
    index = _index(*documents)
    assert [i.name for i in index.ingresses] == ["web"]
    assert list(index.classes) == ["mn"]
    assert list(index.services) == [("default", "api")]
    assert list(index.slices) == [("default", "api")]
    secret = index.secret("default", "keys")
    assert secret is not None
    assert secret.decoded() == {"k": b"v"}
    assert index.secret("other", "keys") is None
    assert index.secret("default", "nope") is None


# --- ingress class --------------------------------------------------------------------------

OUR_CONTROLLER = "meta-native.io/gateway"


def _class(name: str, controller: str = OUR_CONTROLLER, *, default: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if default:
        metadata["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": metadata,
        "spec": {"controller": controller},
    }


def _served(document: dict[str, Any], *classes: dict[str, Any], policy: ClassPolicy | None = None) -> bool:
    return is_served(_ingress(document), _index(*classes), policy or ClassPolicy())


def test_class_policy_defaults() -> None:
    policy = ClassPolicy()
    assert policy.ingress_class == "meta-native"
    assert policy.controller == OUR_CONTROLLER
    assert policy.watch_without_class is True


def test_our_class_by_name_is_served() -> None:
    assert _served(ingress("web", default_backend="api", ingress_class="meta-native"))


def test_our_class_by_name_needs_no_ingress_class_object() -> None:
    assert _served(ingress("web", default_backend="api", ingress_class="meta-native"), _class("nginx", "k8s.io/nginx"))


def test_custom_class_name_in_policy() -> None:
    policy = ClassPolicy(ingress_class="edge")
    assert _served(ingress("web", default_backend="api", ingress_class="edge"), policy=policy)
    assert not _served(ingress("web", default_backend="api", ingress_class="meta-native"), policy=policy)


def test_class_whose_ingress_class_names_our_controller_is_served() -> None:
    document = ingress("web", default_backend="api", ingress_class="public")
    assert _served(document, _class("public"))
    assert not _served(document, _class("public", "k8s.io/ingress-nginx"))
    assert not _served(document)


def test_class_with_no_controller_is_not_ours() -> None:
    klass = _class("public")
    del klass["spec"]["controller"]
    assert not _served(ingress("web", default_backend="api", ingress_class="public"), klass)


def test_other_class_is_ignored() -> None:
    assert not _served(ingress("web", default_backend="api", ingress_class="nginx"), _class("nginx", "k8s.io/nginx"))


@pytest.mark.parametrize(("value", "served"), [("meta-native", True), ("nginx", False), ("public", True)])
def test_legacy_class_annotation(value: str, served: bool) -> None:
    document = ingress("web", default_backend="api", annotations={"kubernetes.io/ingress.class": value})
    assert _served(document, _class("public")) is served
    off = ClassPolicy(watch_without_class=False)
    assert _served(document, _class("public"), policy=off) is served


def test_class_name_field_wins_over_legacy_annotation() -> None:
    document = ingress(
        "web", default_backend="api", ingress_class="nginx", annotations={"kubernetes.io/ingress.class": "meta-native"}
    )
    assert not _served(document)
    document = ingress(
        "web", default_backend="api", ingress_class="meta-native", annotations={"kubernetes.io/ingress.class": "nginx"}
    )
    assert _served(document)


def test_classless_ingress_is_served_by_default() -> None:
    assert _served(ingress("web", default_backend="api"))
    assert _served(ingress("web", default_backend="api"), _class("nginx", "k8s.io/nginx", default=True))


def test_classless_ingress_without_watching_classless() -> None:
    off = ClassPolicy(watch_without_class=False)
    document = ingress("web", default_backend="api")
    assert not _served(document, policy=off)
    assert not _served(document, _class("meta-native"), policy=off)  # ours but not the default
    assert not _served(document, _class("nginx", "k8s.io/nginx", default=True), policy=off)  # default, not ours
    assert _served(document, _class("anything", default=True), policy=off)  # default and ours


def test_default_class_annotation_must_be_true() -> None:
    off = ClassPolicy(watch_without_class=False)
    klass = _class("mn")
    klass["metadata"]["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "false"}
    assert not _served(ingress("web", default_backend="api"), klass, policy=off)


# --- resolve_endpoints directly -------------------------------------------------------------


def test_resolve_endpoints_directly() -> None:
    index = _index(*_two_port_service())
    assert resolve_endpoints("default", "multi", "admin", None, index) == (
        (Endpoint("10.0.0.1", 9090), Endpoint("10.0.0.2", 9090)),
        None,
    )
    assert resolve_endpoints("default", "multi", None, 80, index)[0][0] == Endpoint("10.0.0.1", 8080)
    assert resolve_endpoints("default", "missing", None, 80, index) == ((), "service default/missing not found")
    assert resolve_endpoints("default", "multi", None, 82, index) == ((), "service default/multi has no port 82")
