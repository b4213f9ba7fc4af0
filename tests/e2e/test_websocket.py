"""WebSocket proxying through a real ``gateway run`` process, real clients, a real upstream.

The upstream is a ``websockets`` server in a thread of the test process (:class:`WsUpstream`);
what it saw of each session (request headers, the close code and reason the gateway sent
it) is recorded under the session's ``id`` query parameter. Clients are the ``websockets``
library's synchronous client on a plain socket to the gateway, so the ``Host`` names the
route. Most tests share one gateway; those that need their own settings start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from gateway_core.testing import (
    GatewayProcess,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
NOISE = os.urandom(MiB)
"""An incompressible megabyte."""


# --- the upstream ---------------------------------------------------------------------------------


@dataclass
class Session:
    """What the upstream saw of one WebSocket session."""

    path: str
    headers: list[tuple[str, str]]
    closed: threading.Event = field(default_factory=threading.Event)
    close_code: int | None = None
    close_reason: str | None = None


def choose_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The upstream speaks chat.v2 and chat.v3 (preferring v2), and accepts clients offering neither."""
    for known in ("chat.v2", "chat.v3"):
        if known in offered:
            return Subprotocol(known)
    return None


@dataclass
class WsUpstream:
    """A ``websockets`` server in its own thread and event loop.

        Paths: ``/echo`` echoes every message (a text ``close CODE REASON`` makes it close with
        that code instead); ``/headers`` first sends the handshake it received as JSON, then
        echoes; ``/ping`` pings the gateway and reports the pong; ``/drop`` drops the TCP
        connection; ``/flood`` sends 1 MiB messages as fast as it may; ``/stall`` never reads;
        ``/refuse`` answers 403; ``/slow-handshake`` answers after 3 s. On ``/echo``, a text
    ``big N`` is answered with an N-byte message.
    """

    sessions: dict[str, Session] = field(default_factory=dict)
    flooded: int = 0
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Future[None] | None = None
    _thread: threading.Thread | None = None
    _stall_released: asyncio.Event = field(default_factory=asyncio.Event)

    def release_stalled(self) -> None:
        """Let ``/stall`` sessions read (and so close) from now on."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stall_released.set)

    def hold_stalled(self) -> None:
        """New ``/stall`` sessions read nothing until :meth:`release_stalled`."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stall_released.clear)

    def start(self) -> WsUpstream:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with serve(
                self._handle,
                "127.0.0.1",
                0,
                select_subprotocol=choose_subprotocol,
                process_request=self._process_request,
                max_size=64 * MiB,
                max_queue=1,  # /stall: hold at most one message, so backpressure reaches the gateway
                compression=None,
            ) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="ws-upstream", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the WebSocket upstream did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread is not None:
            self._thread.join(10)

    def session(self, session_id: str, timeout: float = 10.0) -> Session:
        wait_until(lambda: session_id in self.sessions, timeout=timeout, message=f"upstream session {session_id}")
        return self.sessions[session_id]

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        route = urlsplit(request.path).path
        if route == "/refuse":
            response = connection.respond(http.HTTPStatus.FORBIDDEN, "the upstream says no\n")
            response.headers["X-Upstream-Reason"] = "members only"
            return response
        if route == "/slow-handshake":
            await asyncio.sleep(3)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        target = urlsplit(ws.request.path if ws.request else "/")
        session_id = parse_qs(target.query).get("id", [uuid.uuid4().hex])[0]
        headers = list(ws.request.headers.raw_items()) if ws.request else []
        session = self.sessions[session_id] = Session(target.path, headers)
        try:
            if target.path == "/headers":
                await ws.send(json.dumps({"path": ws.request.path if ws.request else "", "headers": headers}))
            if target.path == "/ping":
                pong = await ws.ping()
                latency = await asyncio.wait_for(pong, 10)
                await ws.send(f"pong after {latency:.3f}s")
            if target.path == "/drop":
                ws.transport.abort()
                return
            if target.path == "/flood":
                while True:
                    await ws.send(NOISE)
                    self.flooded += MiB
            if target.path == "/stall":
                await self._stall_released.wait()
            async for message in ws:
                if isinstance(message, str) and message.startswith("close "):
                    _, code, reason = message.split(" ", 2)
                    await ws.close(int(code), reason)
                    break
                if isinstance(message, str) and message.startswith("big "):
                    message = b"b" * int(message.split()[1])
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), 15)
            session.close_code = ws.close_code
            session.close_reason = ws.close_reason
            session.closed.set()


# --- the gateway and clients -----------------------------------------------------------------------


@dataclass
class Env:
    gateway: GatewayProcess
    upstream: WsUpstream
    secured_keys: dict[str, str]

    def connect(self, target: str, *, host: str = "ws.test", **options: Any) -> ClientConnection:
        """A client connection to the gateway for ``host`` (the Host names the route)."""
        return open_client(self.gateway.port, target, host=host, **options)


def open_client(port: int, target: str, *, host: str = "ws.test", **options: Any) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    options.setdefault("open_timeout", 10)
    options.setdefault("close_timeout", 10)
    options.setdefault("max_size", 64 * MiB)
    options.setdefault("legacy", True)
    options.setdefault(
        "compression", None
    )  # sizes on the wire are what the test sends  # the connection is also used outside a with block
    connection: ClientConnection = connect(f"ws://{host}:{port}{target}", sock=sock, proxy=None, **options)
    return connection


def handshake_refusal(env_port: int, target: str, *, host: str = "ws.test", **options: Any) -> InvalidStatus:
    """The HTTP answer to a handshake the gateway (or upstream) refused."""
    with pytest.raises(InvalidStatus) as refused:
        open_client(env_port, target, host=host, **options).close()
    return refused.value


def manifests(directory: Path, upstream_port: int, down_port: int) -> None:
    keyed = plugin_annotations(
        {
            "key-auth": {"secret": "ws-keys"},
            "headers": {"request": {"set": {"X-Via": "gateway-${scheme}"}}, "response": {"set": {"X-Served-By": "gw"}}},
        }
    )
    write_manifests(
        directory,
        [
            *routed_service("ws", upstream_port),
            *routed_service("down", down_port),
            secret("ws-keys", {"alice": "k-alice"}),
            ingress("ws", rules=[("ws.test", [path("/", "ws")])]),
            ingress("down", rules=[("down.test", [path("/", "down")])]),
            ingress("secured", rules=[("secured.test", [path("/", "ws")])], annotations=keyed),
        ],
    )


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[WsUpstream]:
    upstream = WsUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def env(ws_upstream: WsUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("ws-manifests")
    manifests(directory, ws_upstream.port, free_port())
    gateway = GatewayProcess(directory).start()
    yield Env(gateway, ws_upstream, {"alice": "k-alice"})
    gateway.stop()


def new_id() -> str:
    return uuid.uuid4().hex


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} for process {pid}")


# --- messages ---------------------------------------------------------------------------------------


def test_text_and_binary_messages_are_relayed_in_order_with_their_type(env: Env) -> None:
    with env.connect(f"/echo?id={new_id()}") as client:
        sent: list[str | bytes] = []
        for index in range(200):
            message: str | bytes = f"text {index} ✓" if index % 2 else bytes([index % 256]) * (index + 1)
            client.send(message)
            sent.append(message)
        received = [client.recv(timeout=10) for _ in sent]
    assert received == sent  # same order, text stays str (UTF-8 intact), binary stays bytes


def test_large_messages_are_relayed_whole_both_ways(env: Env) -> None:
    payload = os.urandom(8 * MiB)
    with env.connect(f"/echo?id={new_id()}") as client:
        client.send(payload)
        assert client.recv(timeout=30) == payload
        text = "é" * (3 * MiB)
        client.send(text)
        assert client.recv(timeout=30) == text


def test_a_message_over_the_size_limit_closes_both_sides_with_1009(env: Env) -> None:
    session_id = new_id()
    client = env.connect(f"/echo?id={session_id}")
    try:
        client.send(b"x" * (16 * MiB + 1))  # gateway.websocket_max_message_size is 16 MB
    except ConnectionClosed as exc:  # the gateway closed while the message was still going out
        ended = exc
    else:
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=30)
        ended = closed.value
    client.close_socket()
    if ended.rcvd is not None:  # else the gateway's reset (unread bytes) overtook its close frame
        assert ended.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    session = env.upstream.session(session_id)
    assert session.closed.wait(15)
    assert session.close_code == CloseCode.MESSAGE_TOO_BIG

    with env.connect(f"/echo?id={new_id()}") as client:
        client.send(f"big {16 * MiB + 1}")  # the upstream answers with a message over the limit
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG


def test_many_sessions_at_once_each_get_their_own_messages(env: Env) -> None:
    async def one(index: int) -> list[str]:
        from websockets.asyncio.client import connect as connect_async

        async with connect_async(
            f"ws://ws.test:{env.gateway.port}/echo?id={new_id()}", host="127.0.0.1", port=env.gateway.port, proxy=None
        ) as client:
            for turn in range(20):
                await client.send(f"{index}:{turn}")
            return [str(await client.recv()) for _ in range(20)]

    async def all_sessions() -> list[list[str]]:
        return await asyncio.wait_for(asyncio.gather(*(one(index) for index in range(40))), 60)

    results = asyncio.run(all_sessions())
    for index, received in enumerate(results):
        assert received == [f"{index}:{turn}" for turn in range(20)]


# --- close semantics --------------------------------------------------------------------------------


def test_the_upstreams_close_code_and_reason_reach_the_client(env: Env) -> None:
    with env.connect(f"/echo?id={new_id()}") as client:
        client.send("close 4000 the upstream is done")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "the upstream is done")


def test_the_clients_close_code_and_reason_reach_the_upstream(env: Env) -> None:
    session_id = new_id()
    client = env.connect(f"/echo?id={session_id}")
    client.send("hi")
    assert client.recv(timeout=10) == "hi"
    client.close(4001, "the client is done")
    session = env.upstream.session(session_id)
    assert session.closed.wait(15)
    assert (session.close_code, session.close_reason) == (4001, "the client is done")


def test_a_normal_close_is_a_normal_close_on_both_sides(env: Env) -> None:
    session_id = new_id()
    with env.connect(f"/echo?id={session_id}") as client:
        client.send("hi")
        client.recv(timeout=10)
    assert client.close_code == CloseCode.NORMAL_CLOSURE
    session = env.upstream.session(session_id)
    assert session.closed.wait(15)
    assert session.close_code == CloseCode.NORMAL_CLOSURE


def test_the_upstream_dropping_its_connection_drops_the_clients(env: Env) -> None:
    with env.connect(f"/drop?id={new_id()}") as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    assert closed.value.rcvd is None, "no close frame: the drop is passed on as a drop (1006)"
    assert b"Traceback" not in env.gateway.log().encode()


def test_a_client_dropping_its_connection_closes_the_upstream_promptly(env: Env) -> None:
    for _ in range(5):
        session_id = new_id()
        client = env.connect(f"/echo?id={session_id}")
        client.send("hi")
        assert client.recv(timeout=10) == "hi"
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.socket.close()  # RST, no close frame
        session = env.upstream.session(session_id)
        assert session.closed.wait(10), "the upstream session outlived its client"
        assert session.close_code == CloseCode.ABNORMAL_CLOSURE, "the drop is passed on as a drop"


# --- handshake ----------------------------------------------------------------------------------------


def test_subprotocol_negotiation_passes_through(env: Env) -> None:
    session_id = new_id()
    with env.connect(f"/headers?id={session_id}", subprotocols=["chat.v1", "chat.v3"]) as client:
        assert client.subprotocol == "chat.v3"  # the upstream's choice among the client's offers
        seen = json.loads(client.recv(timeout=10))
    offered = [value for name, value in seen["headers"] if name.lower() == "sec-websocket-protocol"]
    assert offered == ["chat.v1, chat.v3"]
    with env.connect(f"/echo?id={new_id()}") as client:
        assert client.subprotocol is None
    with env.connect(f"/echo?id={new_id()}", subprotocols=["chat.v1"]) as client:
        assert client.subprotocol is None  # the upstream accepts none of the offers


def test_the_handshake_carries_the_clients_headers_and_the_forwarding_set(env: Env) -> None:
    with env.connect(
        "/headers?id=h1&x=1",
        additional_headers={"Cookie": "session=abc", "Authorization": "Bearer t", "X-Real-IP": "6.6.6.6"},
        origin="https://app.example",
        user_agent_header="test-client/1",
    ) as client:
        seen = json.loads(client.recv(timeout=10))
        key = client.request.headers["Sec-WebSocket-Key"] if client.request else ""
    headers = seen["headers"]
    values = {name.lower(): value for name, value in headers}
    assert seen["path"] == "/headers?id=h1&x=1"
    assert [name.lower() for name, _ in headers].count("host") == 1
    assert values["host"] == f"ws.test:{env.gateway.port}"
    assert headers[0][0].lower() == "host", "Host leads, as the client sent it"
    assert values["cookie"] == "session=abc"
    assert values["authorization"] == "Bearer t"
    assert values["origin"] == "https://app.example"
    assert values["user-agent"] == "test-client/1"
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert values["x-forwarded-proto"] == "http"
    assert values["x-forwarded-host"] == f"ws.test:{env.gateway.port}"
    assert values["x-real-ip"] == "127.0.0.1"
    assert values["sec-websocket-key"] != key, "each hop has its own handshake key"
    assert [name.lower() for name, _ in headers].count("sec-websocket-key") == 1


def test_pings_are_answered_on_both_hops(env: Env) -> None:
    with env.connect(f"/ping?id={new_id()}") as client:
        assert str(client.recv(timeout=15)).startswith("pong after")  # the upstream pinged the gateway
        pong = client.ping(b"are you there")
        assert pong.wait(10), "the gateway answered the client's ping"
        client.send("still relaying")
        assert client.recv(timeout=10) == "still relaying"


def test_plugins_guard_and_edit_the_handshake(env: Env) -> None:
    """key-auth refuses before any upgrade with its 401; headers edits both handshakes."""
    before = len(env.upstream.sessions)
    refusal = handshake_refusal(env.gateway.port, f"/echo?id={new_id()}", host="secured.test")
    assert refusal.response.status_code == 401
    assert json.loads(refusal.response.body)["error"] == "unauthorized"
    assert "Upgrade" not in refusal.response.headers
    assert refusal.response.headers["X-Served-By"] == "gw", "on_local_response ran on the refusal"
    wrong = handshake_refusal(
        env.gateway.port, "/echo", host="secured.test", additional_headers={"X-API-Key": "k-mallory"}
    )
    assert wrong.response.status_code == 401
    assert len(env.upstream.sessions) == before, "a refused handshake never reached the upstream"

    session_id = new_id()
    with env.connect(
        f"/headers?id={session_id}", host="secured.test", additional_headers={"X-API-Key": "k-alice"}
    ) as c:
        seen = {name.lower(): value for name, value in json.loads(c.recv(timeout=10))["headers"]}
        assert c.response is not None
        assert c.response.headers["X-Served-By"] == "gw", "on_response ran on the 101"
    assert seen["x-auth-user"] == "alice"
    assert "x-api-key" not in seen
    assert seen["x-via"] == "gateway-http", "the headers plugin edited the upstream handshake"


def test_an_upstream_refusing_the_upgrade_has_its_answer_relayed(env: Env) -> None:
    refusal = handshake_refusal(env.gateway.port, "/refuse")
    assert refusal.response.status_code == 403
    assert refusal.response.body == b"the upstream says no\n"
    assert refusal.response.headers["X-Upstream-Reason"] == "members only"


def test_upstream_down_is_a_502_json_answer(env: Env) -> None:
    refusal = handshake_refusal(env.gateway.port, "/echo", host="down.test")
    assert refusal.response.status_code == 502
    assert json.loads(refusal.response.body) == {
        "error": "upstream_connect_failed",
        "message": "the upstream could not be reached",
    }


def test_no_route_is_a_404_json_answer(env: Env) -> None:
    refusal = handshake_refusal(env.gateway.port, "/echo", host="nowhere.test")
    assert refusal.response.status_code == 404
    assert json.loads(refusal.response.body)["error"] == "no_route"


def test_handshakes_are_counted_in_the_metrics_with_their_status(env: Env) -> None:
    with env.connect(f"/echo?id={new_id()}") as client:
        client.send("count me")
        client.recv(timeout=10)
    handshake_refusal(env.gateway.port, "/echo", host="secured.test")

    def counted() -> bool:
        text = httpx.get(f"{env.gateway.admin_url}/metrics", timeout=5).text
        return 'status="101"' in text and 'status="401"' in text

    wait_until(counted, timeout=10, message="status 101 and 401 in /metrics")
    assert "ERROR" not in env.gateway.log(), env.gateway.log()


# --- backpressure --------------------------------------------------------------------------------------


def test_a_stalled_upstream_stops_the_client_instead_of_filling_the_gateway(env: Env) -> None:
    pid = env.gateway.process.pid if env.gateway.process else 0
    rss_before = rss_kib(pid)
    env.upstream.hold_stalled()
    client = env.connect(f"/stall?id={new_id()}")
    sent = 0
    stop = threading.Event()

    def flood() -> None:
        nonlocal sent
        with contextlib.suppress(Exception):
            while not stop.is_set() and sent < 512 * MiB:
                client.send(NOISE)
                sent += MiB

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        previous = -1
        while sent != previous:  # until the sender has been stuck for a whole second
            previous = sent
            time.sleep(1.0)
        stuck_at = sent
        rss_after = rss_kib(pid)
    finally:
        stop.set()
        env.upstream.release_stalled()
        client.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked sender
        sender.join(10)
        client.close_socket()
    assert stuck_at < 128 * MiB, f"{stuck_at / MiB:.0f} MiB went in before the client was held back"
    assert rss_after - rss_before < 64 * 1024, f"gateway RSS grew {(rss_after - rss_before) / 1024:.0f} MiB"


def test_a_client_that_does_not_read_stops_the_upstream(env: Env) -> None:
    pid = env.gateway.process.pid if env.gateway.process else 0
    rss_before = rss_kib(pid)
    env.upstream.flooded = 0
    client = env.connect(f"/flood?id={new_id()}")
    try:
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        previous = -1
        while env.upstream.flooded != previous:  # until the upstream has been held back for a second
            previous = env.upstream.flooded
            time.sleep(1.0)
        rss_after = rss_kib(pid)
    finally:
        client.socket.shutdown(socket.SHUT_RDWR)
        client.close_socket()
    assert env.upstream.flooded < 128 * MiB, f"the upstream sent {env.upstream.flooded / MiB:.0f} MiB unread"
    assert rss_after - rss_before < 64 * 1024, f"gateway RSS grew {(rss_after - rss_before) / 1024:.0f} MiB"


# --- timeouts and shutdown (own gateways) ----------------------------------------------------------------


def test_idle_sessions_close_with_1001_and_activity_keeps_them_open(ws_upstream: WsUpstream, tmp_path: Path) -> None:
    manifests(tmp_path, ws_upstream.port, free_port())
    env_vars = {"GATEWAY_GATEWAY__WEBSOCKET_IDLE_TIMEOUT": "3", "GATEWAY_GATEWAY__PROXY_TIMEOUT": "1"}
    with GatewayProcess(tmp_path, env=env_vars) as gateway:
        busy_id, idle_id = new_id(), new_id()
        busy = open_client(gateway.port, f"/echo?id={busy_id}", ping_interval=None)
        idle = open_client(gateway.port, f"/echo?id={idle_id}", ping_interval=None)
        started = time.monotonic()
        while time.monotonic() - started < 4.5:  # longer than the idle timeout, one message every 0.25 s
            busy.send("tick")
            assert busy.recv(timeout=10) == "tick"
            time.sleep(0.25)
        with pytest.raises(ConnectionClosed) as closed:
            idle.recv(timeout=20)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CloseCode.GOING_AWAY, "idle timeout")
        session = ws_upstream.session(idle_id)
        assert session.closed.wait(15)
        assert (session.close_code, session.close_reason) == (CloseCode.GOING_AWAY, "idle timeout")
        assert not ws_upstream.sessions[busy_id].closed.is_set(), "the busy session stayed open"
        busy.send("still here")
        assert busy.recv(timeout=10) == "still here"
        busy.close()

        # gateway.proxy_timeout bounds the upstream's handshake, like a response head: 504.
        refusal = handshake_refusal(gateway.port, "/slow-handshake")
        assert refusal.response.status_code == 504
        assert json.loads(refusal.response.body)["error"] == "upstream_timeout"


def test_shutdown_closes_open_sessions_on_both_sides(ws_upstream: WsUpstream, tmp_path: Path) -> None:
    manifests(tmp_path, ws_upstream.port, free_port())
    gateway = GatewayProcess(tmp_path).start()
    session_id = new_id()
    try:
        client = open_client(gateway.port, f"/echo?id={session_id}")
        client.send("hi")
        assert client.recv(timeout=10) == "hi"
        assert gateway.stop(timeout=30) == 0
    finally:
        gateway.stop()
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.SERVICE_RESTART
    session = ws_upstream.session(session_id)
    assert session.closed.wait(15)
    assert session.close_code == CloseCode.SERVICE_RESTART
