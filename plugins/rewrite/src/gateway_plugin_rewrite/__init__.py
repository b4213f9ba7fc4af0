"""``rewrite``: change the path sent upstream by prefix strip, prefix replacement or regex."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_rewrite.config import PrefixReplacement, RewriteConfig
from gateway_plugin_rewrite.plugin import ORIGINAL_URI_HEADER, Rewrite

__all__ = ["ORIGINAL_URI_HEADER", "SPEC", "PrefixReplacement", "Rewrite", "RewriteConfig"]

SPEC: PluginSpec[RewriteConfig] = PluginSpec(
    name="rewrite",
    factory=Rewrite.from_binding,
    config_model=RewriteConfig,
    priority=800,
    version="0.1.0",
    description="Rewrites the upstream path: strip or replace a prefix, or a regex with $1 captures.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
