"""The ``tls`` settings and the HTTPS listener's address: defaults, flags, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway_core.cli import _settings
from gateway_core.errors import ConfigError
from gateway_core.settings import load_settings


def test_defaults_follow_ingress_nginx() -> None:
    settings = load_settings()
    assert settings.server.https_addr == ":8443"
    tls = settings.tls
    assert (tls.min_version, tls.ssl_redirect, tls.redirect_code, tls.redirect_port) == ("TLSv1.2", True, 308, 443)
    assert (tls.hsts, tls.hsts_max_age, tls.hsts_include_subdomains, tls.hsts_preload) == (True, 31536000, False, False)
    assert (tls.default_cert_file, tls.default_key_file) == ("", "")


@pytest.mark.parametrize(
    ("config", "flags", "expected"),
    [
        ("", {}, ":8443"),
        ("", {"https_port": 9443}, "0.0.0.0:9443"),
        ("", {"host": "127.0.0.1"}, "127.0.0.1:8443"),
        ("", {"host": "::1", "https_port": 0}, "[::1]:0"),
        ("server: {https_addr: '10.0.0.1:7443'}", {"port": 1}, "10.0.0.1:7443"),
        ("server: {https_addr: ''}", {"host": "127.0.0.1"}, ""),  # off stays off
        ("server: {https_addr: ''}", {"https_port": 9443}, "0.0.0.0:9443"),  # the flag turns it on
    ],
)
def test_the_https_address_from_config_and_flags(
    tmp_path: Path, config: str, flags: dict[str, Any], expected: str
) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(config)
    settings = _settings(str(file), {}, **flags)
    assert settings.server.https_addr == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: {https_addr: nowhere}", "server.https_addr"),
        ("tls: {min_version: TLSv1.1}", "tls.min_version"),
        ("tls: {ciphers: 'RC4-NOPE'}", "no cipher OpenSSL knows matches 'RC4-NOPE'"),
        ("tls: {default_key_file: /k.pem}", "default_cert_file and default_key_file go together"),
        ("tls: {hsts_preload: true}", "hsts_preload needs hsts_include_subdomains"),
        ("tls: {redirect_code: 303}", "tls.redirect_code"),
        ("tls: {hsts_max_age: -1}", "tls.hsts_max_age"),
    ],
)
def test_bad_tls_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match="invalid settings") as raised:
        load_settings(file)
    assert message in str(raised.value)
