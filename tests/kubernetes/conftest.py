"""Fixtures for the Kubernetes provider's tests: a kmock API server, gateways watching it.

- ``kube``: a started :class:`~kmock_server.KmockCluster` (``kmock_emulator.py`` in a
  process of its own, fresh per test): ``kube.url``, ``kube.kubeconfig``, ``kube.api`` (an
  official-client ``ApiClient``), ``create/patch/replace/delete/get/list_objects`` of
  objects, and the test endpoints ``requests(...)``, ``fail_next(...)``,
  ``cut_watches(...)``, ``open_watches(...)``.
- ``kube_gateway``: ``kube_gateway(**options)`` starts ``gateway run --kubernetes
  --kubeconfig …`` on ``kube``. ``settings`` is merged into the config file's
  ``kubernetes`` section, ``config_data`` gives the file's other sections, ``namespaces``
  adds ``--namespace`` flags; other options go to ``gateway_process``. Leader election,
  status and Events are off unless ``settings`` turns them on, so provider tests do not
  depend on them; the debounce is 0.05 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kmock_server import KmockCluster

from gateway_core.testing import GatewayProcess

QUIET_KUBERNETES = {"leader_election": False, "update_status": False, "events": False}
"""Provider tests need no Lease, status or Events: they would only add API traffic."""


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KmockCluster]:
    """A kmock API server of its own, with a kubeconfig and an ``ApiClient``."""
    cluster = KmockCluster(tmp_path / "kmock").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def kube_gateway(
    kube: KmockCluster, gateway_process: Callable[..., GatewayProcess], tmp_path: Path
) -> Callable[..., GatewayProcess]:
    """``kube_gateway(settings={...}, config_data={...}, namespaces=[...], **gateway_process_options)``."""
    count = 0

    def start(
        *, settings: dict[str, Any] | None = None, namespaces: tuple[str, ...] | list[str] = (), **options: Any
    ) -> GatewayProcess:
        nonlocal count
        count += 1
        config: dict[str, Any] = dict(options.pop("config_data", {}) or {})
        config["kubernetes"] = {
            **QUIET_KUBERNETES,
            "debounce": 0.05,
            **config.get("kubernetes", {}),
            **(settings or {}),
        }
        config_path = tmp_path / f"gateway-{count}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        args = ["--kubernetes", "--kubeconfig", str(kube.kubeconfig)]
        for namespace in namespaces:
            args += ["--namespace", namespace]
        return gateway_process(None, config=config_path, extra_args=[*args, *options.pop("extra_args", ())], **options)

    return start
