"""Finding and connecting to xenstored, the way Xen's own tools do.

`XENSTORED_PATH` wins; a path under /dev or /proc is the xenbus device (a
guest or a dom0 without a socket), anything else a Unix socket.  Otherwise
the daemon's socket in `XENSTORED_RUNDIR` (default /var/run/xenstored), and
failing that the xenbus device.
"""

import os
from collections import Counter, deque

from pyxs._internal import Op
from twisted.internet import abstract, fdesc, main
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from xend_vfb.errors import XenstoreConnectionError
from xend_vfb.xenstore.client import DEFAULT_TIMEOUT, HEADER, Xenstore, XenstoreProtocol

__all__ = ["connect", "defaultPath"]

XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")


def defaultPath(environ: dict[str, str] | None = None) -> str:
    """Where xenstored is to be found on this host."""
    env = os.environ if environ is None else environ
    if env.get("XENSTORED_PATH"):
        return env["XENSTORED_PATH"]
    socket = os.path.join(env.get("XENSTORED_RUNDIR", "/var/run/xenstored"), "socket")
    if os.path.exists(socket):
        return socket
    for device in XENBUS_DEVICES:
        if os.path.exists(device):
            return device
    return socket


def _isDevice(path: str) -> bool:
    return path.startswith(("/dev/", "/proc/"))


class _DeviceTransport(abstract.FileDescriptor):
    """A transport over one read-write descriptor (the xenbus device).

    Not `stdio.StandardIO(stdin=fd, stdout=fd)`: that registers a reader and a
    writer for the same descriptor, and a reactor keys its selectables by
    descriptor (epoll), so replies went to the writer and were never read.
    Writes go straight to the device: Linux's xenbus device never reports
    itself writable to poll (only readable, when a reply is queued), so a
    transport waiting for POLLOUT never sends; its write() never blocks, it
    takes each chunk whole and queues the request once complete.

    WATCH and UNWATCH are held back while other requests on this descriptor
    await their replies.  Linux (seen on 6.1) handles those two synchronously
    inside write(), holding the file's message mutex until xenstored answers,
    while the kernel thread that reads xenstored's ring needs the same mutex to
    hand over the reply of an earlier request: with one in flight, the kernel's
    xenbus thread, its xenwatch thread and this process all hang, and every
    xenstore user in dom0 with them.  The transport therefore frames the
    messages both ways (each write() is one message) and counts replies.
    """

    _SYNCHRONOUS = (Op.WATCH, Op.UNWATCH)

    def __init__(self, fd: int, protocol, reactor) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._inFlight: Counter[int] = Counter()  # req_id -> requests awaiting a reply
        self._held: deque[bytes] = deque()
        self._incoming = bytearray()
        fdesc.setNonBlocking(fd)
        self.protocol = protocol
        self.connected = 1
        protocol.makeConnection(self)
        self.startReading()

    def fileno(self) -> int:
        return self._fd

    def doRead(self):
        return fdesc.readFromFD(self._fd, self._received)

    def _received(self, data: bytes) -> None:
        self._incoming += data
        while len(self._incoming) >= HEADER.size:
            op, rqId, _, size = HEADER.unpack_from(self._incoming)
            if len(self._incoming) < HEADER.size + size:
                break
            del self._incoming[: HEADER.size + size]
            if op != Op.WATCH_EVENT and self._inFlight[rqId] > 0:
                self._inFlight[rqId] -= 1
                if not self._inFlight[rqId]:
                    del self._inFlight[rqId]
        self.protocol.dataReceived(data)
        while self._held and self.connected:
            if HEADER.unpack_from(self._held[0])[0] in self._SYNCHRONOUS and self._inFlight:
                break
            self._send(self._held.popleft())

    def write(self, data: bytes) -> None:
        """Send one whole message (the protocol writes each message in one call)."""
        if not self.connected or self._fd < 0:
            return
        op = HEADER.unpack_from(data)[0]
        if self._held or (op in self._SYNCHRONOUS and self._inFlight):
            self._held.append(bytes(data))
            return
        self._send(data)

    def _send(self, data: bytes) -> None:
        op, rqId = HEADER.unpack_from(data)[:2]
        if op not in self._SYNCHRONOUS:
            self._inFlight[rqId] += 1
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self.connectionLost(Failure(XenstoreConnectionError(f"xenbus write failed: {e}")))

    def writeSequence(self, iovec) -> None:
        self.write(b"".join(iovec))

    def loseConnection(self, _connDone=None) -> None:
        if self.connected:
            self.stopReading()
            self.connectionLost(Failure(main.CONNECTION_DONE))

    def connectionLost(self, reason) -> None:
        if not self.connected:
            return
        self.connected = 0
        self.stopReading()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.protocol.connectionLost(reason)

    def getPeer(self):
        return None

    def getHost(self):
        return None


@inlineCallbacks
def connect(
    path: str | None = None,
    reactor=None,
    timeout: float = DEFAULT_TIMEOUT,
    retryFor: float = 5.0,
):
    """Connect to xenstored at `path` (default: `defaultPath()`); fires with a `Xenstore`.

    A refused or missing socket is retried for up to `retryFor` seconds: the
    embedded xenstored listens with a backlog of 1, so many processes starting at
    once are refused for a moment, and a daemon being restarted is briefly absent.
    """
    if reactor is None:
        from twisted.internet import reactor
    path = path or defaultPath()
    client = Xenstore(reactor, path, timeout)
    if _isDevice(path):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise XenstoreConnectionError(
                f"cannot open xenstore device {path}: {e.strerror}"
            ) from None
        _DeviceTransport(fd, XenstoreProtocol(client), reactor)
        return client
    endpoint = UNIXClientEndpoint(reactor, path, timeout=timeout)
    factory = Factory.forProtocol(lambda: XenstoreProtocol(client))
    factory.noisy = False  # one connection of many: not worth a log line each
    delay, waited = 0.01, 0.0
    while True:
        try:
            yield endpoint.connect(factory)
            return client
        except ConnectError as e:
            if waited >= retryFor:
                reason = e.osError or e
                raise XenstoreConnectionError(
                    f"cannot connect to xenstored at {path}: {reason}"
                ) from None
        yield deferLater(reactor, delay, lambda: None)
        waited += delay
        delay = min(delay * 2, 0.25)

