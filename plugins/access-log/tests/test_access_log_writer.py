"""The writer: lines reach their file in order, survive rotation, and never block or pile up."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_plugin_access_log.writer import OUTPUTS, Output, Outputs

from gateway_core.testing import wait_until


@pytest.fixture
def outputs() -> Iterator[list[Output]]:
    """Outputs made by a test; each is stopped at its end."""
    made: list[Output] = []
    yield made
    for output in made:
        output.stop(timeout=2)


def _output(made: list[Output], target: Path | str, limit: int = 100, **options: float) -> Output:
    output = Output(str(target), limit, **options)
    made.append(output)
    return output


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_lines_reach_the_file_in_order_and_stop_writes_what_is_queued(outputs: list[Output], tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    target.write_text("kept\n")
    output = _output(outputs, target)
    for index in range(5):
        output.offer(f"line {index}\n")
    output.stop()  # no waiting for the next batch: stop writes what is queued
    assert _lines(target) == ["kept", *(f"line {index}" for index in range(5))]
    assert (output.written, output.dropped, output.lost, output.writer) == (5, 0, 0, None)
    output.offer("after stop\n")  # a new writer starts
    wait_until(lambda: _lines(target)[-1:] == ["after stop"], message="the line after stop")


def test_a_moved_or_removed_file_is_reopened_at_its_path(outputs: list[Output], tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    output = _output(outputs, target)
    output.offer("first\n")
    wait_until(lambda: _lines(target) == ["first"], message="the first line")
    target.rename(tmp_path / "access.log.1")  # what logrotate does
    output.offer("second\n")
    wait_until(lambda: _lines(target) == ["second"], message="the second line in a new file")
    assert _lines(tmp_path / "access.log.1") == ["first"]
    target.unlink()
    output.offer("third\n")
    wait_until(lambda: _lines(target) == ["third"], message="the third line in a new file")


def test_a_full_queue_drops_and_counts_lines_and_warns_once(
    outputs: list[Output], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = tmp_path / "access.log"
    os.mkfifo(fifo)  # with no reader, the writer waits in open(): nothing leaves the queue
    output = _output(outputs, fifo, limit=3)
    for index in range(10):
        output.offer(f"line {index}\n")
    assert (len(output.queue), output.dropped) == (3, 7)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = bytearray()

    def read_three() -> bool:
        with contextlib.suppress(BlockingIOError):
            received.extend(os.read(reader, 65536))
        return received.count(b"\n") == 3

    try:
        with caplog.at_level(logging.WARNING, logger="gateway_plugin_access_log"):
            wait_until(read_three, message="the queued lines through the FIFO")
            wait_until(lambda: "7 lines dropped" in caplog.text, message="the drop warning")
            for index in range(3):
                output.offer(f"more {index}\n")
            output.stop()
    finally:
        with contextlib.suppress(BlockingIOError):
            received.extend(os.read(reader, 65536))
        os.close(reader)
    assert received.decode().splitlines() == ["line 0", "line 1", "line 2", "more 0", "more 1", "more 2"]
    warnings = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(warnings) == 1  # nothing new was dropped after the first warning
    assert (output.dropped, output.written) == (7, 6)


def test_an_unwritable_file_warns_keeps_lines_queued_and_recovers(
    outputs: list[Output], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "missing" / "access.log"
    output = _output(outputs, target, limit=2)
    with caplog.at_level(logging.WARNING, logger="gateway_plugin_access_log"):
        for index in range(3):
            output.offer(f"line {index}\n")
        wait_until(lambda: "cannot write" in caplog.text, message="the write warning")
        assert (len(output.queue), output.dropped) == (2, 1)
        target.parent.mkdir()
        wait_until(lambda: _lines(target) == ["line 0", "line 1"], message="the queued lines once writable")
    assert caplog.text.count("cannot write") == 1


def test_an_idle_writer_ends_and_the_next_line_starts_another(outputs: list[Output], tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    output = _output(outputs, target, idle_timeout=0.1)
    output.offer("one\n")
    wait_until(lambda: output.writer is None, message="the idle writer to end")
    assert _lines(target) == ["one"]
    output.offer("two\n")
    assert output.writer is not None
    wait_until(lambda: _lines(target) == ["one", "two"], message="the second line")


def test_lines_offered_from_many_threads_are_written_once_each_in_each_threads_order(
    outputs: list[Output], tmp_path: Path
) -> None:
    target = tmp_path / "access.log"
    output = _output(outputs, target, limit=100_000, idle_timeout=0.05)

    def offer_all(name: str) -> None:
        for index in range(2000):
            output.offer(f"{name} {index}\n")

    threads = [threading.Thread(target=offer_all, args=(name,)) for name in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: len(_lines(target)) == 8000, message="every line")
    lines = _lines(target)
    for name in "abcd":
        assert [line for line in lines if line.startswith(name)] == [f"{name} {index}" for index in range(2000)]


def test_one_output_per_target_with_the_largest_queue_asked_for() -> None:
    registry = Outputs()
    first = registry.get("/tmp/x.log", 10)
    assert registry.get("/tmp/x.log", 50) is first
    assert registry.get("/tmp/x.log", 20) is first
    assert first.limit == 50
    assert registry.get("stderr", 10) is not first
    registry.stop_all()


def test_a_forked_child_starts_its_own_writer(outputs: list[Output], tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    output = OUTPUTS.get(str(target), 100)
    outputs.append(output)
    output.offer("parent before\n")
    wait_until(lambda: _lines(target) == ["parent before"], message="the parent's line")
    assert output.writer is not None
    written = output.written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running (3.12+)
        child = os.fork()
    if child == 0:  # the child: its inherited writer is a thread that does not exist here
        try:
            output.offer("child\n")
            output.stop(timeout=5)
        finally:
            os._exit(0 if output.written == written + 1 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    output.offer("parent after\n")
    wait_until(lambda: len(_lines(target)) == 3, message="the parent's second line")
    assert _lines(target) == ["parent before", "child", "parent after"]
