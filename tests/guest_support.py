"""The other side of the simulated guest, played by hand in its tests.

`toolstackAdd` writes both areas of a device as a toolstack does; `Backend`
is a backend reduced to what the tests check: it maps the guest's pages and
binds its channel with the emulated backend-side classes, and moves its
``state`` when told to.
"""

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from tests.helpers_wait import WAIT, waitFor
from xend_vfb.guestmem.emulated import EmulatedEventChannels, EmulatedForeignMemory
from xend_vfb.protocol import fbif, kbdif
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import backendPath, frontendPath

MEMORY_SIZE = 8 * 1024 * 1024


def waitState(xs, path, state, timeout=WAIT):
    """Wait until the `state` node under `path` says `state`."""
    want = str(int(state))

    @inlineCallbacks
    def check():
        return (yield xs.readOrNone(path + "/state")) == want

    return waitFor(check, f"{path}/state = {want}", timeout)


def toolstackAdd(xs, domid, devClass, devid, backendKeys=None):
    """Create both areas with state Initialising in one transaction, as a toolstack does."""
    fe = frontendPath(domid, devClass, devid)
    be = backendPath(domid, devClass, devid)

    @inlineCallbacks
    def write(tx):
        for key, value in {"backend": be, "backend-id": "0", "state": "1"}.items():
            yield tx.write(f"{fe}/{key}", value)
        keys = {"frontend": fe, "frontend-id": str(domid), "online": "1", "state": "1"}
        keys.update(backendKeys or {})
        for key, value in keys.items():
            yield tx.write(f"{be}/{key}", value)

    return xs.transaction(write)


class Backend:
    """A hand-played backend of one device."""

    def __init__(self, xs, runDir, domid, devClass, devid=0):
        self.xs = xs
        self.domid = domid
        self.devClass = devClass
        self.fe = frontendPath(domid, devClass, devid)
        self.be = backendPath(domid, devClass, devid)
        self.memory = EmulatedForeignMemory(runDir)
        self.channels = EmulatedEventChannels(runDir, reactor)
        self.notified = 0
        self.page = None
        self.framebuffer = None
        self.channel = None
        self.fbPage = None

    def _event(self):
        self.notified += 1

    @inlineCallbacks
    def setState(self, state):
        yield self.xs.write(self.be + "/state", str(int(state)))

    @inlineCallbacks
    def connect(self, keys=None, grant=False):
        """Map and bind what the frontend published, write `keys`, go Connected."""
        read = lambda key: self.xs.read(f"{self.fe}/{key}")  # noqa: E731
        if grant:
            self.page = self.memory.mapGrant(self.domid, int((yield read("page-gref"))), True)
        else:
            self.page = self.memory.mapFrames(self.domid, [int((yield read("page-ref")))], True)
        if self.devClass == "vfb":
            protocol = yield read("protocol")
            self.fbPage = fbif.FbPage.read(self.page.view, protocol, 64 << 20)
            dirs = self.memory.mapFrames(self.domid, list(self.fbPage.pd), False)
            frames = fbif.framebufferFrames(
                [dirs.view[i * 4096 : (i + 1) * 4096] for i in range(len(self.fbPage.pd))],
                self.fbPage.mem_length,
                protocol,
            )
            dirs.close()
            self.framebuffer = self.memory.mapFrames(self.domid, frames, False)
        self.bind((yield read("event-channel")))
        for key, value in (keys or {}).items():
            yield self.xs.write(f"{self.be}/{key}", value)
        yield self.setState(XenbusState.Connected)

    def bind(self, port):
        self.channel = self.channels.bindInterdomain(self.domid, int(port), self._event)

    def unbind(self):
        self.channel.close()
        self.channel = None

    def outEvents(self):
        """Consume the vfb out ring, decoded."""
        return [fbif.decodeOutEvent(raw) for raw in fbif.OUT_RING.consume(self.page.view)]

    def pendingOut(self):
        """How many events wait in the vfb out ring (prod - cons)."""
        view = self.page.view
        cons = int.from_bytes(view[8:12], "little")
        prod = int.from_bytes(view[12:16], "little")
        return (prod - cons) & 0xFFFFFFFF

    def send(self, *events):
        """Produce in-events (vfb or vkbd) and notify the guest once."""
        ring = fbif.IN_RING if self.devClass == "vfb" else kbdif.IN_RING
        written = ring.produce(self.page.view, [event.encode() for event in events])
        assert written == len(events)
        self.channel.notify()

    def inConsumed(self):
        """Whether the guest has taken everything off its in ring."""
        view = self.page.view
        return view[0:4] == view[4:8]

    def screen(self, width, height, stride):
        """The visible rows, packed, as read through our mapping."""
        view = self.framebuffer.view
        if stride == width * 4:
            return bytes(view[: stride * height])
        return b"".join(bytes(view[y * stride : y * stride + width * 4]) for y in range(height))

    def close(self):
        if self.channel is not None:
            self.channel.close()
        self.channels.close()
        for region in (self.framebuffer, self.page):
            if region is not None:
                region.close()
