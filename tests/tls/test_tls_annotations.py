"""The TLS annotations and ``spec.tls`` through a real table build: validation, endpoints, certificates."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway_core.cli import main
from gateway_core.manifests import build_snapshot
from gateway_core.manifests.objects import Ingress
from gateway_core.manifests.tls_policy import BACKEND_PROTOCOL, BACKEND_TLS, SSL_REDIRECT
from gateway_core.messages import Endpoint, UpstreamTLS
from gateway_core.providers.kubernetes.references import secret_references
from gateway_core.routing import BuildOptions, RouteTable, build_table
from gateway_core.testing import (
    TestCertificateAuthority,
    ingress,
    path,
    routed_service,
    secret,
    service,
    tls_secret,
    write_manifests,
)
from gateway_core.transport.balancing import round_robin


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


def build(*objects: dict[str, Any], previous: RouteTable | None = None) -> RouteTable:
    snapshot = build_snapshot([("test.yaml", item) for item in objects])
    return build_table(snapshot, BuildOptions(specs={}, balancer_factory=round_robin), previous)


def web(annotations: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    return ingress("web", rules=[("a.test", [path("/", "api")])], annotations=annotations, **options)


API = routed_service("api", 9443)


def test_no_annotation_means_plain_http_and_the_default_redirect() -> None:
    table = build(*API, web())
    [route] = table.routes
    assert route.spec.tls.ssl_redirect is None
    assert route.spec.tls.backend is None
    assert route.spec.backend.endpoints == (Endpoint("127.0.0.1", 9443),)


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("True", True), (" true ", True)])
def test_ssl_redirect_is_read_per_ingress(value: str, expected: bool) -> None:
    [route] = build(*API, web({SSL_REDIRECT: value})).routes
    assert route.spec.tls.ssl_redirect is expected


@pytest.mark.parametrize(
    ("annotations", "reason"),
    [
        ({SSL_REDIRECT: "yes"}, 'annotation meta-native.io/ssl-redirect: must be "true" or "false", got \'yes\''),
        ({BACKEND_PROTOCOL: "GRPC"}, "annotation meta-native.io/backend-protocol: 'GRPC' is not supported"),
        ({BACKEND_TLS: "verify: false"}, "applies only with meta-native.io/backend-protocol: HTTPS"),
        (
            {BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{ca_secret: ca, verify: false}"},
            "`ca_secret` and `verify: false` contradict each other",
        ),
        ({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{verfy: false}"}, "verfy: Extra inputs are not permitted"),
        ({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "[1, 2]"}, "must be a mapping, got list"),
        ({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{ca_secret: 'Bad Name'}"}, "ca_secret: String should match"),
        (
            {BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{ca_secret: missing}"},
            "ca_secret: Secret default/missing not found",
        ),
        ({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{ca_secret: notca}"}, "Secret default/notca has no ca.crt"),
        ({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{ca_secret: badca}"}, "Secret default/badca: ca.crt is not PEM"),
        ({"meta-native.io/backend-protocl": "HTTPS"}, "unknown meta-native.io/ annotation"),
    ],
)
def test_an_invalid_tls_annotation_rejects_the_ingress_with_the_reason(
    annotations: dict[str, str], reason: str
) -> None:
    table = build(
        *API,
        secret("notca", {"tls.crt": "x"}),
        secret("badca", {"ca.crt": "not pem"}),
        web(annotations),
    )
    rejected = table.rejected["default/web"]
    assert any(reason in text for text in rejected.reasons), rejected.reasons
    assert table.routes[0].unavailable is not None


def test_https_backends_reach_every_endpoint_over_tls_named_after_the_service(ca: TestCertificateAuthority) -> None:
    objects = [
        *API,
        *routed_service("canary", 9444),
        secret("upstream-ca", {"ca.crt": ca.cert_pem}),
        web(
            {
                BACKEND_PROTOCOL: "HTTPS",
                BACKEND_TLS: "ca_secret: upstream-ca",
                "meta-native.io/canary": "{service: canary, port: http, weight: 10}",
            }
        ),
    ]
    [route] = build(*objects).routes
    [endpoint] = route.spec.backend.endpoints
    assert endpoint == Endpoint("127.0.0.1", 9443, UpstreamTLS("api.default.svc", verify=True, ca_pem=ca.cert_pem))
    assert endpoint != Endpoint("127.0.0.1", 9443)  # a TLS endpoint is another endpoint (pool, state)
    [(_, canary)] = route.canaries
    assert canary.target.endpoints[0].tls == UpstreamTLS("canary.default.svc", verify=True, ca_pem=ca.cert_pem)


def test_server_name_and_verify_come_from_the_annotation_and_external_names_are_their_own() -> None:
    objects = [
        service("ext", external_name="Backend.Example.COM", port=443),
        ingress(
            "web",
            rules=[("a.test", [path("/", "ext", port=443)])],
            annotations={BACKEND_PROTOCOL: "https", BACKEND_TLS: "verify: false"},
        ),
        *API,
        ingress(
            "named",
            rules=[("b.test", [path("/", "api")])],
            annotations={BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "{server_name: api.internal}"},
        ),
    ]
    routes = {route.info.host: route for route in build(*objects).routes}
    assert routes["a.test"].spec.backend.endpoints[0].tls == UpstreamTLS("backend.example.com", verify=False)
    assert routes["b.test"].spec.backend.endpoints[0].tls == UpstreamTLS("api.internal", verify=True)


def test_spec_tls_becomes_the_tables_certificates_and_shows_on_routes(ca: TestCertificateAuthority) -> None:
    good = ca.issue("a.test")
    table = build(
        *API,
        tls_secret("good", good.cert_pem, good.key_pem),
        secret("broken", {"tls.crt": "x", "tls.key": "y"}, secret_type="kubernetes.io/tls"),
        web(tls=[(["a.test"], "good"), (["b.test"], "broken")]),
    )
    served = table.certificates.lookup("a.test")
    assert served is not None
    assert served.pair.fingerprint == good.fingerprint
    assert table.rejected == {}  # a bad certificate does not reject the Ingress: its routes serve
    described = table.describe()["certificates"]
    assert described["served"][0]["hosts"] == ["a.test"]
    [refused] = described["rejected"]
    assert (refused["ingress"], refused["secret"], refused["hosts"]) == ("default/web", "default/broken", ["b.test"])
    assert "tls.crt is not a PEM certificate" in refused["reason"]


def test_certificates_follow_the_served_version_of_a_rejected_ingress(ca: TestCertificateAuthority) -> None:
    good = ca.issue("a.test")
    objects = [*API, tls_secret("good", good.cert_pem, good.key_pem)]
    first = build(*objects, web(tls=[(["a.test"], "good")]))
    rejected = build(*objects, web({SSL_REDIRECT: "maybe"}, tls=[(["a.test"], "other")]), previous=first)
    assert rejected.rejected["default/web"].serving_last_good
    served = rejected.certificates.lookup("a.test")
    assert served is not None
    assert served.pair.fingerprint == good.fingerprint
    assert rejected.certificates.problems == ()


def test_the_kubernetes_provider_keeps_the_ca_secret_of_backend_tls() -> None:
    web_ingress = Ingress.model_validate(
        web({BACKEND_PROTOCOL: "HTTPS", BACKEND_TLS: "ca_secret: upstream-ca"}, tls=[(["a.test"], "site-cert")])
        | {"metadata": {"name": "web", "namespace": "shop", "annotations": {BACKEND_TLS: "ca_secret: upstream-ca"}}}
    )
    references = secret_references([web_ingress], {})
    assert references("shop", "upstream-ca")
    assert references("shop", "site-cert")
    assert not references("other", "upstream-ca")


def test_gateway_check_warns_about_a_refused_certificate(tmp_path: Path, ca: TestCertificateAuthority) -> None:
    expired = ca.issue(
        "a.test",
        valid_from=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        valid_until=datetime.datetime(2020, 2, 1, tzinfo=datetime.UTC),
    )
    write_manifests(
        tmp_path, [*API, tls_secret("old", expired.cert_pem, expired.key_pem), web(tls=[(["a.test"], "old")])]
    )
    result = CliRunner().invoke(main, ["check", "--strict", str(tmp_path)])
    assert result.exit_code == 1  # a warning, fatal with --strict
    assert (
        "warning: certificate refused: Ingress default/web: Secret default/old for a.test: "
        "the certificate expired on 2020-02-01T00:00:00Z (the default certificate answers)"
    ) in result.output
