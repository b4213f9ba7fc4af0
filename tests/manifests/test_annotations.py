"""parse_plugin_annotations: the meta-native.io/* annotations of an Ingress."""

from __future__ import annotations

import pytest

from gateway_core.manifests.annotations import (
    PLUGIN_CONFIG_PREFIX,
    PLUGINS,
    PluginAnnotations,
    parse_plugin_annotations,
    parse_plugin_config,
)

CONFIG = PLUGIN_CONFIG_PREFIX


def test_annotation_names() -> None:
    assert PLUGINS == "meta-native.io/plugins"
    assert CONFIG == "meta-native.io/plugin."


def test_no_annotations_means_nothing() -> None:
    assert parse_plugin_annotations({}) == PluginAnnotations()
    assert parse_plugin_annotations({}).listed == ()
    assert dict(parse_plugin_annotations({}).configs) == {}


# --- the plugin list ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "key-auth,rate-limit,cors",
        "key-auth, rate-limit, cors",
        "  key-auth ,rate-limit ,  cors  ",
        "key-auth rate-limit cors",
        "key-auth\nrate-limit\n  cors\n",
        "key-auth,,rate-limit,\tcors,",
        ",key-auth, ,rate-limit , cors",
    ],
)
def test_plugin_list_separators(text: str) -> None:
    parsed = parse_plugin_annotations({PLUGINS: text})
    assert parsed.listed == ("key-auth", "rate-limit", "cors")
    assert parsed.problems == ()


@pytest.mark.parametrize("text", ["", "   ", ",", " , ,\n"])
def test_empty_plugin_list(text: str) -> None:
    parsed = parse_plugin_annotations({PLUGINS: text})
    assert parsed.listed == ()
    assert parsed.problems == ()


def test_plugin_list_keeps_order_and_drops_duplicates() -> None:
    parsed = parse_plugin_annotations({PLUGINS: "cors, key-auth, cors, rate-limit, key-auth"})
    assert parsed.listed == ("cors", "key-auth", "rate-limit")
    assert parsed.problems == ()


@pytest.mark.parametrize(
    "name",
    ["Key-Auth", "key_auth", "-auth", "auth-", "key.auth", "ключ", "a" * 64, "rate-limit;rm", "auth/x"],
)
def test_invalid_plugin_names_are_problems(name: str) -> None:
    parsed = parse_plugin_annotations({PLUGINS: f"cors, {name}"})
    assert parsed.listed == ("cors",)
    assert parsed.problems == (f"annotation meta-native.io/plugins: {name!r} is not a valid plugin name",)


@pytest.mark.parametrize("name", ["a", "7", "a1", "rate-limit", "x" * 63, "a-b-c-9"])
def test_valid_plugin_names(name: str) -> None:
    parsed = parse_plugin_annotations({PLUGINS: name})
    assert parsed.listed == (name,)
    assert parsed.problems == ()


def test_every_invalid_name_is_reported() -> None:
    parsed = parse_plugin_annotations({PLUGINS: "A, ok, B_"})
    assert parsed.listed == ("ok",)
    assert len(parsed.problems) == 2
    assert "'A'" in parsed.problems[0]
    assert "'B_'" in parsed.problems[1]


# --- plugin configs -------------------------------------------------------------------------


def test_yaml_config() -> None:
    parsed = parse_plugin_annotations({CONFIG + "rate-limit": "limit: 100/minute\nkey: client_ip\nburst: 5\n"})
    assert dict(parsed.configs) == {"rate-limit": {"limit": "100/minute", "key": "client_ip", "burst": 5}}
    assert parsed.problems == ()


def test_json_config() -> None:
    parsed = parse_plugin_annotations({CONFIG + "cors": '{"origins": ["https://a.example"], "credentials": true}'})
    assert dict(parsed.configs) == {"cors": {"origins": ["https://a.example"], "credentials": True}}
    assert parsed.problems == ()


def test_nested_yaml_config() -> None:
    text = "rules:\n  - path: /a\n    limit: 1\n  - path: /b\n    limit: 2\nheaders:\n  x-a: b\n"
    parsed = parse_plugin_annotations({CONFIG + "p": text})
    assert parsed.configs["p"] == {
        "rules": [{"path": "/a", "limit": 1}, {"path": "/b", "limit": 2}],
        "headers": {"x-a": "b"},
    }


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "# just a comment\n", "null", "~", "---\n"])
def test_empty_config_is_an_empty_mapping(text: str) -> None:
    parsed = parse_plugin_annotations({CONFIG + "cors": text})
    assert dict(parsed.configs) == {"cors": {}}
    assert parsed.problems == ()


@pytest.mark.parametrize(
    ("text", "type_name"),
    [
        ("[1, 2]", "list"),
        ("- a\n- b\n", "list"),
        ('"text"', "str"),
        ("plain words", "str"),
        ("42", "int"),
        ("true", "bool"),
        ("1.5", "float"),
    ],
)
def test_non_mapping_config_is_a_problem(text: str, type_name: str) -> None:
    parsed = parse_plugin_annotations({CONFIG + "cors": text})
    assert "cors" not in parsed.configs
    assert parsed.problems == (
        f"annotation meta-native.io/plugin.cors: invalid config: must be a mapping, got {type_name}",
    )


def test_invalid_yaml_config_is_a_one_line_problem() -> None:
    parsed = parse_plugin_annotations({CONFIG + "cors": "origins: [a,\n  b\nx: {"})
    assert "cors" not in parsed.configs
    assert len(parsed.problems) == 1
    problem = parsed.problems[0]
    assert problem.startswith("annotation meta-native.io/plugin.cors: invalid config: ")
    assert "\n" not in problem


def test_several_documents_in_one_config_are_a_problem() -> None:
    parsed = parse_plugin_annotations({CONFIG + "cors": "a: 1\n---\nb: 2\n"})
    assert "cors" not in parsed.configs
    assert parsed.problems[0].startswith("annotation meta-native.io/plugin.cors: invalid config: ")


@pytest.mark.parametrize(
    "text",
    [
        "a: &anchor 1\nb: 2",
        "a: &anchor 1\nb: *anchor",
        "base: &base {x: 1}\nother:\n  <<: *base",
        "list: &l [1, 2]",
        "*alias",
        "a: [&x 1, *x]",
    ],
)
def test_yaml_anchors_and_aliases_are_refused(text: str) -> None:
    parsed = parse_plugin_annotations({CONFIG + "p": text})
    assert "p" not in parsed.configs
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("annotation meta-native.io/plugin.p: invalid config: ")
    assert "not allowed in annotations" in parsed.problems[0]


def test_alias_bomb_is_refused() -> None:
    text = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    parsed = parse_plugin_annotations({CONFIG + "p": text})
    assert "p" not in parsed.configs
    assert "anchors are not allowed" in parsed.problems[0]


def test_unsafe_yaml_tags_are_refused() -> None:
    parsed = parse_plugin_annotations({CONFIG + "p": "!!python/object/apply:os.system ['true']"})
    assert "p" not in parsed.configs
    assert parsed.problems[0].startswith("annotation meta-native.io/plugin.p: invalid config: ")


def test_deeply_nested_config_is_a_problem_not_a_crash() -> None:
    parsed = parse_plugin_annotations({CONFIG + "p": "a: " + "[" * 5000 + "]" * 5000})
    assert "p" not in parsed.configs
    assert parsed.problems == ("annotation meta-native.io/plugin.p: invalid config: nested too deeply",)


def test_parse_plugin_config_directly() -> None:
    assert parse_plugin_config("a: 1") == {"a": 1}
    assert parse_plugin_config("") == {}
    with pytest.raises(ValueError, match="must be a mapping, got list"):
        parse_plugin_config("[1]")


def test_config_for_invalid_plugin_name_is_a_problem() -> None:
    parsed = parse_plugin_annotations({CONFIG + "Rate_Limit": "a: 1", CONFIG: "a: 1"})
    assert dict(parsed.configs) == {}
    assert parsed.problems == (
        "annotation meta-native.io/plugin.Rate_Limit: 'Rate_Limit' is not a valid plugin name",
        "annotation meta-native.io/plugin.: '' is not a valid plugin name",
    )


def test_config_without_listing_is_still_parsed() -> None:
    # Whether an unlisted config is an error needs the binding policy: routing.binding decides.
    parsed = parse_plugin_annotations({CONFIG + "cors": "a: 1"})
    assert parsed.listed == ()
    assert dict(parsed.configs) == {"cors": {"a": 1}}
    assert parsed.problems == ()


def test_listed_and_configured_together() -> None:
    parsed = parse_plugin_annotations(
        {PLUGINS: "key-auth, rate-limit", CONFIG + "rate-limit": "limit: 10", CONFIG + "key-auth": "{}"}
    )
    assert parsed.listed == ("key-auth", "rate-limit")
    assert dict(parsed.configs) == {"rate-limit": {"limit": 10}, "key-auth": {}}
    assert parsed.problems == ()


# --- other keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "meta-native.io/plugin",
        "meta-native.io/pluginz",
        "meta-native.io/plugins.rate-limit",
        "meta-native.io/rewrite-target",
        "meta-native.io/",
        "meta-native.io/Plugins",
    ],
)
def test_unknown_domain_keys_are_problems(key: str) -> None:
    parsed = parse_plugin_annotations({key: "x", PLUGINS: "cors"})
    assert parsed.listed == ("cors",)
    assert parsed.problems == (f"annotation {key}: unknown meta-native.io/ annotation",)


def test_known_keys_are_accepted() -> None:
    parsed = parse_plugin_annotations(
        {"meta-native.io/timeout": "5s", "meta-native.io/plugin.weird": "[1]"},
        known_keys=frozenset({"meta-native.io/timeout", "meta-native.io/plugin.weird"}),
    )
    assert parsed == PluginAnnotations()


def test_known_keys_do_not_hide_other_unknown_keys() -> None:
    parsed = parse_plugin_annotations(
        {"meta-native.io/timeout": "5s", "meta-native.io/timeuot": "5s"},
        known_keys=frozenset({"meta-native.io/timeout"}),
    )
    assert parsed.problems == ("annotation meta-native.io/timeuot: unknown meta-native.io/ annotation",)


@pytest.mark.parametrize(
    "key",
    [
        "kubernetes.io/ingress.class",
        "nginx.ingress.kubernetes.io/rewrite-target",
        "plugins",
        "example.com/meta-native.io/plugins",
        "sub.meta-native.io/plugins",
        "meta-native.io.evil/plugins",
        "kubectl.kubernetes.io/last-applied-configuration",
    ],
)
def test_keys_outside_the_domain_are_ignored(key: str) -> None:
    parsed = parse_plugin_annotations({key: "{not: yaml: at all", PLUGINS: "cors"})
    assert parsed.listed == ("cors",)
    assert dict(parsed.configs) == {}
    assert parsed.problems == ()


def test_problems_from_list_and_configs_accumulate() -> None:
    parsed = parse_plugin_annotations(
        {PLUGINS: "ok, Bad", CONFIG + "ok": "[1]", "meta-native.io/typo": "", CONFIG + "fine": "a: 1"}
    )
    assert parsed.listed == ("ok",)
    assert dict(parsed.configs) == {"fine": {"a": 1}}
    assert len(parsed.problems) == 3
