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
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from gateway_core.collector import collector_paused
from gateway_core.errors import ConfigError, ManifestError
from gateway_core.manifests.documents import parse_documents
from gateway_core.manifests.objects import KubeObject
from gateway_core.manifests.snapshot import Problem, Snapshot, merge_objects, parse_objects
from gateway_core.providers.base import Publish

logger = logging.getLogger("gateway_core.providers.file")

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class _ParsedFile:
    """One file's objects and problems, and the (mtime, size) they were read at."""

    source: str
    version: tuple[int, int]
    objects: list[KubeObject]
    problems: list[Problem]


class ManifestDirectory:
    """A route source reading a directory of manifests and watching it for changes."""

    def __init__(
        self,
        path: str | Path,
        *,
        default_namespace: str = "default",
        debounce: float = 0.1,
        force_polling: bool = False,
    ) -> None:
        self.path = Path(path)
        self.default_namespace = default_namespace
        self.debounce = debounce
        self.force_polling = force_polling
        self._cache: dict[Path, _ParsedFile] = {}

    def files(self) -> Iterator[Path]:
        """Manifest files below the directory, sorted, hidden entries skipped."""
        for root, dirs, names in os.walk(self.path, followlinks=True):
            dirs[:] = sorted(name for name in dirs if not name.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and name.endswith(SUFFIXES):
                    yield Path(root) / name

    def load(self) -> Snapshot:
        """Read every manifest file and return the snapshot.

        Files whose size and modification time did not change since the last load are not
        read or parsed again, so an edit to one file of a large directory costs that file.
        """
        if not self.path.is_dir():
            raise ConfigError(f"manifests directory {self.path} does not exist or is not a directory")
        parts: list[tuple[str, list[KubeObject]]] = []
        problems: list[Problem] = []
        cache: dict[Path, _ParsedFile] = {}
        with collector_paused():
            for file in self.files():
                parsed = self._parse(file)
                cache[file] = parsed
                parts.append((parsed.source, parsed.objects))
                problems.extend(parsed.problems)
        self._cache = cache
        return merge_objects(parts, problems=problems)

    def _parse(self, file: Path) -> _ParsedFile:
        source = str(file.relative_to(self.path))
        try:
            stat = file.stat()
        except OSError as exc:
            return _ParsedFile(source, (0, -1), [], [Problem(source, f"cannot read: {exc.strerror}")])
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(file)
        if cached is not None and cached.version == version:
            return cached
        try:
            text = file.read_text(encoding="utf-8")
            documents = parse_documents(text, source=source, json_format=file.suffix == ".json")
        except ManifestError as exc:
            return _ParsedFile(source, version, [], [Problem("", str(exc))])
        except (OSError, UnicodeDecodeError) as exc:
            return _ParsedFile(source, version, [], [Problem(source, f"cannot read: {exc}")])
        objects, problems = parse_objects(source, documents, default_namespace=self.default_namespace)
        return _ParsedFile(source, version, objects, problems)

    async def run(self, publish: Publish) -> None:
        failing = False
        while True:
            changes = watchfiles.awatch(
                self.path,
                debounce=max(1, int(self.debounce * 1000)),
                step=min(50, max(1, int(self.debounce * 1000))),
                force_polling=self.force_polling or None,
                watch_filter=_manifest_change,
                ignore_permission_denied=True,
            )
            # The watch starts (its first step registers it) before the directory is read,
            # so a change made while reading is not missed; it only causes one more read.
            pending = asyncio.ensure_future(anext(changes))
            try:
                await asyncio.sleep(0)
                # (Re)read first: after a failure the directory may have changed unseen.
                await publish(await asyncio.to_thread(self.load))
                if failing:
                    logger.info("watching %s again", self.path)
                    failing = False
                while True:
                    await pending
                    pending = asyncio.ensure_future(anext(changes))
                    await publish(await asyncio.to_thread(self.load))
            except (OSError, RuntimeError, ConfigError, StopAsyncIteration) as exc:
                if not failing:
                    logger.error(
                        "reading %s failed (%s); retrying every second, the current routes keep serving",
                        self.path,
                        exc or type(exc).__name__,
                    )
                    failing = True
                await asyncio.sleep(1)
            finally:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await changes.aclose()


def _manifest_change(change: watchfiles.Change, path: str) -> bool:
    """Changes that may affect the manifests (any file, since ConfigMap swaps rename folders)."""
    name = os.path.basename(path)
    return not name.endswith((".swp", "~", ".tmp"))
