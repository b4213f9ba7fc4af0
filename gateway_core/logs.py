"""Logging set-up from ``LogSettings``: JSON or text lines, to standard error or a file.

Several worker processes may write one file. Each appends through a ``WatchedFileHandler``
(which reopens the file when it is moved), and one :class:`LogRotator` thread — in the
supervisor, or in the only process — rotates by size and deletes backups past their count
or age. So rotation never races between processes.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway_core.settings import LogSettings

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key != "color_message":
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: LogSettings) -> None:
    """Send every logger (uvicorn's too) through one handler with the chosen format."""
    handler: logging.Handler
    if settings.file_path:
        Path(settings.file_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(settings.file_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "watchfiles"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


class LogRotator(threading.Thread):
    """Rotates the log file by size; keeps ``max_backups`` files no older than ``max_age`` days."""

    def __init__(self, settings: LogSettings, *, interval: float = 5.0) -> None:
        super().__init__(name="gateway-log-rotator", daemon=True)
        self.path = Path(settings.file_path)
        self.max_bytes = settings.max_size * 1024 * 1024
        self.max_backups = settings.max_backups
        self.max_age = settings.max_age * 86400
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.rotate_if_needed()
            except OSError as exc:
                logging.getLogger("gateway_core").warning("log rotation failed: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()

    def rotate_if_needed(self) -> bool:
        """Rotate now if the file is over its size; drop old backups. True if rotated."""
        rotated = False
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            for index in range(self.max_backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            if self.max_backups > 0:
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink()
            rotated = True
        for backup in self.path.parent.glob(f"{self.path.name}.*"):
            suffix = backup.name[len(self.path.name) + 1 :]
            if not suffix.isdigit():
                continue
            too_many = int(suffix) > self.max_backups
            too_old = self.max_age > 0 and time.time() - backup.stat().st_mtime > self.max_age
            if too_many or too_old:
                backup.unlink(missing_ok=True)
        return rotated
