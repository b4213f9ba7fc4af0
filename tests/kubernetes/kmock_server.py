"""The tests' handle on a kmock API server: :class:`KmockCluster` runs :mod:`kmock_emulator` in
a process of its own, writes a kubeconfig for it, holds an official-client ``ApiClient``,
and wraps the object calls and the emulator's test endpoints.

kmock runs in its own process because its server lives on an event loop: in the test's
process, any blocking call of a test would freeze it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kmock_emulator import ADMIN_PREFIX, resource_key
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from gateway_core.testing import free_port, wait_until

EMULATOR = Path(__file__).with_name("kmock_emulator.py")

KINDS: dict[str, tuple[str, str, str, bool]] = {
    # kind: (group, version, plural, namespaced)
    "Service": ("", "v1", "services", True),
    "Secret": ("", "v1", "secrets", True),
    "Event": ("", "v1", "events", True),
    "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices", True),
    "Ingress": ("networking.k8s.io", "v1", "ingresses", True),
    "IngressClass": ("networking.k8s.io", "v1", "ingressclasses", False),
    "Lease": ("coordination.k8s.io", "v1", "leases", True),
    "EventV1": ("events.k8s.io", "v1", "events", True),
}
"""The kinds tests touch, by kind (``EventV1`` is ``events.k8s.io/v1`` Event)."""


def kind_resource(kind: str) -> str:
    """The resource key of a kind in :data:`KINDS` (as the request log names resources)."""
    group, version, plural, _ = KINDS[kind]
    return resource_key(group, version, plural)


@dataclass(frozen=True)
class RecordedRequest:
    """A request kmock received, as the ``/_kmock/requests`` endpoint describes it."""

    id: int
    method: str
    path: str
    params: dict[str, str]
    action: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    data: Any
    headers: dict[str, str]


class KubeError(Exception):
    """The API server answered an object request with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


@dataclass
class KmockCluster:
    """A kmock API server process, a kubeconfig for it, and an official-client ``ApiClient``."""

    workdir: Path
    bookmark_interval: float = 0.0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _api: kube_client.ApiClient | None = None
    _log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def api(self) -> kube_client.ApiClient:
        """An ``ApiClient`` on this server (for the typed APIs: ``NetworkingV1Api(kube.api)``)."""
        if self._api is None:
            self._api = kube_config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def start(self) -> KmockCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig(self.url)))
        handle, name = tempfile.mkstemp(prefix="kmock-", suffix=".log")
        self._log = Path(name)
        command = [sys.executable, str(EMULATOR), "--port", str(self.port)]
        command += ["--bookmark-interval", str(self.bookmark_interval)]
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        with os.fdopen(handle, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"kmock exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/version", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=15, message="kmock to answer")
        return self

    def stop(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    # ---- objects, through the official client

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        api = self.api
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        response = api.call_api(
            *api.param_serialize(method=method, resource_path=path, header_params=headers, body=body)
        )
        response.read()
        text = response.data.decode() if response.data else ""
        if not 200 <= response.status <= 299:
            raise KubeError(response.status, text)
        return json.loads(text) if text else None

    @staticmethod
    def path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
        """The API path of a kind's collection, or of one object."""
        group, version, plural, namespaced = KINDS[kind]
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{plural}"
        return f"{path}/{name}" if name else path

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """POST ``obj`` (its namespace, else ``namespace``, else ``default``); the stored object."""
        kind = str(obj["kind"])
        if kind == "Event" and str(obj.get("apiVersion", "")).startswith("events.k8s.io"):
            kind = "EventV1"
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or namespace or "default"
        result: dict[str, Any] = self._call("POST", self.path(kind, ns), dict(obj))
        return result

    def create_all(self, objects: Iterable[Mapping[str, Any]]) -> None:
        for obj in objects:
            self.create(obj)

    def replace(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """PUT ``obj`` over the stored object of the same name."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or namespace or "default"
        result: dict[str, Any] = self._call("PUT", self.path(str(obj["kind"]), ns, meta["name"]), dict(obj))
        return result

    def patch(
        self, kind: str, name: str, body: Mapping[str, Any], *, namespace: str = "default", subresource: str = ""
    ) -> dict[str, Any]:
        """A JSON merge patch (``None`` deletes a key, lists are replaced whole)."""
        path = self.path(kind, namespace, name) + (f"/{subresource}" if subresource else "")
        result: dict[str, Any] = self._call("PATCH", path, dict(body), "application/merge-patch+json")
        return result

    def delete(self, kind: str, name: str, *, namespace: str = "default") -> None:
        self._call("DELETE", self.path(kind, namespace, name))

    def get(self, kind: str, name: str, *, namespace: str = "default") -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call("GET", self.path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list_objects(self, kind: str, *, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", self.path(kind, namespace))["items"]
        return items

    # ---- test endpoints

    def _admin(self, command: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        url = f"{self.url}{ADMIN_PREFIX}{command}"
        if body is None:
            response = httpx.get(url, params=params, timeout=5)
        else:
            response = httpx.post(url, json=dict(body), timeout=5)
        response.raise_for_status()
        return response.json()

    def requests(
        self,
        kind: str | None = None,
        *,
        action: str | None = None,
        method: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
        since: int = 0,
    ) -> list[RecordedRequest]:
        """Requests kmock received (test endpoints excluded), filtered; ``action`` is one of
        list, watch, fetch, create, update, delete (PUT has no action: filter by ``method``)."""
        rows = [RecordedRequest(**row) for row in self._admin("requests", since=since)]
        wanted_resource = kind_resource(kind) if kind else None
        return [
            row
            for row in rows
            if (wanted_resource is None or row.resource == wanted_resource)
            and (action is None or row.action == action)
            and (method is None or row.method == method.upper())
            and (namespace is None or row.namespace == namespace)
            and (subresource is None or row.subresource == subresource)
        ]

    def request_count(self) -> int:
        """How many requests were recorded so far (a ``since`` mark for :meth:`requests`)."""
        rows = self._admin("requests")
        return int(rows[-1]["id"]) + 1 if rows else 0

    def fail_next(self, kind: str, *, action: str = "watch", status: int = 500, count: int = 1) -> None:
        """Answer the next ``count`` ``action`` requests on ``kind`` with HTTP ``status``."""
        self._admin("fail", {"resource": kind_resource(kind), "action": action, "status": status, "count": count})

    def cut_watches(self, kind: str, mode: str = "close") -> int:
        """End every open watch on ``kind``: ``gone`` (ERROR 410 event), ``error`` (ERROR 500
        event) or ``close`` (end of stream); how many were cut."""
        return int(self._admin("cut", {"resource": kind_resource(kind), "mode": mode})["cut"])

    def open_watches(self, kind: str | None = None) -> int:
        """Watches open right now (on ``kind``, or on any kind)."""
        counts: dict[str, int] = self._admin("watches")
        return counts.get(kind_resource(kind), 0) if kind else sum(counts.values())


def kubeconfig(server: str, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig for a plain-HTTP API server without authentication."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}],
        "current-context": "kmock",
        "users": [{"name": "kmock", "user": {}}],
    }
