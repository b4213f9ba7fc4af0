"""Host and path matching with the Kubernetes Ingress rules (DESIGN §5).

Indexes are built directly through ``HostIndex.bucket()`` and also through ``build_table``
from real Ingress manifests; both must answer the Kubernetes documentation's examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from gateway_core.manifests import build_snapshot
from gateway_core.routing import BuildOptions, RouteTable, build_table
from gateway_core.routing.matching import HostIndex, PathIndex, exact_key, normalize_path, prefix_key
from gateway_core.testing import ingress, path, routed_service
from gateway_core.transport.balancing import round_robin

# --- helpers --------------------------------------------------------------------------------


def _bucket(
    index: HostIndex[str],
    host: str,
    *,
    prefixes: Iterable[str] = (),
    exacts: Iterable[str] = (),
    fallback: str | None = None,
) -> PathIndex[str]:
    """Fill one host bucket; each route's value names it: ``"<host> Prefix <path>"``."""
    bucket = index.bucket(host)
    for declared in prefixes:
        bucket.prefix[prefix_key(declared)] = f"{host or '*'} Prefix {declared}"
    for declared in exacts:
        bucket.exact[exact_key(declared)] = f"{host or '*'} Exact {declared}"
    if fallback is not None:
        bucket.fallback = fallback
    return bucket


def _paths(*, prefixes: Iterable[str] = (), exacts: Iterable[str] = ()) -> PathIndex[str]:
    return _bucket(HostIndex(), "", prefixes=prefixes, exacts=exacts)


def _request(match_path: str) -> str:
    """The path routing sees for a request path (dot-segments resolved, as request_head does)."""
    return normalize_path(match_path) or match_path


def _table(*documents: dict[str, Any]) -> RouteTable:
    snapshot = build_snapshot(("test.yaml", document) for document in documents)
    assert snapshot.problems == ()
    table = build_table(snapshot, BuildOptions(specs={}, balancer_factory=round_robin))
    assert table.rejected == {}
    return table


def _rules_table(
    rules: Sequence[tuple[str | None, Sequence[tuple[str, str]]]], default_backend: str | None = None
) -> RouteTable:
    """One Ingress; each path's service is named after its type and path (``prefix-aaa-bbb``)."""
    services: dict[str, None] = {}
    manifest_rules = []
    for host, paths in rules:
        entries = []
        for path_type, declared in paths:
            name = _service_name(path_type, declared)
            services[name] = None
            entries.append(path(declared, name, path_type=path_type))
        manifest_rules.append((host, entries))
    if default_backend is not None:
        services[default_backend] = None
    objects = [obj for name in services for obj in routed_service(name, 8080)]
    return _table(*objects, ingress("web", rules=manifest_rules, default_backend=default_backend))


def _service_name(path_type: str, declared: str) -> str:
    segments = "-".join(filter(None, declared.lower().split("/")))
    return f"{path_type.lower()}-{segments}" if segments else "root" if path_type == "Prefix" else "exact-root"


def _served_by(table: RouteTable, host: str, request_path: str) -> str | None:
    route = table.match(host, _request(request_path))
    return route.info.service if route is not None else None


# --- the Kubernetes documentation's path examples -------------------------------------------

# (kind, paths, request path, expected winner or None): the "Examples" table of
# https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
K8S_EXAMPLES: list[tuple[list[tuple[str, str]], str, tuple[str, str] | None]] = [
    ([("Prefix", "/")], "/", ("Prefix", "/")),
    ([("Prefix", "/")], "/anything", ("Prefix", "/")),
    ([("Prefix", "/")], "/a/b/c/", ("Prefix", "/")),
    ([("Exact", "/foo")], "/foo", ("Exact", "/foo")),
    ([("Exact", "/foo")], "/bar", None),
    ([("Exact", "/foo")], "/foo/", None),
    ([("Exact", "/foo/")], "/foo", None),
    ([("Prefix", "/foo")], "/foo", ("Prefix", "/foo")),
    ([("Prefix", "/foo")], "/foo/", ("Prefix", "/foo")),
    ([("Prefix", "/foo/")], "/foo", ("Prefix", "/foo/")),
    ([("Prefix", "/foo/")], "/foo/", ("Prefix", "/foo/")),
    ([("Prefix", "/aaa/bb")], "/aaa/bbb", None),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb", ("Prefix", "/aaa/bbb")),
    ([("Prefix", "/aaa/bbb/")], "/aaa/bbb", ("Prefix", "/aaa/bbb/")),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb/", ("Prefix", "/aaa/bbb")),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", ("Prefix", "/aaa/bbb")),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", None),
    ([("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", ("Prefix", "/aaa")),
    ([("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/aaa/bbb", ("Prefix", "/aaa/bbb")),
    ([("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/ccc", ("Prefix", "/")),
    ([("Prefix", "/aaa")], "/ccc", None),
    ([("Prefix", "/foo"), ("Exact", "/foo")], "/foo", ("Exact", "/foo")),
    ([("Exact", "/foo"), ("Prefix", "/foo")], "/foo", ("Exact", "/foo")),
]


def _example_id(example: tuple[list[tuple[str, str]], str, tuple[str, str] | None]) -> str:
    paths, request_path, _ = example
    return ",".join(f"{kind}:{declared}" for kind, declared in paths) + f"<-{request_path}"


EXAMPLE_IDS = [_example_id(example) for example in K8S_EXAMPLES]


@pytest.mark.parametrize(("paths", "request_path", "expected"), K8S_EXAMPLES, ids=EXAMPLE_IDS)
def test_kubernetes_path_examples_on_a_path_index(
    paths: list[tuple[str, str]], request_path: str, expected: tuple[str, str] | None
) -> None:
    index = _paths(
        prefixes=[p for kind, p in paths if kind == "Prefix"], exacts=[p for kind, p in paths if kind == "Exact"]
    )
    want = f"* {expected[0]} {expected[1]}" if expected is not None else None
    assert index.match(request_path) == want


@pytest.mark.parametrize(("paths", "request_path", "expected"), K8S_EXAMPLES, ids=EXAMPLE_IDS)
def test_kubernetes_path_examples_through_build_table(
    paths: list[tuple[str, str]], request_path: str, expected: tuple[str, str] | None
) -> None:
    table = _rules_table([("example.com", paths)])
    want = _service_name(*expected) if expected is not None else None
    assert _served_by(table, "example.com", request_path) == want


@pytest.mark.parametrize("request_path", ["/", "/a", "/a/", "/a/b/c", "/index.html", "/%20", "/;x"])
def test_root_prefix_matches_every_path(request_path: str) -> None:
    assert _paths(prefixes=["/"]).match(request_path) == "* Prefix /"


def test_longest_prefix_wins_regardless_of_declaration_order() -> None:
    index = _paths(prefixes=["/aaa/bbb", "/", "/aaa"])
    assert index.match("/aaa/bbb/ccc/ddd") == "* Prefix /aaa/bbb"
    assert index.match("/aaa/bb") == "* Prefix /aaa"
    assert index.match("/aaa") == "* Prefix /aaa"
    assert index.match("/aa") == "* Prefix /"


def test_exact_beats_shorter_prefix_and_longer_prefix_beats_nothing() -> None:
    index = _paths(prefixes=["/foo", "/foo/bar"], exacts=["/foo/bar/baz"])
    assert index.match("/foo/bar/baz") == "* Exact /foo/bar/baz"
    assert index.match("/foo/bar/baz/") == "* Prefix /foo/bar"
    assert index.match("/foo/bar/bazz") == "* Prefix /foo/bar"


def test_exact_root() -> None:
    index = _paths(exacts=["/"], prefixes=["/api"])
    assert index.match("/") == "* Exact /"
    assert index.match("/api/x") == "* Prefix /api"
    assert index.match("/other") is None


def test_empty_path_index_matches_nothing() -> None:
    index: PathIndex[str] = PathIndex()
    assert index.match("/") is None
    assert index.match("/a") is None


# --- case sensitivity -----------------------------------------------------------------------


def test_paths_are_case_sensitive() -> None:
    index = _paths(prefixes=["/Foo"], exacts=["/Bar"])
    assert index.match("/Foo/x") == "* Prefix /Foo"
    assert index.match("/foo/x") is None
    assert index.match("/FOO") is None
    assert index.match("/Bar") == "* Exact /Bar"
    assert index.match("/bar") is None


def test_paths_are_case_sensitive_through_build_table() -> None:
    table = _rules_table([("example.com", [("Exact", "/Admin"), ("Prefix", "/")])])
    assert _served_by(table, "example.com", "/Admin") == "exact-admin"
    assert _served_by(table, "example.com", "/admin") == "root"


def test_declared_host_case_does_not_matter() -> None:
    table = _rules_table([("Example.COM", [("Prefix", "/")])])
    assert _served_by(table, "example.com", "/") == "root"


# --- dot segments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("/a/./b/../c", "/a/c"),
        ("/public/../admin", "/admin"),
        ("/public/./../admin/", "/admin/"),
        ("/..", "/"),
        ("/../../admin", "/admin"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/.", "/"),
        ("/./", "/"),
        ("/a/b/../", "/a/"),
        ("//..//admin", "/admin"),
    ],
)
def test_normalize_path_resolves_dot_segments(raw: str, normalized: str) -> None:
    assert normalize_path(raw) == normalized


@pytest.mark.parametrize(
    "raw", ["/", "/a/b", "/a/b/", "/.well-known/acme", "/a/..b", "/a/b..", "/...", "/a.b/c.", "/a//b", "/%2e%2e/x"]
)
def test_normalize_path_leaves_normal_paths_alone(raw: str) -> None:
    assert normalize_path(raw) is None


def test_dot_segments_cannot_escape_an_exact_route() -> None:
    index = _paths(prefixes=["/public"], exacts=["/admin"])
    assert index.match(_request("/public/../admin")) == "* Exact /admin"
    assert index.match(_request("/public/./x")) == "* Prefix /public"
    assert index.match(_request("/public/x/../../admin")) == "* Exact /admin"


def test_dot_segments_through_build_table() -> None:
    table = _rules_table([("example.com", [("Prefix", "/public"), ("Prefix", "/admin"), ("Exact", "/a/c")])])
    assert _served_by(table, "example.com", "/public/../admin") == "prefix-admin"
    assert _served_by(table, "example.com", "/public/../admin/users") == "prefix-admin"
    assert _served_by(table, "example.com", "/a/./b/../c") == "exact-a-c"
    assert _served_by(table, "example.com", "/x/./y/../../a/c") == "exact-a-c"
    assert _served_by(table, "example.com", "/public/./x") == "prefix-public"
    assert _served_by(table, "example.com", "/public/..") is None


# --- double slashes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "key"),
    [
        ("/", ""),
        ("", ""),
        ("/foo", "/foo"),
        ("/foo/", "/foo"),
        ("/foo//", "/foo"),
        ("//foo//bar//", "/foo/bar"),
        ("///", ""),
        ("/a/b/c", "/a/b/c"),
    ],
)
def test_prefix_key(declared: str, key: str) -> None:
    assert prefix_key(declared) == key


@pytest.mark.parametrize(
    ("declared", "key"),
    [("/", "/"), ("/foo", "/foo"), ("/foo/", "/foo/"), ("//foo", "/foo"), ("/foo//", "/foo/"), ("/a///b", "/a/b")],
)
def test_exact_key(declared: str, key: str) -> None:
    assert exact_key(declared) == key


def test_prefix_matching_ignores_empty_segments() -> None:
    index = _paths(prefixes=["/", "/foo", "/foo/bar"])
    assert index.match("//foo") == "* Prefix /foo"
    assert index.match("/foo//bar") == "* Prefix /foo/bar"
    assert index.match("//foo//bar//baz") == "* Prefix /foo/bar"
    assert index.match("//") == "* Prefix /"


def test_double_slash_cannot_dodge_an_exact_route() -> None:
    # "//admin" must not slip past "Exact /admin" (and its plugins) to the catch-all.
    index = _paths(prefixes=["/"], exacts=["/admin", "/dir/"])
    assert index.match("//admin") == "* Exact /admin"
    assert index.match("/admin") == "* Exact /admin"
    assert index.match("/dir//") == "* Exact /dir/"
    assert index.match("//dir/") == "* Exact /dir/"
    assert index.match("/admin/") == "* Prefix /"  # a trailing slash still counts for Exact
    assert index.match("/dir") == "* Prefix /"


def test_double_slashes_through_build_table() -> None:
    table = _rules_table([("example.com", [("Prefix", "/"), ("Exact", "/admin"), ("Prefix", "/api")])])
    assert _served_by(table, "example.com", "//admin") == "exact-admin"
    assert _served_by(table, "example.com", "//api//v1") == "prefix-api"
    assert _served_by(table, "example.com", "/x//admin") == "root"


# --- hosts ----------------------------------------------------------------------------------


def test_host_index_buckets_are_made_once() -> None:
    index: HostIndex[str] = HostIndex()
    assert index.bucket("a.com") is index.bucket("a.com")
    assert index.bucket("*.a.com") is index.bucket("*.a.com")
    assert index.bucket("") is index.bucket("")
    assert index.bucket("a.com") is not index.bucket("*.a.com")
    assert set(index.exact) == {"a.com"}
    assert set(index.wildcard) == {"a.com"}
    assert index.any_host is index.bucket("")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bar.foo.com", "*.foo.com Prefix /"),
        ("baz.bar.foo.com", None),
        ("foo.com", None),
        ("barfoo.com", None),
        (".foo.com", None),
        ("x.foo.co", None),
    ],
)
def test_wildcard_host_covers_exactly_one_label(host: str, expected: str | None) -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "*.foo.com", prefixes=["/"])
    assert index.match(host, "/") == expected


@pytest.mark.parametrize(("host", "expected"), [("bar.foo.com", "wild"), ("baz.bar.foo.com", None), ("foo.com", None)])
def test_wildcard_host_table_through_build_table(host: str, expected: str | None) -> None:
    table = _table(*routed_service("wild", 8080), ingress("web", rules=[("*.foo.com", [path("/", "wild")])]))
    assert _served_by(table, host, "/") == expected


def test_exact_host_beats_wildcard() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "*.foo.com", prefixes=["/"])
    _bucket(index, "bar.foo.com", prefixes=["/"])
    assert index.match("bar.foo.com", "/x") == "bar.foo.com Prefix /"
    assert index.match("baz.foo.com", "/x") == "*.foo.com Prefix /"


def test_exact_host_beats_wildcard_through_build_table() -> None:
    table = _table(
        *routed_service("wild", 8080),
        *routed_service("exact", 8080),
        ingress("wild", rules=[("*.foo.com", [path("/", "wild")])], created="2020-01-01T00:00:00Z"),
        ingress("exact", rules=[("bar.foo.com", [path("/", "exact")])], created="2024-01-01T00:00:00Z"),
    )
    assert _served_by(table, "bar.foo.com", "/") == "exact"
    assert _served_by(table, "baz.foo.com", "/") == "wild"


def test_hostless_rules_serve_other_hosts() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "a.com", prefixes=["/"])
    _bucket(index, "", prefixes=["/"])
    assert index.match("a.com", "/") == "a.com Prefix /"
    assert index.match("b.com", "/") == "* Prefix /"
    assert index.match("sub.a.com", "/") == "* Prefix /"
    assert index.match("", "/") == "* Prefix /"  # HTTP/1.0 without Host
    assert index.match("10.0.0.1", "/") == "* Prefix /"


def test_no_fallthrough_from_a_matched_host_to_hostless_rules() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "a.com", prefixes=["/api"])
    _bucket(index, "", prefixes=["/"])
    assert index.match("a.com", "/api/x") == "a.com Prefix /api"
    assert index.match("a.com", "/other") is None
    index.default = "global default"
    assert index.match("a.com", "/other") == "global default"


def test_no_fallthrough_from_an_exact_host_to_the_wildcard() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "bar.foo.com", prefixes=["/api"])
    _bucket(index, "*.foo.com", prefixes=["/"])
    assert index.match("bar.foo.com", "/web") is None


def test_no_fallthrough_from_a_wildcard_to_hostless_rules() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "*.foo.com", prefixes=["/api"])
    _bucket(index, "", prefixes=["/"])
    assert index.match("bar.foo.com", "/web") is None
    assert index.match("foo.com", "/web") == "* Prefix /"


def test_no_fallthrough_through_build_table() -> None:
    table = _rules_table([("a.com", [("Prefix", "/api")]), (None, [("Prefix", "/")])])
    assert _served_by(table, "a.com", "/api") == "prefix-api"
    assert _served_by(table, "a.com", "/web") is None
    assert _served_by(table, "b.com", "/web") == "root"


def test_bucket_fallback_then_global_default() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "a.com", prefixes=["/api"], fallback="a.com default")
    _bucket(index, "b.com", prefixes=["/api"])
    _bucket(index, "*.c.com", exacts=["/x"], fallback="*.c.com default")
    _bucket(index, "", exacts=["/x"])
    assert index.match("a.com", "/api") == "a.com Prefix /api"
    assert index.match("a.com", "/web") == "a.com default"
    assert index.match("b.com", "/web") is None
    assert index.match("z.c.com", "/y") == "*.c.com default"
    assert index.match("other.com", "/y") is None
    index.default = "global"
    assert index.match("a.com", "/web") == "a.com default"
    assert index.match("b.com", "/web") == "global"
    assert index.match("other.com", "/y") == "global"
    assert index.match("other.com", "/x") == "* Exact /x"


def test_unknown_host_without_hostless_rules_goes_to_the_default() -> None:
    index: HostIndex[str] = HostIndex()
    _bucket(index, "a.com", prefixes=["/"])
    assert index.match("b.com", "/") is None
    index.default = "global"
    assert index.match("b.com", "/") == "global"


def test_default_backend_through_build_table() -> None:
    table = _rules_table([("a.com", [("Prefix", "/api")]), (None, [("Exact", "/x")])], default_backend="fallback")
    assert _served_by(table, "a.com", "/api/v1") == "prefix-api"
    assert _served_by(table, "a.com", "/web") == "fallback"  # the host's default
    assert _served_by(table, "b.com", "/x") == "exact-x"
    assert _served_by(table, "b.com", "/y") == "fallback"  # the global default


def test_empty_table_matches_nothing() -> None:
    table = _table()
    assert table.match("a.com", "/") is None
