"""A hostile guest against the real backend process.

Each case gives domain 5 a well-behaved display (vkbd/0 + vfb/0) and one
misbehaving device of the same domain, served by the same backend.  The bad
device must end in a clean device error (the backend area's ``error`` key,
state Closing or Closed after it, the reason in the log) and the backend must
stay alive and keep serving the good display.  Values our xenstore client
refuses to write (bytes that are not printable ASCII) go through
``xenstore-write``, which unescapes ``\\xNN``.
"""

import os
import struct
import subprocess

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks, maybeDeferred

from tests.helpers_backend import (
    createDomain,
    imageBytes,
    screenshot,
    status,
    waitKey,
    waitStates,
)
from tests.helpers_wait import waitFor
from xend_vfb.guest.fb import VfbFrontend
from xend_vfb.guest.kbd import VkbdFrontend
from xend_vfb.guest.pattern import patternBytes, pixel
from xend_vfb.guestmem.emulated import GRANT_ENTRY, GTF_PERMIT_ACCESS
from xend_vfb.model import VfbConfig, VkbdConfig
from xend_vfb.protocol import fbif
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import backendPath, frontendPath

pytestmark = pytest.mark.timeout(60)

DOMID = 5
GOOD = [("vkbd", 0), ("vfb", 0)]
PATTERN = imageBytes(patternBytes(800, 600, DOMID, 0), 800, 600)
ENDED = (str(int(XenbusState.Closing)), str(int(XenbusState.Closed)))


def xenstoreWrite(xenstored, path, escaped):
    """Write a value our client would refuse (``\\xNN`` escapes) with Xen's own tool."""
    subprocess.run(["xenstore-write", "--", path, escaped], check=True, timeout=10,
                   env=dict(os.environ, XENSTORED_PATH=xenstored.socketPath))


def frontend(devClass, corrupt=None):
    """A frontend class that passes through `corrupt`: a `Page` alters the shared page
    once it is filled in, a `Keys` the keys published with Initialised."""
    base = VfbFrontend if devClass == "vfb" else VkbdFrontend

    class Hostile(base):
        def allocate(self):
            d = maybeDeferred(super().allocate)
            if isinstance(corrupt, Page):
                d.addCallback(lambda keys: (corrupt(self), keys)[1])
            return d

        def _switch(self, state, keys=None):
            if state == XenbusState.Initialised and isinstance(corrupt, Keys):
                keys = corrupt(dict(keys))
            return super()._switch(state, keys)

    return Hostile


class Page:
    """Overwrite one field of the shared page."""

    def __init__(self, offset, fmt, value):
        self.offset, self.fmt, self.value = offset, fmt, value

    def __call__(self, frontend):
        struct.pack_into(self.fmt, frontend.shared.view, self.offset, self.value)


class Keys:
    """Set (or, with None, leave out) one key of those published with Initialised."""

    def __init__(self, key, value):
        self.key, self.value = key, value

    def __call__(self, keys):
        if self.value is None:
            keys.pop(self.key, None)
        else:
            keys[self.key] = self.value
        return keys


@inlineCallbacks
def hostileSetup(xs, guestFactory, backendProcess, devClass, corrupt=None):
    """The good display plus `devClass`/1 with a hostile frontend; returns
    (guest, backend, badBackendArea)."""
    domain, created = yield createDomain(xs, DOMID)
    config = VfbConfig(vnc=True, vncunused=True) if devClass == "vfb" else VkbdConfig()
    devid = yield domain.controller(devClass).createDevice(config, devid=1)
    assert devid == 1
    guest = yield guestFactory(DOMID, frontends={(devClass, 1): frontend(devClass, corrupt)})
    backend = backendProcess(DOMID)
    yield waitStates(xs, DOMID, GOOD)
    return guest, backend, backendPath(DOMID, devClass, 1)


@inlineCallbacks
def assertDeviceError(xs, backend, area, reason):
    """The bad device ended in an error naming `reason`; the rest still works."""
    error = yield waitKey(xs, f"{area}/error")
    assert reason in error
    yield waitKey(xs, f"{area}/state", predicate=lambda value: value in ENDED)
    yield waitFor(lambda: reason in backend.log(), "the error in the log", 5)
    yield assertGoodDisplayServed(xs, backend)


@inlineCallbacks
def assertGoodDisplayServed(xs, backend):
    backend.assertHealthy()
    for devClass, devid in GOOD:
        assert (yield xs.read(f"{backendPath(DOMID, devClass, devid)}/state")) == "4"
        assert (yield xs.read(f"{frontendPath(DOMID, devClass, devid)}/state")) == "4"
        assert (yield xs.readOrNone(f"{backendPath(DOMID, devClass, devid)}/error")) is None
    assert (yield screenshot(backend)).tobytes() == PATTERN


# -- bad values at connection time ------------------------------------------------------

CONNECT_CASES = {
    "bad depth": ("vfb", Page(32, "<B", 7), "depth 7"),
    "line_length 0": ("vfb", Page(24, "<I", 0), "line_length 0"),
    "line_length beyond mem_length": ("vfb", Page(24, "<I", 1 << 30), "line_length"),
    "mem_length 0": ("vfb", Page(28, "<I", 0), "mem_length 0"),
    "width beyond RFB": ("vfb", Page(16, "<i", 70000), "width 70000 is beyond 16384"),
    "height beyond RFB": ("vfb", Page(20, "<i", 65536), "height 65536 is beyond 16384"),
    "pd frame beyond memory": ("vfb", Page(40, "<Q", 1 << 40), "does not exist"),
    "unknown protocol": ("vfb", Keys("protocol", "sparc-abi"), "unknown protocol"),
    "non-numeric page-ref": ("vfb", Keys("page-ref", "12abc"), "page-ref: invalid value"),
    "page-ref missing": ("vfb", Keys("page-ref", None), "page-ref missing"),
    "event channel not allocated": ("vkbd", Keys("event-channel", "4000"), "not allocated"),
    "page-gref not granted": ("vkbd", Keys("page-gref", "300"), "not granted"),
}


@pytest.mark.parametrize("case", sorted(CONNECT_CASES))
@pytest_twisted.inlineCallbacks
def test_bad_value_at_connect(case, xs, guestFactory, backendProcess):
    devClass, corrupt, reason = CONNECT_CASES[case]
    guest, backend, area = yield hostileSetup(xs, guestFactory, backendProcess, devClass,
                                              corrupt)
    yield assertDeviceError(xs, backend, area, reason)


@pytest_twisted.inlineCallbacks
def test_non_ascii_event_channel_written_raw(
        xs, xenstored, guestFactory, backendProcess):
    """Bytes pyxs refuses, written as a guest could: ``event-channel`` is left out of
    the Initialised transaction and written as garbage just before it."""
    path = frontendPath(DOMID, "vfb", 1)

    class Hostile(VfbFrontend):
        def _switch(self, state, keys=None):
            if state == XenbusState.Initialised:
                keys = {k: v for k, v in keys.items() if k != "event-channel"}
                xenstoreWrite(xenstored, f"{path}/event-channel", "\\xff\\x01\\x80")
            return super()._switch(state, keys)

    domain, created = yield createDomain(xs, DOMID)
    yield domain.controller("vfb").createDevice(VfbConfig(vnc=True, vncunused=True), devid=1)
    yield guestFactory(DOMID, frontends={("vfb", 1): Hostile})
    backend = backendProcess(DOMID)
    yield waitStates(xs, DOMID, GOOD)
    yield assertDeviceError(xs, backend, backendPath(DOMID, "vfb", 1),
                            "event-channel: invalid value")


@pytest.mark.parametrize("protocol", [None, ""], ids=["missing", "empty"])
@pytest_twisted.inlineCallbacks
def test_no_protocol_means_x86_64(protocol, xs, guestFactory, backendProcess):
    """docs/emulation.md: a missing or empty `protocol` is read as x86_64-abi, the
    layout the simulated guest writes: the device connects and shows its pattern."""
    guest, backend, area = yield hostileSetup(xs, guestFactory, backendProcess, "vfb",
                                              Keys("protocol", protocol))
    yield waitStates(xs, DOMID, [("vfb", 1)])
    assert (yield xs.readOrNone(f"{frontendPath(DOMID, 'vfb', 1)}/protocol")) == protocol
    image = yield screenshot(backend, 1)
    assert image.tobytes() == imageBytes(patternBytes(800, 600, DOMID, 1), 800, 600)
    yield assertGoodDisplayServed(xs, backend)


@pytest_twisted.inlineCallbacks
def test_reserved_grant_reference_refused(xs, guestFactory, backendProcess):
    """A keyboard page offered as grant reference 1, validly granted to domain 0 (on
    Xen, the toolstack's grant of the guest's xenstore page): refused as reserved."""

    class Hostile(VkbdFrontend):
        def allocate(self):
            d = maybeDeferred(super().allocate)
            d.addCallback(self.grantAsReserved)
            return d

        def grantAsReserved(self, keys):
            grants = os.path.join(self.domain.options.runDir, "guests", str(DOMID), "grants")
            with open(grants, "r+b") as f:
                f.seek(1 * GRANT_ENTRY.size)
                f.write(GRANT_ENTRY.pack(GTF_PERMIT_ACCESS, 0, self.page.frames[0]))
            return dict(keys, **{"page-gref": "1"})

    domain, created = yield createDomain(xs, DOMID)
    yield domain.controller("vkbd").createDevice(VkbdConfig(), devid=1)
    yield guestFactory(DOMID, frontends={("vkbd", 1): Hostile})
    backend = backendProcess(DOMID)
    yield waitStates(xs, DOMID, GOOD)
    yield assertDeviceError(xs, backend, backendPath(DOMID, "vkbd", 1),
                            "page-gref 1 is reserved for the toolstack (0-7)")


# -- bad events and states once connected -------------------------------------------------


@inlineCallbacks
def connectedHostile(xs, guestFactory, backendProcess):
    guest, backend, area = yield hostileSetup(xs, guestFactory, backendProcess, "vfb")
    yield waitStates(xs, DOMID, [("vfb", 1)])
    return guest, backend, area, guest.device("vfb", 1)


def assertDrawingShown(backend, bad, what):
    """The bad display draws a small square; the backend's screen shows it."""
    bad.draw(0, 0, 8, 8, pixel(1, 2, 3) * 64)

    @inlineCallbacks
    def drawn():
        return (yield screenshot(backend, 1)).getpixel((7, 7)) == (1, 2, 3)

    return waitFor(drawn, what, 10)


def sendRaw(bad, *events):
    """Produce raw events into the bad device's out ring and notify the backend."""
    assert fbif.OUT_RING.produce(bad.shared.view, [event.encode() for event in events]) == len(
        events)
    bad.notify()


@pytest.mark.parametrize("ahead", [52, 1000, 2**31, 2**32 - 1])
@pytest_twisted.inlineCallbacks
def test_runaway_out_ring_is_lived_through(ahead, xs, guestFactory, backendProcess):
    """An out ring overrun (Linux's xen-fbfront overshoots in a race) costs a redraw of
    the whole screen, not the device: it stays Connected, the overflow is logged and
    counted, and the guest's next update shows."""
    guest, backend, area, bad = yield connectedHostile(xs, guestFactory, backendProcess)
    view = bad.shared.view
    cons = struct.unpack_from("<I", view, 8)[0]
    struct.pack_into("<I", view, 12, (cons + ahead) & 0xFFFFFFFF)
    bad.notify()
    yield waitFor(lambda: "vfb out ring overflow" in backend.log(), "the overflow in the log", 10)
    yield assertDrawingShown(backend, bad, "an update after the overflow")
    assert (yield xs.readOrNone(f"{area}/error")) is None
    assert (yield xs.read(f"{area}/state")) == "4"
    devices = (yield status(backend))["devices"]
    assert [d["ring_overflows"] for d in devices if d["class"] == "vfb"] == [0, 1]
    yield assertGoodDisplayServed(xs, backend)


@pytest.mark.parametrize("resize,reason", [
    (fbif.ResizeEvent(800, 600, 3200, 32, 1 << 30), "offset"),
    (fbif.ResizeEvent(800, 600, 3200, 32, -4), "offset"),
    (fbif.ResizeEvent(800, 600, 0, 32, 0), "stride 0"),
    (fbif.ResizeEvent(800, 600, 1 << 29, 32, 0), "stride"),
    (fbif.ResizeEvent(800, 600, 3200, 12, 0), "depth 12"),
    (fbif.ResizeEvent(70000, 1, 70000, 8, 0), "width 70000 is beyond 16384"),
], ids=["offset beyond", "negative offset", "stride 0", "stride beyond", "bad depth",
        "width beyond RFB"])
@pytest_twisted.inlineCallbacks
def test_bad_resize(resize, reason, xs, guestFactory, backendProcess):
    guest, backend, area, bad = yield connectedHostile(xs, guestFactory, backendProcess)
    sendRaw(bad, resize)
    yield assertDeviceError(xs, backend, area, reason)


@pytest_twisted.inlineCallbacks
def test_out_of_range_updates_are_clipped(xs, guestFactory, backendProcess):
    """Rectangles off the screen are clipped or dropped (section 7): no error at all."""
    guest, backend, area, bad = yield connectedHostile(xs, guestFactory, backendProcess)
    sendRaw(bad,
            fbif.UpdateEvent(-(1 << 31), -(1 << 31), (1 << 31) - 1, (1 << 31) - 1),
            fbif.UpdateEvent(799, 599, 1 << 30, 1 << 30),
            fbif.UpdateEvent(5000, 5000, 10, 10),
            fbif.UpdateEvent(10, 10, -5, -5),
            fbif.UpdateEvent((1 << 31) - 1, (1 << 31) - 1, (1 << 31) - 1, (1 << 31) - 1))
    struct.pack_into("<B", bad.shared.view, 0, 0)  # a stray byte, nothing more
    # A valid rectangle drawn afterwards shows up: every event before it was handled.
    yield assertDrawingShown(backend, bad, "the valid update after the bad ones")
    assert (yield xs.readOrNone(f"{area}/error")) is None
    assert (yield xs.read(f"{area}/state")) == "4"
    yield assertGoodDisplayServed(xs, backend)


@pytest.mark.parametrize("garbage", ["banana", "\\xff\\xfe", "99", "-1", ""])
@pytest_twisted.inlineCallbacks
def test_garbage_frontend_state(
        garbage, xs, xenstored, guestFactory, backendProcess):
    guest, backend, area, bad = yield connectedHostile(xs, guestFactory, backendProcess)
    # The simulated frontend must not react to its own garbage: forget it first.
    yield bad._backendWatch.cancel()
    bad._backendWatch = None
    bad.gone = True
    xenstoreWrite(xenstored, f"{frontendPath(DOMID, 'vfb', 1)}/state", garbage)
    yield assertDeviceError(xs, backend, area, "is not a XenbusState")
