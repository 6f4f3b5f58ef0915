"""The console's WebSocket: RFB between a browser (noVNC) and a display's VNC server.

Each viewer is two connections: the WebSocket from the browser (`ConsoleSocket`,
autobahn on Twisted) and one from the daemon to the display's local socket (`_VncLeg`;
root only, and without VeNCrypt: with TLS on, the browser's side is HTTPS and WSS, and
noVNC cannot speak VeNCrypt).  Bytes go through unchanged, one WebSocket binary
message per chunk read.  Neither side can make the daemon buffer without bound: a full
output buffer towards one side pauses reading from the other (Twisted producers), and
a browser that leaves the console's output unread for `STALL_SECONDS` is dropped.
Anything wrong from the browser (bad framing, a text message, a message over
`MAX_MESSAGE`) ends that viewer only; the display and its other viewers carry on.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IPushProducer, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.web.tokens import Grant, Tokens

__all__ = ["CLOSE_NOT_BINARY", "MAX_MESSAGE", "STALL_SECONDS", "TOKEN_PROTOCOL", "ConsoleSocket",
           "ConsoleSocketFactory"]

log = Logger()

#: The largest message (and frame) a browser may send.  RFB's client messages are a few
#: bytes; the largest, ClientCutText, carries the clipboard, which this bounds.
MAX_MESSAGE = 256 * 1024
#: Seconds a browser may leave the console's output unread before it is dropped.
STALL_SECONDS = 10.0
#: The close code for a text message: 1003 (unsupported data) in the private-use range,
#: as applications may only send 1000 or 4000-4999.
CLOSE_NOT_BINARY = 4003
#: Seconds to reach the display's VNC server.
CONNECT_TIMEOUT = 10.0
#: The console page offers two subprotocols: `binary` (the one chosen, as noVNC expects)
#: and this prefix followed by its token.  A header, unlike the URL, is in no access log.
TOKEN_PROTOCOL = "xend-vfb.token."

#: Where a grant's display listens for the console: Deferred firing with the path of
#: its local socket, or failing with an error whose message says why there is none.
Locate = Callable[[Grant], Deferred]


class ConsoleSocket(WebSocketServerProtocol):
    """One browser viewing one display."""

    factory: ConsoleSocketFactory
    vnc: _VncLeg | None = None
    valve: _Valve | None = None
    grant: Grant | None = None

    @inlineCallbacks
    def onConnect(self, request: Any):
        """Redeem the token and reach the display before accepting: a refusal is an HTTP
        error to the handshake."""
        tokens = [p[len(TOKEN_PROTOCOL):] for p in request.protocols
                  if p.startswith(TOKEN_PROTOCOL)]
        if "binary" not in request.protocols or len(tokens) != 1:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 "offer the subprotocols binary and one token")
        self.grant = self.factory.tokens.redeem(tokens[0])
        if self.grant is None:
            log.info("web console: refused {peer}: an invalid, used or expired token",
                     peer=request.peer)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN,
                                 "the console link is invalid, used or expired")
        try:
            path = yield self.factory.locate(self.grant)
            endpoint = UNIXClientEndpoint(self.factory.reactor, path, timeout=CONNECT_TIMEOUT)
            legs = Factory.forProtocol(partial(_VncLeg, self))
            legs.noisy = False
            vnc = yield endpoint.connect(legs)
        except Exception as e:
            log.info("web console: {peer}: {what}: {why}", peer=request.peer,
                     what=self._display(), why=e)
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND,
                                 f"{self._display()} cannot be reached") from None
        if self.state == self.STATE_CLOSED:  # the browser left while we connected
            vnc.transport.loseConnection()
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "gone")
        self.vnc = vnc
        return "binary"

    def onOpen(self) -> None:
        if self.vnc.lost:  # the display hung up during the handshake
            self.displayClosed()
            return
        # The HTTP channel that read the upgrade request is still the transport's
        # producer; from now on the transport's producer is the display's connection.
        self.transport.unregisterProducer()
        self.valve = _Valve(self.vnc.transport, self._stalled, self.factory.reactor)
        self.transport.registerProducer(self.valve, True)
        self.vnc.transport.registerProducer(self.transport, True)
        self.vnc.transport.resumeProducing()
        self.factory.viewers.add(self)
        log.info("web console: {peer} views {what}", peer=self.peer, what=self._display())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.sendClose(CLOSE_NOT_BINARY, "binary messages only")
            return
        self.vnc.transport.write(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.valve is not None:
            self.valve.cancel()
        if self.vnc is not None:
            self.vnc.transport.loseConnection()
        if self in self.factory.viewers:
            self.factory.viewers.discard(self)
            log.info("web console: {peer} left {what} ({why})", peer=self.peer,
                     what=self._display(), why=reason or f"close code {code}")

    def displayClosed(self) -> None:
        """The display's VNC server closed the connection (after sending its last bytes,
        e.g. an authentication failure's reason): so does the browser's."""
        if self.state == self.STATE_OPEN:
            self.sendClose(self.CLOSE_STATUS_CODE_NORMAL, "the display closed the connection")

    def _stalled(self) -> None:
        log.info("web console: dropping {peer}: it left {seconds:g} s of output unread",
                 peer=self.peer, seconds=STALL_SECONDS)
        self.wasNotCleanReason = "output left unread"  # autobahn's words for the logs
        self.dropConnection(abort=True)

    def _display(self) -> str:
        return f"domain {self.grant.domid} vfb {self.grant.devid}"


class ConsoleSocketFactory(WebSocketServerFactory):
    """The console's WebSocket endpoint: browsers holding a token from `tokens`, proxied
    to `locate`'s address.  No browser may connect until `allowOrigin`."""

    protocol = ConsoleSocket

    def __init__(self, tokens: Tokens, locate: Locate, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.tokens = tokens
        self.locate = locate
        #: The viewers connected now (for stopping them with the console).
        self.viewers: set[ConsoleSocket] = set()
        self.setProtocolOptions(
            allowedOrigins=[],
            maxFramePayloadSize=MAX_MESSAGE,
            maxMessagePayloadSize=MAX_MESSAGE,
            openHandshakeTimeout=CONNECT_TIMEOUT + 5,
            # A viewer sending something wrong gets a close frame saying what (1002: bad
            # framing, 1009: too big), then the connection ends within 5 s.
            failByDrop=False,
            closeHandshakeTimeout=5,
        )

    def allowOrigin(self, origin: str) -> None:
        """Accept browsers showing a page from `origin` (``http://127.0.0.1:6080``): the
        console's own.  A browser always sends its page's origin; other clients may
        leave it out (they cannot be tricked by another site's page) but still need a
        token."""
        parts = urlsplit(origin)
        # As autobahn writes the Origin it checks: no brackets around IPv6, a port always.
        self.setProtocolOptions(
            allowedOrigins=[f"{parts.scheme}://{parts.hostname}:{parts.port}"])




class _VncLeg(Protocol):
    """The daemon's connection to the display's VNC server, on behalf of `browser`."""

    def __init__(self, browser: ConsoleSocket) -> None:
        self.browser = browser
        self.lost = False

    def connectionMade(self) -> None:
        # Nothing for the browser until its handshake is done (ConsoleSocket.onOpen).
        self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.browser.sendMessage(data, isBinary=True)

    def connectionLost(self, reason: Any) -> None:
        self.lost = True
        self.browser.displayClosed()


@implementer(IPushProducer)
class _Valve:
    """The browser's transport's producer: while that transport's buffer is full, stop
    reading from `source` (the display); if it stays full `STALL_SECONDS`, `stalled()`."""

    def __init__(self, source: ITransport, stalled: Callable[[], None], clock: Any) -> None:
        self.source = source
        self.stalled = stalled
        self.clock = clock
        self.timer: IDelayedCall | None = None

    def pauseProducing(self) -> None:
        self.source.pauseProducing()
        if self.timer is None:
            self.timer = self.clock.callLater(STALL_SECONDS, self.stalled)

    def resumeProducing(self) -> None:
        self.cancel()
        self.source.resumeProducing()

    def stopProducing(self) -> None:
        self.cancel()
        self.source.loseConnection()

    def cancel(self) -> None:
        """No `stalled()` call: the browser's connection is over."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
