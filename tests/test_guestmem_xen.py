"""The Xen implementation: its failure here, its bindings, and its logic over fake libraries.

This machine has Xen's libraries but no hypervisor: the real path is tested
for its one clear error and for every declared symbol existing; the code
around the C calls runs against fakes that behave as the headers document.
"""

import ctypes
import errno
import os
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from zope.interface.verify import verifyObject

from tests.helpers_wait import waitFor
from xend_vfb.errors import GuestError, XendVfbError
from xend_vfb.guestmem import guestmemFor, xen
from xend_vfb.guestmem.base import PAGE_SIZE
from xend_vfb.guestmem.interfaces import (
    IEventChannel,
    IEventChannels,
    IForeignMemory,
    IMappedRegion,
)

noHypervisor = pytest.mark.skipif(
    os.path.exists("/dev/xen/privcmd"), reason="a hypervisor is reachable here"
)


@noHypervisor
def test_guestmemForXenFailsWithOneClearMessage(tmp_path):
    with pytest.raises(XendVfbError) as failure:
        guestmemFor("xen", tmp_path)
    assert str(failure.value) == (
        "Xen guest memory is not available: cannot open /dev/xen/privcmd (no hypervisor?); "
        "use emulated mode"
    )


@pytest.mark.skipif(os.path.exists("/dev/xen/evtchn"), reason="a hypervisor is reachable here")
def test_xenEventChannelsFailWithOneClearMessage():
    with pytest.raises(XendVfbError) as failure:
        xen.XenEventChannels()
    assert str(failure.value) == (
        "Xen event channels are not available: cannot open /dev/xen/evtchn (no hypervisor?); "
        "use emulated mode"
    )


@pytest.mark.parametrize(
    "soname, prototypes",
    [
        ("libxenforeignmemory.so.1", xen._FOREIGNMEMORY),
        ("libxengnttab.so.1", xen._GNTTAB),
        ("libxenevtchn.so.1", xen._EVTCHN),
    ],
)
def test_everyDeclaredFunctionExistsInTheRealLibrary(soname, prototypes):
    lib = xen._load(xen._MEMORY, soname, "/dev/null", prototypes)
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(lib, name)
        assert (function.restype, function.argtypes) == (restype, argtypes)


def test_aMissingLibraryIsOneClearMessage():
    with pytest.raises(XendVfbError) as failure:
        xen._load(xen._MEMORY, "libxen-absent.so.1", "/dev/null", {})
    assert str(failure.value) == (
        "Xen guest memory is not available: cannot load libxen-absent.so.1 "
        "(install Xen's user-space libraries); use emulated mode"
    )


def test_aHandleThatCannotOpenSaysWhy():
    def opener(logger, flags):
        ctypes.set_errno(errno.EACCES)
        return None

    with pytest.raises(
        XendVfbError, match=r"cannot open /dev/xen/privcmd: Permission denied \(run"
    ):
        xen._openHandle(xen._MEMORY, "/dev/xen/privcmd", opener)


def test_pfnMatchesThePlatform():
    assert ctypes.sizeof(xen._PFN) == ctypes.sizeof(ctypes.c_ulong)


# -- the logic around the C calls, over fakes -------------------------------------------


class FakeXen:
    """The three libraries as their headers describe them, over process memory."""

    def __init__(self):
        self.badFrames = {}
        self.badGrefs = set()
        self.pages = {}
        self.unmapped = []
        self.closed = []
        self.readFd, self.writeFd = os.pipe()
        self.unmasked = []
        self.notified = []
        self.unbound = []

    # libxenforeignmemory
    def xenforeignmemory_open(self, logger, flags):
        return 1

    def xenforeignmemory_close(self, handle):
        self.closed.append(handle)

    def xenforeignmemory_map(self, handle, domid, prot, count, frames, errors):
        if domid == 99:
            ctypes.set_errno(errno.ESRCH)
            return None
        buffer = ctypes.create_string_buffer(count * PAGE_SIZE)
        for index in range(count):
            frame = frames[index]
            errors[index] = self.badFrames.get(frame, 0)
            buffer[index * PAGE_SIZE] = frame % 256
        address = ctypes.addressof(buffer)
        self.pages[address] = buffer
        return address

    def xenforeignmemory_unmap(self, handle, address, count):
        self.unmapped.append(("foreign", handle, count))

    # libxengnttab
    def xengnttab_open(self, logger, flags):
        return 2

    def xengnttab_close(self, handle):
        self.closed.append(handle)

    def xengnttab_map_grant_ref(self, handle, domid, gref, prot):
        if gref in self.badGrefs:
            ctypes.set_errno(errno.EINVAL)
            return None
        return self.xenforeignmemory_map(handle, domid, prot, 1, [gref], [0])

    def xengnttab_unmap(self, handle, address, count):
        self.unmapped.append(("grant", handle, count))

    # libxenevtchn
    def xenevtchn_open(self, logger, flags):
        return 3

    def xenevtchn_close(self, handle):
        self.closed.append(handle)

    def xenevtchn_fd(self, handle):
        return self.readFd

    def xenevtchn_bind_interdomain(self, handle, domid, remotePort):
        if remotePort == 13:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return remotePort + 100

    def xenevtchn_pending(self, handle):
        return struct.unpack("<I", os.read(self.readFd, 4))[0]

    def xenevtchn_unmask(self, handle, port):
        self.unmasked.append(port)
        return 0

    def xenevtchn_notify(self, handle, port):
        self.notified.append(port)
        return 0

    def xenevtchn_unbind(self, handle, port):
        self.unbound.append(port)
        return 0

    def fire(self, *ports):
        os.write(self.writeFd, b"".join(struct.pack("<I", port) for port in ports))


@pytest.fixture
def fake(monkeypatch):
    library = FakeXen()
    monkeypatch.setattr(xen, "_load", lambda what, soname, device, prototypes: library)
    yield library
    os.close(library.readFd)
    os.close(library.writeFd)


@pytest.fixture
def memory(fake):
    return xen.XenForeignMemory()


@pytest.fixture
def channels(fake):
    bound = xen.XenEventChannels()
    yield bound
    bound.close()


def test_foreignMemoryProvidesInterface(memory):
    assert verifyObject(IForeignMemory, memory)
    with memory.mapFrames(1, [5], writable=False) as region:
        assert verifyObject(IMappedRegion, region)


def test_eventChannelsProvideInterfaces(channels):
    assert verifyObject(IEventChannels, channels)
    assert verifyObject(IEventChannel, channels.bindInterdomain(1, 5, lambda: None))


def test_mapFramesInOrder(memory):
    with memory.mapFrames(1, [7, 3, 9], writable=True) as region:
        assert len(region.view) == 3 * PAGE_SIZE
        assert [region.view[i * PAGE_SIZE] for i in range(3)] == [7, 3, 9]


def test_aFrameXenRefusesIsAGuestErrorAndNothingStaysMapped(memory, fake):
    fake.badFrames = {9: -errno.EINVAL}
    with pytest.raises(GuestError, match="domain 1: frame 9 cannot be mapped: Invalid argument"):
        memory.mapFrames(1, [3, 9], writable=False)
    assert fake.unmapped == [("foreign", 1, 2)]


def test_aFailedMapIsAGuestError(memory):
    with pytest.raises(GuestError, match="domain 99: cannot map frames: No such process"):
        memory.mapFrames(99, [1], writable=False)


@pytest.mark.parametrize("frame", [-1, 2**64, "1", None])
def test_framesCTypesWouldTruncateAreRefused(memory, fake, frame):
    with pytest.raises(GuestError, match=f"frame {frame!r} does not exist"):
        memory.mapFrames(1, [frame], writable=False)
    assert fake.pages == {}


def test_theHandleOutlivesItsRegions(memory, fake):
    region = memory.mapFrames(1, [1, 2], writable=False)
    memory.close()
    assert fake.closed == []
    region.close()
    assert fake.unmapped == [("foreign", 1, 2)]
    assert fake.closed == [1]
    with pytest.raises(XendVfbError, match="closed"):
        memory.mapFrames(1, [1], writable=False)


def test_mapGrant(memory, fake):
    fake.badGrefs = {8}
    with memory.mapGrant(1, 42, writable=True) as region:
        assert len(region.view) == PAGE_SIZE
        assert region.view[0] == 42
    assert fake.unmapped == [("grant", 2, 1)]
    with pytest.raises(GuestError, match="grant reference 8 cannot be mapped: Invalid argument"):
        memory.mapGrant(1, 8, writable=False)


@pytest.mark.parametrize("gref", [-1, 2**32, "1", True])
def test_invalidGrantReferences(memory, gref):
    with pytest.raises(GuestError, match=f"grant reference {gref!r} does not exist"):
        memory.mapGrant(1, gref, writable=False)


class Counter:
    def __init__(self):
        self.calls = 0
        self.waiting = []

    def __call__(self):
        self.calls += 1
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def next(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d.addTimeout(5, reactor)


@pytest_twisted.inlineCallbacks
def test_pendingPortsAreUnmaskedAndCoalesced(channels, fake):
    first, second = Counter(), Counter()
    a = channels.bindInterdomain(2, 5, first)
    b = channels.bindInterdomain(2, 6, second)
    assert (a.localPort, b.localPort) == (105, 106)
    fake.fire(105, 106, 105, 999)
    yield first.next()
    # A later event on port 106 is handled after everything fired before it.
    fake.fire(106)
    yield waitFor(lambda: len(fake.unmasked) == 5 and second.calls == 2, "the later event")
    assert (first.calls, second.calls) == (1, 2)
    assert fake.unmasked == [105, 106, 105, 999, 106]


def test_bindFailureIsAGuestError(channels):
    with pytest.raises(
        GuestError, match="domain 2: cannot bind event channel port 13: Invalid argument"
    ):
        channels.bindInterdomain(2, 13, lambda: None)


@pytest.mark.parametrize("port", [0, -1, 2**31, "5", None])
def test_invalidPorts(channels, port):
    with pytest.raises(GuestError, match=f"port {port!r} is not valid"):
        channels.bindInterdomain(2, port, lambda: None)


def test_notifyAndCloseAChannel(channels, fake):
    channel = channels.bindInterdomain(2, 5, lambda: None)
    channel.notify()
    channel.close()
    channel.close()
    channel.notify()
    assert fake.notified == [105]
    assert fake.unbound == [105]


def test_closeUnbindsEverythingAndClosesTheHandle(fake):
    bound = xen.XenEventChannels()
    bound.bindInterdomain(2, 5, lambda: None)
    bound.bindInterdomain(2, 6, lambda: None)
    bound.close()
    bound.close()
    assert sorted(fake.unbound) == [105, 106]
    assert fake.closed == [3]
