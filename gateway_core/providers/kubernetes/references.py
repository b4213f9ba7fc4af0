"""Which Secrets the gateway may keep: those a route or a plugin refers to.

The rule (documented in the Kubernetes guide): a Secret ``namespace/name`` is kept when

- an Ingress in ``namespace`` names it in ``spec.tls[].secretName``, or
- ``name`` is a string value anywhere (nested mappings and lists included) in the config
  annotation ``meta-native.io/plugin.<plugin>`` of an Ingress in ``namespace``, or
- ``name`` is a string value anywhere in the settings' default plugin configs
  (``plugins.config``), which apply to every namespace, or
- ``name`` is a string value in the ``meta-native.io/backend-tls`` annotation (its
  ``ca_secret``) of an Ingress in ``namespace``.

Plugins look Secrets up by name in the route's namespace (``Binding.secrets``), and their
configs name them in fields of their own choosing (``secret``, ``redis_secret``, ...), so
any string value counts: a few extra Secrets may be kept, none a plugin needs is missed.
Every other Secret is dropped as it arrives; its data is never held.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway_core.manifests.annotations import PLUGIN_CONFIG_PREFIX, parse_plugin_config
from gateway_core.manifests.objects import Ingress
from gateway_core.manifests.tls_policy import BACKEND_TLS


@dataclass(frozen=True, slots=True)
class SecretReferences:
    """Secret names referred to, per namespace and in every namespace."""

    by_namespace: Mapping[str, frozenset[str]] = field(default_factory=dict)
    everywhere: frozenset[str] = frozenset()

    def __call__(self, namespace: str, name: str) -> bool:
        """Whether the Secret ``namespace/name`` is referred to (the store's ``keep_secret``)."""
        return name in self.everywhere or name in self.by_namespace.get(namespace, frozenset())

    def covers(self, other: SecretReferences) -> bool:
        """Whether every Secret ``other`` refers to is referred to here too."""
        if not other.everywhere <= self.everywhere:
            return False
        return all(
            names <= (self.by_namespace.get(namespace, frozenset()) | self.everywhere)
            for namespace, names in other.by_namespace.items()
        )


def secret_references(
    ingresses: Iterable[Ingress], default_configs: Mapping[str, Mapping[str, Any]]
) -> SecretReferences:
    """The Secrets ``ingresses`` and the settings' default plugin configs refer to."""
    by_namespace: dict[str, set[str]] = {}
    for ingress in ingresses:
        names = by_namespace.setdefault(ingress.namespace, set())
        names.update(tls.secret_name for tls in ingress.spec.tls if tls.secret_name)
        for key, text in ingress.metadata.annotations.items():
            if not key.startswith(PLUGIN_CONFIG_PREFIX) and key != BACKEND_TLS:
                continue
            try:
                config = parse_plugin_config(text)
            except Exception:  # noqa: S112 - an unreadable config rejects the Ingress elsewhere
                continue
            names.update(_strings(config))
    return SecretReferences(
        by_namespace={namespace: frozenset(names) for namespace, names in by_namespace.items() if names},
        everywhere=frozenset(_strings(default_configs)),
    )


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string value in nested mappings and lists (keys are not values)."""
    if depth > 32:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, depth + 1)
