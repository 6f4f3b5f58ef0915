"""Emulated guest memory, grants and event channels: real files, sockets and reactor."""

import ctypes
import os
import socket
import struct

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactor
from zope.interface.verify import verifyObject

from xend_vfb.errors import GuestError, XendVfbError
from xend_vfb.guestmem import guestmemFor
from xend_vfb.guestmem.base import PAGE_SIZE, MappedRegion
from xend_vfb.guestmem.emulated import (
    GRANT_ENTRY,
    GRANT_TABLE_ENTRIES,
    GTF_PERMIT_ACCESS,
    EmulatedEventChannels,
    EmulatedForeignMemory,
    EmulatedGuestMemory,
    createGuestMemory,
    destroyGuestMemory,
    guestDir,
)
from xend_vfb.guestmem.interfaces import (
    IEventChannel,
    IEventChannels,
    IForeignMemory,
    IGuestMemory,
    IGuestPages,
    IMappedRegion,
)

DOMID = 3
FRAMES = 64


@pytest.fixture
def runDir(tmp_path):
    path = tmp_path / "run"
    createGuestMemory(path, DOMID, FRAMES * PAGE_SIZE)
    yield path
    destroyGuestMemory(path, DOMID)


@pytest.fixture
def guest(runDir):
    memory = EmulatedGuestMemory(runDir, DOMID)
    yield memory
    memory.close()


@pytest.fixture
def foreign(runDir):
    return EmulatedForeignMemory(runDir)


@pytest.fixture
def channels(runDir):
    bound = EmulatedEventChannels(runDir)
    yield bound
    bound.close()


class Counter:
    """An onEvent handler that counts calls and can wait for the next one."""

    def __init__(self):
        self.calls = 0
        self._waiting = []

    def __call__(self):
        self.calls += 1
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.calls)

    def next(self, timeout=5.0):
        d = defer.Deferred()
        self._waiting.append(d)
        return d.addTimeout(timeout, reactor)


@pytest.fixture
def manual(runDir):
    """Backend-side event channels whose socket the test reads itself: `read()` runs
    the reader once, as the reactor does when the socket is readable.  What a read
    finds is what was sent before it, so a read that calls nobody proves nothing
    is left."""
    memoryReactor = MemoryReactor()
    bound = EmulatedEventChannels(runDir, memoryReactor)

    def read():
        for reader in memoryReactor.getReaders():
            reader.doRead()

    bound.read = read
    yield bound
    bound.close()


# -- interfaces ------------------------------------------------------------------------


def test_foreignMemoryProvidesInterface(foreign):
    assert verifyObject(IForeignMemory, foreign)


def test_eventChannelsProvidesInterface(channels):
    assert verifyObject(IEventChannels, channels)


def test_eventChannelProvidesInterface(guest, channels):
    port = guest.allocUnbound(Counter())
    assert verifyObject(IEventChannel, channels.bindInterdomain(DOMID, port, Counter()))


def test_guestMemoryProvidesInterface(guest):
    assert verifyObject(IGuestMemory, guest)
    assert verifyObject(IGuestPages, guest.allocPages(1))


def test_mappedRegionProvidesInterface(guest, foreign):
    pages = guest.allocPages(1)
    with foreign.mapFrames(DOMID, pages.frames, writable=False) as region:
        assert verifyObject(IMappedRegion, region)


# -- the host stand-in's part -------------------------------------------------------------


def test_createGuestMemoryLaysOutTheDomainDirectory(tmp_path):
    directory = createGuestMemory(tmp_path, 7, 16 * PAGE_SIZE)
    assert directory == guestDir(tmp_path, 7) == tmp_path / "guests" / "7"
    assert (directory / "memory").stat().st_size == 16 * PAGE_SIZE
    assert (directory / "grants").read_bytes() == bytes(GRANT_TABLE_ENTRIES * GRANT_ENTRY.size)
    assert (directory / "evtchn").is_dir()


def test_createGuestMemoryRefusesAnExistingDomain(runDir):
    with pytest.raises(XendVfbError, match="domain 3 already has guest memory"):
        createGuestMemory(runDir, DOMID, PAGE_SIZE)


@pytest.mark.parametrize("size", [0, -4096, 4095, 4097, "4096"])
def test_createGuestMemoryRefusesBadSizes(tmp_path, size):
    with pytest.raises(ValueError, match="multiple of 4096"):
        createGuestMemory(tmp_path, 1, size)


@pytest.mark.parametrize("domid", [-1, 0x7FF0, "1", "../x", True])
def test_badDomainIdsNeverReachPaths(tmp_path, domid):
    with pytest.raises(ValueError, match="invalid domain id"):
        createGuestMemory(tmp_path, domid, PAGE_SIZE)


def test_destroyGuestMemoryKeepsOtherFilesAndIsIdempotent(tmp_path):
    directory = createGuestMemory(tmp_path, 2, PAGE_SIZE)
    (directory / "input.jsonl").write_text("{}\n")
    destroyGuestMemory(tmp_path, 2)
    assert sorted(os.listdir(directory)) == ["input.jsonl"]
    (directory / "input.jsonl").unlink()
    destroyGuestMemory(tmp_path, 2)
    assert not directory.exists()


# -- mapping frames ---------------------------------------------------------------------


def test_backendReadsWhatTheGuestWrote(guest, foreign):
    pages = guest.allocPages(3)
    pages.view[:] = bytes(range(256)) * (3 * PAGE_SIZE // 256)
    with foreign.mapFrames(DOMID, pages.frames, writable=False) as region:
        assert len(region.view) == 3 * PAGE_SIZE
        assert region.view == pages.view
        pages.view[5] = 0xAB
        assert region.view[5] == 0xAB  # shared, not a copy


def test_framesAreMappedInTheOrderGiven(guest, foreign):
    pages = guest.allocPages(3)
    for index in range(3):
        pages.view[index * PAGE_SIZE : (index + 1) * PAGE_SIZE] = bytes([index + 1]) * PAGE_SIZE
    a, b, c = pages.frames
    with foreign.mapFrames(DOMID, [c, a, a, b], writable=False) as region:
        assert [region.view[i * PAGE_SIZE] for i in range(4)] == [3, 1, 1, 2]


def test_writableMappingWritesGuestMemory(guest, foreign):
    pages = guest.allocPages(1)
    with foreign.mapFrames(DOMID, pages.frames, writable=True) as region:
        assert region.writable
        region.view[0:4] = b"ring"
    assert bytes(pages.view[0:4]) == b"ring"


def test_readOnlyMappingRefusesWrites(guest, foreign):
    pages = guest.allocPages(1)
    with foreign.mapFrames(DOMID, pages.frames, writable=False) as region:
        assert not region.writable
        with pytest.raises(TypeError):
            region.view[0] = 1


@pytest.mark.parametrize("frame", [-1, FRAMES, FRAMES + 1, 2**32, 2**64, 2**200, "1", 1.0, True])
def test_invalidFramesAreGuestErrorsNamingTheFrame(foreign, frame):
    with pytest.raises(GuestError, match=f"domain 3: frame {frame!r} does not exist"):
        foreign.mapFrames(DOMID, [1, frame], writable=False)


def test_noFramesIsAValueError(foreign):
    with pytest.raises(ValueError, match="no frames"):
        foreign.mapFrames(DOMID, [], writable=False)


def test_mappingAGoneDomainIsAGuestError(foreign):
    with pytest.raises(GuestError, match="domain 9 has no guest memory"):
        foreign.mapFrames(9, [1], writable=False)


def test_closeReleasesTheView(guest, foreign):
    region = foreign.mapFrames(DOMID, guest.allocPages(1).frames, writable=False)
    region.close()
    region.close()
    with pytest.raises(ValueError, match="released"):
        region.view[0]


def test_slicesOutliveCloseSafely(guest, foreign):
    pages = guest.allocPages(2)
    pages.view[PAGE_SIZE : PAGE_SIZE + 3] = b"abc"
    region = foreign.mapFrames(DOMID, pages.frames, writable=False)
    tail = region.view[PAGE_SIZE:]
    region.close()
    del region
    assert bytes(tail[:3]) == b"abc"  # still mapped: the slice keeps it


def test_unmapHappensWhenTheLastViewGoes():
    unmapped = []
    buffer = bytearray(2 * PAGE_SIZE)
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    region = MappedRegion(address, 2, True, lambda a, n: unmapped.append((a, n)))
    head = region.view[:10]
    region.close()
    assert unmapped == []
    del head
    assert unmapped == [(address, 2)]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.integers(min_value=-5, max_value=FRAMES + 5), min_size=1, max_size=8))
def test_anyFrameListMapsExactlyOrFailsCleanly(runDir, foreign, frames):
    memory = b"".join(bytes([frame + 1]) * PAGE_SIZE for frame in range(FRAMES))
    with open(runDir / "guests" / str(DOMID) / "memory", "r+b") as file:
        file.write(memory)
    try:
        region = foreign.mapFrames(DOMID, frames, writable=False)
    except GuestError:
        assert any(not 0 <= f < FRAMES for f in frames)
        return
    with region:
        expected = b"".join(memory[f * PAGE_SIZE : (f + 1) * PAGE_SIZE] for f in frames)
        assert region.view == expected


# -- the guest's allocator ---------------------------------------------------------------


def test_allocPagesIsConsecutiveZeroedAndNeverFrameZero(guest):
    first = guest.allocPages(2)
    assert first.frames[0] >= 1
    assert first.frames == tuple(range(first.frames[0], first.frames[0] + 2))
    first.view[:] = b"\xff" * len(first.view)
    guest.freePages(first)
    again = guest.allocPages(2)
    assert again.frames == first.frames
    assert again.view == bytes(2 * PAGE_SIZE)


def test_allocPagesWhenFullIsAnError(guest):
    guest.allocPages(FRAMES - 1)
    with pytest.raises(XendVfbError, match="no 1 consecutive free frames"):
        guest.allocPages(1)


def test_guestMemoryOfAMissingDomain(runDir):
    with pytest.raises(XendVfbError, match="domain 8 has no guest memory"):
        EmulatedGuestMemory(runDir, 8)


# -- grants ------------------------------------------------------------------------------


def test_mapGrantMapsTheGrantedFrame(guest, foreign):
    pages = guest.allocPages(1)
    pages.view[0:5] = b"hello"
    gref = guest.grantAccess(pages.frames[0])
    assert gref >= 8  # 0..7 are the toolstack's
    with foreign.mapGrant(DOMID, gref, writable=True) as region:
        assert len(region.view) == PAGE_SIZE
        assert bytes(region.view[0:5]) == b"hello"
        region.view[0:5] = b"HELLO"
    assert bytes(pages.view[0:5]) == b"HELLO"


def test_readOnlyGrant(guest, foreign):
    gref = guest.grantAccess(guest.allocPages(1).frames[0], readonly=True)
    with pytest.raises(GuestError, match=f"grant reference {gref} is read-only"):
        foreign.mapGrant(DOMID, gref, writable=True)
    foreign.mapGrant(DOMID, gref, writable=False).close()


def test_endAccessRevokes(guest, foreign):
    gref = guest.grantAccess(guest.allocPages(1).frames[0])
    guest.endAccess(gref)
    with pytest.raises(GuestError, match=f"grant reference {gref} is not granted"):
        foreign.mapGrant(DOMID, gref, writable=False)


@pytest.mark.parametrize("gref", [0, 7, 100, -1, GRANT_TABLE_ENTRIES, 2**40, "8", True])
def test_invalidGrantReferences(guest, foreign, gref):
    with pytest.raises(GuestError, match=r"grant reference .* (does not exist|is not granted)"):
        foreign.mapGrant(DOMID, gref, writable=False)


def _writeGrant(runDir, gref, flags, domid, frame):
    with open(runDir / "guests" / str(DOMID) / "grants", "r+b") as table:
        table.seek(gref * GRANT_ENTRY.size)
        table.write(GRANT_ENTRY.pack(flags, domid, frame))


def test_hostileGrantEntries(runDir, foreign):
    _writeGrant(runDir, 9, GTF_PERMIT_ACCESS, 0, FRAMES + 100)
    with pytest.raises(GuestError, match=f"frame {FRAMES + 100} does not exist"):
        foreign.mapGrant(DOMID, 9, writable=False)
    _writeGrant(runDir, 10, GTF_PERMIT_ACCESS, 5, 1)
    with pytest.raises(GuestError, match="is for domain 5, not 0"):
        foreign.mapGrant(DOMID, 10, writable=False)
    _writeGrant(runDir, 11, 2, 0, 1)  # GTF_accept_transfer: not a mapping grant
    with pytest.raises(GuestError, match="is not granted"):
        foreign.mapGrant(DOMID, 11, writable=False)


def test_grantTableEntryLayout(runDir, guest):
    gref = guest.grantAccess(5, readonly=True)
    table = (runDir / "guests" / str(DOMID) / "grants").read_bytes()
    entry = table[gref * 8 : gref * 8 + 8]
    assert struct.unpack("<HHI", entry) == (GTF_PERMIT_ACCESS | 4, 0, 5)


# -- event channels ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_notifyBothWays(guest, channels):
    guestEvents, backendEvents = Counter(), Counter()
    port = guest.allocUnbound(guestEvents)
    channel = channels.bindInterdomain(DOMID, port, backendEvents)
    assert channel.localPort >= 1
    guest.notify(port)
    yield backendEvents.next()
    channel.notify()
    yield guestEvents.next()
    assert (guestEvents.calls, backendEvents.calls) == (1, 1)


def test_notificationsAreCoalesced(guest, manual):
    events = Counter()
    port = guest.allocUnbound(Counter())
    manual.bindInterdomain(DOMID, port, events)
    for _ in range(5):
        guest.notify(port)
    manual.read()
    assert events.calls == 1
    manual.read()  # all five were taken by the first read
    assert events.calls == 1


def test_aFloodOfNotificationsNeverFails(guest, manual):
    events = Counter()
    port = guest.allocUnbound(Counter())
    manual.bindInterdomain(DOMID, port, events)
    for _ in range(1000):  # far past the socket's queue: the extra ones merge
        guest.notify(port)
    for _ in range(8):
        manual.read()
    assert 1 <= events.calls <= 4
    before = events.calls
    manual.read()  # nothing left
    assert events.calls == before


def test_notifyingAnUnboundPortIsANoOp(guest, manual):
    events = Counter()
    port = guest.allocUnbound(Counter())
    guest.notify(port)  # no backend yet: the event is lost, as on Xen
    manual.bindInterdomain(DOMID, port, events)
    manual.read()
    assert events.calls == 0
    guest.notify(port)  # once bound, it arrives
    manual.read()
    assert events.calls == 1


@pytest_twisted.inlineCallbacks
def test_rebindAfterTheBackendClosesItsEnd(guest, channels, manual):
    first, second, guestEvents = Counter(), Counter(), Counter()
    port = guest.allocUnbound(guestEvents)
    channel = channels.bindInterdomain(DOMID, port, first)
    channel.close()
    channel.close()
    guest.notify(port)  # nobody bound: silently dropped
    channel.notify()  # closed end: nothing
    again = manual.bindInterdomain(DOMID, port, second)
    manual.read()
    assert second.calls == 0  # the dropped one is not delivered late
    guest.notify(port)
    manual.read()
    again.notify()
    yield guestEvents.next()
    assert (first.calls, second.calls, guestEvents.calls) == (0, 1, 1)
    again.close()


@pytest_twisted.inlineCallbacks
def test_rebindAfterTheBackendDied(runDir, guest, channels):
    port = guest.allocUnbound(Counter())
    # A backend killed without closing leaves its socket file behind.
    path = runDir / "guests" / str(DOMID) / "evtchn" / f"{port}.backend"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(path))
    assert path.exists()
    guest.notify(port)  # the dead end refuses: still a no-op
    events = Counter()
    channels.bindInterdomain(DOMID, port, events)
    guest.notify(port)
    yield events.next()


def test_aLiveBackendEndCannotBeBoundTwice(runDir, guest, channels):
    port = guest.allocUnbound(Counter())
    channels.bindInterdomain(DOMID, port, Counter())
    with pytest.raises(GuestError, match=f"port {port} is already bound"):
        EmulatedEventChannels(runDir).bindInterdomain(DOMID, port, Counter())


def test_bindingAPortTheGuestDidNotAllocate(guest, channels):
    with pytest.raises(GuestError, match="domain 3: event channel port 5 is not allocated"):
        channels.bindInterdomain(DOMID, 5, Counter())


@pytest.mark.parametrize("port", [0, -1, 1 << 17, 2**40, "1", True, None])
def test_invalidPorts(channels, port):
    with pytest.raises(GuestError, match=f"port {port!r} is not valid"):
        channels.bindInterdomain(DOMID, port, Counter())


def test_bindingInAGoneDomain(channels):
    with pytest.raises(GuestError, match="domain 9 has no event channels"):
        channels.bindInterdomain(9, 1, Counter())


def test_guestClosingItsPort(guest, channels):
    port = guest.allocUnbound(Counter())
    channel = channels.bindInterdomain(DOMID, port, Counter())
    guest.closePort(port)
    channel.notify()  # the guest end is gone: no-op
    channel.close()
    with pytest.raises(GuestError, match="not allocated"):
        channels.bindInterdomain(DOMID, port, Counter())
    with pytest.raises(ValueError, match="not open"):
        guest.notify(port)


def test_guestPortsAreTheLowestFree(guest):
    assert [guest.allocUnbound(Counter()) for _ in range(3)] == [1, 2, 3]
    guest.closePort(2)
    assert guest.allocUnbound(Counter()) == 2


def test_guestPortsOfferedToDomainZeroOnly(guest):
    with pytest.raises(ValueError, match="domain 0 only"):
        guest.allocUnbound(Counter(), remoteDomid=4)


@pytest_twisted.inlineCallbacks
def test_aFailingHandlerDoesNotStopTheChannel(guest, channels):
    events = Counter()

    def handler():
        events()
        raise RuntimeError("boom")

    port = guest.allocUnbound(Counter())
    channels.bindInterdomain(DOMID, port, handler)
    guest.notify(port)
    yield events.next()
    guest.notify(port)
    yield events.next()
    assert events.calls == 2


def test_closeUnbindsEveryChannel(runDir, guest):
    bound = EmulatedEventChannels(runDir)
    ports = [guest.allocUnbound(Counter()) for _ in range(2)]
    for port in ports:
        bound.bindInterdomain(DOMID, port, Counter())
    bound.close()
    left = sorted(os.listdir(runDir / "guests" / str(DOMID) / "evtchn"))
    assert left == ["1.guest", "2.guest"]


@pytest_twisted.inlineCallbacks
def test_longRunDirectories(tmp_path):
    runDir = tmp_path / ("x" * 60) / ("y" * 60)
    createGuestMemory(runDir, DOMID, 4 * PAGE_SIZE)
    memory = EmulatedGuestMemory(runDir, DOMID)
    bound = EmulatedEventChannels(runDir)
    events = Counter()
    port = memory.allocUnbound(Counter())
    bound.bindInterdomain(DOMID, port, events)
    memory.notify(port)
    yield events.next()
    bound.close()
    memory.close()
    destroyGuestMemory(runDir, DOMID)


def test_guestmemForEmulated(runDir):
    memory, bound = guestmemFor("emulated", runDir)
    assert isinstance(memory, EmulatedForeignMemory)
    assert isinstance(bound, EmulatedEventChannels)
    bound.close()


def test_guestmemForUnknownMode(runDir):
    with pytest.raises(ValueError, match="Unknown guest memory mode: 'hvm'"):
        guestmemFor("hvm", runDir)
