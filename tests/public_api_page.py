"""The "Public API" docs page: its reference part, generated from the live API.

``docs/reference/public-api.md`` has a hand-written part (what is public, the versioning and
deprecation policy) and, between two markers, a part generated here: one entry per public
name, grouped by :data:`GROUPS`, with its signature, the first paragraph of its docstring
and its members. ``tests/public_api_record.py --update`` writes it together with the record.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path
from typing import Any

import gateway_core
from tests.public_api_record import ROOT, UPDATE, project_version

PAGE = ROOT / "docs" / "reference" / "public-api.md"
START, END = "<!-- public-api:start -->", "<!-- public-api:end -->"

GROUPS: dict[str, tuple[str, str]] = {
    "Building and running a gateway": (
        "A program assembles its gateway with `create_app` and serves it with `serve` (or any ASGI server).",
        "create_app Gateway serve GatewaySettings load_settings make_transport Transport PoolStats",
    ),
    "Route sources": (
        "Where routes come from: see [Route sources](../guides/route-sources.md).",
        "RouteSource Publish Snapshot Problem build_snapshot",
    ),
    "Plugins": (
        "Assembly-plane hooks and the request-plane plugin model: see [Plugins](../concepts/plugins.md).",
        "hookimpl PluginSpec Plugin Binding CallNext EmptyConfig IdentityConfig HeaderName OwnsHeaders "
        "set_identity IDENTITY_HEADER RESERVED_REQUEST_HEADERS",
    ),
    "Request plane": (
        "What a request phase sees and returns.",
        "RequestContext RouteInfo UpstreamRequest UpstreamResponse LocalResponse Outcome Headers Endpoint "
        "Timeouts StashKey RequestBody ResponseBody BytesBody",
    ),
    "Errors and warnings": (
        "Everything the gateway raises on purpose is a `GatewayError`.",
        "GatewayError ConfigError PluginError PluginConfigError UpstreamError GatewayDeprecationWarning",
    ),
}
"""The page's sections: title -> (introduction, the public names it lists, in order)."""


def grouped_names() -> dict[str, list[str]]:
    """Section title -> its public names."""
    return {title: names.split() for title, (_, names) in GROUPS.items()}


def attribute_docstring(name: str) -> str | None:
    """The docstring under ``NAME = ...`` in the module ``gateway_core`` imports ``name`` from."""
    init = ast.parse(Path(gateway_core.__file__).read_text())
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and any((alias.asname or alias.name) == name for alias in node.names):
            module = ROOT / (str(node.module).replace(".", "/") + ".py")
            body = ast.parse(module.read_text()).body
            for statement, following in itertools.pairwise(body):
                targets = (
                    statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
                )
                named = any(isinstance(target, ast.Name) and target.id == name for target in targets)
                if named and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                    return inspect.cleandoc(str(following.value.value))
    return None


def summary(obj: Any, name: str = "") -> str:
    """The first paragraph of the object's docstring (or, for a constant or alias, of its source's)."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = inspect.getdoc(obj) if obj.__doc__ is not None else None
    else:
        doc = attribute_docstring(name)
    if not doc:
        return ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    first = re.sub(r":\w+:`~?([^`]+)`", lambda match: f"`{match.group(1).split('.')[-1]}`", first)
    return first.replace("``", "`")


def _wrapped(code: str) -> str:
    """A long signature one parameter per line, as a formatter would."""
    opening = code.find("(")
    if len(code) <= 100 or opening < 0:
        return code
    depth, start, parts = 0, opening + 1, []
    for index, char in enumerate(code[opening:], start=opening):
        depth += char in "([{"
        depth -= char in ")]}"
        if (char == "," and depth == 1) or depth == 0:
            parts.append(code[start:index].strip())
            start = index + 1
        if depth == 0:
            return code[: opening + 1] + "\n" + "".join(f"    {part},\n" for part in parts) + code[index:]
    return code


def _entry_markdown(name: str, entry: dict[str, Any], obj: Any) -> str:
    kind = entry["kind"]
    if kind == "function":
        code = _wrapped(f"def {name}{entry['signature']}")
    elif kind == "class":
        made = "" if entry["signature"] else "  # made by the gateway, not by you"
        code = _wrapped(f"class {name}{entry['signature'] or ''}") + made
    elif kind in ("model", "protocol", "exception"):
        bases = f"({', '.join(entry['bases'])})" if kind == "exception" else ""
        code = f"class {name}{bases}  # {kind}" if kind != "exception" else f"class {name}{bases}"
    else:
        code = f"{name} = {entry['value']}"
    lines = [f"### `{name}`", "", "```text", code, "```", ""]
    if entry.get("deprecated"):
        lines += [f"**Deprecated:** {entry['deprecated']}.", ""]
    if text := summary(obj, name):
        lines += [text, ""]
    members = entry.get("members", {})
    if members:
        shown = [f"`{member}()`" if text.startswith("(") else f"`{member}`" for member, text in members.items()]
        lines += [f"Members: {', '.join(shown)}.", ""]
    return "\n".join(lines)


def docs_block(api: dict[str, dict[str, Any]]) -> str:
    parts = [START, "", f"Generated from `gateway_core` {project_version()} by `{UPDATE}`.", ""]
    for title, names in grouped_names().items():
        parts += [f"## {title}", "", GROUPS[title][0], ""]
        parts += [_entry_markdown(name, api[name], getattr(gateway_core, name)) for name in names]
    return "\n".join([*parts, END])


def page_block(text: str) -> str:
    start, end = text.index(START), text.index(END)
    return text[start : end + len(END)]
