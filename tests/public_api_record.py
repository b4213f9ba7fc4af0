"""The record of the public API (``gateway_core.__all__``): describe, compare, update.

``tests/public_api.json`` records, per version, every public name: its kind, its
signature, its members. A difference between two records is either *compatible* (a new
name, a new optional parameter, a new member) or *breaking* (a name, member or parameter
gone, a parameter now required, a type alias changed). The versioning policy of
``docs/reference/public-api.md`` allows breaking changes only in a new minor version and only
to names deprecated in the previous one; the record of a version not yet released (no
section in CHANGELOG.md) may still change freely. ``tests/test_public_api.py`` holds the live
API to the record; ``tests/public_api_page.py`` renders the reference part of that page.

Record a deliberate change (it refuses what the policy forbids and says why)::

    .venv/bin/python tests/public_api_record.py --update
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

import gateway_core

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "public_api.json"
CHANGELOG = ROOT / "CHANGELOG.md"
UPDATE = ".venv/bin/python tests/public_api_record.py --update"


MADE_BY_THE_GATEWAY = {"Gateway": ("settings", "proxy", "admin", "source", "transport")}
"""Public classes a program uses but never constructs: their constructor is not API, these
instance attributes are (the rest of the instance is internal)."""


# --- describing the live API ------------------------------------------------------------------


class _Text:
    """Renders as its text inside a signature (an annotation or a default, verbatim)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _short(text: str) -> str:
    """Drop module paths: ``gateway_core.messages.Headers`` -> ``Headers``."""
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__qualname__
    if typing.get_origin(value) is typing.Annotated:
        return f"Annotated[{_annotation(typing.get_args(value)[0])}, ...]"
    return _short(repr(value))


def _default(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return repr(value)
    if isinstance(value, tuple | frozenset) and not value:
        return repr(value)
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__name__
    return "..."


def signature_text(target: Any) -> str | None:
    """The signature as valid Python parameter syntax, or None when there is none of its own."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    empty = inspect.Parameter.empty
    parameters = [
        parameter.replace(
            annotation=empty if parameter.annotation is empty else _Text(_annotation(parameter.annotation)),
            default=empty if parameter.default is empty else _Text(_default(parameter.default)),
        )
        for parameter in signature.parameters.values()
    ]
    returns = signature.return_annotation
    if inspect.isclass(target) or returns is empty:
        return str(signature.replace(parameters=parameters, return_annotation=empty))
    return str(signature.replace(parameters=parameters, return_annotation=_Text(_annotation(returns))))


def _own_classes(cls: type) -> list[type]:
    return [base for base in cls.__mro__ if base.__module__.startswith("gateway_core")]


def _members(cls: type) -> dict[str, str]:
    """Public attributes and methods the gateway's own classes define (not overrides of a library's)."""
    foreign = {name for base in cls.__mro__ if not base.__module__.startswith("gateway_core") for name in vars(base)}
    members: dict[str, str] = {}
    for base in reversed(_own_classes(cls)):
        for name in getattr(base, "__annotations__", {}):
            members[name] = "attribute"
        for name, value in vars(base).items():
            if name.startswith("_") or name in foreign:
                continue
            if isinstance(value, property):
                members[name] = "property"
            elif isinstance(value, classmethod | staticmethod):
                members[name] = signature_text(getattr(cls, name)) or "method"
            elif inspect.isfunction(value):
                members[name] = signature_text(value) or "method"
            else:
                members[name] = "attribute"
    if issubclass(cls, pydantic.BaseModel):
        for name, info in cls.model_fields.items():
            members[name] = "field, required" if info.is_required() else "field"
    return dict(sorted(members.items()))


def describe(obj: Any) -> dict[str, Any]:
    """The record of one public object."""
    deprecated = getattr(obj, "__deprecated__", None)
    entry: dict[str, Any]
    if inspect.isclass(obj):
        if issubclass(obj, pydantic.BaseModel):
            entry = {"kind": "model"}
        elif getattr(obj, "_is_protocol", False):
            entry = {"kind": "protocol"}
        elif issubclass(obj, BaseException):
            entry = {"kind": "exception", "bases": [base.__name__ for base in obj.__bases__]}
        else:
            constructible = obj.__name__ not in MADE_BY_THE_GATEWAY
            entry = {"kind": "class", "signature": signature_text(obj) if constructible else None}
        attributes = dict.fromkeys(MADE_BY_THE_GATEWAY.get(obj.__name__, ()), "attribute")
        entry["members"] = dict(sorted({**_members(obj), **attributes}.items()))
    elif inspect.isfunction(obj):
        entry = {"kind": "function", "signature": signature_text(obj)}
    elif isinstance(obj, str | int | frozenset):
        value = sorted(obj) if isinstance(obj, frozenset) else obj
        entry = {"kind": "constant", "value": repr(value)}
    elif typing.get_origin(obj) is not None:
        entry = {"kind": "alias", "value": _annotation(obj)}
    else:
        project = getattr(obj, "project_name", None)  # a pluggy marker
        entry = {"kind": "object", "value": type(obj).__qualname__ + (f"({project!r})" if project else "")}
    if deprecated:
        entry["deprecated"] = deprecated
    return entry


def live_api() -> dict[str, dict[str, Any]]:
    return {name: describe(getattr(gateway_core, name)) for name in sorted(gateway_core.__all__)}


# --- comparing ----------------------------------------------------------------------------------


@dataclass
class Changes:
    compatible: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)
    broken_names: set[str] = field(default_factory=set)

    def add(self, name: str, message: str, *, breaking: bool) -> None:
        (self.breaking if breaking else self.compatible).append(f"{name}: {message}")
        if breaking:
            self.broken_names.add(name)


def _parameters(text: str) -> tuple[list[tuple[str, bool]], dict[str, bool], set[str], bool, bool]:
    """Positional params, keyword-capable params, positional-only names, *args, **kwargs."""
    arguments = ast.parse(f"def f{text}: pass").body[0].args  # type: ignore[attr-defined]
    positional = [*arguments.posonlyargs, *arguments.args]
    firsts = len(positional) - len(arguments.defaults)
    ordered = [(arg.arg, index >= firsts) for index, arg in enumerate(positional)]
    by_keyword = {name: has_default for name, has_default in ordered[len(arguments.posonlyargs) :]}
    for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        by_keyword[arg.arg] = default is not None
    only = {arg.arg for arg in arguments.posonlyargs}
    return ordered, by_keyword, only, arguments.vararg is not None, arguments.kwarg is not None


def signature_problems(old: str, new: str) -> list[str]:
    """Why calls written against ``old`` fail against ``new`` (empty: compatible)."""
    old_positional, old_keyword, old_only, old_varargs, old_kwargs = _parameters(old)
    new_positional, new_keyword, new_only, new_varargs, new_kwargs = _parameters(new)
    problems = []
    for index, (name, had_default) in enumerate(old_positional):
        if index >= len(new_positional):
            problems.append(f"positional parameter {name} is gone")
            continue
        new_name, has_default = new_positional[index]
        if name != new_name and not (name in old_only and new_name in new_only):
            problems.append(f"positional parameter {index + 1} is now {new_name}, was {name}")
        elif had_default and not has_default:
            problems.append(f"parameter {name} lost its default")
    for name, has_default in new_positional[len(old_positional) :]:
        if not has_default:
            problems.append(f"new positional parameter {name} is required")
    for name, had_default in old_keyword.items():
        if name not in new_keyword:
            problems.append(f"parameter {name} can no longer be passed by keyword")
        elif had_default and not new_keyword[name]:
            problems.append(f"parameter {name} lost its default")
    for name, has_default in new_keyword.items():
        if name not in old_keyword and not has_default and name not in dict(new_positional):
            problems.append(f"new keyword parameter {name} is required")
    if (old_varargs and not new_varargs) or (old_kwargs and not new_kwargs):
        problems.append("*args or **kwargs is gone")
    return list(dict.fromkeys(problems))


def _compare_signatures(changes: Changes, name: str, old: str | None, new: str | None) -> None:
    if old == new:
        return
    if old is None or new is None:
        changes.add(name, f"signature {old} -> {new}", breaking=old is not None)
        return
    problems = signature_problems(old, new)
    changes.add(name, f"{old} -> {new}" + (f" ({'; '.join(problems)})" if problems else ""), breaking=bool(problems))


def _compare_members(changes: Changes, name: str, old: dict[str, str], new: dict[str, str]) -> None:
    for member, description in old.items():
        label = f"{name}.{member}"
        if member not in new:
            changes.add(label, "removed", breaking=True)
        elif description.startswith("(") and new[member].startswith("("):
            _compare_signatures(changes, label, description, new[member])
        elif description != new[member]:
            required_now = new[member] == "field, required"
            changes.add(label, f"{description} -> {new[member]}", breaking=required_now or description == "property")
    for member in new.keys() - old.keys():
        changes.add(f"{name}.{member}", f"added ({new[member]})", breaking=new[member] == "field, required")


def compare(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> Changes:
    """What changed from the ``old`` record to the ``new`` one, sorted into compatible and breaking."""
    changes = Changes()
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            changes.add(name, "removed", breaking=True)
        elif before["kind"] != after["kind"]:
            changes.add(name, f"was a {before['kind']}, is a {after['kind']}", breaking=True)
        else:
            _compare_signatures(changes, name, before.get("signature"), after.get("signature"))
            _compare_members(changes, name, before.get("members", {}), after.get("members", {}))
            for key in ("value", "bases"):
                if before.get(key) != after.get(key):
                    breaking = before["kind"] != "constant"
                    changes.add(name, f"{key} {before.get(key)} -> {after.get(key)}", breaking=breaking)
            if before.get("deprecated") != after.get("deprecated"):
                changes.add(name, f"deprecation: {after.get('deprecated')}", breaking=False)
    for name in new.keys() - old.keys():
        changes.add(name, f"added ({new[name]['kind']})", breaking=False)
    return changes


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def load_record() -> dict[str, dict[str, dict[str, Any]]]:
    record: dict[str, dict[str, dict[str, Any]]] = json.loads(RECORD.read_text())
    return record


def policy_violations(older: str, old: dict[str, Any], newer: str, new: dict[str, Any]) -> list[str]:
    """Breaking changes from ``older`` to ``newer`` that the versioning policy does not allow."""
    changes = compare(old, new)
    if not changes.breaking:
        return []
    if version_key(newer)[:2] <= version_key(older)[:2]:
        return [
            f"{line} (breaking changes need a new minor version, not {older} -> {newer})" for line in changes.breaking
        ]
    return [
        f"{line} (not deprecated in {older}: deprecate it for one minor version first)"
        for line in changes.breaking
        if "deprecated" not in old.get(line.split(":")[0].split(".")[0], {})
    ]


# --- updating -------------------------------------------------------------------------------------


def released(version: str) -> bool:
    """Whether ``version`` is out: CHANGELOG.md has its own section (not only ``[Unreleased]``)."""
    return re.search(rf"^## \[{re.escape(version)}\]", CHANGELOG.read_text(encoding="utf-8"), re.M) is not None


def update() -> int:
    """Record the live API for the current version and regenerate the page, if the policy allows.

    Until a version is released its record may change freely (it is the API being prepared);
    from the release on, only compatible changes; against the previous recorded version, the
    policy always applies.
    """
    from tests.public_api_page import PAGE, docs_block, page_block  # the page module imports this one

    version, record, api = project_version(), load_record(), live_api()
    older = [item for item in sorted(record, key=version_key) if version_key(item) < version_key(version)]
    refused = policy_violations(older[-1], record[older[-1]], version, api) if older else []
    if version in record and released(version):
        refused += [f"{line} (within released {version})" for line in compare(record[version], api).breaking]
    if refused:
        print("not recorded; the versioning policy does not allow:\n  " + "\n  ".join(refused), file=sys.stderr)
        return 1
    record[version] = api
    ordered = {key: record[key] for key in sorted(record, key=version_key)}
    RECORD.write_text(json.dumps(ordered, indent=2, sort_keys=False) + "\n")
    text = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(text.replace(page_block(text), docs_block(api)), encoding="utf-8")
    print(f"recorded the public API of {version} in {RECORD} and {PAGE}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {UPDATE}")
    sys.exit(update())
