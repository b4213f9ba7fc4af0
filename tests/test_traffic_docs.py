"""Each route-configuration annotation has its docs page, whose config table matches its model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway_core.manifests import upstream_policy
from gateway_core.testing.docs import config_table, page_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "traffic"

PAGES: dict[str, tuple[str, type[BaseModel]]] = {
    "load-balancing.md": (upstream_policy.LOAD_BALANCE, upstream_policy.LoadBalancing),
    "timeouts.md": (upstream_policy.TIMEOUTS, upstream_policy.TimeoutConfig),
    "retries.md": (upstream_policy.RETRIES, upstream_policy.RetryConfig),
    "outlier-detection.md": (upstream_policy.OUTLIER_DETECTION, upstream_policy.OutlierDetection),
    "canary.md": (upstream_policy.CANARY, upstream_policy.CanaryConfig),
    "mirroring.md": (upstream_policy.MIRROR, upstream_policy.MirrorConfig),
}


def test_every_annotation_has_a_page() -> None:
    assert {annotation for annotation, _ in PAGES.values()} == upstream_policy.UPSTREAM_ANNOTATIONS


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_table_matches_the_model(page: str) -> None:
    annotation, model = PAGES[page]
    text = (DOCS / page).read_text(encoding="utf-8")
    assert annotation in text, f"{page} never names its annotation {annotation}"
    table = page_table(text)
    assert table is not None, f"{page} has no config table (python -m gateway_core.testing.docs ...)"
    assert table == config_table(model), f"{page}: regenerate with python -m gateway_core.testing.docs"
