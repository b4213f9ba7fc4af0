"""The documentation stays true to the code.

Every hookspec, settings key, CLI command and option, and metric has its place in the
reference pages; every page is in the navigation; the Python examples parse, and those that
implement hooks register against the real hookspecs; and ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
import yaml
from pydantic import BaseModel

from gateway_core import hookspecs
from gateway_core.cli import main
from gateway_core.manifests.annotations import parse_plugin_config
from gateway_core.metrics import GatewayMetrics
from gateway_core.plugin_api import PluginSpec
from gateway_core.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"
METRIC_SUFFIXES = ("", "_total", "_created", "_bucket", "_sum", "_count")


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``##`` heading."""
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.MULTILINE)
    return {heading: body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def mentions(text: str, word: str) -> bool:
    """``word`` appears on its own, not as part of a longer option or name."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# --- hooks ----------------------------------------------------------------------------------


def hookspec_names() -> set[str]:
    return {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gateway_")}


def test_every_hookspec_has_a_section_and_every_section_a_hookspec() -> None:
    names = hookspec_names()
    assert names, "no hookspecs found"
    for name in names:
        assert getattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec", None) is not None, name
    headings = set(sections(read("reference/hooks.md")))
    assert sorted(names - headings) == [], "hooks without a '## <name>' section in docs/reference/hooks.md"
    documented = {heading for heading in headings if heading.startswith("gateway_")}
    assert sorted(documented - names) == [], "sections naming hooks that do not exist"


def exec_example(source: str, name: str) -> types.ModuleType:
    """Run a documentation example as a module of its own."""
    module = types.ModuleType(name)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def example_modules() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def test_every_hook_example_registers_against_its_hookspec(example_modules: list[str]) -> None:
    for hook, body in sections(read("reference/hooks.md")).items():
        if not hook.startswith("gateway_"):
            continue
        blocks = python_blocks(body)
        assert blocks, f"section {hook} has no Python example"
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        for index, block in enumerate(blocks):
            name = f"docs_example_{hook}_{index}"
            example_modules.append(name)
            pm.register(exec_example(block, name), name=name)
        pm.check_pending()
        assert getattr(pm.hook, hook).get_hookimpls(), f"the example of {hook} does not implement it"


def test_the_plugin_guide_example_gives_a_valid_spec(example_modules: list[str]) -> None:
    text = read("guides/writing-a-plugin.md")
    modules = [block for block in python_blocks(text) if "@hookimpl" in block]
    assert modules, "the guide has no plugin module"
    example_modules.append("docs_example_guide")
    module = exec_example(modules[0], "docs_example_guide")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(module)
    pm.check_pending()
    specs = [spec for result in pm.hook.gateway_plugin_specs() for spec in result]
    assert [type(spec) for spec in specs] == [PluginSpec]
    spec = specs[0]
    annotation = re.search(rf"meta-native\.io/plugin\.{spec.name}: \|\n((?: {{6}}.*\n)+)", text)
    assert annotation is not None, "the guide shows no config annotation for its plugin"
    config = parse_plugin_config(re.sub(r"^ {6}", "", annotation.group(1), flags=re.MULTILINE))
    spec.config_model.model_validate(config)


@pytest.mark.parametrize("page", sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")))
def test_python_examples_parse(page: str) -> None:
    for block in python_blocks(read(page)):
        ast.parse(block)


# --- settings -------------------------------------------------------------------------------


def settings_keys() -> set[str]:
    """``section.key`` for every setting, with field aliases (``plugins.global``)."""
    keys: set[str] = set()
    for section, field in GatewaySettings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type), section
        assert issubclass(model, BaseModel), section
        for name, sub_field in model.model_fields.items():
            keys.add(f"{section}.{sub_field.alias or name}")
    return keys


def test_every_settings_key_is_documented_and_no_unknown_key_is() -> None:
    text = read("reference/settings.md")
    keys = settings_keys()
    assert "plugins.global" in keys
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    missing = [key for key in sorted(keys) if not any(f"`{key}`" in row for row in table_rows)]
    assert missing == [], "settings keys without a table row in docs/reference/settings.md"
    section_names = "|".join(re.escape(name) for name in GatewaySettings.model_fields)
    documented = {f"{section}.{key}" for section, key in re.findall(rf"`({section_names})\.([a-z_]+)(?![\w./-])", text)}
    assert sorted(documented - keys) == [], "documented settings keys that do not exist"


# --- CLI ------------------------------------------------------------------------------------


def test_every_cli_command_and_option_is_documented() -> None:
    text = read("reference/cli.md")
    by_heading = sections(text)
    assert isinstance(main, click.Group)
    for param in main.params:
        for option in getattr(param, "opts", ()):
            assert mentions(text, option), f"gateway {option} is not documented"
    for name, command in main.commands.items():
        heading = f"gateway {name}"
        assert heading in by_heading, f"no '## {heading}' section in docs/reference/cli.md"
        body = by_heading[heading]
        for param in command.params:
            if isinstance(param, click.Option):
                for option in [*param.opts, *param.secondary_opts]:
                    assert mentions(body, option), f"{heading} {option} is not documented in its section"
            else:
                assert param.name is not None
                assert mentions(body, param.name.upper()), f"{heading} argument {param.name} is not documented"
    documented = {heading.removeprefix("gateway ") for heading in by_heading if heading.startswith("gateway ")}
    assert sorted(documented - set(main.commands)) == [], "documented commands that do not exist"


# --- metrics --------------------------------------------------------------------------------


def metric_names() -> set[str]:
    return {family.name for family in GatewayMetrics(include_default=False).registry.collect()}


def test_every_metric_is_documented_and_no_unknown_one_is() -> None:
    text = read("reference/admin-api.md")
    names = metric_names()
    assert names, "GatewayMetrics registers no metric"
    missing = [name for name in sorted(names) if f"`{name}`" not in text]
    assert missing == [], "metrics missing from docs/reference/admin-api.md"
    body = sections(text)["/metrics"]
    known = {name + suffix for name in names for suffix in METRIC_SUFFIXES}
    documented = set(re.findall(r"`(gateway_[a-z_]+)", body))
    assert sorted(documented - known) == [], "documented gateway_* metrics that do not exist"


# --- site -----------------------------------------------------------------------------------


def nav_pages(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        if "://" not in node:
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from nav_pages(value)


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(nav_pages(config["nav"]))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert sorted(pages - nav) == [], "pages missing from the nav of mkdocs.yml"
    assert sorted(nav - pages) == [], "nav entries without a page"


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    assert MKDOCS.exists(), f"mkdocs is not installed next to {sys.executable} (pip install -e '.[dev]')"
    site = tmp_path / "site"
    # No --quiet: it hides the warnings that strict mode turns into a failure.
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
