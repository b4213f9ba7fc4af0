"""Binding plugins to routes: which plugins, with which config, as which objects.

Config precedence is :func:`plugin_config`, one function: the Ingress annotation, else the
global default from settings, used whole (never deep-merged). Configs are validated with the
plugin's model; plugin objects are made by the plugin's factory once per (route, plugin,
version, config) and reused by the next table while that key (and any Secret the object
read) is unchanged, so limiter and breaker state survive endpoint churn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway_core.errors import PluginError
from gateway_core.manifests.annotations import PLUGIN_CONFIG_PREFIX, PluginAnnotations
from gateway_core.manifests.objects import format_validation_error
from gateway_core.messages import RouteInfo
from gateway_core.plugin_api import RESERVED_REQUEST_HEADERS, Binding, PluginSpec, implemented_phases

logger = logging.getLogger("gateway_core.routing")

InstanceKey = tuple[str, str, str, str]
"""(route id, plugin name, plugin version, canonical config JSON)."""


@dataclass(frozen=True, slots=True)
class BindingPolicy:
    """The settings' part in binding: plugins bound everywhere and default configs."""

    bound: tuple[str, ...] = ()
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


SecretLookup = Callable[[str], Mapping[str, bytes] | None]


class SecretsView:
    """The ``Binding.secrets`` of one plugin object: looks up Secrets in the newest snapshot.

    A reused plugin object keeps its :class:`Binding`, so the lookup it holds is re-pointed
    at each new table's Secrets instead of the snapshot it was made from. It remembers what
    it returned, so an object is made anew when a Secret it read has changed (credentials
    loaded by the factory must not outlive their rotation).
    """

    __slots__ = ("lookup", "seen")

    def __init__(self, lookup: SecretLookup) -> None:
        self.lookup = lookup
        self.seen: dict[str, Mapping[str, bytes] | None] = {}

    def __call__(self, name: str) -> Mapping[str, bytes] | None:
        value = self.lookup(name)
        self.seen[name] = value
        return value

    def changed(self, lookup: SecretLookup) -> bool:
        """Whether any Secret read so far reads differently through ``lookup``."""
        for name, value in tuple(self.seen.items()):  # a copy: requests may read meanwhile
            try:
                if lookup(name) != value:
                    return True
            except Exception:  # e.g. invalid base64 now: let the factory meet it
                return True
        return False


@dataclass(frozen=True, slots=True)
class BoundPlugin:
    """A plugin object bound to one route, with what made it."""

    spec: PluginSpec[Any]
    config: BaseModel
    instance: object
    phases: tuple[str, ...]
    secrets: SecretsView | None = field(default=None, compare=False, repr=False)
    """The Secret lookup handed to the factory (re-pointed at each new snapshot)."""


def plugin_config(name: str, annotations: PluginAnnotations, policy: BindingPolicy) -> Mapping[str, Any]:
    """The config a plugin gets on an Ingress: its annotation, else the global default, else ``{}``."""
    if name in annotations.configs:
        return annotations.configs[name]
    return policy.defaults.get(name, {})


@dataclass(slots=True)
class ResolvedPlugins:
    """Plugins for one Ingress, validated, in run order; or the problems found."""

    plugins: list[tuple[PluginSpec[Any], BaseModel]]
    problems: list[str]


def resolve_plugins(
    annotations: PluginAnnotations, policy: BindingPolicy, specs: Mapping[str, PluginSpec[Any]]
) -> ResolvedPlugins:
    """Check every bound plugin exists and its config is valid; sort by priority, then name."""
    names = list(policy.bound) + [name for name in annotations.listed if name not in policy.bound]
    problems: list[str] = []
    for name in annotations.configs:
        if name not in names:
            problems.append(
                f"annotation {PLUGIN_CONFIG_PREFIX}{name}: plugin {name!r} is configured but not bound "
                "(add it to meta-native.io/plugins)"
            )
    resolved: list[tuple[PluginSpec[Any], BaseModel]] = []
    for name in names:
        spec = specs.get(name)
        if spec is None:
            problems.append(f"plugin {name!r} is not installed (or is disabled)")
            continue
        try:
            config = spec.config_model.model_validate(plugin_config(name, annotations, policy))
        except ValidationError as exc:
            problems.append(f"plugin {name!r}: invalid config: " + "; ".join(format_validation_error(exc)))
            continue
        reserved = sorted(spec.headers_owned_by(config) & RESERVED_REQUEST_HEADERS)
        if reserved:  # owned headers vanish from every request of the gateway: never these
            problems.append(f"plugin {name!r}: may not own the request header(s) {', '.join(reserved)}")
            continue
        resolved.append((spec, config))
    resolved.sort(key=lambda item: (-item[0].priority, item[0].name))
    return ResolvedPlugins(plugins=resolved, problems=problems)


class PluginInstances:
    """Plugin objects by :data:`InstanceKey`; reuses the previous table's objects."""

    def __init__(self, previous: Mapping[InstanceKey, BoundPlugin] | None = None) -> None:
        self._previous = previous or {}
        self.current: dict[InstanceKey, BoundPlugin] = {}

    def bind(
        self,
        route: RouteInfo,
        plugins: Sequence[tuple[PluginSpec[Any], BaseModel]],
        secrets: SecretLookup,
    ) -> tuple[list[BoundPlugin], list[str]]:
        """The bound objects for one route, made or reused; problems if a factory fails.

        An object is reused when its key is unchanged and no Secret it read has changed.
        """
        bound: list[BoundPlugin] = []
        problems: list[str] = []
        for spec, config in plugins:
            key = (route.id, spec.name, spec.version, json.dumps(config.model_dump(mode="json"), sort_keys=True))
            existing = self.current.get(key)
            if existing is None:
                existing = self._previous.get(key)
                view = existing.secrets if existing is not None else None
                if view is not None:
                    if view.changed(secrets):
                        existing = None
                    else:
                        view.lookup = secrets
            if existing is None:
                view = SecretsView(secrets)
                try:
                    instance = spec.factory(config, Binding(plugin=spec.name, route=route, secrets=view))
                except PluginError as exc:  # a refusal the plugin explains (e.g. a missing Secret)
                    logger.warning("plugin %s refused to bind to route %s: %s", spec.name, route.id, exc)
                    problems.append(f"plugin {spec.name!r}: {exc}")
                    continue
                except Exception as exc:  # a plugin bug must reject one Ingress, not the table
                    logger.exception("plugin %s failed to bind to route %s", spec.name, route.id)
                    problems.append(f"plugin {spec.name!r} failed to initialise: {exc}")
                    continue
                existing = BoundPlugin(
                    spec=spec, config=config, instance=instance, phases=implemented_phases(instance), secrets=view
                )
            self.current[key] = existing
            bound.append(existing)
        return bound, problems
