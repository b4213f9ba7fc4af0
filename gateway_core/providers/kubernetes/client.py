"""The official ``kubernetes`` client, configured, and its list and watch calls for the reflector.

:func:`api_client` builds the one ``ApiClient`` a gateway process uses (the route source's
reflectors and the status controller share it; its connection pool is thread-safe).
:class:`KubernetesListWatch` is the reflector's :class:`~.reflector.ListWatch` over the
client's typed list functions, asking for raw JSON (``_preload_content=False``): objects
stay plain camelCase dicts, as a manifest file holds them, and nothing is deserialised
twice. The client's exceptions end here, translated into the reflector's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import (
    ApiClient,
    ApiException,
    Configuration,
    CoreV1Api,
    DiscoveryV1Api,
    NetworkingV1Api,
)
from kubernetes.watch.watch import iter_resp_lines

from gateway_core.errors import ConfigError
from gateway_core.plugin_manager import installed_version
from gateway_core.providers.kubernetes.reflector import ApiUnavailable, ListPage, WatchExpired
from gateway_core.settings import KubernetesSettings

logger = logging.getLogger("gateway_core.providers.kubernetes")

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to the API server."""
LIST_READ_TIMEOUT = 60.0
"""Seconds a list page may take to arrive."""
WATCH_READ_MARGIN = 15.0
"""A watch that reads nothing for ``watch_timeout`` plus this many seconds is given up and
re-opened (the server should have ended it: the connection is presumably dead)."""
PAGE_SIZE = 500
"""Objects per list page (large clusters are listed in pages, like kubectl does)."""
POOL_SIZE = 32
"""Connections kept to the API server: one per open watch, plus lists and status writes."""


def api_client(settings: KubernetesSettings) -> ApiClient:
    """A client from the kubeconfig file when ``settings.kubeconfig`` is set, else from the
    pod's service account (in-cluster); ``settings.master_url`` overrides the server URL.

    Raises :class:`~gateway_core.errors.ConfigError` when no configuration can be loaded.
    """
    configuration = Configuration()
    try:
        if settings.kubeconfig:
            kube_config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration, persist_config=False
            )
        else:
            kube_config.load_incluster_config(client_configuration=configuration)
    except Exception as exc:  # the loaders raise ConfigException, OSError, YAML and key errors
        where = f"kubeconfig {settings.kubeconfig}" if settings.kubeconfig else "the in-cluster service account"
        hint = "" if settings.kubeconfig else " (outside a cluster, give --kubeconfig PATH)"
        raise ConfigError(f"cannot load the Kubernetes client configuration from {where}: {exc}{hint}") from None
    if settings.master_url:
        configuration.host = settings.master_url.rstrip("/")
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, POOL_SIZE)
    api = ApiClient(configuration)
    api.user_agent = f"meta-native-gateway/{installed_version()}"
    return api


@dataclass(frozen=True, slots=True)
class WatchedKind:
    """A kind the provider watches, and the client's list functions for it."""

    kind: str
    api_version: str
    namespaced: bool
    api: type[CoreV1Api] | type[NetworkingV1Api] | type[DiscoveryV1Api]
    list_namespaced: str
    list_all: str


INGRESS_CLASS = WatchedKind("IngressClass", "networking.k8s.io/v1", False, NetworkingV1Api, "", "list_ingress_class")
INGRESS = WatchedKind(
    "Ingress",
    "networking.k8s.io/v1",
    True,
    NetworkingV1Api,
    "list_namespaced_ingress",
    "list_ingress_for_all_namespaces",
)
SERVICE = WatchedKind("Service", "v1", True, CoreV1Api, "list_namespaced_service", "list_service_for_all_namespaces")
ENDPOINT_SLICE = WatchedKind(
    "EndpointSlice",
    "discovery.k8s.io/v1",
    True,
    DiscoveryV1Api,
    "list_namespaced_endpoint_slice",
    "list_endpoint_slice_for_all_namespaces",
)
SECRET = WatchedKind("Secret", "v1", True, CoreV1Api, "list_namespaced_secret", "list_secret_for_all_namespaces")

WATCHED_KINDS = (INGRESS_CLASS, INGRESS, SERVICE, ENDPOINT_SLICE, SECRET)


class HttpWatchStream:
    """An open watch response: events as dicts, ``abort`` from another thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse, description: str) -> None:
        self.response = response
        self.description = description

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in iter_resp_lines(self.response):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    logger.warning("%s: ignoring a watch line that is not JSON", self.description)
                    continue
                if isinstance(event, dict):
                    yield event
        except urllib3.exceptions.ReadTimeoutError:
            logger.debug("%s: the watch read nothing for too long; watching again", self.description)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailable(f"watch connection lost: {exc}") from None

    def abort(self) -> None:
        """Shut the socket down, so a read blocked in another thread returns at once."""
        connection = getattr(self.response, "connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()
            self.response.release_conn()


class KubernetesListWatch:
    """List and watch one :class:`WatchedKind` in one namespace, or in all (``namespace=None``)."""

    def __init__(self, api: ApiClient, kind: WatchedKind, namespace: str | None, *, watch_timeout: float) -> None:
        self.kind = kind
        self.namespace = namespace if kind.namespaced else None
        self.watch_timeout = watch_timeout
        self.description = kind.kind + (f" in namespace {namespace}" if self.namespace else " in all namespaces")
        if not kind.namespaced:
            self.description = kind.kind
        client = kind.api(api)
        name = kind.list_namespaced if self.namespace else kind.list_all
        self._function = getattr(client, name)

    def _call(self, **options: Any) -> urllib3.BaseHTTPResponse:
        args = (self.namespace,) if self.namespace else ()
        try:
            response: urllib3.BaseHTTPResponse = self._function(*args, _preload_content=False, **options)
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(f"410 Gone: {exc.reason}") from None
            raise ApiUnavailable(f"HTTP {exc.status} {exc.reason}", status=exc.status) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailable(f"cannot reach the API server: {exc}") from None
        return response

    def list_page(self, continue_token: str | None) -> ListPage:
        response = self._call(
            limit=PAGE_SIZE, _continue=continue_token, _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT)
        )
        try:
            body = json.loads(response.data)
        except (ValueError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailable(f"unreadable list response: {exc}") from None
        finally:
            response.release_conn()
        if not isinstance(body, dict):
            raise ApiUnavailable("unreadable list response: not a JSON object")
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        items = [item for item in body.get("items") or () if isinstance(item, dict)]
        return ListPage(
            items=items,
            resource_version=str(metadata.get("resourceVersion") or ""),
            continue_token=metadata.get("continue") or None,
        )

    def watch(self, resource_version: str) -> HttpWatchStream:
        response = self._call(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=max(1, round(self.watch_timeout)),
            _request_timeout=(CONNECT_TIMEOUT, self.watch_timeout + WATCH_READ_MARGIN),
        )
        return HttpWatchStream(response, self.description)
