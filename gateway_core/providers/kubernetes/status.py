"""Ingress status: the address the gateway answers on, in ``.status.loadBalancer.ingress``.

The address is ``publish_status_address`` when set, else taken from the ``publish_service``:
its load balancer's addresses, else its external IPs, else its ExternalName or cluster IP.
Every Ingress the gateway serves gets it; a write happens only when the value differs from
what was last written or read, so a table rebuild that changes nothing costs no API call.
An Ingress that stops being served has the address removed again, but only if it still
holds ours (another controller may own it by then). Nothing here decides *when* to write —
:mod:`~gateway_core.providers.kubernetes.controller` does, and only on the elected leader.

Blocking: every method runs the synchronous client and belongs in a worker thread.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Collection, Sequence
from typing import Any

from kubernetes.client import ApiClient, ApiException, CoreV1Api, NetworkingV1Api

from gateway_core.providers.kubernetes.calls import json_object, not_found, read_ingress, worth_retrying

logger = logging.getLogger("gateway_core.providers.kubernetes.status")

Address = tuple[tuple[str, str], ...]
"""Status entries, canonical: sorted ``(key, value)`` pairs with key ``ip`` or ``hostname``."""


def address_entry(text: str) -> tuple[str, str]:
    """``("ip", text)`` for an IP address, else ``("hostname", text)``."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return ("hostname", text)
    return ("ip", text)


def canonical(entries: object) -> Address:
    """The ip/hostname entries of a ``loadBalancer.ingress`` list, sorted; ports and the rest dropped."""
    found: set[tuple[str, str]] = set()
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            for key in ("ip", "hostname"):
                value = entry.get(key)
                if isinstance(value, str) and value:
                    found.add((key, value))
                    break
    return tuple(sorted(found))


def service_address(service: dict[str, Any]) -> Address:
    """A Service's public address: load balancer, else external IPs, else ExternalName or cluster IP."""
    balancer = canonical(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"))
    if balancer:
        return balancer
    spec = service.get("spec") or {}
    external = [ip for ip in spec.get("externalIPs") or () if isinstance(ip, str) and ip]
    if external:
        return tuple(sorted(address_entry(ip) for ip in external))
    if spec.get("type") == "ExternalName" and spec.get("externalName"):
        return (("hostname", str(spec["externalName"])),)
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and cluster_ip != "None":
        return (("ip", cluster_ip),)
    return ()


def split_ref(ref: str, *, default_namespace: str) -> tuple[str, str]:
    """``(namespace, name)`` of ``namespace/name``, or of ``name`` in ``default_namespace``."""
    namespace, _, name = ref.rpartition("/")
    return (namespace or default_namespace, name)


class IngressStatusWriter:
    """Keeps ``.status.loadBalancer.ingress`` of the served Ingresses equal to the publish address."""

    def __init__(
        self,
        api: ApiClient,
        *,
        publish_service: str = "",
        publish_addresses: Sequence[str] = (),
        default_namespace: str = "",
        request_timeout: float = 10.0,
    ) -> None:
        self.core = CoreV1Api(api)
        self.networking = NetworkingV1Api(api)
        self.publish_service = publish_service
        self.publish_addresses = tuple(publish_addresses)
        self.default_namespace = default_namespace or os.environ.get("POD_NAMESPACE") or "default"
        self.request_timeout = request_timeout
        self._known: dict[str, Address] = {}
        """Per Ingress ``namespace/name``: its status as last written or read."""
        self._warned = False

    @property
    def configured(self) -> bool:
        """Whether there is an address source at all."""
        return bool(self.publish_addresses or self.publish_service)

    def forget(self) -> None:
        """Drop what is known of the Ingresses' status: the next sync reads it again."""
        self._known.clear()

    def address(self) -> Address:
        """The address to publish now; empty when none can be found (yet)."""
        if self.publish_addresses:
            return tuple(sorted(address_entry(text) for text in self.publish_addresses))
        if not self.publish_service:
            return ()
        namespace, name = split_ref(self.publish_service, default_namespace=self.default_namespace)
        try:
            response = self.core.read_namespaced_service(
                name, namespace, _preload_content=False, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if not_found(exc):
                return ()
            raise
        return service_address(json_object(response))

    def sync(self, served: Collection[str]) -> None:
        """Write the address into every served Ingress; remove it from those no longer served.

        A 4xx answer for one Ingress is logged and skipped; other errors (the API server
        unreachable, 5xx) propagate, so the caller retries the whole pass later.
        """
        address = self.address()
        if not address:
            if self.configured and not self._warned:
                logger.warning(
                    "no address to write into Ingress status (set kubernetes.publish_service or "
                    "kubernetes.publish_status_address; a LoadBalancer may not have its address yet)"
                )
                self._warned = True
            return
        self._warned = False
        for ref in sorted(served):
            self._ensure(ref, address)
        for ref in sorted(set(self._known) - set(served)):
            self._release(ref, address)

    def clear(self) -> None:
        """Remove our address from every Ingress known to hold it (on shutdown)."""
        cleared = 0
        for ref, value in sorted(self._known.items()):
            if value:
                try:
                    self._write(ref, ())
                    cleared += 1
                except ApiException as exc:
                    if not not_found(exc):
                        logger.warning("clearing the status of Ingress %s failed: %s %s", ref, exc.status, exc.reason)
            del self._known[ref]
        if cleared:
            logger.info("cleared the status of %d Ingresses", cleared)

    def _ensure(self, ref: str, address: Address) -> None:
        try:
            current = self._known.get(ref)
            if current is None:
                current = self._read(ref)
                if current is None:  # deleted since the table was built
                    return
            if current != address:
                self._write(ref, address)
                logger.info("Ingress %s status: %s", ref, ", ".join(value for _, value in address))
            self._known[ref] = address
        except ApiException as exc:
            if worth_retrying(exc):
                raise
            logger.warning("writing the status of Ingress %s failed: %s %s", ref, exc.status, exc.reason)

    def _release(self, ref: str, address: Address) -> None:
        try:
            if self._known[ref] and self._read(ref) == address:
                self._write(ref, ())
                logger.info("Ingress %s no longer served; status cleared", ref)
        except ApiException as exc:
            if worth_retrying(exc):
                raise
            logger.warning("clearing the status of Ingress %s failed: %s %s", ref, exc.status, exc.reason)
        del self._known[ref]

    def _read(self, ref: str) -> Address | None:
        namespace, name = split_ref(ref, default_namespace=self.default_namespace)
        ingress = read_ingress(self.networking, namespace, name, self.request_timeout)
        if ingress is None:
            return None
        return canonical(((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress"))

    def _write(self, ref: str, address: Address) -> None:
        namespace, name = split_ref(ref, default_namespace=self.default_namespace)
        entries = [{key: value} for key, value in address] if address else None  # None removes the list
        self.networking.patch_namespaced_ingress_status(
            name,
            namespace,
            {"status": {"loadBalancer": {"ingress": entries}}},
            _preload_content=False,
            _request_timeout=self.request_timeout,
        )
