"""A snapshot: the set of objects a provider saw at one moment, and what it could not read.

Providers (a manifests directory, the Kubernetes API, a custom source) all publish
snapshots; the route table is built from one snapshot at a time.

Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway_core.collector import collector_paused
from gateway_core.errors import ManifestError
from gateway_core.manifests.objects import KubeObject, parse_object

logger = logging.getLogger("gateway_core.manifests")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a provider could not read, and where."""

    source: str
    message: str
    object_ref: tuple[str, str, str] | None = None
    """``(kind, namespace, name)`` of the object that could not be read, when known."""

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Objects seen together, plus the problems met while reading them."""

    objects: tuple[KubeObject, ...] = ()
    problems: tuple[Problem, ...] = field(default=())


def parse_objects(
    source: str, documents: Iterable[dict[str, Any]], *, default_namespace: str = "default"
) -> tuple[list[KubeObject], list[Problem]]:
    """Typed objects from one source's documents; invalid ones become problems.

    Kinds the gateway does not use are skipped with a debug log.
    """
    objects: list[KubeObject] = []
    problems: list[Problem] = []
    with collector_paused():
        for document in documents:
            try:
                obj = parse_object(document, default_namespace=default_namespace)
            except ManifestError as exc:
                problems.append(Problem(source, str(exc), exc.object_ref))
                continue
            if obj is None:
                logger.debug("%s: ignoring %s %s", source, document.get("apiVersion"), document.get("kind"))
                continue
            objects.append(obj)
    return objects, problems


def merge_objects(parts: Iterable[tuple[str, Iterable[KubeObject]]], *, problems: Iterable[Problem] = ()) -> Snapshot:
    """One snapshot from per-source objects; of two objects with the same kind, namespace and
    name, the first wins and the second is reported."""
    found: list[Problem] = list(problems)
    seen: dict[tuple[str, str, str], str] = {}
    objects: list[KubeObject] = []
    for source, items in parts:
        for obj in items:
            key = (obj.kind, obj.namespace, obj.name)
            if key in seen:
                found.append(Problem(source, f"{obj.ref} is also defined in {seen[key]}; using that one"))
                continue
            seen[key] = source
            objects.append(obj)
    return Snapshot(objects=tuple(objects), problems=tuple(found))


def build_snapshot(
    documents: Iterable[tuple[str, dict[str, Any]]],
    *,
    default_namespace: str = "default",
    problems: Iterable[Problem] = (),
) -> Snapshot:
    """A snapshot from ``(source, document)`` pairs (parse, then merge)."""
    found: list[Problem] = list(problems)
    parts: list[tuple[str, list[KubeObject]]] = []
    with collector_paused():
        for source, document in documents:
            objects, parse_problems = parse_objects(source, [document], default_namespace=default_namespace)
            parts.append((source, objects))
            found.extend(parse_problems)
        return merge_objects(parts, problems=found)
