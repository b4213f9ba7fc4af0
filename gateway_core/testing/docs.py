"""Render a plugin's config model as the Markdown table its docs page carries.

Each plugin page holds the table between two markers; the test suite re-renders it from
the model and fails when they differ, so the page can never drift from the code::

    <!-- config-table:start -->
    | Field | Type | Default | Description |
    ...
    <!-- config-table:end -->

``python -m gateway_core.testing.docs PAGE MODULE:MODEL`` rewrites the table in place.
"""

from __future__ import annotations

import enum
import importlib
import json
import re
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
_TABLE = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)


def config_table(model: type[BaseModel]) -> str:
    """The Markdown table of ``model``'s fields (nested models flattened as ``a.b``)."""
    lines = ["| Field | Type | Default | Description |", "|---|---|---|---|"]
    lines += [_row(name, field) for name, field in _fields(model, "")]
    return "\n".join(lines) + "\n"


def page_table(text: str) -> str | None:
    """The table between the markers of a docs page, or None when the page has none."""
    match = _TABLE.search(text)
    return match.group(1) if match else None


def write_table(page: Path, model: type[BaseModel]) -> bool:
    """Rewrite the table in ``page`` from ``model``; True when the page changed."""
    text = page.read_text()
    if page_table(text) is None:
        raise ValueError(f"{page} has no {START} ... {END} block")
    new = _TABLE.sub(lambda _: f"{START}\n{config_table(model)}{END}", text)
    if new != text:
        page.write_text(new)
    return new != text


def _fields(model: type[BaseModel], prefix: str) -> list[tuple[str, FieldInfo]]:
    rows: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        shown = prefix + (field.alias or name)
        rows.append((shown, field))
        nested = _model_of(field.annotation)
        if nested is not None:
            rows += _fields(nested, shown + ".")
    return rows


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _row(name: str, field: FieldInfo) -> str:
    description = (field.description or "").replace("\n", " ").replace("|", "\\|")
    return f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description} |"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, enum.Enum):
        value = value.value
    return "`" + json.dumps(value, default=str).replace("|", "\\|") + "`"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f'`"{arg}"`' if isinstance(arg, str) else f"`{arg}`" for arg in args)
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_name(arg) for arg in args)
    if origin is not None and hasattr(annotation, "__metadata__"):  # Annotated[...]
        return _type_name(args[0])
    if origin in (list, tuple, set, frozenset):
        inner = [arg for arg in args if arg is not Ellipsis]
        return f"list of {_type_name(inner[0])}" if inner else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}" if args else "map"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f'`"{member.value}"`' for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if isinstance(annotation, type):
        return names.get(annotation, annotation.__name__)
    return str(annotation)


def main(argv: list[str]) -> int:
    """``PAGE MODULE:MODEL``: rewrite the config table of a docs page."""
    if len(argv) != 2 or ":" not in argv[1]:
        print("usage: python -m gateway_core.testing.docs PAGE MODULE:MODEL", file=sys.stderr)
        return 2
    module, _, attribute = argv[1].partition(":")
    model = getattr(importlib.import_module(module), attribute)
    changed = write_table(Path(argv[0]), model)
    print(f"{argv[0]}: {'updated' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
