"""The real ``xend-vfb-backend`` against a real xenstored and simulated guests.

Handshake to Connected, teardown started by either side, reconnection with
``online`` = 1, cleanup when the frontend area goes, death and restart of the
backend.  Guests run in-process (so tests can draw on them) or as the real
``xend-vfb-guest`` program where its own signals are the point.
"""

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from tests.helpers_backend import (
    MEMORY_SIZE,
    BackendControl,
    createDomain,
    imageBytes,
    screenshot,
    status,
    waitKey,
    waitStates,
)
from tests.helpers_wait import waitFor
from xend_vfb.guest.pattern import patternBytes, pixel
from xend_vfb.guestmem.emulated import createGuestMemory
from xend_vfb.jsonline import ChannelError
from xend_vfb.supervisor import ProcessSupervisor, programCommand
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import backendPath, domainPath, frontendPath

pytestmark = pytest.mark.timeout(60)

DOMID = 5
PAIR = [("vkbd", 0), ("vfb", 0)]
S = {state: str(int(state)) for state in XenbusState}


@inlineCallbacks
def connectedDomain(xs, guestFactory, backendProcess, domid=DOMID, **vfbKeys):
    """A domain with one display (vkbd/0 + vfb/0) Connected to a real backend."""
    domain, created = yield createDomain(xs, domid, vfbs=[vfbKeys])
    guest = yield guestFactory(domid)
    backend = backendProcess(domid)
    yield waitStates(xs, domid, created)
    return domain, guest, backend


@pytest_twisted.inlineCallbacks
def test_handshake_reaches_connected_on_both_ends(xs, guestFactory, backendProcess):
    domain, guest, backend = yield connectedDomain(xs, guestFactory, backendProcess)
    for devClass, devid in PAIR:
        area = backendPath(DOMID, devClass, devid)
        assert (yield xs.read(f"{area}/hotplug-status")) == "connected"
        assert (yield xs.readOrNone(f"{area}/error")) is None
    vfb = backendPath(DOMID, "vfb", 0)
    assert (yield xs.read(f"{vfb}/feature-resize")) == "1"
    assert (yield xs.read(f"{vfb}/request-update")) == "1"
    assert (yield xs.read(f"{backendPath(DOMID, 'vkbd', 0)}/feature-abs-pointer")) == "1"
    port = yield xs.read(f"{vfb}/vnc-port")
    assert int(port) >= 5900
    assert (yield xs.read(f"{vfb}/vnc-listen")) == "127.0.0.1"
    assert (yield xs.read(f"{domainPath(DOMID)}/console/vnc-port")) == port
    # The frontends read the backend's keys.
    assert (yield xs.read(f"{frontendPath(DOMID, 'vkbd', 0)}/request-abs-pointer")) == "1"

    reply = yield status(backend)
    assert reply["domid"] == DOMID and reply["name"] == "guest"
    devices = {(d["class"], d["devid"]): d for d in reply["devices"]}
    assert devices[("vfb", 0)]["connected"] and devices[("vkbd", 0)]["connected"]
    assert devices[("vfb", 0)]["vnc_port"] == int(port)
    assert devices[("vkbd", 0)]["absolute"] is True
    backend.assertHealthy()


@pytest_twisted.inlineCallbacks
def test_screen_copy_equals_guest_pattern(xs, guestFactory, backendProcess):
    domain, guest, backend = yield connectedDomain(xs, guestFactory, backendProcess)
    image = yield screenshot(backend)
    assert image.size == (800, 600)
    assert image.tobytes() == imageBytes(patternBytes(800, 600, DOMID, 0), 800, 600)

    # A rectangle the guest draws (and announces with UPDATE) reaches the copy.
    frontend = guest.device("vfb", 0)
    red = pixel(255, 0, 0) * (37 * 11)
    frontend.draw(100, 200, 37, 11, red)
    expected = bytearray(patternBytes(800, 600, DOMID, 0))
    for row in range(11):
        start = ((200 + row) * 800 + 100) * 4
        expected[start:start + 37 * 4] = pixel(255, 0, 0) * 37

    @inlineCallbacks
    def updated():
        return (yield screenshot(backend)).tobytes() == imageBytes(bytes(expected), 800, 600)

    yield waitFor(updated, "the drawn rectangle in the backend's copy", 10)
    backend.assertHealthy()


@pytest.fixture
def guestProcess(guestProgram, runDir):
    """Start ``xend-vfb-guest`` for a domain (its memory created here), logging to a
    file in the run dir."""

    def start(domid, *args):
        if not os.path.exists(os.path.join(runDir, "guests", str(domid), "memory")):
            createGuestMemory(runDir, domid, MEMORY_SIZE)
        return guestProgram("--domid", str(domid),
                            "--log-file", os.path.join(runDir, f"guest-{domid}.log"), *args)

    return start


@pytest_twisted.inlineCallbacks
def test_guest_closes_then_reconnects_with_online(xs, guestProcess, backendProcess):
    """Guest SIGTERM: Closing/Closed on both ends, the backend keeps the devices
    (online = 1); the guest's driver comes back and the same backend serves it."""
    domain, created = yield createDomain(xs, DOMID)
    guest = guestProcess(DOMID, "--close-timeout", "5")
    backend = backendProcess(DOMID)
    yield waitStates(xs, DOMID, created)

    guest.send_signal(signal.SIGTERM)
    yield waitStates(xs, DOMID, created, XenbusState.Closed, XenbusState.Closed)
    yield waitFor(lambda: guest.poll() is not None, "the guest to exit", 15)
    assert guest.returncode == 0
    for devClass, devid in created:
        area = backendPath(DOMID, devClass, devid)
        assert (yield xs.read(f"{area}/online")) == "1"
        assert (yield xs.readOrNone(f"{area}/error")) is None
    reply = yield status(backend)
    assert not any(device["connected"] for device in reply["devices"])
    backend.assertHealthy()

    # Driver reload (or reboot): xenbus puts the frontends back to Initialising.
    for devClass, devid in created:
        yield xs.write(f"{frontendPath(DOMID, devClass, devid)}/state", S[XenbusState.Initialising])
    guestProcess(DOMID)
    yield waitStates(xs, DOMID, created)
    image = yield screenshot(backend)
    assert image.tobytes() == imageBytes(patternBytes(800, 600, DOMID, 0), 800, 600)
    backend.assertHealthy()
    assert "Closing -> Closed" in open(os.path.join(backend.runDir, f"guest-{DOMID}.log")).read()


@pytest_twisted.inlineCallbacks
def test_toolstack_destroy_closes_removes_and_backend_exits(
        xs, guestFactory, backendProcess):
    domain, guest, backend = yield connectedDomain(xs, guestFactory, backendProcess)
    yield domain.detach("vfb", 0)  # graceful: online 0, Closing, wait for Closed, remove
    for devClass, devid in PAIR:
        for area in (backendPath(DOMID, devClass, devid), frontendPath(DOMID, devClass, devid)):
            assert (yield xs.readOrNone(area)) is None, (area, (yield xs.list(area)),
                                                         backend.log())
    yield backend.waitExit()
    assert backend.process.returncode == 0
    log = backend.log()
    assert "<vfb/0 of domain 5> released" in log and "<vkbd/0 of domain 5> released" in log
    assert "no devices left" in log
    assert "Traceback" not in log
    assert not os.path.exists(backend.controlPath)


@pytest_twisted.inlineCallbacks
def test_frontend_area_deleted_backend_cleans_up(xs, guestFactory, backendProcess):
    """Guest death: the toolstack deletes the frontend areas; the backend sees Unknown,
    closes and releases each device, and exits once the areas are gone."""
    domain, guest, backend = yield connectedDomain(xs, guestFactory, backendProcess)
    for devClass, devid in PAIR:
        yield xs.rm(frontendPath(DOMID, devClass, devid))
    for devClass, devid in PAIR:
        yield waitKey(xs, f"{backendPath(DOMID, devClass, devid)}/state",
                      predicate=lambda value: value == S[XenbusState.Closed])
    yield waitFor(lambda: all(f"<{name} of domain 5> released" in backend.log()
                              for name in ("vfb/0", "vkbd/0")), "both devices released", 10)
    reply = yield status(backend)
    assert reply["devices"] == []
    backend.assertHealthy()
    for devClass, devid in PAIR:
        yield domain.controller(devClass).removeDevice(devid)
    yield backend.waitExit()
    assert backend.process.returncode == 0


@pytest_twisted.inlineCallbacks
def test_killed_backend_noticed_then_restarted_reattaches(
        xs, xenstored, guestFactory, runDir):
    deaths = []
    env = dict(os.environ, XENSTORED_PATH=xenstored.socketPath)
    supervisor = ProcessSupervisor(reactor, env, lambda key, how, clean: deaths.append((key, how)))
    command = [*programCommand("xend-vfb-backend"), "--domid", str(DOMID), "--run-dir", runDir,
               "--mode", "emulated"]
    record = os.path.join(runDir, "backends", f"{DOMID}.pid")
    logPath = os.path.join(runDir, f"backend-{DOMID}.log")
    domain, created = yield createDomain(xs, DOMID)
    guest = yield guestFactory(DOMID)
    try:
        first = supervisor.spawn("backend/5", command, record, logPath)
        yield waitStates(xs, DOMID, created)
        port = yield xs.read(f"{backendPath(DOMID, 'vfb', 0)}/vnc-port")

        os.kill(first.pid, signal.SIGKILL)
        yield waitFor(lambda: deaths, "onDeath", 5)
        assert deaths == [("backend/5", "killed by signal 9")]
        # The guest never noticed: it stays Connected; so does the backend area.
        frontend = guest.device("vfb", 0)
        assert frontend.state == XenbusState.Connected
        yield waitStates(xs, DOMID, created)

        second = supervisor.spawn("backend/5", command, record, logPath)
        assert second.pid != first.pid

        # The restarted backend maps again and copies the screen: a change the guest
        # draws now shows in its copy.
        control = BackendControl(runDir, DOMID)
        yield waitFor(lambda: os.path.exists(control.controlPath), "the control socket", 10)

        @inlineCallbacks
        def reattached():
            try:
                reply = yield status(control)
            except ChannelError:  # the killed backend's socket file, or not listening yet
                return False
            return all(device["connected"] for device in reply["devices"]) and len(
                reply["devices"]) == 2

        yield waitFor(reattached, "the new backend to reattach", 10)
        assert (yield xs.read(f"{backendPath(DOMID, 'vfb', 0)}/vnc-port")) == port
        green = pixel(0, 255, 0)
        frontend.draw(0, 0, 800, 600, green * (800 * 600))

        @inlineCallbacks
        def redrawn():
            return (yield screenshot(control)).getpixel((400, 300)) == (0, 255, 0)

        yield waitFor(redrawn, "the guest's redraw in the new backend's copy", 10)
        assert frontend.state == XenbusState.Connected
        assert "Traceback" not in open(logPath).read()
    finally:
        for key in list(supervisor.processes):
            yield supervisor.terminate(key, signal.SIGKILL)
        supervisor.stopService()
