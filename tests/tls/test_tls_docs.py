"""The TLS guide names every TLS annotation, and its backend-tls table matches the model."""

from __future__ import annotations

from pathlib import Path

from gateway_core.manifests import tls_policy
from gateway_core.testing.docs import config_table, page_table

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "tls.md"


def test_the_guide_documents_every_tls_annotation_and_the_backend_tls_fields() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for annotation in sorted(tls_policy.TLS_ANNOTATIONS):
        assert f"`{annotation}`" in text, annotation
    table = page_table(text)
    assert table is not None
    assert table == config_table(tls_policy.BackendTlsConfig), "regenerate with python -m gateway_core.testing.docs"
