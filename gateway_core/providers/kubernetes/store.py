"""The objects the reflectors mirror from the API server, parsed once, shared between threads.

Reflector threads write (each owns one :class:`StoreScope`: a kind in one namespace or in
all), the event loop reads a :class:`~gateway_core.manifests.Snapshot` of everything. An
object is parsed into its typed view when it arrives, not at every table build; one that
does not parse is kept as a :class:`~gateway_core.manifests.Problem` under its name (shown
on ``/routes``), so fixing it replaces the problem. An object whose ``resourceVersion`` did
not change is not parsed again, and a write that changes nothing reports no change, so a
re-list or a replayed watch costs no table build.

Secrets are kept only while ``keep_secret(namespace, name)`` says so (see
:mod:`.references`); any other Secret is dropped on arrival, its data never stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway_core.manifests.objects import Ingress, KubeObject
from gateway_core.manifests.snapshot import Problem, Snapshot, parse_objects

SOURCE = "kubernetes"
"""The ``Problem.source`` of objects from the API server."""

Entry = KubeObject | Problem
Key = tuple[str, str]
"""``(namespace, name)``; the namespace is ``""`` for cluster-scoped kinds."""

KeepSecret = Callable[[str, str], bool]

_VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields", "generation"})


def _keep_all(namespace: str, name: str) -> bool:
    return True


class ObjectStore:
    """Typed objects (or problems) by kind, namespace and name; safe to use from any thread."""

    def __init__(self, *, keep_secret: KeepSecret = _keep_all) -> None:
        self.keep_secret = keep_secret
        self._lock = threading.Lock()
        self._kinds: dict[str, dict[Key, tuple[str, Entry]]] = {}

    def scope(self, kind: str, api_version: str, namespace: str | None) -> StoreScope:
        """The part of the store one reflector owns: ``kind`` in ``namespace`` (None: all)."""
        return StoreScope(self, kind, api_version, namespace)

    def snapshot(self) -> Snapshot:
        """Every object and problem, sorted by kind, namespace and name (a stable order)."""
        objects: list[KubeObject] = []
        problems: list[Problem] = []
        with self._lock:
            for kind in sorted(self._kinds):
                for _, (_, entry) in sorted(self._kinds[kind].items()):
                    if isinstance(entry, Problem):
                        problems.append(entry)
                    else:
                        objects.append(entry)
        return Snapshot(objects=tuple(objects), problems=tuple(problems))

    def ingresses(self) -> list[Ingress]:
        """The Ingresses that parsed."""
        with self._lock:
            entries = [entry for _, entry in self._kinds.get("Ingress", {}).values()]
        return [entry for entry in entries if isinstance(entry, Ingress)]

    def prune_secrets(self) -> bool:
        """Drop the Secrets ``keep_secret`` no longer keeps; whether any was dropped."""
        with self._lock:
            secrets = self._kinds.get("Secret", {})
            dropped = [key for key in secrets if not self.keep_secret(*key)]
            for key in dropped:
                del secrets[key]
        return bool(dropped)

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._kinds.get(kind, {}))

    def _entries(self, kind: str) -> dict[Key, tuple[str, Entry]]:
        return self._kinds.setdefault(kind, {})


class StoreScope:
    """One kind in one namespace (or all) of an :class:`ObjectStore`: what a reflector writes."""

    def __init__(self, store: ObjectStore, kind: str, api_version: str, namespace: str | None) -> None:
        self.store = store
        self.kind = kind
        self.api_version = api_version
        self.namespace = namespace

    def replace(self, items: Sequence[Mapping[str, Any]]) -> bool:
        """Make the scope hold exactly ``items`` (a fresh list); whether anything changed."""
        parsed = [self._parse(item) for item in items]
        kept = {key: value for key, value in parsed if key is not None and value is not None}
        with self.store._lock:
            entries = self.store._entries(self.kind)
            stale = [key for key in entries if self._covers(key) and key not in kept]
            for key in stale:
                del entries[key]
            changed = bool(stale)
            for key, value in kept.items():
                changed = _differs(entries.get(key), value) or changed
                entries[key] = value
        return changed

    def upsert(self, item: Mapping[str, Any]) -> bool:
        key, value = self._parse(item)
        if key is None:
            return False
        with self.store._lock:
            entries = self.store._entries(self.kind)
            if value is None:  # a Secret nobody references (any more)
                return entries.pop(key, None) is not None
            changed = _differs(entries.get(key), value)
            entries[key] = value
        return changed

    def delete(self, item: Mapping[str, Any]) -> bool:
        key = self._key(item)
        if key is None:
            return False
        with self.store._lock:
            return self.store._entries(self.kind).pop(key, None) is not None

    def _covers(self, key: Key) -> bool:
        return self.namespace is None or key[0] == self.namespace

    def _key(self, item: Mapping[str, Any]) -> Key | None:
        metadata = item.get("metadata")
        if not isinstance(metadata, dict):
            return None
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not isinstance(name, str) or not name:
            return None
        return (namespace if isinstance(namespace, str) else "", name)

    def _parse(self, item: Mapping[str, Any]) -> tuple[Key | None, tuple[str, Entry] | None]:
        """The key and ``(resourceVersion, typed object or problem)`` of a raw object.

        The value is None for a Secret that is not kept. The raw dict is not kept: only the
        typed view (the fields the gateway uses) stays in memory.
        """
        key = self._key(item)
        if key is None:
            return None, None
        if self.kind == "Secret" and not self.store.keep_secret(*key):
            return key, None
        version = str(item["metadata"].get("resourceVersion") or "")
        with self.store._lock:
            known = self.store._entries(self.kind).get(key)
        if version and known is not None and known[0] == version:
            return key, known
        # List items carry no apiVersion and kind. The version is kept beside the typed view,
        # not in it, so a write that changes nothing the gateway reads (a status update, a
        # label) compares equal and costs no table build.
        metadata = {name: value for name, value in item["metadata"].items() if name not in _VOLATILE_METADATA}
        document = {**item, "apiVersion": self.api_version, "kind": self.kind, "metadata": metadata}
        objects, problems = parse_objects(SOURCE, [document], default_namespace=key[0] or "default")
        entry: Entry = objects[0] if objects else _problem(problems, self.kind, key)
        return key, (version, entry)


def _differs(old: tuple[str, Entry] | None, new: tuple[str, Entry]) -> bool:
    return old is None or old[1] != new[1]


def _problem(problems: Iterable[Problem], kind: str, key: Key) -> Problem:
    found = list(problems)
    if found:
        return found[0]
    return Problem(SOURCE, f"{kind} {key[0]}/{key[1]}: could not be read", (kind, key[0], key[1]))
