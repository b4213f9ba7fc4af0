"""The ``meta-native.io/*`` annotations: which plugins an Ingress binds, with what config.

Annotation text is data. Plugin configs are parsed as YAML (JSON is YAML) by a safe loader
that also refuses anchors and aliases, so an annotation cannot expand into a large document;
the result must be a mapping. Nothing here validates a config against its plugin's model:
that needs the installed plugins and happens in ``routing.binding``.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

DOMAIN = "meta-native.io/"
PLUGINS = DOMAIN + "plugins"
PLUGIN_CONFIG_PREFIX = DOMAIN + "plugin."
LEGACY_CLASS = "kubernetes.io/ingress.class"

PLUGIN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that rejects anchors and aliases (no document expansion tricks)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed in annotations", event.start_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors are not allowed in annotations", event.start_mark)
        return super().compose_node(parent, index)


@dataclass(frozen=True, slots=True)
class PluginAnnotations:
    """What an Ingress's annotations say about plugins.

    ``listed`` are the names in ``meta-native.io/plugins`` (order kept, duplicates dropped);
    ``configs`` maps a plugin name to its parsed ``meta-native.io/plugin.<name>`` mapping.
    ``problems`` are reasons to reject the Ingress.
    """

    listed: tuple[str, ...] = ()
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def load_annotation_yaml(text: str) -> Any:
    """Parse annotation text as YAML (JSON is YAML): safe, no anchors or aliases, bounded nesting."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # the composer recurses per nesting level: "[[[[...]]]]"
        raise ValueError("nested too deeply") from None


def parse_plugin_config(text: str) -> Mapping[str, Any]:
    """Parse one plugin config annotation: a YAML or JSON mapping (empty means ``{}``)."""
    value = load_annotation_yaml(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, got {type(value).__name__}")
    return value


def parse_plugin_annotations(
    annotations: Mapping[str, str], *, known_keys: frozenset[str] = frozenset()
) -> PluginAnnotations:
    """Read the plugin list and configs; report malformed or unknown ``meta-native.io/`` keys.

    ``known_keys`` are other ``meta-native.io/`` annotations some part of the gateway
    understands; any other key under the domain is a problem (a typo must not silently
    drop a policy).
    """
    problems: list[str] = []
    listed: list[str] = []
    raw_list = annotations.get(PLUGINS)
    if raw_list is not None:
        for item in re.split(r"[,\s]+", raw_list.strip()):
            if not item:
                continue
            if not PLUGIN_NAME.match(item):
                problems.append(f"annotation {PLUGINS}: {item!r} is not a valid plugin name")
            elif item not in listed:
                listed.append(item)
    configs: dict[str, Mapping[str, Any]] = {}
    for key, text in annotations.items():
        if not key.startswith(DOMAIN) or key == PLUGINS or key in known_keys:
            continue
        if not key.startswith(PLUGIN_CONFIG_PREFIX):
            problems.append(f"annotation {key}: unknown {DOMAIN} annotation")
            continue
        name = key[len(PLUGIN_CONFIG_PREFIX) :]
        if not PLUGIN_NAME.match(name):
            problems.append(f"annotation {key}: {name!r} is not a valid plugin name")
            continue
        try:
            configs[name] = parse_plugin_config(text)
        except (yaml.YAMLError, ValueError) as exc:
            problems.append(f"annotation {key}: invalid config: {_one_line(exc)}")
    return PluginAnnotations(listed=tuple(listed), configs=configs, problems=tuple(problems))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
