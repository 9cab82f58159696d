"""A charger at the TCP level: hand-made HTTP upgrade and WebSocket frames on a plain
socket, so a test can hang up at exact moments (after a request, mid-handshake) and
choose how: an orderly FIN or an abortive RST (SO_LINGER 0)."""

from __future__ import annotations

import base64
import os
import socket
import struct

import trio


class RawSocketCharger:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, port: int) -> RawSocketCharger:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect(("127.0.0.1", port))
        return cls(sock)

    async def send_upgrade(self, path: str, *, subprotocol: str = "ocpp1.6") -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
        )
        await self.sock.send(request.encode())

    async def read_http_head(self) -> bytes:
        """Read until the end of the HTTP response head; returns the head."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n\r\n", 1)[0]

    async def upgrade(self, path: str) -> None:
        await self.send_upgrade(path)
        head = await self.read_http_head()
        assert head.startswith(b"HTTP/1.1 101"), head

    async def send_text(self, text: str) -> None:
        """One masked text frame (RFC 6455 §5.2; a client must mask)."""
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self.sock.send(header + mask + masked)

    async def send_close(self, code: int = 1000) -> None:
        """A masked Close frame (RFC 6455 §5.5.1)."""
        payload = struct.pack("!H", code)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self.sock.send(struct.pack("!BB", 0x88, 0x80 | len(payload)) + mask + masked)

    async def wait_close_reply(self) -> int:
        """Read frames until the server's Close; returns its code."""
        while True:
            opcode, payload = await recv_frame(self.sock)
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005

    def reset(self) -> None:
        """Hang up abortively: the kernel sends RST, the server's socket errors at once."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


async def _recv_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await sock.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the TCP connection")
        data += chunk
    return data


async def recv_frame(sock: trio.socket.SocketType) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    first, second = await _recv_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await _recv_exactly(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await _recv_exactly(sock, 8))
    return first & 0x0F, await _recv_exactly(sock, length)
