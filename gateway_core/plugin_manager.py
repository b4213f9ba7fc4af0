"""Build the plugin manager: hookspecs, entry points, blocking by name, tracing.

``get_plugin_manager()`` is a factory, never a module global, so tests and embedding
programs each get their own. Plugins come from the ``gateway_core`` entry-point group
(first-party plugins too) and from objects passed in code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import pluggy

from gateway_core import hookspecs
from gateway_core.errors import PluginError
from gateway_core.plugin_api import PluginSpec

logger = logging.getLogger("gateway_core.plugins")


def get_plugin_manager(
    *, plugins: Iterable[object] = (), blocked: Iterable[str] = (), load_entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with every hookspec, the installed plugins and ``plugins`` registered.

    ``blocked`` names entry points (or registered plugin names) that must not load. A
    hookimpl that matches no hookspec fails here, at start-up, not later.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        except Exception as exc:  # a broken third-party package must name itself
            raise PluginError(f"loading plugin entry points failed: {exc!r}") from exc
    for plugin in plugins:
        try:
            pm.register(plugin)
        except ValueError as exc:  # pluggy: the same object or name registered twice
            raise PluginError(f"cannot register plugin {plugin!r}: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    if logger.isEnabledFor(logging.DEBUG):
        pm.trace.root.setwriter(lambda message: logger.debug(message.rstrip()))
        pm.enable_tracing()
    return pm


def collect_plugin_specs(pm: pluggy.PluginManager, *, disabled: Iterable[str] = ()) -> dict[str, PluginSpec[Any]]:
    """Every request-plane plugin by name; two plugins with one name is an error."""
    off = set(disabled)
    specs: dict[str, PluginSpec[Any]] = {}
    for result in pm.hook.gateway_plugin_specs():
        for spec in result or ():
            if not isinstance(spec, PluginSpec):
                raise PluginError(f"gateway_plugin_specs returned {spec!r}, not a PluginSpec")
            if spec.name in off:
                continue
            if spec.name in specs:
                raise PluginError(f"two plugins are named {spec.name!r}")
            specs[spec.name] = spec
    return specs


def plugin_distributions(pm: pluggy.PluginManager) -> Mapping[str, str]:
    """``{registered plugin name: 'distribution version'}`` for plugins loaded from packages."""
    found: dict[str, str] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin) or repr(plugin)
        meta: Any = getattr(dist, "metadata", None)
        dist_name = meta["Name"] if meta is not None else getattr(dist, "project_name", "?")
        found[name] = f"{dist_name} {dist.version}"
    return found


def installed_version() -> str:
    """This gateway's own version."""
    try:
        return metadata.version("meta-native-gateway")
    except metadata.PackageNotFoundError:
        return "0+unknown"
