"""A guest that ran before its devices were written (plain `xl restore`, no -p) gets
them probed again, against a real xenstored and a guest kernel's xenbus as it looks
after such a resume.

On resume a Linux guest keeps an object for each device it had, whose resume failed
(its area did not exist yet): a watch event under ``device/`` probes a device only
when no object has its path, and drops an object only when the event's node is the
device's own path (or above it) and is missing when the guest reads it.  The
daemon's re-probe removes the frontend areas, waits, and writes the devices afresh.
"""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed

from tests.helpers_toolstack import DOMID, FE, NAME
from xend_vfb import sxp
from xend_vfb.daemon import guests as guestsModule
from xend_vfb.daemon.guests import RUNNING, Guests
from xend_vfb.domain import Domain
from xend_vfb.host import DomainInfo
from xend_vfb.model import DomainConfig

CONFIG = "name = 'guest'\nmemory = 64\nvfb = [ 'vnc=1,vncunused=1' ]\n"
UUID = "5b1d8e42-8c57-4d2a-9f0e-3c1d2b4a6e70"
DEVICES = {"vfb/0", "vkbd/0"}


class Killed(Exception):
    """The daemon's death at a crash point."""


class StaleKernel:
    """The guest's xenbus after a failed resume: `objects` holds the devices it keeps
    (at first the ones it had before the save); a device probed anew goes to
    Initialised.  `dropped` is every device whose object it let go."""

    def __init__(self, xs, had: set[str]) -> None:
        self.xs = xs
        self.objects = set(had)
        self.dropped: set[str] = set()
        self.probed: set[str] = set()

    @inlineCallbacks
    def start(self):
        self.watch = yield self.xs.watch(FE, self.changed)

    def changed(self, path: str) -> None:
        self.seen(path).addErrback(lambda f: f.printTraceback())

    @inlineCallbacks
    def seen(self, path: str):
        parts = path[len(FE):].strip("/").split("/")
        if len(parts) < 2:
            return
        node = "/".join(parts)
        if not (yield self.xs.exists(path)):
            for device in list(self.objects):
                if device == node or device.startswith(node + "/"):
                    self.objects.discard(device)
                    self.dropped.add(device)
            return
        device = "/".join(parts[:2])
        if device in self.objects:
            return
        if (yield self.xs.readOrNone(f"{FE}/{device}/state")) == "1":
            self.objects.add(device)
            self.probed.add(device)
            yield self.xs.write(f"{FE}/{device}/state", "3")


class Backends:
    """No backend process: nothing to hold or start."""

    def hold(self, domid: int, seconds: float = 0):
        return False

    def ensure(self, domain: Domain):
        return None


class Host:
    """The guest's domain: paused for the first `pausedLooks` looks at it, then running."""

    def __init__(self) -> None:
        self.pausedLooks = self.looked = 0

    def domains(self):
        self.looked += 1
        paused = self.looked <= self.pausedLooks
        return succeed({DOMID: DomainInfo(DOMID, NAME, UUID, paused=paused)})


class Daemon:
    def __init__(self, xs) -> None:
        self.xs, self.reactor, self.backends, self.host = xs, reactor, Backends(), Host()

    def domain(self, domid: int) -> Domain:
        return Domain(self.xs, domid, NAME, reactor)


@pytest.fixture
def guest(xs, host, tmp_path, monkeypatch):
    """Domain 5, its devices written as the daemon's adopt writes them, its record,
    and the daemon's `Guests`; waits short (no real guest to be slow)."""
    monkeypatch.setattr(guestsModule, "REPROBE_WAIT", 2.0)
    monkeypatch.setattr(guestsModule, "REPROBE_GAP", 0.2)
    path = tmp_path / "guest.cfg"
    path.write_text(CONFIG)
    config = DomainConfig.fromXmConfig(path)
    guests = Guests(Daemon(xs))
    domain = Domain(xs, DOMID, NAME, reactor)

    @inlineCallbacks
    def setUp():
        yield domain.createDevices(config)
        snapshot = yield domain.snapshot()
        yield guests._update(UUID, name=NAME, domid=str(DOMID), state=RUNNING,
                             config=sxp.show(config.toSXP()), devices=snapshot)
        return (yield guests._read(UUID))

    record = pytest_twisted.blockon(setUp())
    return guests, record


@pytest_twisted.inlineCallbacks
def test_devices_a_resumed_guest_kept_stale_are_probed_again(xs, guest):
    guests, record = guest
    kernel = StaleKernel(xs, DEVICES)
    yield kernel.start()
    yield guests._reprobe(record, DOMID)
    assert kernel.dropped == DEVICES
    assert kernel.probed == DEVICES
    for device in DEVICES:
        assert (yield xs.read(f"{FE}/{device}/state")) == "3"
        assert (yield xs.read(f"{FE}/{device}/backend")).endswith(f"/{DOMID}/0")


@pytest_twisted.inlineCallbacks
def test_devices_that_resumed_are_left_alone(xs, guest):
    guests, record = guest
    kernel = StaleKernel(xs, DEVICES)
    yield kernel.start()
    for device in DEVICES:  # their resume found the areas: Initialised
        yield xs.write(f"{FE}/{device}/state", "3")
    yield guests._reprobe(record, DOMID)
    assert kernel.dropped == set()
    assert kernel.probed == set()


@pytest_twisted.inlineCallbacks
def test_a_daemon_killed_while_the_devices_are_removed_writes_them_again(xs, guest,
                                                                         monkeypatch):
    guests, record = guest
    kernel = StaleKernel(xs, DEVICES)
    yield kernel.start()

    def killed(name: str) -> None:
        if name == "reprobe:removed":
            raise Killed()  # the daemon dies here, the areas removed

    monkeypatch.setattr(guestsModule, "crashPoint", killed)
    with pytest.raises(Killed):
        yield guests._reprobe(record, DOMID)
    assert not (yield xs.exists(f"{FE}/vfb/0"))
    assert kernel.dropped == DEVICES

    # The next daemon, following the guest: the devices come back and are probed.
    monkeypatch.undo()
    nextDaemon = Guests(guests.daemon)
    record = yield nextDaemon._read(UUID)
    assert record["pending"] == {"op": "reprobe", "domid": DOMID}
    yield nextDaemon._follow(record, {DOMID: DomainInfo(DOMID, NAME, UUID)})
    yield nextDaemon.reprobes.get(DOMID)
    assert kernel.probed == DEVICES
    for device in DEVICES:
        assert (yield xs.read(f"{FE}/{device}/state")) == "3"
    assert (yield nextDaemon._read(UUID))["pending"] is None


@pytest_twisted.inlineCallbacks
def test_a_paused_domain_is_left_alone_until_it_runs(xs, guest):
    # Plain `xl restore` seen before it unpaused the domain: nothing to probe yet.
    guests, record = guest
    kernel = StaleKernel(xs, DEVICES)
    yield kernel.start()
    host = guests.daemon.host
    host.pausedLooks = 1
    yield guests._reprobe(record, DOMID)
    # One look found it paused and left it; the next found it running, and re-probed
    # (had it re-probed while paused, the kernel's probe would have ended it there).
    assert host.looked == 2
    assert kernel.dropped == DEVICES and kernel.probed == DEVICES
