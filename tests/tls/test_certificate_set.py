"""The host -> certificate map of a table: SNI lookup, conflicts, refused Secrets, the previous one kept."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import pytest

from gateway_core.testing import IssuedCertificate, TestCertificateAuthority
from gateway_core.tls.certificate_set import CertificateRequest, CertificateSet, build_certificate_set
from gateway_core.tls.certificates import CertificateError

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()


def tls_data(issued: IssuedCertificate) -> dict[str, bytes]:
    return {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem}


def build(
    secrets: Mapping[tuple[str, str], Mapping[str, bytes]],
    *requests: CertificateRequest,
    previous: CertificateSet | None = None,
    now: datetime.datetime | None = None,
) -> CertificateSet:
    def lookup(namespace: str, name: str) -> Mapping[str, bytes] | None:
        return secrets.get((namespace, name))

    return build_certificate_set(requests, lookup, previous=previous, now=now)


def request(secret: str | None, *hosts: str, ingress: str = "shop/web", namespace: str = "shop") -> CertificateRequest:
    return CertificateRequest(ingress=ingress, namespace=namespace, secret_name=secret, hosts=hosts)


def fingerprint(certificates: CertificateSet, server_name: str) -> str | None:
    served = certificates.lookup(server_name)
    return served.pair.fingerprint if served is not None else None


def test_sni_finds_the_exact_host_first_then_the_one_label_wildcard(ca: TestCertificateAuthority) -> None:
    exact, wildcard = ca.issue("api.shop.test"), ca.issue("*.shop.test")
    certificates = build(
        {("shop", "exact"): tls_data(exact), ("shop", "wild"): tls_data(wildcard)},
        request("wild", "*.shop.test"),
        request("exact", "api.shop.test"),
    )
    assert fingerprint(certificates, "api.shop.test") == exact.fingerprint
    assert fingerprint(certificates, "www.shop.test") == wildcard.fingerprint
    assert fingerprint(certificates, "a.b.shop.test") is None  # one label only
    assert fingerprint(certificates, "shop.test") is None
    assert fingerprint(certificates, "other.test") is None
    assert certificates.problems == ()
    assert certificates.covers("api.shop.test")
    assert certificates.covers("www.shop.test")
    assert not certificates.covers("shop.test")
    assert not certificates.covers("other.test")


def test_covers_accepts_only_well_formed_hosts(ca: TestCertificateAuthority) -> None:
    certificates = build({("shop", "wild"): tls_data(ca.issue("*.shop.test"))}, request("wild", "*.shop.test"))
    for host in ("evil.com/x.shop.test", "a b.shop.test", "-a.shop.test", "a@b.shop.test", ".shop.test"):
        assert not certificates.covers(host), host


def test_an_older_ingress_keeps_a_host_another_also_claims(ca: TestCertificateAuthority) -> None:
    first, second = ca.issue("a.test"), ca.issue("a.test")
    certificates = build(
        {("one", "cert"): tls_data(first), ("two", "cert"): tls_data(second)},
        request("cert", "a.test", ingress="one/web", namespace="one"),
        request("cert", "a.test", ingress="two/web", namespace="two"),
    )
    assert fingerprint(certificates, "a.test") == first.fingerprint
    assert certificates.describe()["served"][0]["secret"] == "one/cert"


def test_a_tls_entry_without_a_secret_gives_its_hosts_tls_on_the_default_certificate() -> None:
    certificates = build({}, request(None, "a.test", "*.b.test"))
    assert certificates.lookup("a.test") is None  # the listener's default answers
    assert certificates.covers("a.test")
    assert certificates.covers("x.b.test")
    assert bool(certificates)
    assert not bool(build({}))


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        ({}, "Secret shop/cert not found"),
        ({("shop", "cert"): {"tls.crt": b"x"}}, "the Secret has no tls.key"),
        ({("shop", "cert"): {"ca.crt": b"x"}}, "the Secret has no tls.crt and no tls.key"),
        ({("shop", "cert"): {"tls.crt": b"nope", "tls.key": b"nope"}}, "tls.crt is not a PEM certificate"),
    ],
)
def test_an_unusable_secret_is_a_problem_and_its_host_falls_back_to_the_default(
    secrets: Mapping[tuple[str, str], Mapping[str, bytes]], reason: str
) -> None:
    certificates = build(secrets, request("cert", "a.test"))
    assert certificates.lookup("a.test") is None
    assert not certificates.covers("a.test")  # no redirect to a certificate that is not there
    [problem] = certificates.problems
    assert (problem.ingress, problem.secret, problem.hosts) == ("shop/web", "shop/cert", ("a.test",))
    assert reason in problem.reason
    assert problem.serving_previous is False
    assert "the default certificate answers" in str(problem)


def test_a_certificate_that_does_not_name_the_host_is_refused_for_that_host(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test")
    certificates = build({("shop", "cert"): tls_data(issued)}, request("cert", "a.test", "b.test"))
    assert fingerprint(certificates, "a.test") == issued.fingerprint
    assert certificates.lookup("b.test") is None
    [problem] = certificates.problems
    assert problem.hosts == ("b.test",)
    assert problem.reason == "the certificate's names (a.test) do not cover the host"


def test_a_broken_update_keeps_the_previous_certificate_serving(ca: TestCertificateAuthority) -> None:
    old = ca.issue("a.test", "b.test")
    previous = build({("shop", "cert"): tls_data(old)}, request("cert", "a.test", "b.test"))
    expired = ca.issue(
        "a.test", valid_from=NOW - datetime.timedelta(days=9), valid_until=NOW - datetime.timedelta(days=1)
    )
    for broken in ({"tls.crt": old.cert_pem, "tls.key": ca.issue("a.test").key_pem}, tls_data(expired), None):
        secrets = {("shop", "cert"): broken} if broken is not None else {}
        current = build(secrets, request("cert", "a.test", "b.test"), previous=previous)
        assert fingerprint(current, "a.test") == old.fingerprint
        assert fingerprint(current, "b.test") == old.fingerprint
        [problem] = current.problems
        assert problem.serving_previous is True
        assert "the previous certificate keeps serving" in str(problem)
        assert current.covers("a.test")
    fixed = ca.issue("a.test", "b.test")
    current = build({("shop", "cert"): tls_data(fixed)}, request("cert", "a.test", "b.test"), previous=previous)
    assert fingerprint(current, "a.test") == fixed.fingerprint
    assert current.problems == ()


def test_a_previous_certificate_that_has_expired_since_is_not_kept(ca: TestCertificateAuthority) -> None:
    old = ca.issue("a.test")
    previous = build({("shop", "cert"): tls_data(old)}, request("cert", "a.test"))
    later = NOW + datetime.timedelta(days=31)  # the issued certificate is valid for 30 days
    current = build({}, request("cert", "a.test"), previous=previous, now=later)
    assert current.lookup("a.test") is None
    assert current.problems[0].serving_previous is False


def test_an_unchanged_pair_reuses_its_context_across_builds(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test")
    secrets = {("shop", "cert"): tls_data(issued)}
    first = build(secrets, request("cert", "a.test"))
    second = build(secrets, request("cert", "a.test"), previous=first)
    assert second.lookup("a.test") is first.lookup("a.test")
    third = build({("shop", "cert"): tls_data(ca.issue("a.test"))}, request("cert", "a.test"), previous=second)
    served, before = third.lookup("a.test"), second.lookup("a.test")
    assert served is not None
    assert before is not None
    assert served.context is not before.context


def test_an_undecodable_secret_reports_the_lookup_error(ca: TestCertificateAuthority) -> None:
    def lookup(namespace: str, name: str) -> Mapping[str, bytes] | None:
        raise CertificateError("Secret shop/cert: data.tls.crt is not valid base64")

    certificates = build_certificate_set([request("cert", "a.test")], lookup)
    assert certificates.problems[0].reason == "Secret shop/cert: data.tls.crt is not valid base64"


def test_entries_without_hosts_or_with_invalid_hosts_are_problems(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test")
    certificates = build({("shop", "cert"): tls_data(issued)}, request("cert"), request("cert", "Not A Host", "a.test"))
    assert [problem.reason for problem in certificates.problems] == [
        "the spec.tls entry names no hosts, so it serves none",
        "not a valid host (a DNS name, optionally '*.' + a DNS name)",
    ]
    assert fingerprint(certificates, "a.test") == issued.fingerprint


def test_new_problems_are_those_not_reported_before(ca: TestCertificateAuthority) -> None:
    first = build({}, request("cert", "a.test"))
    again = build({}, request("cert", "a.test"), previous=first)
    other = build({}, request("cert", "a.test"), request("other", "b.test"), previous=again)
    assert len(first.new_problems(None)) == 1
    assert again.new_problems(first) == []
    assert [problem.secret for problem in other.new_problems(again)] == ["shop/other"]


def test_describe_groups_hosts_per_certificate(ca: TestCertificateAuthority) -> None:
    issued = ca.issue("a.test", "*.b.test")
    certificates = build(
        {("shop", "cert"): tls_data(issued)}, request("cert", "a.test", "*.b.test"), request(None, "c.test")
    )
    described = certificates.describe()
    [served] = described["served"]
    assert served["hosts"] == ["*.b.test", "a.test"]
    assert served["fingerprint_sha256"] == issued.fingerprint
    assert served["names"] == ["a.test", "*.b.test"]
    assert described["default_certificate_hosts"] == ["c.test"]
    assert described["rejected"] == []
