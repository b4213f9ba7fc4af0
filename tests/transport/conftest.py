"""Every async test in this folder runs on both event loops: asyncio's own and uvloop.

uvloop is the loop the gateway serves on (``gateway_core.server.event_loop_factory``), and
the two differ in transport details (read sizes, ``pause_reading`` semantics, errors), so
the transport is checked on both through pytest-asyncio's ``pytest_asyncio_loop_factories``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
