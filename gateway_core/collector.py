"""Pausing Python's cyclic garbage collector around large, short-lived allocation bursts.

Building a route table for 10,000 Ingresses allocates a few hundred thousand objects. With
the collector on, each of its generation passes rescans the growing graph: measured on this
machine, 1.2-1.9 s for the build and 2.0 s for parsing the manifests, against 0.36 s and
0.72 s with it paused. Reference counting still frees everything that is not in a cycle;
the collector resumes as soon as the burst ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with cyclic garbage collection off (restored after, even on error)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_startup_objects() -> None:
    """Move everything alive now (modules, schemas, the first table) out of the collector's reach.

    Full collections otherwise rescan these tens of thousands of long-lived objects: measured
    under load, four full collections in ten seconds took 25 ms each, a pause every request
    in flight waited out. Frozen objects are still freed by reference counting when dropped.
    """
    gc.collect()
    gc.freeze()
