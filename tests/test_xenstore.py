"""The xenstore layer against a real xenstored (the embedded C daemon)."""

import errno
import os
import signal

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from xend_vfb.errors import (
    TransactionConflict,
    XenstoreConnectionError,
    XenstoreError,
    XenstoreTimeout,
)
from xend_vfb.procid import ProcessId
from xend_vfb.xenstore import IWatch, IXenstore, connect, defaultPath
from xend_vfb.xenstore.interfaces import ITransaction


def test_interface(xs):
    assert verifyObject(IXenstore, xs)


@pytest_twisted.inlineCallbacks
def test_write_read_and_missing(xs):
    yield xs.write("/a/b", "hello")
    assert (yield xs.read("/a/b")) == "hello"
    assert (yield xs.read("/a")) == ""
    with pytest.raises(XenstoreError) as info:
        yield xs.read("/a/nothing")
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == "xenstore: /a/nothing: No such file or directory (ENOENT)"
    assert (yield xs.readOrNone("/a/nothing")) is None


@pytest_twisted.inlineCallbacks
def test_empty_value_round_trips(xs):
    # pyxs's own client refuses an empty value; the daemon accepts it.
    yield xs.write("/e", "")
    assert (yield xs.read("/e")) == ""
    assert (yield xs.exists("/e"))


@pytest_twisted.inlineCallbacks
def test_mkdir_list_rm_exists(xs):
    yield xs.mkdir("/d/x")
    yield xs.write("/d/y/z", "1")
    assert sorted((yield xs.list("/d"))) == ["x", "y"]
    assert (yield xs.list("/nowhere")) == []
    assert (yield xs.exists("/d/x"))
    yield xs.rm("/d")
    assert not (yield xs.exists("/d/y/z"))
    assert not (yield xs.exists("/d"))
    yield xs.rm("/d")  # removing what is gone is not an error


@pytest_twisted.inlineCallbacks
def test_permissions_round_trip(xs):
    yield xs.write("/local/domain/5/device/vfb/0/state", "1")
    yield xs.setPerms("/local/domain/5/device/vfb/0", ["n5", "r0"])
    assert (yield xs.getPerms("/local/domain/5/device/vfb/0")) == ["n5", "r0"]
    with pytest.raises(ValueError, match="invalid xenstore permission 'x5' for '/p'"):
        xs.setPerms("/p", ["x5"])


@pytest.mark.parametrize(
    "path",
    ["/caf\u00e9", "relative//double", "/trailing/", "/with space", "/bad\nnewline", ""],
)
def test_invalid_paths_are_refused_naming_the_path(xs, path):
    with pytest.raises(ValueError) as info:
        xs.write(path, "v")
    assert str(info.value) == f"invalid xenstore path {path!r}"


@pytest.mark.parametrize("value", ["caf\u00e9", "tab\there", "nul\0", "new\nline"])
def test_invalid_values_are_refused_naming_the_path(xs, value):
    with pytest.raises(ValueError) as info:
        xs.write("/v", value)
    assert str(info.value) == (
        f"invalid value for xenstore path '/v': {value!r} is not printable ASCII"
    )


@pytest_twisted.inlineCallbacks
def test_values_written_by_others_never_fail_to_decode(xs, xenstored):
    # A guest may write any bytes; the layer hands them over as str.
    os.system(f"XENSTORED_PATH={xenstored.socketPath} xenstore-write /raw $(printf 'a\\xffb')")
    assert (yield xs.read("/raw")) == "a\ufffdb"


@pytest_twisted.inlineCallbacks
def test_transaction_commits(xs):
    def body(tx):
        assert verifyObject(ITransaction, tx)
        d = tx.write("/t/one", "1")
        d.addCallback(lambda _: tx.write("/t/two", "2"))
        d.addCallback(lambda _: "done")
        return d

    assert (yield xs.transaction(body)) == "done"
    assert (yield xs.read("/t/two")) == "2"


@pytest_twisted.inlineCallbacks
def test_conflicting_transaction_is_rerun(xs, xenstored):
    other = yield connect(xenstored.socketPath)
    attempts = []

    @pytest_twisted.inlineCallbacks
    def body(tx):
        attempts.append(tx.id)
        count = yield tx.read("/counter")
        if len(attempts) == 1:
            yield other.write("/counter", "10")  # a concurrent writer
        yield tx.write("/counter", str(int(count) + 1))

    yield xs.write("/counter", "0")
    yield xs.transaction(body)
    assert len(attempts) == 2
    assert (yield xs.read("/counter")) == "11"
    other.close()


@pytest_twisted.inlineCallbacks
def test_transaction_gives_up_after_its_bound(xs, xenstored):
    other = yield connect(xenstored.socketPath)

    @pytest_twisted.inlineCallbacks
    def alwaysConflicting(tx):
        yield tx.read("/c")
        yield other.write("/c", "x")
        yield tx.write("/c", "mine")

    yield xs.write("/c", "0")
    with pytest.raises(TransactionConflict, match="still conflicting after 3 attempts"):
        yield xs.transaction(alwaysConflicting, attempts=3)
    other.close()


@pytest_twisted.inlineCallbacks
def test_failing_transaction_is_aborted(xs):
    @pytest_twisted.inlineCallbacks
    def body(tx):
        yield tx.write("/aborted/key", "1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        yield xs.transaction(body)
    assert not (yield xs.exists("/aborted/key"))


@pytest_twisted.inlineCallbacks
def test_watch_fires_in_reactor_after_registration_event(xs):
    seen = []
    arrived = Deferred()

    def changed(path):
        seen.append(path)
        if path.endswith("/state") and not arrived.called:
            arrived.callback(None)

    yield xs.write("/w/state", "1")
    watch = yield xs.watch("/w", changed)
    assert verifyObject(IWatch, watch)
    yield xs.read("/w/state")  # a round trip: the registration event came before it
    assert seen == []  # ... and was consumed by the layer
    yield xs.write("/w/state", "2")
    yield arrived
    assert seen == ["/w/state"]


@pytest_twisted.inlineCallbacks
def test_unwatch_stops_events_and_nothing_spins(xs):
    seen, still = [], []
    watch = yield xs.watch("/u", seen.append)
    yield xs.watch("/u", still.append)
    yield xs.write("/u/a", "1")
    yield xs.read("/u/a")
    yield watch.cancel()
    yield xs.write("/u/a", "2")
    # Events for a path no longer watched are dropped; the connection keeps working.
    # xenstored queues a write's events before it answers a later request, so once
    # the read is answered every event of the second write has come.
    assert (yield xs.read("/u/a")) == "2"
    assert still == ["/u/a", "/u/a"]
    assert seen == ["/u/a"]


@pytest_twisted.inlineCallbacks
def test_failing_watch_callback_does_not_break_the_connection(xs):
    def broken(path):
        raise RuntimeError("callback bug")

    yield xs.watch("/b", broken)
    yield xs.write("/b/x", "1")
    assert (yield xs.read("/b/x")) == "1"


@pytest_twisted.inlineCallbacks
def test_request_in_flight_when_daemon_dies_fails(xs, xenstored):
    process = xenstored.running()
    os.kill(process.pid, signal.SIGSTOP)
    pending = xs.read("/anything")
    lost = xs.whenLost()
    assert not pending.called  # a stopped daemon cannot answer: it stays in flight
    os.kill(process.pid, signal.SIGKILL)
    os.kill(process.pid, signal.SIGCONT)
    # "lost", not the 10 s timeout's "did not answer": failed by the connection's end.
    with pytest.raises(XenstoreConnectionError, match="connection to xenstored at .* lost"):
        yield pending
    yield lost
    with pytest.raises(XenstoreConnectionError, match="not connected"):
        yield xs.read("/anything")


@pytest_twisted.inlineCallbacks
def test_request_to_a_hung_daemon_times_out(xenstored):
    client = yield connect(xenstored.socketPath, timeout=0.3)
    process = xenstored.running()
    os.kill(process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(XenstoreTimeout, match="did not answer for /x in 0.3 s"):
            yield client.read("/x")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    client.close()


@pytest_twisted.inlineCallbacks
def test_reconnect_after_daemon_restart(xenstored):
    client = yield connect(xenstored.socketPath)
    lost = client.whenLost()
    xenstored.stop()
    yield lost
    # Connecting while the daemon is still down waits for it to come back.
    reactor.callLater(0.2, xenstored.start)
    again = yield connect(xenstored.socketPath, retryFor=5)
    yield again.write("/back", "yes")
    assert (yield again.read("/back")) == "yes"
    again.close()


@pytest_twisted.inlineCallbacks
def test_connect_to_nothing_fails_clearly(tmp_path):
    path = str(tmp_path / "no-socket")
    with pytest.raises(XenstoreConnectionError) as info:
        yield connect(path, retryFor=0.1)
    assert str(info.value).startswith(f"cannot connect to xenstored at {path}: ")


def test_default_path_honours_xenstored_path(tmp_path):
    assert defaultPath({"XENSTORED_PATH": "/some/socket"}) == "/some/socket"
    assert defaultPath({"XENSTORED_RUNDIR": str(tmp_path)}) in (
        str(tmp_path / "socket"), "/dev/xen/xenbus", "/proc/xen/xenbus")


def test_embedded_daemon_is_reused_and_stops(xenstored):
    first = xenstored.running()
    assert xenstored.start() == first
    assert os.path.exists(xenstored.tracePath)
    xenstored.stop()
    assert xenstored.running() is None
    assert not first.alive()
    assert not os.path.exists(xenstored.socketPath)


def test_process_id_rules_out_pid_reuse():
    me = ProcessId.of(os.getpid())
    assert me.alive()
    assert ProcessId.parse(str(me)) == me
    assert not ProcessId(me.pid, me.start + 1).alive()
    assert ProcessId.parse("garbage") is None


# -- the reply timer: the daemon's silence, not the reactor's -----------------------------------


def fakeClient(timeout=10.0):
    """A client on a fake connection and a fake clock (also its monotonic clock):
    (client, protocol, transport, clock)."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from xend_vfb.xenstore.client import Xenstore, XenstoreProtocol

    clock = Clock()
    client = Xenstore(clock, "fake", timeout=timeout, monotonic=clock.seconds)
    protocol = XenstoreProtocol(client)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return client, protocol, transport, clock


def reply(transport, payload=b"value"):
    """The daemon's READ reply to the one request the client wrote since the last reply."""
    from pyxs._internal import Op

    from xend_vfb.xenstore.client import HEADER

    _, rqId, txId, _ = HEADER.unpack_from(transport.value())
    transport.clear()
    return HEADER.pack(Op.READ, rqId, txId, len(payload)) + payload


def failure(d):
    box = []
    d.addErrback(box.append)
    return box[0].value if box else None


def test_a_blocked_reactor_is_not_the_daemon_timing_out():
    client, protocol, transport, clock = fakeClient()
    pending = client.read("/x")
    answer = reply(transport)
    # The reactor does nothing for 30 s (a blocking callback), then runs its overdue
    # timers before reading the reply that came meanwhile.
    clock.advance(30)
    assert not pending.called
    protocol.dataReceived(answer)
    assert pending.result == "value"


def test_a_silent_daemon_still_times_out_after_a_stall():
    client, protocol, transport, clock = fakeClient()
    pending = client.read("/x")
    clock.advance(30)  # stalled past the deadline: a whole timeout more, from now
    clock.advance(9.9)
    assert not pending.called
    clock.advance(0.2)
    assert isinstance(failure(pending), XenstoreTimeout)


def test_a_daemon_answering_others_is_busy_not_hung():
    client, protocol, transport, clock = fakeClient()
    slow = client.read("/x")
    slowAnswer = reply(transport)
    clock.advance(6)
    other = client.read("/x")
    protocol.dataReceived(reply(transport, b"other"))  # heard from at 6 s
    assert other.result == "other"
    clock.advance(5)  # 11 s after asking, 5 s after the daemon last spoke
    assert not slow.called
    protocol.dataReceived(slowAnswer)
    assert slow.result == "value"
    # Silent for a whole timeout: failed.
    silent = client.read("/x")
    clock.advance(10)
    assert isinstance(failure(silent), XenstoreTimeout)
