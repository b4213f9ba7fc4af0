"""Getting lines out of the request path: a bounded queue and a writer thread per output.

``on_log`` only appends a finished line to its output's queue (a ``deque``: one C call,
safe across threads without a lock); it never waits. One writer thread per output and
process wakes every :data:`FLUSH_INTERVAL`, takes every waiting line and writes them in
as few ``write()`` calls as whole lines allow. When the queue is full, new lines are dropped and counted; the
writer logs the count at most once per :data:`WARNING_INTERVAL`.

The outputs are process-wide (:data:`OUTPUTS`), because that is what they are: every route
and every gateway in a process writing to one file shares its queue and its thread. That is
this module's one global, and the plugin's ``gateway_shutdown`` hookimpl (plus an
``atexit`` handler) drains it. A writer starts on the first line, and stops after
:data:`IDLE_TIMEOUT` without lines (closing its file), so an output no route uses any more
costs nothing.

Files are opened ``O_APPEND``, so several worker processes can share one: on a local file
system each ``write()`` lands whole, at the end. Before every batch the writer compares the
path's inode with the open file's and reopens when they differ (the file was moved or
removed, as logrotate does), so no signal is needed. Pipes and sockets (a container's or
systemd's stdout) get writes of whole lines of at most ``PIPE_BUF`` bytes, which the kernel
keeps whole.

It must never block or raise into the request path, and never crash its thread: write
errors are logged (rate-limited) and the lines counted as lost.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import stat
import threading
import time
from collections import deque

logger = logging.getLogger("gateway_plugin_access_log")

FLUSH_INTERVAL = 0.05
"""Seconds between two batches of one writer."""
WARNING_INTERVAL = 10.0
"""Seconds between two warnings about dropped or lost lines of one output."""
IDLE_TIMEOUT = 30.0
"""Seconds without lines after which a writer closes its file and its thread ends."""
FILE_BATCH_BYTES = 1 << 20
"""Most bytes written to a regular file in one ``write()``."""

_STREAMS = {"stdout": 1, "stderr": 2}


class Output:
    """One destination and its queue; lines go in with :meth:`offer`, from any thread.

    ``dropped`` counts lines refused because the queue was full, ``lost`` lines a write
    failed for; ``written`` lines written. They are plain integers, exact when one thread
    offers (one event loop per worker process).
    """

    def __init__(self, target: str, limit: int, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.target = target
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.queue: deque[str] = deque()
        self.dropped = 0
        self.lost = 0
        self.written = 0
        self.writer: _Writer | None = None
        self.lock = threading.Lock()
        """Guards ``writer``: taken to start, stop or retire one, never by ``offer``'s fast path."""
        self.flushing = threading.Lock()
        """Held while a batch is taken and written, so batches keep their order."""
        self._reported = 0
        self._last_warning = 0.0

    def offer(self, line: str) -> None:
        """Queue ``line`` for writing, or count it dropped when the queue is full; never blocks."""
        queue = self.queue
        if len(queue) >= self.limit:
            self.dropped += 1
            return
        queue.append(line)
        if self.writer is None:  # checked after the append: see _Writer._retire
            self.start()

    def start(self) -> None:
        """Start the writer thread if none runs."""
        with self.lock:
            if self.writer is None:
                writer = _Writer(self)
                self.writer = writer
                _register_exit_handler()
                writer.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the writer (a later line starts a new one)."""
        with self.lock:
            writer, self.writer = self.writer, None
        if writer is not None:
            writer.stopping.set()
            writer.thread.join(timeout)

    def report(self, *, force: bool = False) -> None:
        """Warn about lines dropped or lost since the last warning (rate-limited)."""
        missing = self.dropped + self.lost
        if missing == self._reported:
            return
        now = time.monotonic()
        if not force and self._last_warning and now - self._last_warning < WARNING_INTERVAL:
            return
        logger.warning(
            "access log %s: %d lines dropped (queue of %d full) and %d lost (write failed) so far",
            self.target,
            self.dropped,
            self.limit,
            self.lost,
            extra={"output": self.target, "dropped": self.dropped, "lost": self.lost},
        )
        self._reported = missing
        self._last_warning = now


class _Writer:
    """The thread writing one output's queue; it owns the file descriptor it opened."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"access-log {output.target}", daemon=True)
        self._fd: int | None = None
        self._owned = False
        self._inode: tuple[int, int] | None = None
        self._chunk = FILE_BATCH_BYTES
        self._failed = False

    def _run(self) -> None:
        output = self.output
        idle = 0.0
        try:
            while True:
                stopping = self.stopping.wait(FLUSH_INTERVAL)
                if output.queue:
                    idle = 0.0
                    self._flush()
                else:
                    idle += FLUSH_INTERVAL
                output.report()
                if stopping:
                    self._flush()
                    output.report(force=True)
                    return
                if idle >= output.idle_timeout and self._retire():
                    return
        except Exception:  # a bug here must not end logging for good
            logger.exception("access log writer for %s failed; the next line starts a new one", output.target)
            with output.lock:
                if output.writer is self:
                    output.writer = None
        finally:
            self._close()

    def _retire(self) -> bool:
        """End this idle writer unless a line arrived meanwhile.

        ``offer`` appends, then looks for a writer. Here the writer is unset first, then
        the queue looked at: a line appended before that look is seen here (and the writer
        stays); one appended after it finds no writer and starts one. No line is stranded.
        """
        output = self.output
        with output.lock:
            if output.writer is not self:
                return True
            output.writer = None
            if output.queue:
                output.writer = self
                return False
            return True

    def _flush(self) -> None:
        output = self.output
        with output.flushing:  # a retiring writer and its successor never interleave
            queue = output.queue
            if not queue:
                return
            lines: list[str] = []
            try:
                fd = self._open()  # before taking lines: while it waits, the queue stays bounded
                lines = [queue.popleft() for _ in range(len(queue))]
                _write_lines(fd, lines, self._chunk)
            except OSError as exc:  # unopened: lines wait (new ones drop once full); unwritten: lost
                output.lost += len(lines)
                if not self._failed:
                    logger.warning("access log %s: cannot write: %s", output.target, exc)
                self._failed = True
                self._close()
                return
            self._failed = False
            output.written += len(lines)

    def _open(self) -> int:
        """The descriptor to write to; reopens a file whose path now names another inode."""
        target = self.output.target
        if self._fd is not None and self._owned:
            try:
                current = os.stat(target)
            except FileNotFoundError:
                current = None
            if current is None or (current.st_dev, current.st_ino) != self._inode:
                self._close()
        if self._fd is None:
            stream = _STREAMS.get(target)
            if stream is not None:
                fd, self._owned = stream, False
            else:
                fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
                self._owned = True
            info = os.fstat(fd)
            self._fd = fd
            self._inode = (info.st_dev, info.st_ino)
            shared_stream = stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)
            self._chunk = select.PIPE_BUF if shared_stream else FILE_BATCH_BYTES
        return self._fd

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._owned:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_lines(fd: int, lines: list[str], chunk: int) -> None:
    """Whole lines, in writes of at most ``chunk`` bytes (a longer line alone in its write).

    Writes to a pipe of at most PIPE_BUF bytes are never split or interleaved by the kernel;
    appends to a local file land whole. Lines are ASCII, so characters count as bytes.
    """
    batch: list[str] = []
    size = 0
    for line in lines:
        if batch and size + len(line) > chunk:
            _write_all(fd, "".join(batch).encode("ascii"))
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        _write_all(fd, "".join(batch).encode("ascii"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Outputs:
    """Every output of this process by target; one :class:`Output` per target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outputs: dict[str, Output] = {}

    def get(self, target: str, limit: int) -> Output:
        """The output for ``target``; its queue holds at least ``limit`` lines."""
        with self._lock:
            output = self._outputs.get(target)
            if output is None:
                output = self._outputs[target] = Output(target, limit)
            elif limit > output.limit:
                output.limit = limit
            return output

    def forget_writers(self) -> None:
        """In a forked child: no writer thread survived the fork, and the parent owns the queued lines."""
        self._lock = threading.Lock()
        for output in self._outputs.values():
            output.lock = threading.Lock()
            output.flushing = threading.Lock()
            output.writer = None
            output.queue.clear()

    def stop_all(self, timeout: float = 5.0) -> None:
        """Write every queued line and end every writer (they restart with the next line)."""
        with self._lock:
            outputs = list(self._outputs.values())
        for output in outputs:
            output.stop(timeout)


OUTPUTS = Outputs()
"""The outputs of this process (see the module docstring for why this one is global)."""

_exit_handler = threading.Lock()
_exit_registered = False


def _register_exit_handler() -> None:
    """Drain every output at interpreter exit too; forget writers in a forked child.

    The first writer registers both. A child forked after that inherits the queues but
    not the threads: it starts with empty queues and no writers (its parent writes what
    was queued).
    """
    global _exit_registered
    with _exit_handler:
        if not _exit_registered:
            atexit.register(OUTPUTS.stop_all, 2.0)
            os.register_at_fork(after_in_child=OUTPUTS.forget_writers)
            _exit_registered = True
