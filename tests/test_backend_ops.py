"""VfbOps and VkbdOps in-process against arbitrary guest memory and keys (hypothesis).

The guest writes what it likes to its shared page, directory pages, rings and
xenstore keys; the backend's ops may fail the device only through `GuestError`
(raised from ``connect``, or handed to ``device.guestError`` by an event
handler), never with another exception.  Memory is the real emulated guest
memory (a file mapped by `EmulatedForeignMemory`); xenstore and event channels
are small fakes, since only the ops' handling of values is under test here.
"""

import mmap
import os
import shutil
import struct
import tempfile
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from xend_vfb.backend.device import BackendDevice
from xend_vfb.backend.vfb import VfbOps
from xend_vfb.backend.vkbd import VkbdOps
from xend_vfb.display.screen import Screen
from xend_vfb.errors import GuestError
from xend_vfb.guestmem.emulated import EmulatedForeignMemory, createGuestMemory
from xend_vfb.protocol import fbif

DOMID = 1
FRAMES = 64
PAGE = 4096
GOOD_PORT = 3
COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


u32 = st.integers(0, 2**32 - 1)
s32 = st.integers(-(2**31), 2**31 - 1)
frame = st.one_of(st.integers(0, FRAMES + 2), st.integers(0, 2**64 - 1))
numeric = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "1", "3", " 1", "1 ", "-1", "0x1", "1e3", "²", "abc",
                     "99999999999999999999", "9" * 21, str(FRAMES), str(2**63)]),
    st.integers(0, 2**64).map(str),
    st.text(max_size=8),
)


class FakeXs:
    """The frontend's keys: what `readOrNone` answers, by last path component."""

    def __init__(self, values):
        self.values = values

    def readOrNone(self, path):
        return succeed(self.values.get(path.rsplit("/", 1)[1]))


class FakeChannel:
    def __init__(self):
        self.notified = 0

    def notify(self):
        self.notified += 1

    def close(self):
        pass


class FakeChannels:
    def bindInterdomain(self, domid, port, onEvent):
        if port != GOOD_PORT:
            raise GuestError(f"domain {domid}: event channel port {port} is not allocated")
        return FakeChannel()


@pytest.fixture(scope="module")
def memory():
    """Domain 1's memory (and grant table), mapped for the test to play the guest."""
    runDir = tempfile.mkdtemp(prefix="xvb-ops-", dir="/tmp")
    createGuestMemory(runDir, DOMID, FRAMES * PAGE)
    guest = os.path.join(runDir, "guests", str(DOMID))
    with open(os.path.join(guest, "memory"), "r+b") as f:
        mem = mmap.mmap(f.fileno(), FRAMES * PAGE)
    with open(os.path.join(guest, "grants"), "r+b") as f:
        grants = mmap.mmap(f.fileno(), 4096)
    context = SimpleNamespace(foreignMemory=EmulatedForeignMemory(runDir),
                              eventChannels=FakeChannels(), reactor=Clock())
    yield SimpleNamespace(mem=mem, grants=grants, context=context)
    mem.close()
    grants.close()
    shutil.rmtree(runDir)


def makeDevice(memory, devClass, ops, values):
    device = BackendDevice(FakeXs(values), DOMID, devClass, 0, ops, memory.context,
                           lambda device: None)
    errors = []
    device.guestError = errors.append
    ops._device = device
    return device, errors


def outcome(d):
    """The result of a Deferred that must have fired already (everything is synchronous)."""
    results = []
    d.addBoth(results.append)
    assert results, "connect did not finish synchronously"
    return results[0]


def assertGuestErrorOnly(result):
    if isinstance(result, Failure):
        assert result.check(GuestError), result.getTraceback()
        return False
    return True


# -- vfb ------------------------------------------------------------------------------------

out_event = st.one_of(
    st.builds(lambda *a: fbif.UpdateEvent(*a).encode(), s32, s32, s32, s32),
    st.builds(lambda w, h, stride, depth, offset: fbif.ResizeEvent(
        w, h, stride, depth, offset).encode(),
        st.one_of(s32, st.integers(0, 900)), st.one_of(s32, st.integers(0, 700)),
        st.one_of(s32, st.integers(0, 4096)), st.sampled_from([0, 7, 8, 16, 24, 32, 255]),
        st.one_of(s32, st.integers(0, 300000))),
    st.binary(min_size=40, max_size=40),
)


@st.composite
def validHeader(draw):
    """A page a real frontend could write (so that events get tested too), with
    directory page frame 2 listing framebuffer frames from 3 up."""
    depth = draw(st.sampled_from([8, 16, 24, 32]))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 48))
    line_length = width * depth // 8 + draw(st.sampled_from([0, 0, 4, 13]))
    mem_length = min(line_length * height + draw(st.integers(0, 8192)), (FRAMES - 3) * PAGE)
    frames = list(range(3, 3 + -(-mem_length // PAGE)))
    return (width, height, line_length, mem_length, depth), [2], frames


arbitraryHeader = st.tuples(
    st.tuples(st.one_of(s32, st.integers(0, 900)), st.one_of(s32, st.integers(0, 700)),
              st.one_of(u32, st.integers(0, 4096)), st.one_of(u32, st.integers(0, 300000)),
              st.one_of(st.sampled_from([8, 16, 24, 32]), st.integers(0, 255))),
    st.lists(frame, min_size=1, max_size=4),
    st.lists(frame, max_size=80),
)



def usually(value, other=numeric):
    """`value` about seven times in eight, else `other`."""
    return st.integers(0, 7).flatmap(lambda n: other if n == 7 else st.just(value))


@st.composite
def vfbGuest(draw):
    """What a guest may put in its vfb page, directory page, rings and keys."""
    header, pd, directory = draw(usually(None, arbitraryHeader).flatmap(
        lambda arbitrary: st.just(arbitrary) if arbitrary else validHeader()))
    if draw(st.booleans()) and directory:
        # One bad framebuffer frame in an otherwise good directory.
        directory[draw(st.integers(0, len(directory) - 1))] = draw(frame)
    counters = draw(usually((0, 0, 0, 0), st.tuples(u32, u32, u32, u32)))
    events = draw(st.lists(out_event, max_size=8))
    later = draw(st.lists(out_event, max_size=8))
    laterCounters = draw(st.one_of(st.none(), st.none(), st.tuples(u32, u32)))
    values = {
        "page-ref": draw(usually("1")),
        "event-channel": draw(usually(str(GOOD_PORT))),
        "protocol": draw(st.sampled_from(["x86_64-abi", "x86_32-abi", "arm-abi"]).flatmap(
            lambda abi: usually(abi, st.one_of(st.none(), st.text(max_size=12))))),
        "feature-update": draw(usually("1")),
    }
    viewers = draw(st.lists(st.integers(0, 3), max_size=3))
    return header, pd, directory, counters, events, later, laterCounters, values, viewers


def writeVfbPage(mem, header, pd, directory, counters, events, protocol):
    mem[PAGE:4 * PAGE] = bytes(3 * PAGE)
    page = memoryview(mem)[PAGE:2 * PAGE]
    struct.pack_into("<iiIIB", page, 16, *header)
    entry = "I" if protocol == "x86_32-abi" else "Q"
    mask = 2**(8 * struct.calcsize(entry)) - 1
    offset = 36 if protocol == "x86_32-abi" else 40
    struct.pack_into(f"<{len(pd)}{entry}", page, offset, *[p & mask for p in pd])
    struct.pack_into(f"<{len(directory)}{entry}", mem, 2 * PAGE, *[f & mask for f in directory])
    struct.pack_into("<4I", page, 0, *counters)
    out = fbif.OUT_RING
    for i, raw in enumerate(events):
        slot = out.offset + ((counters[2] + i) % out.length) * 40
        page[slot:slot + 40] = raw
    struct.pack_into("<I", page, 12, (counters[2] + len(events)) & 0xFFFFFFFF)
    page.release()


@settings(max_examples=1500, **COMMON)
@given(vfbGuest())
def test_vfb_ops_fail_only_with_guest_errors(memory, guest):
    header, pd, directory, counters, events, later, laterCounters, values, viewers = guest
    writeVfbPage(memory.mem, header, pd, directory, counters, events, values["protocol"])
    ops = VfbOps()
    ops.config = SimpleNamespace(videoram=1)
    ops.screen = Screen(64, 48)
    device, errors = makeDevice(memory, "vfb", ops, values)
    try:
        connected = assertGuestErrorOnly(outcome(ops.connect(device)))
        event("connected" if connected else "refused at connect")
        if not connected:
            return
        # Connected: the guest goes on writing whatever it likes.
        page = memoryview(memory.mem)[PAGE:2 * PAGE]
        if laterCounters is not None:
            struct.pack_into("<2I", page, 8, *laterCounters)
        cons = struct.unpack_from("<I", page, 8)[0]
        for i, raw in enumerate(later):
            slot = fbif.OUT_RING.offset + ((cons + i) % fbif.OUT_RING.length) * 40
            page[slot:slot + 40] = raw
        struct.pack_into("<I", page, 12, (cons + len(later)) & 0xFFFFFFFF)
        page.release()
        ops._event()
        event("failed by an event" if errors else "still connected after events")
        for count in viewers:
            ops._viewersChanged(count)
        ops.refresh()
        ops._poll()
        geometry = ops.geometry
        if geometry is not None:
            assert (ops.screen.width, ops.screen.height) == (geometry.width, geometry.height)
            assert geometry.offset + geometry.height * geometry.stride <= ops.memLength
        ops.status()
    finally:
        ops.disconnect(device)
    assert all(isinstance(e, GuestError) for e in errors), errors


# -- vkbd -----------------------------------------------------------------------------------

grantEntry = st.one_of(
    st.just((1, 0, 1)),                # a good grant of frame 1
    st.tuples(st.integers(0, 7), st.integers(0, 3), frame.map(lambda f: f & 0xFFFFFFFF)),
)


@st.composite
def vkbdGuest(draw):
    values = {
        "page-ref": draw(usually("1")),
        "page-gref": draw(st.sampled_from([None, "8"]).flatmap(usually)),
        "event-channel": draw(usually(str(GOOD_PORT))),
        "request-abs-pointer": draw(numeric),
    }
    grant = draw(grantEntry)
    counters = draw(usually((0, 0), st.tuples(u32, u32)))
    inputs = draw(st.lists(st.one_of(
        st.tuples(st.just("key"), u32, st.booleans()),
        st.tuples(st.just("motion"), s32, s32, s32),
        st.tuples(st.just("pos"), s32, s32, s32),
        st.tuples(st.just("counters"), u32, u32),
    ), max_size=30))
    return values, grant, counters, inputs


def ringFill(view):
    cons, prod = struct.unpack_from("<2I", view, 0)
    return (prod - cons) & 0xFFFFFFFF


@settings(max_examples=1000, **COMMON)
@given(vkbdGuest())
def test_vkbd_ops_fail_only_with_guest_errors(memory, guest):
    values, grant, counters, inputs = guest
    memory.mem[PAGE:2 * PAGE] = bytes(PAGE)
    struct.pack_into("<HHI", memory.grants, 8 * 8, *grant)
    struct.pack_into("<2I", memory.mem, PAGE, *counters)
    ops = VkbdOps()
    device, errors = makeDevice(memory, "vkbd", ops, values)
    ops.init(device)
    try:
        connected = assertGuestErrorOnly(outcome(ops.connect(device)))
        event("connected" if connected else "refused at connect")
        if not connected:
            return
        for item in inputs:
            before = ringFill(ops.page.view)
            if item[0] == "key":
                ops.keyEvent(item[1], item[2])
            elif item[0] == "motion":
                ops.pointerMotion(*item[1:])
            elif item[0] == "pos":
                ops.pointerPosition(*item[1:])
            else:  # the guest rewrites the in ring's counters
                struct.pack_into("<2I", ops.page.view, 0, *item[1:])
            if item[0] != "counters" and not errors and before <= 51:
                # The backend never fills a sane ring beyond its length.
                assert ringFill(ops.page.view) <= 51
        ops.status()
    finally:
        ops.disconnect(device)
    assert all(isinstance(e, GuestError) for e in errors), errors
