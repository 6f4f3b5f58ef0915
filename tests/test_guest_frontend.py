"""The simulated guest's frontends in-process: a real xenstored and a hand-played backend."""

import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock

from tests.guest_support import MEMORY_SIZE, Backend, toolstackAdd, waitState
from tests.helpers_wait import waitFor
from tests.helpers_xenstore import mark, traced, writes
from xend_vfb.guest.domain import GuestDomain, GuestOptions
from xend_vfb.guest.fb import RETRY_DELAY, memLength
from xend_vfb.guest.pattern import patternBytes
from xend_vfb.guestmem.emulated import EmulatedGuestMemory, createGuestMemory, guestDir
from xend_vfb.protocol import fbif, kbdif
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.areas import readArea
from xend_vfb.xenstore.paths import backendPath, frontendPath

DOMID = 3
VFB = frontendPath(DOMID, "vfb", 0)
VKBD = frontendPath(DOMID, "vkbd", 0)
VKBD_BACKEND_KEYS = {"feature-abs-pointer": "1", "width": "800", "height": "600"}


@pytest.fixture
def runDir(tmp_path):
    path = tmp_path / "guestrun"
    createGuestMemory(path, DOMID, MEMORY_SIZE)
    return path


@pytest.fixture
def guestFactory(xs, runDir):
    """Start a guest with the given options, its timers (animation, retries, close
    timeouts) on `clock` if one is given; stopped (briefly) after the test."""
    started = []

    def start(clock=None, **options):
        memory = EmulatedGuestMemory(runDir, DOMID, reactor)
        domain = GuestDomain(clock or reactor, xs, memory, DOMID,
                             GuestOptions(runDir=str(runDir), **options))
        started.append((domain, clock))
        return domain.start().addCallback(lambda _: domain)

    yield start
    for domain, clock in started:
        stopping = domain.stop(timeout=0.2)
        if clock is not None:
            # Its close timeouts run on the test's clock: let them pass.
            def over(clock=clock, stopping=stopping):
                clock.advance(0.2)
                return stopping.called

            pytest_twisted.blockon(waitFor(over, "the guest to stop"))
        pytest_twisted.blockon(stopping)


@pytest.fixture
def backends(xs, runDir):
    made = []

    def make(devClass, devid=0):
        backend = Backend(xs, runDir, DOMID, devClass, devid)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@inlineCallbacks
def connectVfb(xs, guestFactory, backends, keys=None, **options):
    """A guest with vfb/0 Connected to a hand-played backend; returns (frontend, backend)."""
    guest = yield guestFactory(**options)
    yield toolstackAdd(xs, DOMID, "vfb", 0)
    yield waitState(xs, VFB, XenbusState.Initialised)
    backend = backends("vfb")
    yield backend.connect(keys if keys is not None else {"request-update": "1"})
    yield waitState(xs, VFB, XenbusState.Connected)
    return guest.device("vfb", 0), backend


@pytest_twisted.inlineCallbacks
def test_probe_publishes_keys_and_goes_initialised(xs, guestFactory):
    yield guestFactory()
    yield toolstackAdd(xs, DOMID, "vkbd", 0, VKBD_BACKEND_KEYS)
    yield toolstackAdd(xs, DOMID, "vfb", 0)
    yield waitState(xs, VFB, XenbusState.Initialised)
    yield waitState(xs, VKBD, XenbusState.Initialised)
    vfb = yield readArea(xs, VFB)
    vkbd = yield readArea(xs, VKBD)
    assert vfb["protocol"] == vkbd["protocol"] == "x86_64-abi"
    assert vfb["feature-update"] == "1"
    assert vkbd["request-abs-pointer"] == "1"
    for keys in (vfb, vkbd):
        assert int(keys["page-ref"]) > 0 and int(keys["event-channel"]) > 0
    assert vfb["page-ref"] != vkbd["page-ref"]
    assert "page-gref" not in vkbd


@pytest_twisted.inlineCallbacks
def test_no_abs_pointer_requested_unless_offered(xs, guestFactory):
    yield guestFactory(vkbdGrant=True)
    yield toolstackAdd(xs, DOMID, "vkbd", 0)
    yield waitState(xs, VKBD, XenbusState.Initialised)
    assert (yield xs.readOrNone(VKBD + "/request-abs-pointer")) is None
    assert (yield xs.readOrNone(VKBD + "/page-ref")) is None
    assert int((yield xs.read(VKBD + "/page-gref"))) >= 8


@pytest_twisted.inlineCallbacks
def test_connected_framebuffer_holds_the_pattern(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    page = backend.fbPage
    assert (page.width, page.height, page.line_length, page.depth) == (800, 600, 3200, 32)
    assert page.mem_length == memLength(800, 600) == 1921024
    assert backend.screen(800, 600, 3200) == patternBytes(800, 600, DOMID, 0)
    # Connected: the whole screen, once, notified.
    yield waitFor(lambda: backend.notified, "a notification")
    assert backend.outEvents() == [fbif.UpdateEvent(0, 0, 800, 600)]
    assert frontend.state == XenbusState.Connected


@pytest_twisted.inlineCallbacks
def test_update_and_draw_reach_the_out_ring(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    yield waitFor(backend.outEvents, "the first full-screen update")
    frontend.update(10, 20, 30, 40)
    frontend.draw(1, 2, 2, 1, b"\x01\x02\x03\x00\x04\x05\x06\x00")
    assert backend.outEvents() == [fbif.UpdateEvent(10, 20, 30, 40), fbif.UpdateEvent(1, 2, 2, 1)]
    assert bytes(backend.framebuffer.view[2 * 3200 + 4 : 2 * 3200 + 12]) == bytes(
        [1, 2, 3, 0, 4, 5, 6, 0]
    )
    with pytest.raises(ValueError):
        frontend.draw(799, 0, 2, 1, bytes(8))


def handled(backend, event):
    """Send `event` and wait until the guest took it: its event handler (which flushes
    what waits into the out ring) has run to its end."""
    backend.send(event)
    return waitFor(backend.inConsumed, f"the guest to take {event}")


@pytest_twisted.inlineCallbacks
def test_no_updates_without_request_update(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends, keys={})
    frontend.update(0, 0, 1, 1)
    # The guest flushes on every event from the backend: after this one, still nothing.
    yield handled(backend, fbif.RefreshPeriodEvent(50))
    assert frontend.refreshPeriod == 50
    assert backend.pendingOut() == 0


@pytest_twisted.inlineCallbacks
def test_refresh_period_zero_stops_updates(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    yield waitFor(backend.outEvents, "the first full-screen update")
    yield handled(backend, fbif.RefreshPeriodEvent(0))
    assert frontend.refreshPeriod == 0
    frontend.update(5, 5, 5, 5)
    frontend.redraw()
    yield handled(backend, fbif.RefreshPeriodEvent(0))  # a flush: still nothing
    assert backend.pendingOut() == 0
    # Watched again: one full-screen update, notified.
    before = backend.notified
    backend.send(fbif.RefreshPeriodEvent(50))
    yield waitFor(backend.pendingOut, "an update")
    yield waitFor(lambda: backend.notified > before, "a notification")
    assert backend.outEvents() == [fbif.UpdateEvent(0, 0, 800, 600)]


@pytest_twisted.inlineCallbacks
def test_full_out_ring_is_never_overrun(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    yield waitFor(backend.outEvents, "the first full-screen update")
    length = fbif.OUT_RING.length
    for i in range(length + 10):
        frontend.update(i, 0, 1, 1)
    assert backend.pendingOut() == length
    first = backend.outEvents()
    assert first == [fbif.UpdateEvent(i, 0, 1, 1) for i in range(length)]
    # The backend consumed: it notifies, and the rest follows.
    backend.channel.notify()
    yield waitFor(backend.pendingOut, "the rest")
    assert backend.outEvents() == [fbif.UpdateEvent(i, 0, 1, 1) for i in range(length, length + 10)]


@pytest_twisted.inlineCallbacks
def test_full_out_ring_falls_back_to_one_full_update(xs, guestFactory, backends):
    clock = Clock()
    frontend, backend = yield connectVfb(xs, guestFactory, backends, clock=clock)
    yield waitFor(backend.outEvents, "the first full-screen update")
    for i in range(fbif.OUT_RING.length + 3):
        frontend.update(i, 0, 1, 1)
    backend.outEvents()  # consumed without a notification: the retry timer sends
    clock.advance(RETRY_DELAY / 2)
    assert backend.pendingOut() == 0
    clock.advance(RETRY_DELAY / 2)
    assert backend.outEvents() == [fbif.UpdateEvent(0, 0, 800, 600)]


@pytest_twisted.inlineCallbacks
def test_resize(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(
        xs, guestFactory, backends, keys={"request-update": "1", "feature-resize": "1"}
    )
    yield waitFor(backend.outEvents, "the first full-screen update")
    frontend.resize(640, 480)
    assert backend.outEvents() == [
        fbif.ResizeEvent(640, 480, 2560, 32, 0),
        fbif.UpdateEvent(0, 0, 640, 480),
    ]
    assert backend.screen(640, 480, 2560) == patternBytes(640, 480, DOMID, 0)
    with pytest.raises(ValueError):
        frontend.resize(1024, 768)


@pytest_twisted.inlineCallbacks
def test_resize_needs_the_feature(xs, guestFactory, backends):
    from xend_vfb.errors import DeviceError

    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    with pytest.raises(DeviceError):
        frontend.resize(640, 480)


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("grant", [False, True])
def test_vkbd_events_go_to_input_log(xs, guestFactory, backends, runDir, grant):
    yield guestFactory(vkbdGrant=grant)
    yield toolstackAdd(xs, DOMID, "vkbd", 0, VKBD_BACKEND_KEYS)
    yield waitState(xs, VKBD, XenbusState.Initialised)
    backend = backends("vkbd")
    yield backend.connect(grant=grant)
    yield waitState(xs, VKBD, XenbusState.Connected)
    backend.send(
        kbdif.KeyEvent(True, 30),
        kbdif.MotionEvent(1, 0, 0),
        kbdif.PositionEvent(10, 20, 0),
        kbdif.KeyEvent(False, kbdif.BTN_LEFT),
    )
    path = guestDir(runDir, DOMID) / "input.jsonl"
    yield waitFor(lambda: path.exists() and path.read_text().count("\n") == 4, "4 lines")
    assert path.read_text().splitlines() == [
        '{"dev": "vkbd/0", "type": "key", "keycode": 30, "pressed": true}',
        '{"dev": "vkbd/0", "type": "motion", "rel_x": 1, "rel_y": 0, "rel_z": 0}',
        '{"dev": "vkbd/0", "type": "pos", "abs_x": 10, "abs_y": 20, "rel_z": 0}',
        '{"dev": "vkbd/0", "type": "key", "keycode": 272, "pressed": false}',
    ]
    assert backend.inConsumed()
    assert backend.notified >= 1
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == [
        "key",
        "motion",
        "pos",
        "key",
    ]


@pytest_twisted.inlineCallbacks
def test_hotplug_and_removal(xs, guestFactory):
    guest = yield guestFactory()
    assert guest.devices == {}
    yield toolstackAdd(xs, DOMID, "vfb", 1)
    path = frontendPath(DOMID, "vfb", 1)
    yield waitState(xs, path, XenbusState.Initialised)
    frontend = guest.device("vfb", 1)
    assert frontend.framebuffer is not None
    yield xs.rm(path)
    yield waitFor(lambda: frontend.gone, "removal")
    assert guest.devices == {}
    assert frontend.framebuffer is None and frontend.port is None
    assert not (yield xs.exists(path))  # not re-created by a late write


@pytest_twisted.inlineCallbacks
def test_backend_closing_then_reinitialise(xs, xenstored, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    oldPort = yield xs.read(VFB + "/event-channel")
    backend.close()
    yield backend.setState(XenbusState.Closing)
    yield waitState(xs, VFB, XenbusState.Closed)
    assert frontend.framebuffer is None and frontend.port is None
    since = mark(xenstored)
    yield backend.setState(XenbusState.Closed)
    # A toolstack re-initialises the area (guest reboot, online=1): probe again,
    # even though the backend still says Closed from the old connection.
    yield xs.write(VFB + "/state", "1")
    yield waitState(xs, VFB, XenbusState.Initialised)
    assert (yield xs.read(VFB + "/event-channel")) == oldPort  # the lowest free port again
    yield backend.setState(XenbusState.InitWait)
    again = backends("vfb")
    yield again.connect({"request-update": "1"})
    yield waitState(xs, VFB, XenbusState.Connected)
    assert again.screen(800, 600, 3200) == patternBytes(800, 600, DOMID, 0)
    # The guest handles changes one at a time, in order: it reached Connected after
    # handling the old backend's Closed, and neither that nor the probe closed it.
    assert [value for _, value in writes(xenstored, VFB + "/state", since)] == ["1", "3", "4"]


@pytest_twisted.inlineCallbacks
def test_backend_restart_while_connected(xs, xenstored, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends)
    yield waitFor(backend.outEvents, "the first full-screen update")
    assert not frontend.featureResize
    port = yield xs.read(VFB + "/event-channel")
    since = mark(xenstored)
    backend.unbind()
    yield backend.setState(XenbusState.InitWait)
    backend.bind(port)
    yield xs.write(backend.be + "/feature-resize", "1")  # the new backend offers more
    yield backend.setState(XenbusState.Connected)
    # Its keys read again: the guest has handled the restart (one change at a time, in
    # order) and stayed Connected, without a write to its state.
    yield waitFor(lambda: frontend.featureResize, "the guest to re-read the backend's keys")
    assert frontend.state == XenbusState.Connected
    assert writes(xenstored, VFB + "/state", since) == []
    before = backend.notified
    frontend.update(0, 0, 8, 8)
    yield waitFor(lambda: backend.notified > before, "a notification on the new binding")
    assert backend.outEvents() == [fbif.UpdateEvent(0, 0, 8, 8)]


@pytest_twisted.inlineCallbacks
def test_guest_close_waits_for_backend(xs, xenstored, guestFactory, backends):
    clock = Clock()  # the close timeout never passes: only the backend can end the wait
    frontend, backend = yield connectVfb(xs, guestFactory, backends, clock=clock)
    d = frontend.close(timeout=5)
    yield waitState(xs, VFB, XenbusState.Closing)
    assert not d.called and frontend.framebuffer is not None
    yield backend.setState(XenbusState.Closing)
    yield d
    assert (yield xs.read(VFB + "/state")) == str(int(XenbusState.Closed))
    assert frontend.framebuffer is None
    # No re-probe while shutting down, even if a toolstack writes Initialising.
    since = mark(xenstored)
    yield xs.write(VFB + "/state", "1")
    yield waitFor(lambda: ("READ", [VFB + "/state", ""]) in traced(xenstored, since + 1),
                  "the guest to look at its state")
    # Changes are handled one at a time: once the guest has seen its area go, it has
    # finished with the Initialising it read.
    yield xs.rm(VFB)
    yield waitFor(lambda: frontend.gone, "the guest to see its area removed")
    assert writes(xenstored, VFB, since + 1) == []


@pytest_twisted.inlineCallbacks
def test_guest_close_is_bounded(xs, guestFactory):
    clock = Clock()
    guest = yield guestFactory(clock=clock)
    yield toolstackAdd(xs, DOMID, "vfb", 0)
    yield waitState(xs, VFB, XenbusState.Initialised)
    closing = guest.device("vfb", 0).close(timeout=1)
    yield waitState(xs, VFB, XenbusState.Closing)
    clock.advance(0.5)
    assert not closing.called  # the backend may still answer
    clock.advance(0.5)
    yield closing  # it did not: closed all the same
    assert (yield xs.read(VFB + "/state")) == str(int(XenbusState.Closed))
    assert (yield xs.read(backendPath(DOMID, "vfb", 0) + "/state")) == "1"


@pytest_twisted.inlineCallbacks
def test_image_instead_of_pattern(xs, guestFactory, backends, tmp_path):
    from PIL import Image

    from xend_vfb.guest.pattern import loadImage

    image = tmp_path / "picture.png"
    Image.new("RGB", (80, 60), (10, 200, 30)).save(image)
    frontend, backend = yield connectVfb(xs, guestFactory, backends, image=str(image))
    assert backend.screen(800, 600, 3200) == loadImage(image, 800, 600)


@pytest_twisted.inlineCallbacks
def test_animation_keeps_updating(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(xs, guestFactory, backends, animate=0.01)
    seen = []
    while len(seen) < 4:
        yield waitFor(backend.pendingOut, "animation updates")
        seen.extend(backend.outEvents())
    assert fbif.UpdateEvent(0, 568, 800, 32) in seen


@pytest_twisted.inlineCallbacks
def test_32_bit_guest_layout(xs, guestFactory, backends):
    frontend, backend = yield connectVfb(
        xs, guestFactory, backends, protocol="x86_32-abi", size=(1024, 768)
    )
    assert (yield xs.read(VFB + "/protocol")) == "x86_32-abi"
    assert backend.fbPage.protocol == "x86_32-abi"
    assert (backend.fbPage.width, backend.fbPage.height) == (1024, 768)
    assert backend.screen(1024, 768, 4096) == patternBytes(1024, 768, DOMID, 0)
