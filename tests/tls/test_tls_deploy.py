"""The cluster manifests expose the HTTPS listener where the redirect sends clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_core.settings import load_settings, parse_addr
from tests.deploy.deploy_support import config_text, container_port, of_kind, pod_environment


def test_the_public_service_maps_the_redirect_port_to_the_https_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    for name, value in pod_environment().items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config)
    assert container_port("https") == parse_addr(settings.server.https_addr)[1]
    [public] = [service for service in of_kind("Service") if service["spec"].get("type") == "LoadBalancer"]
    ports = {port["port"]: port["targetPort"] for port in public["spec"]["ports"]}
    assert ports[settings.tls.redirect_port] == "https"
    assert ports[80] == "http"
