"""The public API changes only on purpose, under the versioning policy, and its page follows it.

The live ``gateway_core.__all__`` must match the record of the version in ``pyproject.toml``
(``tests/public_api.json``); the records of successive versions may break only names that
were deprecated, and only in a new minor version; the "reference" part of
``docs/reference/public-api.md`` is generated from the API. After a deliberate change run
``.venv/bin/python tests/public_api_record.py --update`` (it refuses what the policy forbids).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

import gateway_core
from gateway_core import Publish
from tests import public_api_page, public_api_record
from tests.public_api_page import PAGE, docs_block, grouped_names, page_block, summary
from tests.public_api_record import (
    CHANGELOG,
    MADE_BY_THE_GATEWAY,
    RECORD,
    UPDATE,
    compare,
    live_api,
    load_record,
    policy_violations,
    project_version,
    signature_problems,
    version_key,
)

# --- tests ----------------------------------------------------------------------------------------


def test_every_public_name_exists_once_and_has_its_place_on_the_page() -> None:
    names = gateway_core.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(gateway_core, name), f"gateway_core.__all__ names {name}, which gateway_core lacks"
    grouped = [name for names in grouped_names().values() for name in names]
    assert len(grouped) == len(set(grouped)), "a name is in two groups of GROUPS"
    assert sorted(set(names) - set(grouped)) == [], "public names missing from GROUPS in tests/public_api_page.py"
    assert sorted(set(grouped) - set(names)) == [], "GROUPS in tests/public_api_page.py names non-public names"


def test_every_public_name_says_what_it_is() -> None:
    for name in gateway_core.__all__:
        assert summary(getattr(gateway_core, name), name), f"gateway_core.{name} has no docstring"


def test_the_instance_attributes_recorded_for_gateway_exist_on_a_real_one() -> None:
    class NoRoutes:
        async def run(self, publish: Publish) -> None:
            raise AssertionError("never started")

    gateway = gateway_core.create_app(gateway_core.GatewaySettings(), route_source=NoRoutes(), load_entry_points=False)
    for name in MADE_BY_THE_GATEWAY["Gateway"]:
        assert hasattr(gateway, name), name


def test_the_public_api_matches_the_record_of_this_version() -> None:
    version = project_version()
    record = load_record()
    assert version in record, (
        f"no public API record for {version} (pyproject.toml) in tests/public_api.json; run {UPDATE}"
    )
    changes = compare(record[version], live_api())
    lines = [f"  breaking: {line}" for line in changes.breaking] + [
        f"  compatible: {line}" for line in changes.compatible
    ]
    advice = (
        f"Compatible changes only: record them with {UPDATE} (no version bump) and note them in CHANGELOG.md."
        if not changes.breaking
        else f"{version} is not released yet: if these changes are meant, record them with {UPDATE}."
        if not public_api_record.released(version)
        else "Breaking changes: keep the old name or parameter working, deprecated "
        "(gateway_core.deprecation), or, if it was deprecated in the previous minor version, bump the "
        f"version in pyproject.toml to the next minor and run {UPDATE}."
    )
    assert not lines, f"the public API differs from its record for {version}:\n" + "\n".join(lines) + f"\n{advice}"


def test_recorded_versions_break_only_deprecated_names_and_only_in_a_new_minor_version() -> None:
    record = load_record()
    versions = sorted(record, key=version_key)
    assert list(record) == versions, "tests/public_api.json must list versions in order"
    for older, newer in itertools.pairwise(versions):
        assert policy_violations(older, record[older], newer, record[newer]) == []


def test_the_reference_part_of_the_public_api_page_is_generated_from_the_api() -> None:
    assert page_block(PAGE.read_text(encoding="utf-8")) == docs_block(live_api()), (
        f"docs/reference/public-api.md is stale; run {UPDATE}"
    )


def test_the_version_and_the_changelog_agree_with_pyproject() -> None:
    assert gateway_core.__version__ == project_version(), "reinstall: scripts/bootstrap.sh"
    changelog = CHANGELOG.read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings, "CHANGELOG.md has no '## [version]' sections"
    assert headings[0] == "Unreleased" or headings[0] == project_version()
    assert project_version() in changelog


@pytest.mark.parametrize(
    ("old", "new", "problems"),
    [
        ("(a, b=1, *, c=2)", "(a, b=1, *, c=2, d=3)", []),
        ("(a, b=1)", "(a, b=1, c=None)", []),
        ("(a, *, c=2)", "(a, c=2)", []),
        ("(x: int, /)", "(y: str, /) -> int", []),
        ("(a, b=1)", "(a, b)", ["parameter b lost its default"]),
        (
            "(a, b)",
            "(a, c)",
            ["positional parameter 2 is now c, was b", "parameter b can no longer be passed by keyword"],
        ),
        ("(a, *, c=2)", "(a, *, c=2, d)", ["new keyword parameter d is required"]),
        ("(a, b)", "(a, *, b)", ["positional parameter b is gone"]),
        ("(a)", "(a, b)", ["new positional parameter b is required"]),
        ("(*args)", "()", ["*args or **kwargs is gone"]),
    ],
)
def test_signature_compatibility_is_judged_as_a_caller_sees_it(old: str, new: str, problems: list[str]) -> None:
    assert signature_problems(old, new) == problems


def record_of(**entries: dict[str, object]) -> dict[str, dict[str, object]]:
    return {name: dict(entry) for name, entry in entries.items()}


OLD = record_of(
    build=dict(kind="function", signature="(a: int, *, b: int = 1) -> str"),
    Config=dict(kind="model", members={"limit": "field, required", "scope": "field"}),
    Thing=dict(kind="class", signature="(x: int)", members={"go": "(self) -> None", "size": "property"}),
    LIMIT=dict(kind="constant", value="5"),
)


def test_compatible_changes_need_a_record_update_but_no_new_version() -> None:
    new = record_of(
        build=dict(kind="function", signature="(a: int, *, b: int = 1, c: bool = False) -> str | None"),
        Config=dict(kind="model", members={"limit": "field, required", "scope": "field", "burst": "field"}),
        Thing=dict(kind="class", signature="(x: int)", members={"go": "(self) -> None", "size": "property"}),
        LIMIT=dict(kind="constant", value="10"),
        fresh=dict(kind="function", signature="()"),
    )
    changes = compare(OLD, new)

    assert changes.breaking == []
    assert sorted(line.split(":")[0] for line in changes.compatible) == ["Config.burst", "LIMIT", "build", "fresh"]
    assert policy_violations("0.1.0", OLD, "0.1.1", new) == []


def test_breaking_changes_are_named_and_refused_without_a_deprecation_and_a_new_minor() -> None:
    new = record_of(
        build=dict(kind="function", signature="(a: int, b: int) -> str"),
        Config=dict(kind="model", members={"limit": "field, required", "scope": "field, required"}),
        Thing=dict(kind="class", signature="(x: int)", members={"size": "property"}),
    )
    changes = compare(OLD, new)

    assert sorted(line.split(":")[0] for line in changes.breaking) == ["Config.scope", "LIMIT", "Thing.go", "build"]
    assert "parameter b lost its default" in next(line for line in changes.breaking if line.startswith("build"))
    same_minor = policy_violations("0.1.0", OLD, "0.1.1", new)
    assert len(same_minor) == 4
    assert all("need a new minor version" in line for line in same_minor)
    next_minor = policy_violations("0.1.0", OLD, "0.2.0", new)
    assert len(next_minor) == 4
    assert all("deprecate it for one minor version first" in line for line in next_minor)
    deprecated = {name: {**entry, "deprecated": "going"} for name, entry in OLD.items()}
    assert policy_violations("0.1.0", deprecated, "0.2.0", new) == []


@pytest.fixture
def scratch_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The record and the page, copied where ``update`` may write them."""
    record, page = tmp_path / "public_api.json", tmp_path / "public-api.md"
    record.write_text(RECORD.read_text())
    page.write_text(PAGE.read_text())
    monkeypatch.setattr(public_api_record, "RECORD", record)
    monkeypatch.setattr(public_api_page, "PAGE", page)
    return record


def test_update_records_anything_before_a_release_and_refuses_a_removal_after_it(
    scratch_record: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    version = project_version()
    recorded = load_record_from(scratch_record)
    recorded[version]["retired"] = {"kind": "function", "signature": "()"}
    scratch_record.write_text(json.dumps(recorded))

    monkeypatch.setattr(public_api_record, "released", lambda version: True)
    assert public_api_record.update() == 1
    assert f"retired: removed (within released {version})" in capsys.readouterr().err
    assert json.loads(scratch_record.read_text()) == recorded

    # Deprecated in this version, it may go in the next minor one: update adds that version's record.
    recorded[version]["retired"]["deprecated"] = "gateway_core.retired is deprecated since ..."
    scratch_record.write_text(json.dumps(recorded))
    major, minor = version_key(version)[:2]
    monkeypatch.setattr(public_api_record, "project_version", lambda: f"{major}.{minor + 1}.0")
    assert public_api_record.update() == 0
    updated = json.loads(scratch_record.read_text())
    assert list(updated) == [version, f"{major}.{minor + 1}.0"]
    assert "retired" not in updated[f"{major}.{minor + 1}.0"]

    # Not released yet, the version's record is the API being prepared: anything goes.
    monkeypatch.setattr(public_api_record, "released", lambda version: False)
    monkeypatch.setattr(public_api_record, "project_version", lambda: version)
    scratch_record.write_text(json.dumps({version: {**recorded[version], "gone": {"kind": "function"}}}))
    assert public_api_record.update() == 0
    assert "gone" not in json.loads(scratch_record.read_text())[version]


def test_a_version_counts_as_released_once_the_changelog_has_its_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-03-01\n\n## [0.1.0] - 2027-01-10\n")
    monkeypatch.setattr(public_api_record, "CHANGELOG", changelog)

    assert [public_api_record.released(version) for version in ("0.1.0", "0.2.0", "0.3.0")] == [True, True, False]


def load_record_from(path: Path) -> dict[str, dict[str, dict[str, object]]]:
    loaded: dict[str, dict[str, dict[str, object]]] = json.loads(path.read_text())
    return loaded
