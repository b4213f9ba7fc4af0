"""The manifests-directory provider: recursive reading, skipped files, caching, recovery."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from gateway_core.manifests import EndpointSlice, Snapshot
from gateway_core.providers.file import ManifestDirectory
from gateway_core.testing import ingress, path, routed_service, write_manifests


def test_reads_yaml_yml_json_recursively_and_skips_hidden_entries(tmp_path: Path) -> None:
    write_manifests(tmp_path / "a", routed_service("one", 1), filename="one.yaml")
    write_manifests(tmp_path / "a" / "b", routed_service("two", 2), filename="two.yml")
    (tmp_path / "three.json").write_text('{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "three"}}')
    (tmp_path / "notes.txt").write_text("kind: Service")
    write_manifests(tmp_path / "..2024_01_01", routed_service("hidden", 3), filename="dup.yaml")  # ConfigMap mount
    write_manifests(tmp_path, routed_service("dot", 4), filename=".hidden.yaml")
    snapshot = ManifestDirectory(tmp_path).load()
    assert sorted(obj.name for obj in snapshot.objects if obj.kind == "Service") == ["one", "three", "two"]
    assert snapshot.problems == ()


def test_a_broken_file_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    write_manifests(tmp_path, routed_service("good", 1), filename="good.yaml")
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "latin1.yaml").write_bytes(b"kind: \xff\xfe\n")
    snapshot = ManifestDirectory(tmp_path).load()
    assert [obj.name for obj in snapshot.objects if obj.kind == "Service"] == ["good"]
    messages = " ".join(str(problem) for problem in snapshot.problems)
    assert "bad.yaml: invalid YAML" in messages
    assert "latin1.yaml: cannot read" in messages


def test_unchanged_files_are_not_parsed_again(tmp_path: Path) -> None:
    write_manifests(tmp_path, routed_service("one", 1), filename="one.yaml")
    write_manifests(tmp_path, routed_service("two", 2), filename="two.yaml")
    directory = ManifestDirectory(tmp_path)
    first = directory.load()
    write_manifests(tmp_path, routed_service("two", 3), filename="two.yaml")
    os.utime(tmp_path / "two.yaml", ns=(1, 1))  # a different mtime, whatever the clock
    second = directory.load()
    kept = [obj for obj in first.objects if obj.name == "one"]
    assert next(obj for obj in second.objects if obj.name == "one") is kept[0]  # the cached object
    ports = [
        [p.port for p in obj.ports or ()]
        for obj in second.objects
        if isinstance(obj, EndpointSlice) and obj.name == "two-slice"
    ]
    assert ports == [[3]]  # the changed file was read again


async def test_watch_publishes_changes_and_recovers_when_the_directory_returns(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    write_manifests(root, routed_service("api", 1))
    published: list[Snapshot] = []

    async def publish(snapshot: Snapshot) -> None:
        published.append(snapshot)

    task = asyncio.create_task(ManifestDirectory(root, debounce=0.05).run(publish))
    try:
        await _until(lambda: len(published) >= 1)
        write_manifests(root, [*routed_service("api", 1), ingress("app", rules=[(None, [path("/", "api")])])])
        await _until(lambda: any(obj.kind == "Ingress" for obj in published[-1].objects))
        count = len(published)
        os.rename(root, tmp_path / "gone")
        await asyncio.sleep(1.5)  # the watch fails; nothing is published, the last table stays
        assert all(snapshot.objects for snapshot in published[count:])
        os.rename(tmp_path / "gone", root)
        write_manifests(root, routed_service("back", 2), filename="back.yaml")
        await _until(lambda: any(obj.name == "back" for obj in published[-1].objects), limit=8)
    finally:
        task.cancel()


async def _until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll ``predicate`` (the provider offers no event to wait on: it publishes)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
