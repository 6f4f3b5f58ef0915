"""The real backend racing the toolstack, each race made deterministic.

The backend process talks to xenstored through a `XenstoreProxy`, which holds
its requests from a chosen one on: the test then does what the toolstack does
at exactly that point (destroy a device, remove and re-create its areas) and
releases it.  Guests are the in-process simulator, the toolstack the
project's own controllers.  Also here: the toolstack writing a live device's
areas anew, which the backend must take as a new device.
"""

import pytest
import pytest_twisted
from pyxs._internal import Op
from twisted.internet.defer import inlineCallbacks, succeed

from tests.helpers_backend import (
    createDomain,
    screenshot,
    status,
    waitKey,
    waitStates,
)
from tests.helpers_wait import waitFor
from xend_vfb.guest.fb import VfbFrontend
from xend_vfb.guest.pattern import pixel
from xend_vfb.model import VfbConfig
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.areas import readArea
from xend_vfb.xenstore.paths import backendPath, frontendPath

pytestmark = pytest.mark.timeout(60)

DOMID = 5
S = {state: str(int(state)) for state in XenbusState}


class DeafFrontend(VfbFrontend):
    """Publishes its keys and goes Initialised, then pays the backend no attention
    until kicked (as the fuzzer's frontend did): it keeps its page and event channel
    whatever the backend does meanwhile."""

    def _watchBackend(self, backendPath):
        self.backendPath = backendPath
        return succeed(None)


@pytest_twisted.inlineCallbacks
def test_destroy_while_connecting_is_not_overwritten(
        xs, guestFactory, backendProcess, xenstoreProxy):
    """The toolstack destroys a display (`online` 0, then Closing, as
    `destroyDevice` writes them) while the backend is inside its connect step: the
    backend must not publish Connected over Closing.  It stays Closing, and lets the
    device go once the guest has closed."""
    back, front = backendPath(DOMID, "vfb", 0), frontendPath(DOMID, "vfb", 0)
    inConnect = xenstoreProxy.holdAt(Op.READ, f"{front}/page-ref")
    domain, created = yield createDomain(xs, DOMID)
    guest = yield guestFactory(DOMID, frontends={("vfb", 0): DeafFrontend})
    backend = backendProcess(DOMID, via=xenstoreProxy)
    yield inConnect
    frontend = guest.device("vfb", 0)
    # It looked at the backend once after publishing: it will answer Closing later.
    yield waitFor(lambda: frontend.backendState != XenbusState.Unknown,
                  "the guest to look at the backend", 10)
    yield xs.write(f"{back}/online", "0")
    yield xs.write(f"{back}/state", S[XenbusState.Closing])

    # The next pass starts by reading the state: the connect step is over by then.
    nextPass = xenstoreProxy.holdAt(Op.READ, f"{back}/state")
    xenstoreProxy.release()
    yield nextPass
    assert (yield xs.read(f"{back}/state")) == S[XenbusState.Closing]
    xenstoreProxy.release()

    frontend.kick()  # the guest sees Closing and closes
    yield waitKey(xs, f"{back}/state", predicate=lambda value: value == S[XenbusState.Closed])
    yield waitFor(lambda: "<vfb/0 of domain 5> released" in backend.log(),
                  "the display to be released", 10)
    assert (yield xs.read(f"{back}/online")) == "0"
    assert frontend.state == XenbusState.Closed
    # The keyboard, held up as long, connected as usual.
    yield waitStates(xs, DOMID, [("vkbd", 0)])
    backend.assertHealthy()


@pytest_twisted.inlineCallbacks
def test_failure_for_a_removed_area_stays_out_of_the_new_one(
        xs, guestFactory, backendProcess, xenstoreProxy):
    """A display is created, removed and created again with the same id while the
    backend is still starting the first: it finds that one gone and fails.  The
    failure belongs to the removed area and must not land in the new one (which
    would then never be served); the new one is served as any other."""
    area = backendPath(DOMID, "vfb", 1)
    domain, created = yield createDomain(xs, DOMID)
    yield guestFactory(DOMID)
    backend = backendProcess(DOMID, via=xenstoreProxy)
    yield waitStates(xs, DOMID, created)
    controller = domain.controller("vfb")

    readingConfig = xenstoreProxy.holdAt(Op.DIRECTORY, area)  # its `init` reads the area
    yield controller.createDevice(VfbConfig(vnc=True, vncunused=True), devid=1)
    yield readingConfig
    yield controller.removeDevice(1)
    reporting = xenstoreProxy.holdAt(Op.TRANSACTION_START, "")  # the failure's write
    xenstoreProxy.release()
    yield reporting
    yield controller.createDevice(VfbConfig(vnc=True, vncunused=True), devid=1)
    xenstoreProxy.release()

    assert (yield waitKey(xs, f"{area}/hotplug-status")) == "connected"
    yield waitStates(xs, DOMID, [("vfb", 1)])
    assert (yield xs.readOrNone(f"{area}/hotplug-error")) is None
    assert "Device 1 (vfb) does not exist in domain 5" in backend.log()
    backend.assertHealthy()


@pytest_twisted.inlineCallbacks
def test_areas_written_anew_start_the_device_from_scratch(
        xs, guestFactory, backendProcess):
    """The toolstack writes a Connected display's areas anew, both removed and written
    in one transaction with `state` back to Initialising (what reboot, restore and a
    restarted toolstack do).  The backend drops the old connection and serves the new
    areas from the start; the guest, which probes again, ends Connected with its new
    page and event channel, and what it draws reaches the backend's copy."""
    area = backendPath(DOMID, "vfb", 0)
    domain, created = yield createDomain(xs, DOMID)
    guest = yield guestFactory(DOMID)
    backend = backendProcess(DOMID)
    yield waitStates(xs, DOMID, created)
    first = yield xs.read(f"{area}/generation")

    controller = domain.controller("vfb")
    config = yield controller.getDeviceConfiguration(0)
    back, front = controller.getDeviceDetails(config, {})
    record = yield readArea(xs, controller.privatePath(0))
    # The controller's own area writer, as a re-creating toolstack uses it.
    yield xs.transaction(lambda tx: controller._writeAreas(tx, 0, back, front, record))
    assert (yield xs.read(f"{area}/state")) == S[XenbusState.Initialising]
    assert (yield xs.read(f"{area}/generation")) != first

    yield waitStates(xs, DOMID, [("vfb", 0)])
    assert (yield xs.read(f"{area}/hotplug-status")) == "connected"
    assert "<vfb/0 of domain 5>: its areas were written anew" in backend.log()
    frontend = guest.device("vfb", 0)
    frontend.draw(0, 0, 16, 16, pixel(0, 0, 255) * 256)

    @inlineCallbacks
    def drawn():
        return (yield screenshot(backend)).getpixel((15, 15)) == (0, 0, 255)

    yield waitFor(drawn, "the guest's drawing in the new connection's copy", 10)
    reply = yield status(backend)
    assert all(device["connected"] for device in reply["devices"])
    backend.assertHealthy()
