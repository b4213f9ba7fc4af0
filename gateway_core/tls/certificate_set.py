"""The certificates of one route table: host -> certificate, and the Secrets refused.

Built with each table from the ``spec.tls`` entries of the Ingresses being served, oldest
Ingress first (an older Ingress keeps a host another one also claims, as for routes). A
Secret that cannot serve a host — missing, not PEM, key not matching, expired, or simply not
naming the host — is a :class:`CertificateProblem`, never a rejected Ingress: its routes keep
serving. The host keeps the certificate the previous table served it with (if any, and not
expired since); otherwise the listener's default certificate answers for it.

Building a server context costs a file write and an OpenSSL load, so unchanged pairs are
reused from the previous set by content digest: endpoint churn rebuilds tables often.

Pure but for the short-lived key file of :func:`~gateway_core.tls.contexts.server_context`.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway_core.tls.certificates import CertificateError, KeyPair, load_key_pair
from gateway_core.tls.contexts import ServerTlsOptions, server_context

SecretLookup = Callable[[str, str], Mapping[str, bytes] | None]
"""``(namespace, name)`` -> the Secret's decoded data, None when there is no such Secret;
raises :class:`CertificateError` when its data cannot be decoded."""

_LABEL_TEXT = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_LABEL = re.compile(rf"^{_LABEL_TEXT}$")
_HOST = re.compile(rf"^(\*\.)?{_LABEL_TEXT}(\.{_LABEL_TEXT})*$")


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """One ``spec.tls`` entry of a served Ingress: these hosts, served from this Secret."""

    ingress: str
    """``namespace/name`` of the Ingress."""
    namespace: str
    secret_name: str | None
    """None: the hosts have TLS with the listener's default certificate (as in ingress-nginx)."""
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ServedCertificate:
    """A checked certificate and the server context that presents it."""

    secret: str
    """``namespace/name`` of its Secret, or a description for the default certificate."""
    pair: KeyPair
    context: ssl.SSLContext
    digest: bytes
    """SHA-256 over certificate and key: the same content reuses this object."""

    def describe(self) -> dict[str, Any]:
        pair = self.pair
        return {
            "secret": self.secret,
            "subject": pair.subject,
            "names": list(pair.names),
            "not_after": pair.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprint_sha256": pair.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class CertificateProblem:
    """A Secret that cannot serve (some of) the hosts of a ``spec.tls`` entry, and why."""

    ingress: str
    secret: str
    hosts: tuple[str, ...]
    reason: str
    serving_previous: bool
    """True when every one of ``hosts`` keeps the certificate it had; False when one falls
    back to the default certificate."""

    def __str__(self) -> str:
        after = "the previous certificate keeps serving" if self.serving_previous else "the default certificate answers"
        return f"Ingress {self.ingress}: Secret {self.secret} for {', '.join(self.hosts)}: {self.reason} ({after})"


class CertificateSet:
    """Immutable: which certificate each TLS host gets, matched by SNI."""

    __slots__ = ("exact", "wildcard", "default_hosts", "problems", "_by_digest")

    def __init__(
        self,
        exact: Mapping[str, ServedCertificate] | None = None,
        wildcard: Mapping[str, ServedCertificate] | None = None,
        default_hosts: frozenset[str] = frozenset(),
        problems: tuple[CertificateProblem, ...] = (),
    ) -> None:
        self.exact: Mapping[str, ServedCertificate] = exact or {}
        """Host -> certificate."""
        self.wildcard: Mapping[str, ServedCertificate] = wildcard or {}
        """``example.com`` -> the certificate of ``*.example.com``."""
        self.default_hosts = default_hosts
        """Hosts (or ``*.suffix`` patterns) with TLS on the listener's default certificate."""
        self.problems = problems
        self._by_digest = {served.digest: served for served in (*self.exact.values(), *self.wildcard.values())}

    def __bool__(self) -> bool:
        """Whether any host has TLS (nothing to redirect when none does)."""
        return bool(self.exact or self.wildcard or self.default_hosts)

    def lookup(self, server_name: str) -> ServedCertificate | None:
        """The certificate for an SNI name: exact host first, then the one-label wildcard."""
        served = self.exact.get(server_name)
        if served is None and self.wildcard:
            _, dot, rest = server_name.partition(".")
            if dot:
                served = self.wildcard.get(rest)
        return served

    def covers(self, host: str) -> bool:
        """Whether ``host`` (lowercase, from a Host header) has TLS here.

        True only for a well-formed name, so a redirect built from it cannot point elsewhere.
        """
        if host in self.exact or host in self.default_hosts:
            return True
        label, dot, rest = host.partition(".")
        if not dot or not _LABEL.match(label):
            return False
        return rest in self.wildcard or f"*.{rest}" in self.default_hosts

    def served_for(self, host: str) -> ServedCertificate | None:
        """The certificate serving ``host`` as written in ``spec.tls`` (``*.x`` for a wildcard)."""
        if host.startswith("*."):
            return self.wildcard.get(host[2:])
        return self.exact.get(host)

    def reusable(self, digest: bytes) -> ServedCertificate | None:
        """A certificate of this set with the same content, for the next build."""
        return self._by_digest.get(digest)

    def new_problems(self, previous: CertificateSet | None) -> list[CertificateProblem]:
        """Problems not already reported by ``previous`` (what to log once)."""
        known = set(previous.problems) if previous is not None else set()
        return [problem for problem in self.problems if problem not in known]

    def describe(self) -> dict[str, Any]:
        """The set as ``/routes`` shows it."""
        hosts: dict[int, tuple[ServedCertificate, list[str]]] = {}
        for host, served in (*self.exact.items(), *((f"*.{k}", v) for k, v in self.wildcard.items())):
            hosts.setdefault(id(served), (served, []))[1].append(host)
        return {
            "served": [{**served.describe(), "hosts": sorted(names)} for served, names in hosts.values()],
            "default_certificate_hosts": sorted(self.default_hosts),
            "rejected": [
                {
                    "ingress": problem.ingress,
                    "secret": problem.secret,
                    "hosts": list(problem.hosts),
                    "reason": problem.reason,
                    "serving_previous": problem.serving_previous,
                }
                for problem in self.problems
            ],
        }


def build_certificate_set(
    requests: Iterable[CertificateRequest],
    secrets: SecretLookup,
    *,
    previous: CertificateSet | None = None,
    options: ServerTlsOptions | None = None,
    now: datetime.datetime | None = None,
) -> CertificateSet:
    """The certificate set for ``requests`` (oldest Ingress first), keeping good previous ones."""
    builder = _Builder(secrets, previous, options or ServerTlsOptions(), now or datetime.datetime.now(datetime.UTC))
    for request in requests:
        builder.add(request)
    return CertificateSet(builder.exact, builder.wildcard, frozenset(builder.default_hosts), tuple(builder.problems))


class _Builder:
    def __init__(
        self,
        secrets: SecretLookup,
        previous: CertificateSet | None,
        options: ServerTlsOptions,
        now: datetime.datetime,
    ) -> None:
        self.secrets = secrets
        self.previous = previous
        self.options = options
        self.now = now
        self.exact: dict[str, ServedCertificate] = {}
        self.wildcard: dict[str, ServedCertificate] = {}
        self.default_hosts: set[str] = set()
        self.problems: list[CertificateProblem] = []
        self.loaded: dict[tuple[str, str], ServedCertificate | CertificateError] = {}

    def add(self, request: CertificateRequest) -> None:
        secret = f"{request.namespace}/{request.secret_name}" if request.secret_name else "(default certificate)"
        if not request.hosts:
            self._problem(request, secret, (), "the spec.tls entry names no hosts, so it serves none")
            return
        invalid = [host for host in request.hosts if not _HOST.match(host.lower())]
        if invalid:
            self._problem(request, secret, invalid, "not a valid host (a DNS name, optionally '*.' + a DNS name)")
        hosts = [host.lower() for host in request.hosts if host not in invalid and not self._taken(host.lower())]
        if not hosts:
            return
        if request.secret_name is None:
            self.default_hosts.update(hosts)
            return
        loaded = self._load(request.namespace, request.secret_name)
        if isinstance(loaded, CertificateError):
            self._keep_previous(request, secret, hosts, str(loaded))
            return
        uncovered = [host for host in hosts if not loaded.pair.covers(host)]
        for host in hosts:
            if host not in uncovered:
                self._assign(host, loaded)
        if uncovered:
            names = ", ".join(loaded.pair.names) or "none"
            self._keep_previous(request, secret, uncovered, f"the certificate's names ({names}) do not cover the host")

    def _problem(self, request: CertificateRequest, secret: str, hosts: Iterable[str], reason: str) -> None:
        self.problems.append(CertificateProblem(request.ingress, secret, tuple(hosts), reason, serving_previous=False))

    def _taken(self, host: str) -> bool:
        """An older Ingress already gave this host a certificate (or the default one)."""
        if host in self.default_hosts:
            return True
        return (host[2:] in self.wildcard) if host.startswith("*.") else (host in self.exact)

    def _assign(self, host: str, served: ServedCertificate) -> None:
        if host.startswith("*."):
            self.wildcard[host[2:]] = served
        else:
            self.exact[host] = served

    def _keep_previous(self, request: CertificateRequest, secret: str, hosts: list[str], reason: str) -> None:
        kept = 0
        for host in hosts:
            served = self.previous.served_for(host) if self.previous is not None else None
            if served is not None and served.pair.not_after >= self.now:
                self._assign(host, served)
                kept += 1
        self.problems.append(
            CertificateProblem(request.ingress, secret, tuple(hosts), reason, serving_previous=kept == len(hosts))
        )

    def _load(self, namespace: str, name: str) -> ServedCertificate | CertificateError:
        key = (namespace, name)
        found = self.loaded.get(key)
        if found is None:
            try:
                found = self._read(namespace, name)
            except CertificateError as exc:
                found = exc
            self.loaded[key] = found
        return found

    def _read(self, namespace: str, name: str) -> ServedCertificate:
        data = self.secrets(namespace, name)
        if data is None:
            raise CertificateError(f"Secret {namespace}/{name} not found")
        cert_pem, key_pem = data.get("tls.crt"), data.get("tls.key")
        missing = [key for key, value in (("tls.crt", cert_pem), ("tls.key", key_pem)) if value is None]
        if cert_pem is None or key_pem is None:
            raise CertificateError(
                f"the Secret has no {' and no '.join(missing)} (a kubernetes.io/tls Secret has both)"
            )
        digest = hashlib.sha256(cert_pem + b"\0" + key_pem).digest()
        reusable = self.previous.reusable(digest) if self.previous is not None else None
        label = f"{namespace}/{name}"
        if reusable is not None:
            pair = reusable.pair
            if pair.not_after < self.now:
                raise CertificateError(f"the certificate expired on {pair.not_after.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            return reusable if reusable.secret == label else ServedCertificate(label, pair, reusable.context, digest)
        pair = load_key_pair(cert_pem, key_pem, now=self.now)
        return ServedCertificate(label, pair, server_context(pair, self.options), digest)


def default_certificate(
    cert_pem: bytes, key_pem: bytes, options: ServerTlsOptions, *, source: str
) -> ServedCertificate:
    """The listener's default certificate (a file pair or the generated one); raises CertificateError."""
    pair = load_key_pair(cert_pem, key_pem)
    digest = hashlib.sha256(cert_pem + b"\0" + key_pem).digest()
    return ServedCertificate(source, pair, server_context(pair, options), digest)
