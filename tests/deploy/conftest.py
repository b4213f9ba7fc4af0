"""The deploy tests' fixture: the settings the gateway in the pod starts with."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_core.settings import GatewaySettings, load_settings
from tests.deploy.deploy_support import config_text, pod_environment


@pytest.fixture
def pod_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """The settings the gateway in the pod starts with: its config file and environment."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    for name, value in pod_environment().items():
        monkeypatch.setenv(name, value)
    return load_settings(config)
