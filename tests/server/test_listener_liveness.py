"""Server pings (R9) with a raw wsproto client that never answers them."""

from __future__ import annotations

import trio
import wsproto
from listener_support import serving
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.settings import Settings

SETTINGS = Settings(host="127.0.0.1", port=0, ping_interval=0.2, ping_timeout=0.2)


class DeafCharger:
    """A WebSocket client that never answers pings (EN+ AC7000, mobilityhouse/ocpp#338)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.pings = 0
        self.close_code: int | None = None
        self.eof = False

    async def handshake(self, host: str, target: str) -> None:
        await self.stream.send_all(
            self.ws.send(Request(host=host, target=target, subprotocols=["ocpp1.6"]))
        )
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return
            assert not self.eof, "server closed during the handshake"

    async def _events(self) -> list[wsproto.events.Event]:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        return list(self.ws.events())

    async def read_until_closed(self) -> None:
        while not self.eof and self.close_code is None:
            for event in await self._events():
                if isinstance(event, Ping):
                    self.pings += 1  # and deliberately no Pong
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))


async def _connect(base: str, charger_id: str) -> DeafCharger:
    host, port = base.removeprefix("ws://").rsplit(":", 1)
    charger = DeafCharger(await trio.open_tcp_stream(host, int(port)))
    await charger.handshake(host, f"/ocpp/{charger_id}")
    return charger


async def test_silent_peer_without_pongs_is_closed() -> None:
    directory = MemoryDirectory([ChargerRecord("DEAF")])
    async with serving(SETTINGS, directory) as srv:
        charger = await _connect(srv.base, "DEAF")
        with trio.fail_after(5):
            await charger.read_until_closed()
        assert charger.pings >= 1
        assert charger.close_code == 1001
        await charger.stream.aclose()


async def test_talking_peer_without_pongs_is_kept() -> None:
    directory = MemoryDirectory([ChargerRecord("CHATTY")])
    async with serving(SETTINGS, directory) as srv:
        charger = await _connect(srv.base, "CHATTY")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(charger.read_until_closed)
            # The charger's own behaviour: a frame every 100 ms for 1.5 s (several
            # ping intervals), never a pong.
            for _ in range(15):
                await charger.send_text('[2,"1","Heartbeat",{}]')
                await trio.sleep(0.1)
            assert charger.pings >= 3
            assert charger.close_code is None
            assert srv.registry.is_connected("CHATTY")
            nursery.cancel_scope.cancel()
        await charger.stream.aclose()


async def test_idle_socket_is_dropped_after_handshake_timeout() -> None:
    settings = Settings(host="127.0.0.1", port=0, ping_interval=0, handshake_timeout=0.5)
    directory = MemoryDirectory([ChargerRecord("CP1")])
    async with serving(settings, directory) as srv:
        host, port = srv.base.removeprefix("ws://").rsplit(":", 1)
        idle = await trio.open_tcp_stream(host, int(port))
        # A half-sent upgrade request (slowloris) and then nothing.
        await idle.send_all(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n")
        started = trio.current_time()
        legit = await _connect(srv.base, "CP1")  # others still get in meanwhile
        with trio.fail_after(10):
            assert await idle.receive_some(1024) == b""
        took = trio.current_time() - started
        # The 0.5 s handshake_timeout (trio-websocket alone would wait 60 s).
        assert 0.4 <= took < 6.0, took
        await idle.aclose()
        await legit.stream.aclose()
