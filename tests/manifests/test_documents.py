"""parse_documents: manifest text (multi-document YAML or JSON) to a flat list of objects."""

from __future__ import annotations

import json

import pytest

from gateway_core.errors import ManifestError
from gateway_core.manifests.documents import parse_documents


def test_single_yaml_document() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n"
    assert parse_documents(text, source="a.yaml") == [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}}
    ]


def test_multi_document_yaml_keeps_order() -> None:
    text = "kind: A\n---\nkind: B\n---\nkind: C\n"
    assert [doc["kind"] for doc in parse_documents(text, source="a.yaml")] == ["A", "B", "C"]


def test_empty_documents_are_skipped() -> None:
    text = "---\n---\nkind: A\n---\n# only a comment\n---\n\n---\nkind: B\n---\n"
    assert [doc["kind"] for doc in parse_documents(text, source="a.yaml")] == ["A", "B"]


@pytest.mark.parametrize("text", ["", "\n", "# nothing here\n", "---\n", "---\n---\n"])
def test_empty_text_is_no_documents(text: str) -> None:
    assert parse_documents(text, source="empty.yaml") == []


def test_json_document() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}})
    assert parse_documents(text, source="a.json", json_format=True) == [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}}
    ]


def test_json_text_is_also_valid_yaml() -> None:
    text = '{"kind": "Service", "metadata": {"name": "api"}}'
    assert parse_documents(text, source="a.yaml") == [{"kind": "Service", "metadata": {"name": "api"}}]


def test_list_is_flattened() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n- kind: B\n"
    assert parse_documents(text, source="l.yaml") == [{"kind": "A"}, {"kind": "B"}]


def test_typed_list_is_flattened() -> None:
    text = "apiVersion: v1\nkind: ServiceList\nitems:\n- kind: Service\n  metadata: {name: a}\n"
    assert parse_documents(text, source="l.yaml") == [{"kind": "Service", "metadata": {"name": "a"}}]


def test_json_list_is_flattened() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"kind": "A"}, {"kind": "B"}]})
    assert parse_documents(text, source="l.json", json_format=True) == [{"kind": "A"}, {"kind": "B"}]


def test_lists_flatten_between_plain_documents_in_order() -> None:
    text = "kind: A\n---\nkind: List\nitems:\n- kind: B\n- kind: C\n---\nkind: D\n"
    assert [doc["kind"] for doc in parse_documents(text, source="m.yaml")] == ["A", "B", "C", "D"]


@pytest.mark.parametrize("items", ["items: []", "items:", ""])
def test_empty_list_yields_nothing(items: str) -> None:
    assert parse_documents(f"kind: List\n{items}\n", source="l.yaml") == []


def test_kind_ending_in_list_without_items_is_an_object() -> None:
    # Only a *List with items is a list; a kind that merely ends in "List" stays an object.
    text = "kind: AllowList\nspec: {}\n"
    assert parse_documents(text, source="a.yaml") == [{"kind": "AllowList", "spec": {}}]


@pytest.mark.parametrize("items", ["items: {a: 1}", "items: [1, 2]", "items: [{kind: A}, text]", "items: text"])
def test_list_items_must_be_objects(items: str) -> None:
    with pytest.raises(ManifestError, match=r"^l\.yaml: document 1: items must be a list of objects$"):
        parse_documents(f"kind: List\n{items}\n", source="l.yaml")


def test_list_items_error_names_the_document_number() -> None:
    with pytest.raises(ManifestError, match=r"document 2: items"):
        parse_documents("kind: A\n---\nkind: List\nitems: [1]\n", source="l.yaml")


def test_invalid_yaml_names_source_and_line() -> None:
    text = "kind: Service\nmetadata:\n  name: api\n  labels: [unclosed\n"
    # The flow sequence opened on line 4 is still open where the text ends (line 5).
    with pytest.raises(ManifestError, match=r"^dir/bad\.yaml: invalid YAML at line 5, column 1: .*']'"):
        parse_documents(text, source="dir/bad.yaml")


def test_yaml_error_line_counts_from_the_file_start_in_later_documents() -> None:
    text = "kind: A\n---\nkind: B\n---\nkind: C\n  bad: indentation\n"
    with pytest.raises(ManifestError, match=r"^x\.yaml: invalid YAML at line 6, column 6: "):
        parse_documents(text, source="x.yaml")


def test_yaml_tab_indentation_error_names_line() -> None:
    text = "kind: A\nmetadata:\n\tname: x\n"
    with pytest.raises(ManifestError, match=r"^t\.yaml: invalid YAML at line 3"):
        parse_documents(text, source="t.yaml")


def test_unsafe_yaml_tags_are_refused() -> None:
    text = "kind: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(ManifestError, match=r"^evil\.yaml: invalid YAML"):
        parse_documents(text, source="evil.yaml")


def test_invalid_json_names_source_and_line() -> None:
    text = '{\n  "kind": "Service",\n  "metadata": {"name": }\n}\n'
    with pytest.raises(ManifestError, match=r"^bad\.json: invalid JSON at line 3: "):
        parse_documents(text, source="bad.json", json_format=True)


def test_json_format_does_not_accept_yaml() -> None:
    with pytest.raises(ManifestError, match=r"^y\.json: invalid JSON at line 1"):
        parse_documents("kind: Service\n", source="y.json", json_format=True)


def test_deeply_nested_json_is_a_manifest_error() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ManifestError, match=r"^deep\.json: invalid JSON"):
        parse_documents(text, source="deep.json", json_format=True)


def test_deeply_nested_yaml_is_a_manifest_error() -> None:
    text = "a: " + "[" * 100_000 + "]" * 100_000
    with pytest.raises(ManifestError, match=r"^deep\.yaml: invalid YAML"):
        parse_documents(text, source="deep.yaml")


@pytest.mark.parametrize(
    ("text", "type_name"),
    [("just a string\n", "str"), ("- a\n- b\n", "list"), ("42\n", "int"), ("true\n", "bool")],
)
def test_non_mapping_yaml_document_is_refused(text: str, type_name: str) -> None:
    with pytest.raises(ManifestError, match=rf"^s\.yaml: document 1 is a {type_name}, not an object$"):
        parse_documents(text, source="s.yaml")


def test_non_mapping_document_error_names_its_position() -> None:
    with pytest.raises(ManifestError, match=r"^s\.yaml: document 3 is a list, not an object$"):
        parse_documents("kind: A\n---\nkind: B\n---\n- x\n", source="s.yaml")


def test_non_mapping_json_document_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"^s\.json: document 1 is a list, not an object$"):
        parse_documents('[{"kind": "A"}]', source="s.json", json_format=True)


def test_json_null_is_no_documents() -> None:
    assert parse_documents("null", source="n.json", json_format=True) == []


def test_manifest_error_does_not_chain_third_party_exception() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_documents("a: [", source="s.yaml")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
