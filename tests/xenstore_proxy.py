"""A xenstore connection a test can hold, to stop a process at a chosen point.

`XenstoreProxy` listens on its own socket and forwards each connection to the
test's xenstored; give its `socketPath` to a process as ``XENSTORED_PATH``.
`holdAt(op, path)` arms it: the first request the process sends for `op` on
`path` outside a transaction, and everything it sends after that, wait in the proxy, in order,
until `release()`.  What xenstored sends (replies, watch events) keeps
flowing.  A backend whose connect step reads a frontend key is thereby held
inside that step for as long as the test needs: races made deterministic,
without sleeps.
"""

import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol

__all__ = ["XenstoreProxy"]

#: ``struct xsd_sockmsg``: type, req_id, tx_id, len (``xs_wire.h``).
_HEADER = struct.Struct("<IIII")


class _Upstream(Protocol):
    """The proxy's connection to xenstored for one client."""

    def __init__(self, client: "_Client") -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        self.client.transport.loseConnection()


class _Client(Protocol):
    """One process's connection to the proxy: split into packets, passed to the proxy."""

    def __init__(self, proxy: "XenstoreProxy") -> None:
        self.proxy = proxy
        self.upstream: _Upstream | None = None
        self.buffer = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        d = connectProtocol(UNIXClientEndpoint(reactor, self.proxy.target), _Upstream(self))
        d.addCallback(self._connected)

    def _connected(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            op, _, txId, size = _HEADER.unpack_from(self.buffer)
            end = _HEADER.size + size
            if len(self.buffer) < end:
                break
            packet, self.buffer = self.buffer[:end], self.buffer[end:]
            self.proxy._request(self, op, txId, packet)

    def send(self, packet: bytes) -> None:
        self.upstream.transport.write(packet)

    def connectionLost(self, reason=None) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()
        self.proxy._clients.discard(self)
        self.closed.callback(None)


class XenstoreProxy:
    """Forwards to the xenstored at `target`; listens at `socketPath`."""

    def __init__(self, target: str, socketPath: str) -> None:
        self.target = target
        self.socketPath = socketPath
        self._port = None
        self._clients: set[_Client] = set()
        self._armed: tuple[int, bytes, Deferred[None]] | None = None
        self._held: list[tuple[_Client, bytes]] | None = None

    def start(self) -> Deferred:
        factory = Factory.forProtocol(lambda: self._track(_Client(self)))
        d = UNIXServerEndpoint(reactor, self.socketPath).listen(factory)
        d.addCallback(lambda port: setattr(self, "_port", port))
        return d

    def _track(self, client: _Client) -> _Client:
        self._clients.add(client)
        return client

    def stop(self) -> Deferred:
        self.release()
        waits = [client.closed for client in self._clients]
        for client in list(self._clients):
            client.transport.abortConnection()
        if self._port is not None:
            waits.append(self._port.stopListening())
        return gatherResults(waits)

    def holdAt(self, op: int, path: str) -> Deferred[None]:
        """Hold from the next `op` request (a pyxs ``Op``) on exactly `path` outside a
        transaction; fires once one is held."""
        caught: Deferred[None] = Deferred()
        self._armed = (op, path.encode(), caught)
        return caught

    @property
    def holding(self) -> bool:
        return self._held is not None

    def release(self) -> None:
        """Send everything held, in order, and forward as usual from now on."""
        held, self._held = self._held, None
        for client, packet in held or ():
            client.send(packet)

    def _request(self, client: _Client, op: int, txId: int, packet: bytes) -> None:
        if self._held is not None:
            self._held.append((client, packet))
            return
        armed = self._armed
        if armed is not None and op == armed[0] and txId == 0 and \
                packet[_HEADER.size:].split(b"\0", 1)[0] == armed[1]:
            self._armed = None
            self._held = [(client, packet)]
            armed[2].callback(None)
            return
        client.send(packet)
