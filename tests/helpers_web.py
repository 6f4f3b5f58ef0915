"""What the browser console's tests share: console links, and a plain WebSocket viewer.

`WsViewer` speaks RFB (security None, raw encoding) through the console's WebSocket with
websocket-client, synchronously, as a second, independent client next to the browser;
its socket is at hand for sending what no browser would.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import websocket

from tests.helpers_daemon import WAIT, DaemonRun
from xend_vfb import jsonline
from xend_vfb.backend.control import controlSocketPath

TOKEN_PROTOCOL = "xend-vfb.token."


@dataclass(frozen=True)
class Link:
    """A console URL as `xend-vfb console-url` prints it, in parts."""

    url: str
    origin: str
    token: str

    @classmethod
    def of(cls, run: DaemonRun, domain: str, *args: str) -> Link:
        url = run.cli("console-url", domain, *args).stdout.strip()
        page, _, token = url.partition("#")
        assert page.endswith("/console") and token, url
        return cls(url, page[: -len("/console")], token)

    @property
    def socketURL(self) -> str:
        return "ws" + self.origin[len("http"):] + "/websockify"

    def open(self, origin: str | None = None, token: str | None = None,
             rcvbuf: int | None = None, ca: str | None = None) -> websocket.WebSocket:
        """The console's WebSocket, opened as the console page would (or with another
        Origin or token; over TLS, checking the server with the CA file `ca`); raises
        websocket-client's errors when refused."""
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else []
        return websocket.create_connection(
            self.socketURL, timeout=WAIT, origin=origin or self.origin, sockopt=options,
            subprotocols=["binary", TOKEN_PROTOCOL + (token or self.token)],
            sslopt={"ca_certs": ca})


def refusal(link: Link, **how: str) -> int:
    """The HTTP status a refused WebSocket handshake got."""
    try:
        link.open(**how).close()
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    raise AssertionError(f"the console's WebSocket accepted {how or 'a used token'}")


class WsViewer:
    """An RFB viewer on the console's WebSocket: security None, 32-bit raw pixels."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.pending = bytearray()
        assert self.read(12) == b"RFB 003.008\n"
        self.send(b"RFB 003.008\n")
        types = self.read(self.read(1)[0])
        assert 1 in types, f"security types {list(types)}: None expected"
        self.send(b"\x01")
        assert self.read(4) == b"\0\0\0\0"
        self.send(b"\x01")  # shared
        self.width, self.height = struct.unpack("!HH", self.read(4))
        pixelFormat = self.read(16)
        assert pixelFormat[0] == 32, pixelFormat
        self.read(struct.unpack("!I", self.read(4))[0])  # the desktop's name
        self.send(struct.pack("!BxHi", 2, 1, 0))  # SetEncodings: raw only

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def read(self, count: int) -> bytes:
        while len(self.pending) < count:
            self.pending += self.ws.recv()
        data = bytes(self.pending[:count])
        del self.pending[:count]
        return data

    def requestFrame(self) -> None:
        self.send(struct.pack("!BBHHHH", 3, 0, 0, 0, self.width, self.height))

    def frame(self) -> int:
        """Ask for the whole screen; the number of pixel bytes that came back."""
        self.requestFrame()
        kind, count = struct.unpack("!BxH", self.read(4))
        assert kind == 0, f"message type {kind}"
        total = 0
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack("!HHHHi", self.read(12))
            assert encoding == 0, encoding
            total += len(self.read(w * h * 4))
        return total

    def close(self) -> None:
        self.ws.close()


def viewers(run: DaemonRun, domid: int, devid: int = 0) -> int:
    """How many viewers the backend's display has (its control socket's `status`)."""
    reply = jsonline.requestBlocking(controlSocketPath(run.runDir, domid), {"op": "status"},
                                     WAIT)
    return next(d["viewers"] for d in reply["devices"]
                if (d["class"], d["devid"]) == ("vfb", devid))

