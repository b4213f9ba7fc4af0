"""Every folder under ``plugins/`` is a real plugin distribution, installed, documented, typed.

A first-party plugin has the shape a third-party author publishes: its own pyproject naming
``gateway-plugin-<name>``, package ``gateway_plugin_<name>``, an entry point in the
``gateway_core`` group, a config model that forbids unknown keys and describes every field,
and a docs page whose config table matches the model. ``gateway_core`` never imports one.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway_core.plugin_api import PluginSpec
from gateway_core.testing.docs import config_table, page_table

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").exists())


def _spec(name: str) -> PluginSpec[Any]:
    (entry,) = [ep for ep in importlib.metadata.entry_points(group="gateway_core") if ep.name == name]
    module = entry.load()
    specs: dict[str, PluginSpec[Any]] = {spec.name: spec for spec in module.gateway_plugin_specs()}
    return specs[name]


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for name, field in model.model_fields.items():
        rows.append((prefix + name, field))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _fields(annotation, f"{prefix}{name}.")
    return rows


def test_the_first_party_plugins_are_all_here() -> None:
    assert set(PLUGINS) >= {
        "basic-auth",
        "key-auth",
        "jwt-auth",
        "forward-auth",
        "rate-limit",
        "circuit-breaker",
        "access-log",
        "request-id",
        "ip-filter",
        "cors",
        "redirect",
        "body-limit",
        "rewrite",
        "headers",
    }


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_is_a_distribution_of_its_own(name: str) -> None:
    project = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())["project"]
    package = "gateway_plugin_" + name.replace("-", "_")
    assert project["name"] == f"gateway-plugin-{name}"
    assert project["entry-points"]["gateway_core"] == {name: package}
    assert any(dep.startswith("meta-native-gateway") for dep in project["dependencies"])
    assert (ROOT / "plugins" / name / "src" / package / "py.typed").exists()
    assert (ROOT / "plugins" / name / "README.md").exists()
    assert importlib.metadata.version(project["name"]) == project["version"]


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_config_model_describes_every_field(name: str) -> None:
    spec = _spec(name)
    assert spec.config_model.model_config.get("extra") == "forbid"
    undescribed = [field for field, info in _fields(spec.config_model) if not info.description]
    assert undescribed == []


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_has_a_docs_page_whose_table_matches_its_model(name: str) -> None:
    page = ROOT / "docs" / "plugins" / f"{name}.md"
    assert page.exists(), f"docs/plugins/{name}.md is missing"
    table = page_table(page.read_text())
    command = f"python -m gateway_core.testing.docs docs/plugins/{name}.md MODULE:MODEL"
    assert table == config_table(_spec(name).config_model), f"the config table is stale; run {command}"
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))["nav"]
    assert f"plugins/{name}.md" in str(nav)


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_is_type_checked(name: str) -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert f"plugins/{name}/src" in mypy["mypy_path"]
    assert f"plugins/{name}/tests" in mypy["mypy_path"]


def test_gateway_core_never_imports_a_plugin() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+gateway_plugin_", re.M)
    offenders = [str(path) for path in (ROOT / "gateway_core").rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []
