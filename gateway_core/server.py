"""Serving a gateway: its two listeners under uvicorn, in one process or several workers.

The listening sockets are bound once, in the parent, so workers share them (the kernel
spreads connections). Each worker runs two uvicorn servers on one event loop — the proxy
(whose lifespan starts the route source) and the admin API. The supervisor forwards
SIGTERM/SIGINT, gives in-flight requests ``server.graceful_timeout`` to finish, restarts a
worker that dies, and gives up if workers keep dying at start-up. With several workers,
Prometheus multiprocess mode makes ``/metrics`` cover them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal

import uvicorn

from gateway_core.app import Gateway, create_app
from gateway_core.logs import LogRotator, configure_logging
from gateway_core.proxy import ResponseAborted
from gateway_core.server_protocol import protocol_factory
from gateway_core.settings import GatewaySettings, parse_addr

logger = logging.getLogger("gateway_core.server")


def bind_socket(addr: str, *, backlog: int = 2048, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket for ``host:port``, inheritable by worker processes."""
    host, port = parse_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {addr}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class _AbortFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for a connection the proxy cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ResponseAborted))


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the gateway (two servers share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(
    app: Any, settings: GatewaySettings, *, lifespan: Literal["on", "off"], proxy: bool
) -> uvicorn.Config:
    server = settings.server
    http: Any = (
        protocol_factory(head_timeout=server.read_timeout, write_timeout=server.write_timeout) if proxy else "httptools"
    )
    return uvicorn.Config(
        app,
        http=http,
        ws="none",
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=int(settings.server.idle_timeout),
        timeout_graceful_shutdown=int(settings.server.graceful_timeout),
        log_config=None,
    )


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed (it is, with uvicorn[standard]), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion on a new uvloop (or asyncio) event loop."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main)


class GatewayServer:
    """One gateway's listeners: the proxy (whose lifespan runs the gateway) and the admin API."""

    def __init__(
        self,
        gateway: Gateway,
        proxy_sock: socket.socket,
        admin_sock: socket.socket,
        *,
        extra: list[uvicorn.Config] | None = None,
    ) -> None:
        settings = gateway.settings
        logging.getLogger("uvicorn.error").addFilter(_AbortFilter())
        self.gateway = gateway
        self._sockets = (proxy_sock, admin_sock)
        self.servers = [
            _Server(_uvicorn_config(gateway.proxy, settings, lifespan="on", proxy=True)),
            _Server(_uvicorn_config(gateway.admin, settings, lifespan="off", proxy=False)),
            *(_Server(config) for config in extra or ()),
        ]

    def stop(self) -> None:
        """Ask every listener to stop (a second call forces it); safe from any thread."""
        for server in self.servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT); in-flight requests get to finish."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop)
        proxy_sock, admin_sock = self._sockets
        try:
            await asyncio.gather(
                self.servers[0].serve([proxy_sock]),
                self.servers[1].serve([admin_sock]),
                *(server.serve() for server in self.servers[2:]),
            )
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)


def _worker_main(settings_data: dict[str, Any], proxy_sock: socket.socket, admin_sock: socket.socket) -> None:
    settings = GatewaySettings.model_validate(settings_data)
    configure_logging(settings.log)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    run_async(GatewayServer(create_app(settings), proxy_sock, admin_sock).serve())


def run(settings: GatewaySettings) -> int:
    """Serve until told to stop; the process exit code."""
    configure_logging(settings.log)
    rotator = LogRotator(settings.log) if settings.log.file_path else None
    if rotator is not None:
        rotator.start()
    proxy_socks = bind_proxy_sockets(settings.server.addr, settings.server.workers)
    admin_sock = bind_socket(settings.metrics.addr)
    logger.info(
        "proxy listening on %s, admin on %s, %d worker(s)",
        settings.server.addr,
        settings.metrics.addr,
        settings.server.workers,
    )
    try:
        if settings.server.workers == 1:
            run_async(GatewayServer(create_app(settings), proxy_socks[0], admin_sock).serve())
            return 0
        return _supervise(settings, proxy_socks, admin_sock)
    finally:
        for sock in proxy_socks:
            sock.close()
        admin_sock.close()
        if rotator is not None:
            rotator.stop()


def bind_proxy_sockets(addr: str, workers: int) -> list[socket.socket]:
    """One proxy socket per worker, sharing the port with SO_REUSEPORT.

    The kernel spreads new connections over the workers by hash (nginx's ``reuseport``),
    instead of leaving them to whichever worker wakes first on one shared socket. On the
    2-core bench both measured the same throughput (0.50-0.55x nginx either way); the
    spread matters more with more cores and long-lived connections. The supervisor keeps
    every socket, so a restarted worker takes over its predecessor's queue.
    """
    if workers == 1:
        return [bind_socket(addr)]
    first = bind_socket(addr, reuse_port=True)
    host, port = first.getsockname()[:2]
    bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [first, *(bind_socket(bound, reuse_port=True) for _ in range(workers - 1))]


def _supervise(settings: GatewaySettings, proxy_socks: list[socket.socket], admin_sock: socket.socket) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    data = settings.model_dump(mode="json", by_alias=True)
    stopping = False

    def start_worker(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker_main, args=(data, proxy_socks[index], admin_sock), name=f"gateway-worker-{index}"
        )
        process.start()
        return process

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [start_worker(index) for index in range(settings.server.workers)]
    started = [time.monotonic()] * len(workers)
    quick_deaths = 0
    exit_code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, process in enumerate(workers):
                if process.exitcode is None or stopping:
                    continue
                lived = time.monotonic() - started[index]
                quick_deaths = quick_deaths + 1 if lived < 5 else 0
                if quick_deaths >= 2 * settings.server.workers:
                    logger.error("workers keep exiting at start-up (last exit code %s); giving up", process.exitcode)
                    stopping = True
                    exit_code = 1
                    break
                logger.error("worker %s exited with code %s; starting a new one", process.pid, process.exitcode)
                workers[index] = start_worker(index)
                started[index] = time.monotonic()
    finally:
        for process in workers:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + settings.server.graceful_timeout + 5
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return exit_code
