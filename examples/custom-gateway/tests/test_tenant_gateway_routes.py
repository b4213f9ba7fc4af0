"""The routes file: what it translates to, what it refuses, and when the source publishes."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLE))  # the program is a script next to this folder, not a package

from tenant_gateway import RouteEntry, RoutesFile, route_documents  # noqa: E402

from gateway_core import ConfigError, Snapshot  # noqa: E402


def write_routes(path: Path, routes: list[dict[str, Any]]) -> Path:
    """Write a routes file atomically, so the source never reads half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"routes": routes}))
    temporary.replace(path)
    return path


def by_kind(snapshot: Snapshot) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for obj in snapshot.objects:
        found.setdefault(obj.kind, []).append(obj.name)
    return found


def test_the_shipped_routes_file_translates_into_services_slices_and_ingresses() -> None:
    snapshot = RoutesFile(EXAMPLE / "routes.yaml").load()

    assert snapshot.problems == ()
    assert by_kind(snapshot) == {
        "Service": ["orders", "health"],
        "EndpointSlice": ["orders-0", "health-0"],
        "Ingress": ["orders", "health"],
    }


def test_tenants_and_rate_limit_become_plugin_annotations() -> None:
    route = RouteEntry(name="orders", upstreams=["127.0.0.1:9101"], tenants=["acme", "globex"], rate_limit="5/minute")
    ingress = route_documents(route)[-1]

    assert ingress["kind"] == "Ingress"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["meta-native.io/plugins"] == "tenant, rate-limit"
    assert json.loads(annotations["meta-native.io/plugin.tenant"]) == {"tenants": ["acme", "globex"]}
    assert json.loads(annotations["meta-native.io/plugin.rate-limit"]) == {"limit": "5/minute", "key": "identity"}
    plain = route_documents(RouteEntry(name="open", upstreams=["127.0.0.1:9101"]))[-1]
    assert plain["metadata"]["annotations"] == {}
    assert "host" not in plain["spec"]["rules"][0]


def test_upstreams_are_grouped_into_one_endpoint_slice_per_family_and_port() -> None:
    route = RouteEntry(name="api", upstreams=["127.0.0.1:9101", "127.0.0.2:9101", "127.0.0.1:9102", "[::1]:9101"])
    slices = [document for document in route_documents(route) if document["kind"] == "EndpointSlice"]

    shapes = [
        (item["addressType"], item["ports"][0]["port"], [e["addresses"][0] for e in item["endpoints"]])
        for item in slices
    ]
    assert shapes == [
        ("IPv4", 9101, ["127.0.0.1", "127.0.0.2"]),
        ("IPv4", 9102, ["127.0.0.1"]),
        ("IPv6", 9101, ["::1"]),
    ]


def test_a_bad_entry_is_left_out_as_a_problem_and_the_others_stay(tmp_path: Path) -> None:
    routes = write_routes(
        tmp_path / "routes.yaml",
        [
            {"name": "good", "path": "/good", "upstreams": ["127.0.0.1:9101"]},
            {"name": "nowhere", "path": "/nowhere"},
            {"name": "named", "upstreams": ["localhost:80"]},
            {"name": "good", "upstreams": ["127.0.0.1:9102"]},
            {"name": "typo", "upstreams": ["127.0.0.1:9101"], "tenant": ["acme"]},
            {"name": "Bad_Name", "upstreams": ["127.0.0.1:9101"]},
        ],
    )
    snapshot = RoutesFile(routes).load()

    assert by_kind(snapshot)["Ingress"] == ["good"]
    assert [str(problem) for problem in snapshot.problems] == [
        "routes.yaml: routes[1]: left out: upstreams: Field required",
        "routes.yaml: routes[2]: left out: upstreams: Value error, 'localhost:80' is not IP:PORT",
        "routes.yaml: routes[3]: left out: a route named 'good' comes earlier",
        "routes.yaml: routes[4]: left out: tenant: Extra inputs are not permitted",
        "routes.yaml: routes[5]: left out: name: String should match pattern '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: [", "invalid YAML"),
        ("- name: a", "the file must be a mapping with one key, `routes`, holding a list"),
        ("routes: {a: 1}", "the file must be a mapping with one key, `routes`, holding a list"),
        ("routes: []\nlisten: 80", "the file must be a mapping with one key, `routes`, holding a list"),
    ],
)
def test_a_file_that_is_not_a_routes_file_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(text)

    with pytest.raises(ConfigError, match=message):
        RoutesFile(routes).load()


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read routes file .*missing\.yaml: No such file"):
        RoutesFile(tmp_path / "missing.yaml").load()


def ingress_names(snapshot: Snapshot) -> list[str]:
    return by_kind(snapshot).get("Ingress", [])


async def test_the_source_publishes_at_start_and_after_each_content_change_only(tmp_path: Path) -> None:
    path = write_routes(tmp_path / "routes.yaml", [{"name": "one", "upstreams": ["127.0.0.1:9101"]}])
    published: asyncio.Queue[Snapshot] = asyncio.Queue()
    task = asyncio.create_task(RoutesFile(path, interval=0.02).run(published.put))
    try:
        assert ingress_names(await asyncio.wait_for(published.get(), 10)) == ["one"]
        path.touch()  # same content, newer mtime: nothing to publish
        write_routes(path, [{"name": "one", "upstreams": ["127.0.0.1:9101"]}])  # rewritten, same content
        await asyncio.sleep(0.1)  # several polls see the unchanged content
        write_routes(path, [{"name": "two", "upstreams": ["127.0.0.1:9101"]}])
        # The next snapshot is the changed file's: the unchanged rewrites published nothing.
        assert ingress_names(await asyncio.wait_for(published.get(), 10)) == ["two"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_broken_file_publishes_nothing_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def errors() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]

    async def logged(text: str) -> None:
        async with asyncio.timeout(10):
            while not any(text in error for error in errors()):  # noqa: ASYNC110 (caplog has no event to await)
                await asyncio.sleep(0.01)

    path = write_routes(tmp_path / "routes.yaml", [{"name": "one", "upstreams": ["127.0.0.1:9101"]}])
    published: asyncio.Queue[Snapshot] = asyncio.Queue()
    task = asyncio.create_task(RoutesFile(path, interval=0.02).run(published.put))
    try:
        assert ingress_names(await asyncio.wait_for(published.get(), 10)) == ["one"]
        path.write_text("routes: [")
        await logged("invalid YAML")
        await asyncio.sleep(0.1)  # more polls of the same broken file
        path.unlink()
        await logged("No such file")
        await asyncio.sleep(0.1)
        write_routes(path, [{"name": "three", "upstreams": ["127.0.0.1:9101"]}])
        assert ingress_names(await asyncio.wait_for(published.get(), 10)) == ["three"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert published.empty()  # nothing was published for the broken or missing file
    assert len(errors()) == 2, errors()  # once per distinct failure, not once per poll
    assert all(error.endswith("; the current routes keep serving") for error in errors())
