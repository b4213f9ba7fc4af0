"""Serving a gateway: its listeners under uvicorn, in one process or several workers.

The listening sockets are bound once, in the parent, so workers share them (the kernel
spreads connections). Each worker runs its uvicorn servers on one event loop — the proxy
(whose lifespan starts the route source), the same proxy app behind TLS on the HTTPS
listener, and the admin API. The supervisor forwards
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
import ssl
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal

import uvicorn

from gateway_core.app import Gateway, create_app
from gateway_core.logs import LogRotator, configure_logging
from gateway_core.proxy import ResponseAborted
from gateway_core.server_protocol import protocol_factory
from gateway_core.server_websocket import GatewayWebSocketProtocol
from gateway_core.settings import GatewaySettings, parse_addr
from gateway_core.tls.listener import write_generated_default

logger = logging.getLogger("gateway_core.server")

AppFactory = Callable[[GatewaySettings], Gateway]
"""Builds the gateway of one worker from the settings (``create_app``, or a program's own)."""


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
    app: Any,
    settings: GatewaySettings,
    *,
    lifespan: Literal["on", "off"],
    proxy: bool,
    tls: ssl.SSLContext | None = None,
) -> uvicorn.Config:
    server = settings.server
    http: Any = (
        protocol_factory(head_timeout=server.read_timeout, write_timeout=server.write_timeout) if proxy else "httptools"
    )
    return uvicorn.Config(
        app,
        http=http,
        ws=GatewayWebSocketProtocol if proxy else "none",  # the proxy protocol hands upgrades to it
        ws_max_size=settings.gateway.websocket_max_message_size * 1024 * 1024,
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=int(settings.server.idle_timeout),
        timeout_graceful_shutdown=int(settings.server.graceful_timeout),
        log_config=None,
        ssl_context_factory=(lambda config, default: tls) if tls is not None else None,
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
    """One gateway's listeners: the proxy (whose lifespan runs the gateway), the admin API and,
    given its socket, the HTTPS listener: the same proxy app behind TLS, SNI choosing the
    certificate (``gateway.listener_tls()``). It starts accepting once the proxy's start-up
    is done, like the plain listener."""

    def __init__(
        self,
        gateway: Gateway,
        proxy_sock: socket.socket,
        admin_sock: socket.socket,
        *,
        https_sock: socket.socket | None = None,
        extra: list[uvicorn.Config] | None = None,
    ) -> None:
        settings = gateway.settings
        logging.getLogger("uvicorn.error").addFilter(_AbortFilter())
        self.gateway = gateway
        self._sockets = (proxy_sock, admin_sock)
        self._extra = [_Server(config) for config in extra or ()]
        self._https: tuple[_Server, socket.socket] | None = None
        if https_sock is not None:
            tls = gateway.listener_tls().context
            https = _Server(_uvicorn_config(gateway.https_proxy, settings, lifespan="off", proxy=True, tls=tls))
            self._https = (https, https_sock)
        self.servers = [
            _Server(_uvicorn_config(gateway.proxy, settings, lifespan="on", proxy=True)),
            _Server(_uvicorn_config(gateway.admin, settings, lifespan="off", proxy=False)),
            *self._extra,
            *((self._https[0],) if self._https is not None else ()),
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
                *(server.serve() for server in self._extra),
                *((self._serve_https(*self._https),) if self._https is not None else ()),
            )
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)

    async def _serve_https(self, server: _Server, sock: socket.socket) -> None:
        """Serve HTTPS once the proxy server has started the gateway (or never, if it stops first)."""
        proxy = self.servers[0]
        while not proxy.started:
            if proxy.should_exit or server.should_exit:
                return
            await asyncio.sleep(0.05)
        await server.serve([sock])


def _worker_main(
    settings_data: dict[str, Any],
    proxy_sock: socket.socket,
    admin_sock: socket.socket,
    app_factory: AppFactory = create_app,
    https_sock: socket.socket | None = None,
) -> None:
    settings = GatewaySettings.model_validate(settings_data)
    configure_logging(settings.log)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    run_async(GatewayServer(app_factory(settings), proxy_sock, admin_sock, https_sock=https_sock).serve())


def run(settings: GatewaySettings, *, app_factory: AppFactory = create_app) -> int:
    """Serve until told to stop; the process exit code.

    ``app_factory(settings)`` builds the gateway, once per worker process. With several
    workers it is sent to each (spawned) worker by reference, so it must be importable by
    name: a module-level function, or a ``functools.partial`` of one; in a script run as
    ``__main__``, call ``run`` under ``if __name__ == "__main__":``.
    """
    configure_logging(settings.log)
    rotator = LogRotator(settings.log) if settings.log.file_path else None
    if rotator is not None:
        rotator.start()
    proxy_socks = bind_proxy_sockets(settings.server.addr, settings.server.workers)
    https_addr = settings.server.https_addr
    https_socks = bind_proxy_sockets(https_addr, settings.server.workers) if https_addr else []
    admin_sock = bind_socket(settings.metrics.addr)
    logger.info(
        "proxy listening on %s, HTTPS on %s, admin on %s, %d worker(s)",
        settings.server.addr,
        https_addr or "(off)",
        settings.metrics.addr,
        settings.server.workers,
    )
    try:
        if settings.server.workers == 1:
            https_sock = https_socks[0] if https_socks else None
            run_async(GatewayServer(app_factory(settings), proxy_socks[0], admin_sock, https_sock=https_sock).serve())
            return 0
        return _supervise(settings, proxy_socks, admin_sock, app_factory, https_socks)
    finally:
        for sock in (*proxy_socks, *https_socks):
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


def _supervise(
    settings: GatewaySettings,
    proxy_socks: list[socket.socket],
    admin_sock: socket.socket,
    app_factory: AppFactory,
    https_socks: list[socket.socket],
) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    data = settings.model_dump(mode="json", by_alias=True)
    tls_dir: str | None = None
    if https_socks and not settings.tls.default_cert_file:
        # One generated default certificate for all workers (and their restarts), not one each.
        tls_dir = tempfile.mkdtemp(prefix="gateway-tls-")
        data["tls"]["default_cert_file"], data["tls"]["default_key_file"] = write_generated_default(tls_dir)
    stopping = False

    def start_worker(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker_main,
            args=(data, proxy_socks[index], admin_sock, app_factory, https_socks[index] if https_socks else None),
            name=f"gateway-worker-{index}",
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
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)
    return exit_code
