"""Settings: the YAML file, GATEWAY_* environment variables, flags; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_core.errors import ConfigError
from gateway_core.settings import load_settings, parse_addr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_keep_the_original_design() -> None:
    settings = load_settings()
    assert settings.server.addr == ":8080"
    assert (settings.server.read_timeout, settings.server.write_timeout, settings.server.idle_timeout) == (30, 30, 60)
    assert settings.gateway.proxy_timeout == 60
    assert (settings.gateway.max_idle_conns, settings.gateway.idle_conn_timeout) == (100, 90)
    assert settings.metrics.addr == ":9090"
    assert settings.log.format == "json"
    assert settings.gateway.ingress_class == "meta-native"
    assert settings.gateway.watch_ingress_without_class is True


def test_precedence_is_flags_then_environment_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "server: {addr: ':7000', workers: 2, idle_timeout: 5}\ngateway: {proxy_timeout: 3}\n")
    monkeypatch.setenv("GATEWAY_SERVER__WORKERS", "4")
    monkeypatch.setenv("GATEWAY_GATEWAY__PROXY_TIMEOUT", "9")
    settings = load_settings(config, {"gateway": {"proxy_timeout": 12}})
    assert settings.server.addr == ":7000"  # file
    assert settings.server.idle_timeout == 5  # file
    assert settings.server.workers == 4  # environment beats file
    assert settings.gateway.proxy_timeout == 12  # flag beats environment


def test_the_example_config_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "config.yaml"
    assert load_settings(example) == load_settings()  # it documents the defaults


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {adr: ':1'}", "server.adr: Extra inputs are not permitted"),
        ("nope: {}", "nope: Extra inputs are not permitted"),
        ("gateway: {proxy_timeout: -1}", "gateway.proxy_timeout: Input should be greater than 0"),
        ("server: {addr: 'localhost'}", "server.addr"),
        ("server: {trusted_proxies: ['10.0.0.0/33']}", "server.trusted_proxies"),
        ("log: {level: loud}", "log.level"),
        ("- a list", "the top level must be a mapping"),
        ("server: [unclosed", "invalid YAML"),
    ],
)
def test_bad_settings_are_clear_errors_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml") as error:
        load_settings(write(tmp_path, text))
    assert expected in str(error.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("addr", "expected"),
    [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9090", ("::1", 9090))],
)
def test_parse_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected
