"""The manifests-directory provider: every ``*.yaml``, ``*.yml`` and ``*.json`` below a folder.

Files are read recursively in sorted order. Hidden files and folders are skipped, which also
keeps a Kubernetes ConfigMap mount (``..data`` and ``..2024_…`` folders holding the same
files as the visible symlinks) from being read twice. A file that fails to parse becomes a
problem and is left out; everything else keeps serving. Changes are watched with
``watchfiles`` (inotify, or polling when configured) and, after a short quiet period,
trigger a re-read of the whole directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import watchfiles

from gateway_core.errors import ConfigError, ManifestError
from gateway_core.manifests.documents import parse_documents
from gateway_core.manifests.snapshot import Problem, Snapshot, build_snapshot
from gateway_core.providers.base import Publish

logger = logging.getLogger("gateway_core.providers.file")

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestDirectory:
    """A route source reading a directory of manifests and watching it for changes."""

    def __init__(
        self, path: str | Path, *, default_namespace: str = "default", debounce: float = 0.1, force_polling: bool = False
    ) -> None:
        self.path = Path(path)
        self.default_namespace = default_namespace
        self.debounce = debounce
        self.force_polling = force_polling

    def files(self) -> Iterator[Path]:
        """Manifest files below the directory, sorted, hidden entries skipped."""
        for root, dirs, names in os.walk(self.path, followlinks=True):
            dirs[:] = sorted(name for name in dirs if not name.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and name.endswith(SUFFIXES):
                    yield Path(root) / name

    def load(self) -> Snapshot:
        """Read and parse every manifest file now."""
        if not self.path.is_dir():
            raise ConfigError(f"manifests directory {self.path} does not exist or is not a directory")
        documents: list[tuple[str, dict[str, Any]]] = []
        problems: list[Problem] = []
        for file in self.files():
            source = str(file.relative_to(self.path))
            try:
                text = file.read_text(encoding="utf-8")
                documents.extend(
                    (source, document)
                    for document in parse_documents(text, source=source, json_format=file.suffix == ".json")
                )
            except ManifestError as exc:
                problems.append(Problem("", str(exc)))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(source, f"cannot read: {exc}"))
        return build_snapshot(documents, default_namespace=self.default_namespace, problems=problems)

    async def run(self, publish: Publish) -> None:
        await publish(await asyncio.to_thread(self.load))
        while True:
            try:
                async for _changes in watchfiles.awatch(
                    self.path,
                    debounce=max(1, int(self.debounce * 1000)),
                    step=min(50, max(1, int(self.debounce * 1000))),
                    force_polling=self.force_polling or None,
                    watch_filter=_manifest_change,
                    ignore_permission_denied=True,
                ):
                    await publish(await asyncio.to_thread(self.load))
            except (OSError, RuntimeError, ConfigError) as exc:
                logger.error("watching %s failed (%s); retrying in 1s, the current routes keep serving", self.path, exc)
                await asyncio.sleep(1)


def _manifest_change(change: watchfiles.Change, path: str) -> bool:
    """Changes that may affect the manifests (any file, since ConfigMap swaps rename folders)."""
    name = os.path.basename(path)
    return not name.endswith((".swp", "~", ".tmp"))
