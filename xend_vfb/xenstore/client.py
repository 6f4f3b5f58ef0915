"""The xenstore client: pyxs's packet codec under a Twisted protocol.

pyxs 0.4.1 supplies the wire format (`Packet`, `Op`, the `xsd_sockmsg` header
struct and its path checks); its own `Client` is not used because it blocks on
a router thread, never fails a request whose daemon died, and its `Monitor`
can spin.  Here every request is a Deferred matched to its reply by request
id, failed on connection loss or after a timeout, and watch events are
dispatched in the reactor.  A timeout means the daemon sent nothing for that
long while we were listening: a reactor that was blocked (seconds of work in
a callback, a process stopped by a loaded host) does not count against it.
The pitfalls of REFERENCE.md section 10 are all handled in this module: str
in and out, empty values allowed, no Monitor, no request left waiting when
the daemon goes away.
"""

from __future__ import annotations

import errno as errnos
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

from pyxs._internal import Op, Packet
from pyxs.exceptions import InvalidPath
from pyxs.helpers import check_path, check_watch_path
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xend_vfb.errors import (
    TransactionConflict,
    XenstoreConnectionError,
    XenstoreError,
    XenstoreTimeout,
)
from xend_vfb.xenstore.interfaces import ITransaction, IWatch, IXenstore

__all__ = ["XenstoreProtocol", "Xenstore", "encodePath", "encodeValue"]

log = Logger()

HEADER = Packet._struct  # xsd_sockmsg from xs_wire.h: type, req_id, tx_id, len (u32 each)
MAX_PAYLOAD = 4096  # XENSTORE_PAYLOAD_MAX
NUL = b"\0"
DEFAULT_TIMEOUT = 10.0  # seconds a request may wait for its reply
#: A reply timer that fires later than this fraction of the timeout past its time shows that
#: the reactor was not running then: replies may be waiting unread, and the daemon is given a
#: whole timeout again, from now.
STALL_FRACTION = 0.25


def encodePath(path: str, watch: bool = False) -> bytes:
    """`path` as xenstore bytes, or a ValueError naming it."""
    try:
        raw = path.encode("ascii")
        if watch:
            check_watch_path(raw)
        else:
            check_path(raw)
    except (UnicodeEncodeError, InvalidPath):
        raise ValueError(f"invalid xenstore path {path!r}") from None
    return raw


def encodeValue(path: str, value: str) -> bytes:
    """`value` as xenstore bytes: printable ASCII only (empty is fine), else ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"xenstore value for {path!r} must be str, not {type(value).__name__}")
    if not value.isascii() or not value.isprintable():
        raise ValueError(
            f"invalid value for xenstore path {path!r}: {value!r} is not printable ASCII"
        )
    return value.encode("ascii")


def decodeValue(raw: bytes) -> str:
    """A value read from xenstore as str; a guest may write any bytes, so nothing here
    may fail: bytes that are not ASCII become U+FFFD and fail later validation."""
    return raw.decode("ascii", errors="replace")


def _error(path: str | None, payload: bytes) -> XenstoreError:
    name = payload.rstrip(NUL).decode("ascii", errors="replace")
    code = getattr(errnos, name, errnos.EIO)
    where = f"{path}: " if path else ""
    return XenstoreError(code, f"xenstore: {where}{os.strerror(code)} ({name})")


class _Request:
    def __init__(self, path: str | None, deferred: Deferred, sent: float) -> None:
        self.path = path
        self.deferred = deferred
        self.sent = sent
        #: When (monotonic) the reply timer is due, and the timer.
        self.due = 0.0
        self.timer: Any = None


@implementer(IWatch)
class _Watch:
    def __init__(self, client: Xenstore, path: str, token: str, callback: Callable) -> None:
        self.client = client
        self.path = path
        self.token = token
        self.callback = callback
        self.registered: Deferred | None = Deferred()

    def cancel(self) -> Deferred[None]:
        return self.client._unwatch(self)


class XenstoreProtocol(Protocol):
    """Frames packets both ways and routes replies and watch events to the client."""

    def __init__(self, client: Xenstore) -> None:
        self.client = client
        self._buffer = bytearray()

    def connectionMade(self) -> None:
        self.client._connected(self)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            op, rqId, txId, size = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + size:
                return
            payload = bytes(self._buffer[HEADER.size : HEADER.size + size])
            del self._buffer[: HEADER.size + size]
            self.client._packetReceived(op, rqId, payload)

    def sendPacket(self, op: int, rqId: int, txId: int, payload: bytes) -> None:
        self.transport.write(HEADER.pack(op, rqId, txId, len(payload)) + payload)

    def connectionLost(self, reason: Failure) -> None:
        self.client._lost(reason)


class _Ops:
    """The plain operations, for a connection (tx 0) or one transaction."""

    txId = 0

    def _call(self, op: int, payload: bytes, path: str | None) -> Deferred[bytes]:
        raise NotImplementedError

    def read(self, path: str) -> Deferred[str]:
        d = self._call(Op.READ, encodePath(path) + NUL, path)
        d.addCallback(decodeValue)
        return d

    def readOrNone(self, path: str) -> Deferred[str | None]:
        d = self.read(path)
        d.addErrback(_noEntry, None)
        return d

    def write(self, path: str, value: str) -> Deferred[None]:
        return self._ack(Op.WRITE, encodePath(path) + NUL + encodeValue(path, value), path)

    def mkdir(self, path: str) -> Deferred[None]:
        return self._ack(Op.MKDIR, encodePath(path) + NUL, path)

    def rm(self, path: str) -> Deferred[None]:
        d = self._ack(Op.RM, encodePath(path) + NUL, path)
        d.addErrback(_noEntry, None)
        return d

    def list(self, path: str) -> Deferred[list[str]]:
        d = self._call(Op.DIRECTORY, encodePath(path) + NUL, path)
        d.addCallback(_splitNul)
        d.addErrback(_noEntry, [])
        return d

    def exists(self, path: str) -> Deferred[bool]:
        d = self._call(Op.READ, encodePath(path) + NUL, path)
        d.addCallback(lambda _: True)
        d.addErrback(_noEntry, False)
        return d

    def getPerms(self, path: str) -> Deferred[list[str]]:
        d = self._call(Op.GET_PERMS, encodePath(path) + NUL, path)
        d.addCallback(_splitNul)
        return d

    def setPerms(self, path: str, perms: list[str]) -> Deferred[None]:
        for perm in perms:
            if len(perm) < 2 or perm[0] not in "nrwb" or not perm[1:].isdigit():
                raise ValueError(f"invalid xenstore permission {perm!r} for {path!r}")
        payload = encodePath(path) + NUL + b"".join(p.encode("ascii") + NUL for p in perms)
        return self._ack(Op.SET_PERMS, payload, path)

    def _ack(self, op: int, payload: bytes, path: str) -> Deferred[None]:
        d = self._call(op, payload, path)
        d.addCallback(lambda _: None)
        return d


def _splitNul(payload: bytes) -> list[str]:
    return [decodeValue(part) for part in payload.split(NUL) if part]


def _noEntry(failure: Failure, result: Any) -> Any:
    failure.trap(XenstoreError)
    if failure.value.errno != errnos.ENOENT:
        return failure
    return result


@implementer(ITransaction)
class _Transaction(_Ops):
    def __init__(self, client: Xenstore, txId: int) -> None:
        self.client = client
        self.id = self.txId = txId

    def _call(self, op: int, payload: bytes, path: str | None) -> Deferred[bytes]:
        return self.client._request(op, payload, path, self.txId)


@implementer(IXenstore)
class Xenstore(_Ops):
    """A connection to xenstored; make one with `xend_vfb.xenstore.connect`."""

    def __init__(self, reactor: IReactorTime, where: str, timeout: float = DEFAULT_TIMEOUT,
                 monotonic: Callable[[], float] = time.monotonic):
        self.reactor = reactor
        self.where = where
        self.timeout = timeout
        self._monotonic = monotonic
        #: When (monotonic) the daemon's last packet was read.
        self._lastHeard = monotonic()
        self._protocol: XenstoreProtocol | None = None
        self._closed = False
        self._requests: dict[int, _Request] = {}
        self._watches: dict[str, _Watch] = {}
        self._ids = itertools.count(1)
        self._lostWaiters: list[Deferred] = []

    # -- connection life ------------------------------------------------

    def _connected(self, protocol: XenstoreProtocol) -> None:
        self._protocol = protocol

    def _lost(self, reason: Failure) -> None:
        self._protocol = None
        self._closed = True
        error = XenstoreConnectionError(f"connection to xenstored at {self.where} lost")
        requests, self._requests = self._requests, {}
        for request in requests.values():
            if request.timer.active():
                request.timer.cancel()
            request.deferred.errback(error)
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            if watch.registered is not None:
                registered, watch.registered = watch.registered, None
                registered.errback(error)
        waiters, self._lostWaiters = self._lostWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenLost(self) -> Deferred[None]:
        if self._closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lostWaiters.append(d)
        return d

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.transport.loseConnection()
        self._closed = True

    # -- requests -------------------------------------------------------

    def _call(self, op: int, payload: bytes, path: str | None) -> Deferred[bytes]:
        return self._request(op, payload, path, 0)

    def _request(self, op: int, payload: bytes, path: str | None, txId: int) -> Deferred[bytes]:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"xenstore request for {path!r} is too long ({len(payload)} bytes)")
        d: Deferred[bytes] = Deferred()
        if self._protocol is None:
            d.errback(XenstoreConnectionError(f"not connected to xenstored at {self.where}"))
            return d
        rqId = next(self._ids) & 0xFFFFFFFF
        request = self._requests[rqId] = _Request(path, d, self._monotonic())
        self._armTimer(rqId, request, self.timeout)
        self._protocol.sendPacket(op, rqId, txId, payload)
        return d

    def _armTimer(self, rqId: int, request: _Request, delay: float) -> None:
        request.due = self._monotonic() + delay
        request.timer = self.reactor.callLater(delay, self._timerFired, rqId)

    def _timerFired(self, rqId: int) -> None:
        """A reply timer's time came: fail the request only if the daemon has been silent
        for a whole timeout while the reactor ran."""
        request = self._requests[rqId]
        now = self._monotonic()
        if now - request.due > self.timeout * STALL_FRACTION:
            # The reactor was blocked past the deadline, and timers run before pending
            # replies are read: whatever came meanwhile is read next, and a silent daemon
            # fails one timeout from now.
            log.info("xenstore: reactor blocked {late:.1f} s past a reply's deadline; "
                     "waiting {timeout:g} s more", late=now - request.due, timeout=self.timeout)
            self._armTimer(rqId, request, self.timeout)
            return
        deadline = max(request.sent, self._lastHeard) + self.timeout
        if deadline > now:
            # The daemon is answering (others' requests, watch events): it is alive, only busy.
            self._armTimer(rqId, request, deadline - now)
            return
        del self._requests[rqId]
        what = f" for {request.path}" if request.path else ""
        request.deferred.errback(
            XenstoreTimeout(f"xenstored at {self.where} did not answer{what} in {self.timeout:g} s")
        )

    def _packetReceived(self, op: int, rqId: int, payload: bytes) -> None:
        self._lastHeard = self._monotonic()
        if op == Op.WATCH_EVENT:
            self._watchEvent(payload)
            return
        request = self._requests.pop(rqId, None)
        if request is None:
            log.debug("xenstore: late or unknown reply {rqId} ignored", rqId=rqId)
            return
        request.timer.cancel()
        if op == Op.ERROR:
            request.deferred.errback(_error(request.path, payload))
        else:
            request.deferred.callback(payload)

    # -- transactions ---------------------------------------------------

    @inlineCallbacks
    def transaction(self, function: Callable[[ITransaction], Deferred[Any]], attempts: int = 16):
        for _ in range(attempts):
            reply = yield self._call(Op.TRANSACTION_START, NUL, None)
            tx = _Transaction(self, int(reply.rstrip(NUL)))
            try:
                result = yield function(tx)
            except BaseException:
                yield self._endTransaction(tx, commit=False)
                raise
            try:
                yield self._endTransaction(tx, commit=True)
            except XenstoreError as e:
                if e.errno == errnos.EAGAIN:
                    log.debug("xenstore transaction {id} conflicted; rerunning", id=tx.id)
                    continue
                raise
            return result
        raise TransactionConflict(
            errnos.EAGAIN, f"xenstore transaction still conflicting after {attempts} attempts"
        )

    def _endTransaction(self, tx: _Transaction, commit: bool) -> Deferred[bytes]:
        return self._request(Op.TRANSACTION_END, (b"T" if commit else b"F") + NUL, None, tx.id)

    # -- watches --------------------------------------------------------

    @inlineCallbacks
    def watch(self, path: str, callback: Callable[[str], None]):
        raw = encodePath(path, watch=True)
        token = f"xv{next(self._ids)}"
        watch = _Watch(self, path, token, callback)
        self._watches[token] = watch
        registered = watch.registered
        try:
            yield self._call(Op.WATCH, raw + NUL + token.encode() + NUL, path)
        except BaseException:
            self._watches.pop(token, None)
            raise
        # xenstored fires every new watch once; wait (briefly) for that event so
        # the caller's first look at the state comes after it, not before.
        timer = self.reactor.callLater(self.timeout, self._registrationTimedOut, watch)
        try:
            yield registered
        finally:
            if timer.active():
                timer.cancel()
        return watch

    def _registrationTimedOut(self, watch: _Watch) -> None:
        if watch.registered is not None:
            registered, watch.registered = watch.registered, None
            registered.callback(None)

    def _watchEvent(self, payload: bytes) -> None:
        parts = payload.split(NUL)
        if len(parts) < 2:
            log.warn("xenstore: malformed watch event {payload!r}", payload=payload)
            return
        path, token = decodeValue(parts[0]), decodeValue(parts[1])
        watch = self._watches.get(token)
        if watch is None:
            return  # an event already on its way when the watch was removed
        if watch.registered is not None:
            registered, watch.registered = watch.registered, None
            registered.callback(None)
            return
        try:
            watch.callback(path)
        except Exception:
            log.failure("xenstore watch callback for {path} failed", path=watch.path)

    def _unwatch(self, watch: _Watch) -> Deferred[None]:
        if self._watches.pop(watch.token, None) is None or self._protocol is None:
            return succeed(None)
        raw = encodePath(watch.path, watch=True)
        return self._ack(Op.UNWATCH, raw + NUL + watch.token.encode() + NUL, watch.path)

