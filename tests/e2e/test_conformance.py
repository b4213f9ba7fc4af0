"""End-to-end conformance: the real ``gateway run --manifests DIR`` against real echo upstreams.

Every test writes manifests, starts its own gateway process on free ports and talks to it over
real sockets with an explicit Host header. The expectations are the Kubernetes Ingress rules
(DESIGN §5): the examples of the Kubernetes Ingress documentation
(concepts/services-networking/ingress) and the features of kubernetes-sigs/
ingress-controller-conformance (host_rules, path_rules, default_backend, ingress_class), plus
merging, Service ports and EndpointSlices, load balancing, query strings and Host handling.

Several scenarios share one gateway, each on its own host, so a handful of gateway starts
covers everything. A failed expectation names the host, the request and what came back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    backend,
    endpoint_slice,
    ingress,
    path,
    routed_service,
    service,
    write_manifests,
)

pytestmark = pytest.mark.e2e

Upstreams = Callable[..., RecordingUpstream]
Gateways = Callable[..., GatewayProcess]
Manifest = dict[str, Any]

CONTROLLER = "meta-native.io/gateway"


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def upstream(upstream: Upstreams) -> Iterator[Upstreams]:
    """The kit's ``upstream`` factory, tuned for tests that start many servers and send many requests.

    The echo server writes a response's head and body in two ``send`` calls; with Nagle's
    algorithm on, the body waits for the gateway's delayed ACK (~40 ms a request). Its handler
    gets ``TCP_NODELAY``. At teardown the servers stop in parallel (each ``stop`` waits up to
    half a second for ``serve_forever`` to notice); the kit's own teardown then has nothing left.
    """
    started: list[RecordingUpstream] = []

    def make(name: str = "upstream", **options: Any) -> RecordingUpstream:
        server = upstream(name, **options)
        assert server._server is not None
        handler: Any = server._server.RequestHandlerClass
        handler.disable_nagle_algorithm = True
        started.append(server)
        return server

    yield make
    stoppers = [threading.Thread(target=server.stop) for server in started]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A plain HTTP client: no proxies from the environment, no redirects, short timeouts."""
    with httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False) as http:
        yield http


def echo_services(
    upstream: Upstreams, *names: str, namespace: str | None = None, port: int = 80
) -> tuple[dict[str, RecordingUpstream], list[Manifest]]:
    """One echo upstream per Service name (the upstream answers with that name), and the
    Service + EndpointSlice manifests routing each Service (port ``port``, named ``http``) to it."""
    servers: dict[str, RecordingUpstream] = {}
    objects: list[Manifest] = []
    for name in names:
        label = f"{namespace}/{name}" if namespace else name
        servers[name] = server = upstream(label)
        objects += [
            service(name, port=port, namespace=namespace),
            endpoint_slice(name, ["127.0.0.1"], port=server.port, namespace=namespace),
        ]
    return servers, objects


def start(gateway_process: Gateways, directory: Path, objects: Sequence[Manifest], **options: Any) -> GatewayProcess:
    """Write ``objects`` into ``directory`` and start a gateway serving it."""
    write_manifests(directory, objects)
    return gateway_process(directory, **options)


def send(
    client: httpx.Client, gateway: GatewayProcess, host: str, target: str, method: str = "GET", **options: Any
) -> httpx.Response:
    """``method target`` to the gateway's proxy port with ``Host: host``."""
    headers = {"host": host, **options.pop("headers", {})}
    return client.request(method, gateway.url + target, headers=headers, **options)


def describe(host: str, target: str, response: httpx.Response) -> str:
    return f"{host}{target} -> {response.status_code} {response.text[:300]}"


def assert_served(response: httpx.Response, upstream_name: str, *, host: str, target: str) -> dict[str, Any]:
    """The response came from ``upstream_name``, which received ``target`` unchanged; its echo."""
    assert response.status_code == 200, describe(host, target, response)
    body: dict[str, Any] = response.json()
    assert body["upstream"] == upstream_name, describe(host, target, response)
    assert body["path"] == target, describe(host, target, response)
    return body


def assert_error(response: httpx.Response, status: int, code: str, *, host: str, target: str) -> None:
    """A JSON error the gateway answered itself."""
    assert response.status_code == status, describe(host, target, response)
    assert response.headers["content-type"].startswith("application/json"), describe(host, target, response)
    body = response.json()
    assert body["error"] == code, describe(host, target, response)
    assert isinstance(body.get("message"), str), describe(host, target, response)


def check_routing(
    client: httpx.Client, gateway: GatewayProcess, expectations: Sequence[tuple[str, str, str | None]]
) -> None:
    """``(host, target, upstream name or None for 404)``: served by that upstream, which received
    ``target`` unchanged (query included), or the gateway's 404 ``no_route``. Every mismatch reported."""
    failures: list[str] = []
    for host, target, expected in expectations:
        response = send(client, gateway, host, target)
        if expected is None:
            ok = response.status_code == 404 and _json(response).get("error") == "no_route"
            want = "404 no_route"
        else:
            body = _json(response)
            ok = response.status_code == 200 and body.get("upstream") == expected and body.get("path") == target
            want = f"200 from {expected} with path {target}"
        if not ok:
            failures.append(f"{host}{target}: expected {want}, got {describe(host, target, response)}")
    assert not failures, "\n".join(failures)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def routes_page(gateway: GatewayProcess) -> dict[str, Any]:
    response = httpx.get(gateway.admin_url + "/routes", timeout=10.0, trust_env=False)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ingress_object(name: str, spec: Mapping[str, Any], **metadata: Any) -> Manifest:
    """An Ingress written out in full, as in the documentation."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, **metadata},
        "spec": dict(spec),
    }


def ingress_class(name: str, controller: str) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


# --- Kubernetes documentation: path types ---------------------------------------------------

# The "Examples" table of the Ingress documentation, one Ingress per row (each on its own
# host): the rule's paths (backends s0, s1, ... in order) and the requests with the index of
# the path that must serve them (None: no match, and with no default backend that is 404).
PATH_TYPE_EXAMPLES: list[tuple[str, list[tuple[str, str]], list[tuple[str, int | None]]]] = [
    ("prefix-root", [("Prefix", "/")], [("/", 0), ("/foo", 0), ("/aaa/bbb/ccc", 0), ("/index.html", 0)]),
    ("exact-foo", [("Exact", "/foo")], [("/foo", 0), ("/bar", None), ("/foo/", None), ("/FOO", None)]),
    ("exact-foo-slash", [("Exact", "/foo/")], [("/foo", None), ("/foo/", 0)]),
    ("prefix-foo", [("Prefix", "/foo")], [("/foo", 0), ("/foo/", 0), ("/foo/bar", 0), ("/foobar", None)]),
    ("prefix-foo-slash", [("Prefix", "/foo/")], [("/foo", 0), ("/foo/", 0), ("/foo/bar", 0), ("/foobar", None)]),
    ("prefix-aaa-bb", [("Prefix", "/aaa/bb")], [("/aaa/bbb", None), ("/aaa/bb", 0), ("/aaa/bb/", 0)]),
    (
        "prefix-aaa-bbb",
        [("Prefix", "/aaa/bbb")],
        [("/aaa/bbb", 0), ("/aaa/bbb/", 0), ("/aaa/bbb/ccc", 0), ("/aaa/bbbxyz", None), ("/aaa", None)],
    ),
    ("prefix-aaa-bbb-slash", [("Prefix", "/aaa/bbb/")], [("/aaa/bbb", 0), ("/aaa/bbb/", 0), ("/aaa/bbb/ccc", 0)]),
    ("prefix-root-aaa", [("Prefix", "/"), ("Prefix", "/aaa")], [("/aaa/ccc", 1), ("/aaa", 1), ("/ccc", 0)]),
    (
        "prefix-root-aaa-bbb",
        [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
        [("/aaa/bbb", 2), ("/aaa/bbb/x", 2), ("/aaa/bb", 1), ("/ccc", 0)],
    ),
    # The same paths declared longest first: the longest match wins whatever the order.
    (
        "prefix-root-aaa-bbb-reversed",
        [("Prefix", "/aaa/bbb"), ("Prefix", "/aaa"), ("Prefix", "/")],
        [("/aaa/bbb", 0), ("/aaa/ccc", 1), ("/ccc", 2)],
    ),
    ("prefix-aaa", [("Prefix", "/aaa")], [("/ccc", None), ("/aaa", 0)]),
    ("mixed-foo", [("Prefix", "/foo"), ("Exact", "/foo")], [("/foo", 1), ("/foo/", 0), ("/foo/x", 0)]),
    ("mixed-foo-exact-first", [("Exact", "/foo"), ("Prefix", "/foo")], [("/foo", 0), ("/foo/", 1)]),
    # Exact and a longer Prefix side by side: each wins its own requests.
    ("exact-vs-longer-prefix", [("Exact", "/foo"), ("Prefix", "/foo/bar")], [("/foo", 0), ("/foo/bar", 1)]),
    # ImplementationSpecific is served as Prefix (DESIGN §5).
    (
        "implementation-specific",
        [("ImplementationSpecific", "/foo")],
        [("/foo", 0), ("/foo/", 0), ("/foo/bar", 0), ("/foobar", None)],
    ),
]


def test_ingress_docs_path_type_examples_and_simple_fanout(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # Three echo upstreams, s0..s2: a row's i-th path goes to a Service pointing at upstream si.
    shared = [upstream(f"s{i}") for i in range(3)]
    objects: list[Manifest] = []
    expectations: list[tuple[str, str, str | None]] = []
    for row, (name, paths, requests) in enumerate(PATH_TYPE_EXAMPLES):
        host = f"{name}.paths.example"
        rule_paths = []
        for i, (path_type, rule_path) in enumerate(paths):
            svc = f"row{row}-s{i}"
            objects += [service(svc), endpoint_slice(svc, ["127.0.0.1"], port=shared[i].port)]
            rule_paths.append(path(rule_path, svc, path_type=path_type))
        objects.append(ingress(name, rules=[(host, rule_paths)]))
        expectations += [(host, target, None if index is None else f"s{index}") for target, index in requests]

    # "Simple fanout": foo.bar.com /foo -> service1:4200, /bar -> service2:8080.
    fanout = {name: upstream(name) for name in ("service1", "service2")}
    objects += [
        service("service1", port=4200),
        endpoint_slice("service1", ["127.0.0.1"], port=fanout["service1"].port),
        service("service2", port=8080),
        endpoint_slice("service2", ["127.0.0.1"], port=fanout["service2"].port),
        ingress(
            "simple-fanout-example",
            rules=[
                (
                    "foo.bar.com",
                    [
                        path("/foo", "service1", port=4200),
                        path("/bar", "service2", port=8080),
                    ],
                )
            ],
        ),
    ]
    expectations += [
        ("foo.bar.com", "/foo", "service1"),
        ("foo.bar.com", "/foo/index.html", "service1"),
        ("foo.bar.com", "/bar", "service2"),
        ("foo.bar.com", "/bar/", "service2"),
        ("foo.bar.com", "/baz", None),
        ("foo.bar.com", "/", None),
    ]

    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(client, gateway, expectations)


def test_ingress_docs_hostname_wildcards(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # ingress-wildcard-host: foo.bar.com /bar -> service1, *.foo.com /foo -> service2.
    servers, objects = echo_services(upstream, "service1", "service2")
    objects.append(
        ingress(
            "ingress-wildcard-host",
            rules=[
                ("foo.bar.com", [path("/bar", "service1", port=80)]),
                ("*.foo.com", [path("/foo", "service2", port=80)]),
            ],
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("foo.bar.com", "/bar", "service1"),
            ("bar.foo.com", "/foo", "service2"),  # *.foo.com matches bar.foo.com (shared suffix)
            ("other.foo.com", "/foo/x", "service2"),
            ("baz.bar.foo.com", "/foo", None),  # no match: the wildcard covers one DNS label
            ("foo.com", "/foo", None),  # no match: the wildcard covers one DNS label
            ("bar.foo.com", "/bar", None),  # the wildcard host has no /bar path
            ("foo.bar.com", "/foo", None),
        ],
    )
    assert servers["service2"].requests[0].headers["host"] == "bar.foo.com"


def test_ingress_docs_name_based_virtual_hosting(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # name-virtual-host-ingress-no-third-host: first.bar.com -> service1, second.bar.com ->
    # service2, and a rule without host catching every other host -> service3.
    _servers, objects = echo_services(upstream, "service1", "service2", "service3")
    objects.append(
        ingress(
            "name-virtual-host-ingress-no-third-host",
            rules=[
                ("first.bar.com", [path("/", "service1", port=80)]),
                ("second.bar.com", [path("/", "service2", port=80)]),
                (None, [path("/", "service3", port=80)]),
            ],
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("first.bar.com", "/", "service1"),
            ("first.bar.com", "/any/path", "service1"),
            ("second.bar.com", "/", "service2"),
            ("second.bar.com", "/x", "service2"),
            ("third.bar.com", "/", "service3"),
            ("bar.com", "/y", "service3"),
            ("example.org", "/", "service3"),
            (f"127.0.0.1:{gateway.port}", "/by-address", "service3"),
        ],
    )


def test_ingress_docs_unmatched_path_uses_default_backend(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # Examples table: Prefix /aaa, request /ccc -> "No, uses default backend".
    _servers, objects = echo_services(upstream, "aaa", "default-http-backend")
    objects.append(
        ingress(
            "prefix-with-default",
            rules=[(None, [path("/aaa", "aaa", port=80)])],
            default_backend="default-http-backend",
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("any.example", "/aaa", "aaa"),
            ("any.example", "/aaa/ccc", "aaa"),
            ("any.example", "/ccc", "default-http-backend"),
            ("any.example", "/aaaccc", "default-http-backend"),
            ("other.example", "/", "default-http-backend"),
        ],
    )


def test_ingress_docs_resource_backend_is_rejected_others_keep_serving(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    resource = {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static-assets"}}
    # ingress-resource-backend, as in the documentation (its default backend is a resource too).
    documented = ingress_object(
        "ingress-resource-backend",
        {
            "defaultBackend": resource,
            "rules": [
                {"http": {"paths": [{"path": "/icons", "pathType": "ImplementationSpecific", "backend": resource}]}}
            ],
        },
    )
    # A resource backend next to a service backend on the same Ingress: the whole Ingress is rejected.
    mixed = ingress_object(
        "mixed-resource-backend",
        {
            "rules": [
                {
                    "host": "mixed.example",
                    "http": {
                        "paths": [
                            {"path": "/svc", "pathType": "Prefix", "backend": backend("app", 80)},
                            {"path": "/res", "pathType": "Prefix", "backend": resource},
                        ]
                    },
                }
            ],
        },
    )
    servers, objects = echo_services(upstream, "app", "other")
    objects += [documented, mixed, ingress("healthy", rules=[("healthy.example", [path("/", "other", port=80)])])]
    gateway = start(gateway_process, manifests_dir, objects)

    # Other Ingresses keep serving.
    check_routing(client, gateway, [("healthy.example", "/", "other"), ("healthy.example", "/icons", "other")])

    page = routes_page(gateway)
    rejected = {item["ingress"]: item for item in page["rejected"]}
    for ref in ("default/ingress-resource-backend", "default/mixed-resource-backend"):
        assert ref in rejected, page["rejected"]
        assert rejected[ref]["serving_last_good"] is False
        assert any("resource" in reason for reason in rejected[ref]["reasons"]), rejected[ref]
    assert "default/healthy" not in rejected

    # The rejected Ingresses' routes answer 503 with a JSON body, never reach an upstream.
    failures = []
    for host, target in [
        ("mixed.example", "/svc"),
        ("mixed.example", "/svc/x"),
        ("mixed.example", "/res"),
        ("any.example", "/icons"),
        ("any.example", "/icons/logo.png"),
    ]:
        response = send(client, gateway, host, target)
        body = _json(response)
        if response.status_code != 503 or not body.get("error") or "message" not in body:
            failures.append(f"expected 503 with a JSON error, got {describe(host, target, response)}")
    assert servers["app"].requests == []
    assert not failures, "\n".join(failures)


# --- ingress-controller-conformance features ------------------------------------------------


def test_conformance_host_rules(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    servers, objects = echo_services(upstream, "wildcard-foo-com", "foo-bar-com", "exact-foo-com", port=8080)
    objects.append(
        ingress(
            "host-rules",
            rules=[
                ("*.foo.com", [path("/", "wildcard-foo-com", port=8080)]),
                ("foo.bar.com", [path("/", "foo-bar-com", port="http")]),
                # An exact host beats a wildcard that also matches it (DESIGN §5).
                ("exact.foo.com", [path("/", "exact-foo-com", port=8080)]),
            ],
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("foo.bar.com", "/", "foo-bar-com"),
            ("subdomain.bar.com", "/", None),  # host foo.bar.com does not match subdomain.bar.com
            ("bar.foo.com", "/", "wildcard-foo-com"),
            ("baz.bar.foo.com", "/", None),  # the wildcard covers a single DNS label
            ("foo.com", "/", None),  # ... and not zero labels
            ("exact.foo.com", "/", "exact-foo-com"),
            ("bar.com", "/", None),
        ],
    )
    # The request host the backend sees is the client's.
    assert servers["foo-bar-com"].requests[-1].headers["host"] == "foo.bar.com"
    assert servers["wildcard-foo-com"].requests[-1].headers["host"] == "bar.foo.com"


def test_conformance_path_rules(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    _servers, objects = echo_services(
        upstream,
        "foo-exact",
        "foo-prefix",
        "aaa-slash-bbb-prefix",
        "aaa-prefix",
        "aaa-slash-bbb-slash-prefix",
        "foo-slash-exact",
        port=8080,
    )
    objects.append(
        ingress(
            "path-rules",
            rules=[
                ("exact-path-rules", [path("/foo", "foo-exact", path_type="Exact", port=8080)]),
                (
                    "prefix-path-rules",
                    [
                        path("/foo", "foo-prefix", port=8080),
                        path("/aaa/bbb", "aaa-slash-bbb-prefix", port=8080),
                        path("/aaa", "aaa-prefix", port=8080),
                    ],
                ),
                (
                    "mixed-path-rules",
                    [
                        path("/foo", "foo-prefix", port=8080),
                        path("/foo", "foo-exact", path_type="Exact", port=8080),
                    ],
                ),
                (
                    "trailing-slash-path-rules",
                    [
                        path("/aaa/bbb/", "aaa-slash-bbb-slash-prefix", port=8080),
                        path("/foo/", "foo-slash-exact", path_type="Exact", port=8080),
                    ],
                ),
            ],
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("exact-path-rules", "/foo", "foo-exact"),
            ("exact-path-rules", "/foo/", None),
            ("exact-path-rules", "/FOO", None),
            ("exact-path-rules", "/bar", None),
            ("prefix-path-rules", "/foo", "foo-prefix"),
            ("prefix-path-rules", "/foo/", "foo-prefix"),
            ("prefix-path-rules", "/FOO", None),
            ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),
            ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"),
            ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"),
            ("prefix-path-rules", "/aaaccc", None),
            ("mixed-path-rules", "/foo", "foo-exact"),
            ("mixed-path-rules", "/foo/", "foo-prefix"),
            ("trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-slash-prefix"),
            ("trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
            ("trailing-slash-path-rules", "/foo", None),
            ("trailing-slash-path-rules", "/foo/", "foo-slash-exact"),
        ],
    )


def test_conformance_default_backend_receives_everything(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # The conformance "default-backend" Ingress, which is also the documentation's
    # default-backend-only "test-ingress": no rules, one defaultBackend.
    servers, objects = echo_services(upstream, "echo-service", port=8080)
    objects.append(
        ingress_object(
            "default-backend",
            {
                "defaultBackend": {"service": {"name": "echo-service", "port": {"number": 8080}}},
            },
        )
    )
    gateway = start(gateway_process, manifests_dir, objects)
    echo = servers["echo-service"]
    cases = [
        ("GET", "my-host", "/"),
        ("GET", "my-host", "/sub-path"),
        ("POST", "some-host", "/"),
        ("PUT", "", "/resource"),  # the conformance suite's empty host
        ("PUT", f"127.0.0.1:{gateway.port}", "/resource"),
        ("DELETE", "some-host", "/resource"),
        ("PATCH", "my-host", "/resource"),
        ("GET", "other.example.com", "/deep/path/?q=1"),
    ]
    for method, host, target in cases:
        content = b"payload" if method in ("POST", "PUT", "PATCH") else None
        response = send(
            client, gateway, host, target, method, content=content, headers={"user-agent": "Go-http-client/1.1"}
        )
        body = assert_served(response, "echo-service", host=host, target=target)
        assert body["method"] == method
        assert body["body_length"] == (len(content) if content else 0)
        assert body["headers"]["user-agent"] == "Go-http-client/1.1"
        if host:  # an empty Host is replaced by the endpoint's address (pipeline.py), not matched on
            assert body["headers"]["host"] == host
        assert response.http_version == "HTTP/1.1"
        for header in ("content-length", "content-type", "date", "server"):
            assert len(response.headers.get_list(header)) == 1, (method, host, target, response.headers)
        assert response.headers["content-length"] == str(len(response.content))
        assert response.headers["content-type"] == "application/json"
        assert parsedate_to_datetime(response.headers["date"]).tzinfo is not None, response.headers
        assert response.headers["server"].startswith("BaseHTTP/"), response.headers  # the upstream's own
    assert [request.method for request in echo.requests] == [case[0] for case in cases]


def test_conformance_ingress_class_default(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    servers, objects = echo_services(
        upstream, "ingress-class-prefix", "classless", "ours", "by-controller", "foreign", "legacy-foreign", port=8080
    )
    objects += [
        ingress_class("custom-class", CONTROLLER),
        ingress_class("foreign-class", "example.com/another-controller"),
        ingress(
            "test-ingress-class",
            ingress_class="some-invalid-class-name",
            rules=[("ingress-class", [path("/", "ingress-class-prefix", port=8080)])],
        ),
        ingress("classless", rules=[("classless", [path("/", "classless", port=8080)])]),
        ingress("ours", ingress_class="meta-native", rules=[("ours", [path("/", "ours", port=8080)])]),
        ingress(
            "by-controller",
            ingress_class="custom-class",
            rules=[("by-controller", [path("/", "by-controller", port=8080)])],
        ),
        ingress("foreign", ingress_class="foreign-class", rules=[("foreign", [path("/", "foreign", port=8080)])]),
        ingress(
            "legacy-foreign",
            annotations={"kubernetes.io/ingress.class": "nginx"},
            rules=[("legacy-foreign", [path("/", "legacy-foreign", port=8080)])],
        ),
    ]
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("ingress-class", "/", None),
            ("classless", "/", "classless"),
            ("ours", "/", "ours"),
            ("by-controller", "/x", "by-controller"),
            ("foreign", "/", None),
            ("legacy-foreign", "/", None),
        ],
    )
    assert servers["ingress-class-prefix"].requests == []
    ignored = " ".join(routes_page(gateway)["ignored"])
    assert "default/test-ingress-class" in ignored
    assert "default/foreign" in ignored


def test_conformance_ingress_class_flag(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    _servers, objects = echo_services(upstream, "other", "meta-native", "classless", "by-controller")
    objects += [
        ingress_class("custom-class", CONTROLLER),
        ingress("other", ingress_class="other", rules=[("other", [path("/", "other", port=80)])]),
        ingress(
            "meta-native", ingress_class="meta-native", rules=[("meta-native", [path("/", "meta-native", port=80)])]
        ),
        ingress("classless", rules=[("classless", [path("/", "classless", port=80)])]),
        ingress(
            "by-controller",
            ingress_class="custom-class",
            rules=[("by-controller", [path("/", "by-controller", port=80)])],
        ),
    ]
    gateway = start(gateway_process, manifests_dir, objects, extra_args=["--ingress-class", "other"])
    check_routing(
        client,
        gateway,
        [
            ("other", "/", "other"),
            ("meta-native", "/", None),  # no longer our class
            ("classless", "/", "classless"),
            ("by-controller", "/", "by-controller"),
        ],
    )


# --- merging Ingresses --------------------------------------------------------------------------


def test_ingresses_on_one_host_merge_and_the_oldest_wins_a_conflict(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    names = ("old-shared", "old-only", "new-shared", "new-only", "new-prefix-slash", "old-exact")
    servers, objects = echo_services(upstream, *names)
    # The newer Ingress comes first in the file and sorts first by name: only its age makes it lose.
    objects += [
        ingress(
            "a-newer",
            created="2024-06-01T00:00:00Z",
            rules=[
                (
                    "merge.example",
                    [
                        path("/shared", "new-shared", port=80),
                        path("/new-only", "new-only", port=80),
                        path("/prefix/", "new-prefix-slash", port=80),  # the same Prefix as /prefix
                        path("/exact", "new-shared", path_type="Exact", port=80),
                    ],
                )
            ],
        ),
        ingress(
            "z-older",
            created="2024-01-01T00:00:00Z",
            rules=[
                (
                    "merge.example",
                    [
                        path("/shared", "old-shared", port=80),
                        path("/old-only", "old-only", port=80),
                        path("/prefix", "old-shared", port=80),
                        path("/exact", "old-exact", path_type="Exact", port=80),
                    ],
                )
            ],
        ),
    ]
    # Equal timestamps: namespace, then name, decides.
    stamp = "2024-03-01T00:00:00Z"
    for namespace in ("ns-b", "ns-a"):
        ns_servers, ns_objects = echo_services(upstream, "tie", namespace=namespace)
        servers.update({f"{namespace}/tie": ns_servers["tie"]})
        objects += ns_objects
        objects.append(
            ingress(
                "tie",
                namespace=namespace,
                created=stamp,
                rules=[("tie-namespace.example", [path("/", "tie", port=80)])],
            )
        )
    objects += echo_services(upstream, "tie-beta", "tie-alpha")[1]
    objects += [
        ingress("beta", created=stamp, rules=[("tie-name.example", [path("/", "tie-beta", port=80)])]),
        ingress("alpha", created=stamp, rules=[("tie-name.example", [path("/", "tie-alpha", port=80)])]),
    ]
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("merge.example", "/new-only", "new-only"),  # both Ingresses' paths are served on the host
            ("merge.example", "/old-only", "old-only"),
            ("merge.example", "/shared", "old-shared"),  # conflicting path: the oldest Ingress wins
            ("merge.example", "/shared/x", "old-shared"),
            ("merge.example", "/prefix", "old-shared"),  # /prefix/ and /prefix are the same Prefix
            ("merge.example", "/prefix/", "old-shared"),
            ("merge.example", "/exact", "old-exact"),
            ("merge.example", "/nothing", None),
            ("tie-namespace.example", "/", "ns-a/tie"),
            ("tie-name.example", "/", "tie-alpha"),
        ],
    )
    conflicts = routes_page(gateway)["conflicts"]
    losers = {item["route"] for item in conflicts}
    assert any(route.startswith("default/a-newer:merge.example:Prefix:/shared") for route in losers), conflicts
    assert any(route.startswith("ns-b/tie:") for route in losers), conflicts
    assert any(route.startswith("default/beta:") for route in losers), conflicts
    assert servers["new-shared"].requests == []


def test_oldest_creation_timestamp_compares_instants_not_text(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    # 10:00+09:00 is 01:00Z, an hour before 02:00Z: "tokyo" is the older Ingress.
    _servers, objects = echo_services(upstream, "tokyo", "utc")
    objects += [
        ingress("a-utc", created="2024-01-01T02:00:00Z", rules=[("tz.example", [path("/", "utc", port=80)])]),
        ingress("b-tokyo", created="2024-01-01T10:00:00+09:00", rules=[("tz.example", [path("/", "tokyo", port=80)])]),
    ]
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(client, gateway, [("tz.example", "/", "tokyo")])


# --- Services, EndpointSlices, load balancing ---------------------------------------------------


def test_service_ports_endpoints_and_round_robin(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    web = upstream("multi:web")
    metrics = upstream("multi:metrics")
    # A Service with two ports whose targetPorts differ from the Service ports; the
    # EndpointSlice carries the resolved target port under each Service port's name.
    multi = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "multi"},
        "spec": {
            "ports": [
                {"name": "web", "port": 80, "targetPort": 8080},
                {"name": "metrics", "port": 9000, "targetPort": "metrics-port"},
            ]
        },
    }
    multi_slice = endpoint_slice("multi", ["127.0.0.1"], port=web.port, port_name="web")
    multi_slice["ports"].append({"name": "metrics", "port": metrics.port})

    # An unnamed single-port Service: the slice's port has no name either.
    unnamed = upstream("unnamed")
    unnamed_objects = [
        service("unnamed", port=8080, port_name=None),
        endpoint_slice("unnamed", ["127.0.0.1"], port=unnamed.port, port_name=None),
    ]

    # Round robin over two ready endpoints (two slices, since they listen on different ports),
    # with a third, unready endpoint that must get nothing.
    rr = [upstream("rr-1"), upstream("rr-2")]
    rr_unready = upstream("rr-unready")
    rr_objects = [
        service("rr"),
        endpoint_slice("rr", ["127.0.0.1"], port=rr[0].port, name="rr-1"),
        endpoint_slice("rr", ["127.0.0.1"], port=rr[1].port, name="rr-2"),
        endpoint_slice("rr", [("127.0.0.1", False)], port=rr_unready.port, name="rr-3"),
    ]
    # Only an unready endpoint: 503. Ready condition absent: counts as ready.
    only_unready = upstream("only-unready")
    unknown = upstream("ready-unknown")
    unknown_slice = endpoint_slice("ready-unknown", ["127.0.0.1"], port=unknown.port)
    del unknown_slice["endpoints"][0]["conditions"]
    other_objects = [
        service("only-unready"),
        endpoint_slice("only-unready", [("127.0.0.1", False)], port=only_unready.port),
        service("ready-unknown"),
        unknown_slice,
        service("no-endpoints"),
    ]
    app = upstream("app")
    objects = [
        multi,
        multi_slice,
        *unnamed_objects,
        *rr_objects,
        *other_objects,
        *routed_service("app", app.port),
        ingress(
            "ports",
            rules=[
                (
                    "ports.example",
                    [
                        path("/web-number", "multi", port=80),
                        path("/web-name", "multi", port="web"),
                        path("/metrics-number", "multi", port=9000),
                        path("/metrics-name", "multi", port="metrics"),
                        path("/unnamed", "unnamed", port=8080),
                        path("/no-such-port-number", "multi", port=81),
                        path("/no-such-port-name", "multi", port="nope"),
                    ],
                )
            ],
        ),
        ingress(
            "endpoints",
            rules=[
                (
                    "endpoints.example",
                    [
                        path("/rr", "rr"),
                        path("/only-unready", "only-unready"),
                        path("/ready-unknown", "ready-unknown"),
                        path("/no-endpoints", "no-endpoints"),
                        path("/missing-service", "missing-service"),
                        path("/app", "app"),
                    ],
                )
            ],
        ),
    ]
    gateway = start(gateway_process, manifests_dir, objects)
    check_routing(
        client,
        gateway,
        [
            ("ports.example", "/web-number", "multi:web"),
            ("ports.example", "/web-name", "multi:web"),
            ("ports.example", "/metrics-number", "multi:metrics"),
            ("ports.example", "/metrics-name/x", "multi:metrics"),
            ("ports.example", "/unnamed", "unnamed"),
            ("endpoints.example", "/ready-unknown", "ready-unknown"),
            ("endpoints.example", "/app", "app"),
        ],
    )

    # No ready endpoint, no endpoints, no Service: 503 JSON, nothing reaches an upstream; the
    # other routes on the same host keep working.
    for target in ("/only-unready", "/no-endpoints", "/missing-service"):
        assert_error(
            send(client, gateway, "endpoints.example", target),
            503,
            "no_endpoint",
            host="endpoints.example",
            target=target,
        )
        assert_served(
            send(client, gateway, "endpoints.example", "/app"), "app", host="endpoints.example", target="/app"
        )
    assert only_unready.requests == []
    # A Service port the Service does not have: 503 too, and neither of its ports is called.
    before = len(web.requests) + len(metrics.requests)
    for target in ("/no-such-port-number", "/no-such-port-name"):
        assert_error(
            send(client, gateway, "ports.example", target), 503, "no_endpoint", host="ports.example", target=target
        )
    assert len(web.requests) + len(metrics.requests) == before

    total = 40
    seen: dict[str, int] = {}
    for i in range(total):
        response = send(client, gateway, "endpoints.example", f"/rr/{i}")
        assert response.status_code == 200, describe("endpoints.example", f"/rr/{i}", response)
        name = response.json()["upstream"]
        seen[name] = seen.get(name, 0) + 1
    assert rr_unready.requests == [], seen
    assert set(seen) == {"rr-1", "rr-2"}, seen
    for name in ("rr-1", "rr-2"):
        assert seen[name] >= 0.3 * total, seen


# --- query strings and the Host header --------------------------------------------------------


def test_query_string_and_host_header_handling(
    upstream: Upstreams, manifests_dir: Path, gateway_process: Gateways, client: httpx.Client
) -> None:
    _servers, objects = echo_services(upstream, "exact-foo", "prefix-app", "wild")
    objects += [
        ingress(
            "query",
            rules=[
                (
                    "q.example",
                    [
                        path("/foo", "exact-foo", path_type="Exact", port=80),
                        path("/app", "prefix-app", port=80),
                    ],
                )
            ],
        ),
        ingress("wild", rules=[("*.wild.example", [path("/", "wild", port=80)])]),
    ]
    gateway = start(gateway_process, manifests_dir, objects)

    # The query string never takes part in matching, and reaches the upstream as sent.
    check_routing(
        client,
        gateway,
        [
            ("q.example", "/foo?x=1", "exact-foo"),
            ("q.example", "/foo?next=/bar&y=2", "exact-foo"),
            ("q.example", "/app?x=/foo", "prefix-app"),
            ("q.example", "/app/?q=a%2Fb", "prefix-app"),
            ("q.example", "/app/sub?x=1&x=2", "prefix-app"),
            ("q.example", "/foo/?x=1", None),
            ("q.example", "/bar?p=/foo", None),
            ("q.example", "/?/foo", None),
        ],
    )

    # Host matching ignores case and the port; the upstream gets the client's Host unchanged.
    for host, target, expected in [
        ("Q.EXAMPLE", "/foo", "exact-foo"),
        ("q.example:8080", "/foo", "exact-foo"),
        ("Q.Example:1234", "/app/x", "prefix-app"),
        ("q.example.", "/foo", "exact-foo"),
        ("A.WILD.EXAMPLE:99", "/", "wild"),
        ("b.Wild.Example", "/z", "wild"),
    ]:
        body = assert_served(send(client, gateway, host, target), expected, host=host, target=target)
        assert body["headers"]["host"] == host, body
    assert_error(
        send(client, gateway, "Q.EXAMPLE:8080", "/nope"), 404, "no_route", host="Q.EXAMPLE:8080", target="/nope"
    )
    assert_error(send(client, gateway, "x.y.wild.example", "/"), 404, "no_route", host="x.y.wild.example", target="/")
