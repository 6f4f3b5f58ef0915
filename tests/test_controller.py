"""DevController and the two framebuffer controllers against a real xenstored.

Every check reads xenstore back (whole trees, compared with literals) or reads
xenstored's own request trace; nothing looks at the controller's internals.
"""

import errno

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.helpers_toolstack import (
    BACK,
    BE,
    DOM0,
    DOMID,
    FE,
    GENERATION,
    GUEST,
    HOST,
    NAME,
    PRIV,
    FailingXenstore,
    StubBackend,
    area,
    dump,
    tree,
)
from tests.helpers_wait import waitFor
from tests.helpers_xenstore import mark, traced, writes
from xend_vfb.controller import DevController
from xend_vfb.devices import DEVICE_CLASSES, VFB, VKBD, classNamed
from xend_vfb.errors import DeviceError, XenstoreError
from xend_vfb.model import VfbConfig, VkbdConfig
from xend_vfb.vfbif import VfbifController, VkbdifController


def vfb(xs):
    return VfbifController(xs, DOMID, NAME)


def vkbd(xs):
    return VkbdifController(xs, DOMID, NAME)


#: A vfb with every kind of key: set, default, secret.
SECRET_VFB = VfbConfig(vnc=True, vncdisplay=3, vncunused=False, vncpasswd="s3cret",
                       width=1024, height=768)

VFB_BACKEND_KEYS = {
    "backend": "0",
    "depth": "32",
    "domain": "guest",
    "frontend": "/local/domain/5/device/vfb/0",
    "frontend-id": "5",
    "generation": GENERATION,
    "height": "768",
    "keymap": "en-us",
    "online": "1",
    "opengl": "0",
    "sdl": "0",
    "state": "1",
    "videoram": "8",
    "vnc": "1",
    "vncdisplay": "3",
    "vnclisten": "127.0.0.1",
    "vncunused": "0",
    "width": "1024",
}


def vfbAreas(devid=0, backendKeys=VFB_BACKEND_KEYS, private=None):
    back = dict(backendKeys, frontend=f"/local/domain/5/device/vfb/{devid}")
    return tree(
        {},
        fe=area(f"{FE}/vfb/{devid}", GUEST, {
            "backend": f"/local/domain/0/backend/vfb/5/{devid}",
            "backend-id": "0",
            "state": "1",
        }),
        be=area(f"{BE}/vfb/5/{devid}", BACK, back),
        priv=area(f"{PRIV}/vfb/{devid}", DOM0, private or {}),
    )


#: The class directories the first vfb brings, inheriting from their parents.
VFB_DIRS = {
    "/local/domain/5/device": ("", BACK),
    "/local/domain/5/device/vfb": ("", BACK),
    "/local/domain/0/backend": ("", DOM0),
    "/local/domain/0/backend/vfb": ("", DOM0),
    "/local/domain/0/backend/vfb/5": ("", DOM0),
    "/xend-vfb/5/device": ("", DOM0),
    "/xend-vfb/5/device/vfb": ("", DOM0),
}


# -- creating ----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_create_vfb_writes_exact_tree_and_keeps_secret_private(xs, host):
    devid = yield vfb(xs).createDevice(SECRET_VFB)
    assert devid == 0
    assert (yield dump(xs)) == tree(
        HOST, dirs=VFB_DIRS, dev=vfbAreas(private={"vncpasswd": "s3cret"}))


#: A vkbd's backend area, created with the probe-time features of a 1024x768 display.
VKBD_BACKEND_KEYS = {
    "backend": "0",
    "domain": "guest",
    "feature-abs-pointer": "1",
    "feature-raw-pointer": "1",
    "frontend": "/local/domain/5/device/vkbd/0",
    "frontend-id": "5",
    "generation": GENERATION,
    "height": "768",
    "online": "1",
    "state": "1",
    "width": "1024",
}


@pytest_twisted.inlineCallbacks
def test_create_vkbd_writes_probe_time_features(xs, host):
    devid = yield vkbd(xs).createDevice(VkbdConfig(), extra={"width": "1024", "height": "768"})
    assert devid == 0
    assert (yield dump(xs, f"{BE}/vkbd/5/0")) == area(f"{BE}/vkbd/5/0", BACK, VKBD_BACKEND_KEYS)
    assert (yield dump(xs, f"{FE}/vkbd/0")) == area(f"{FE}/vkbd/0", GUEST, {
        "backend": "/local/domain/0/backend/vkbd/5/0",
        "backend-id": "0",
        "state": "1",
    })
    assert (yield dump(xs, f"{PRIV}/vkbd/0")) == area(f"{PRIV}/vkbd/0", DOM0, {})


@pytest_twisted.inlineCallbacks
def test_a_keyboards_own_keys_and_size_survive_a_rebuild(xs, host):
    control = vkbd(xs)
    own = VkbdConfig(width=1024, height=768, disableKeyboard=True, uniqueId="k1")
    yield control.createDevice(own, extra={"width": "640", "height": "480"})
    back = yield dump(xs, f"{BE}/vkbd/5/0")
    values = {path.rsplit("/", 1)[1]: value for path, (value, _) in back.items()}
    assert {k: values[k] for k in ("width", "height", "feature-disable-keyboard",
                                   "unique-id")} == {
        "width": "1024", "height": "768", "feature-disable-keyboard": "1", "unique-id": "k1"}
    assert (yield control.getDeviceConfiguration(0)) == own
    # A keyboard sized by its display has no size of its own once rebuilt.
    yield control.createDevice(VkbdConfig(), devid=1, extra={"width": "640", "height": "480"})
    assert (yield xs.read(f"{BE}/vkbd/5/1/width")) == "640"
    assert (yield control.getDeviceConfiguration(1)) == VkbdConfig()


@pytest_twisted.inlineCallbacks
def test_create_writes_state_last_in_each_area(xs, xenstored, host):
    yield vfb(xs).createDevice(SECRET_VFB)
    back = [path for path, _ in writes(xenstored, f"{BE}/vfb/5/0/")]
    front = [path for path, _ in writes(xenstored, f"{FE}/vfb/0/")]
    assert back[-1] == f"{BE}/vfb/5/0/state"
    assert front == [f"{FE}/vfb/0/backend", f"{FE}/vfb/0/backend-id", f"{FE}/vfb/0/state"]
    # Both `state`s close the transaction: every other key is there when either moves.
    device = [path for path, _ in writes(xenstored) if path.startswith((BE, FE, PRIV))]
    assert sorted(device[-2:]) == [f"{BE}/vfb/5/0/state", f"{FE}/vfb/0/state"]
    assert len(device) == len(set(device))
    ops = [op for op, _ in traced(xenstored)]
    assert ops[-1] == "TRANSACTION_END" and ops[-3:-1] == ["WRITE", "WRITE"]
    # Both areas get their permissions before any key is written in them.
    ops = [(op, words[0]) for op, words in traced(xenstored)
           if op in ("SET_PERMS", "WRITE") and words[0].startswith((f"{BE}/vfb", f"{FE}/vfb"))]
    assert ops[:2] == [("SET_PERMS", f"{FE}/vfb/0"), ("SET_PERMS", f"{BE}/vfb/5/0")]


@pytest_twisted.inlineCallbacks
def test_lowest_free_device_id(xs, host):
    control = vfb(xs)
    config = VfbConfig(vnc=True)
    ids = []
    for _ in range(3):
        ids.append((yield control.createDevice(config)))
    assert ids == [0, 1, 2]
    yield control.destroyDevice(1, force=True)
    assert (yield control.deviceIDs()) == [0, 2]
    assert (yield control.createDevice(config)) == 1
    assert (yield control.createDevice(config)) == 3
    # Each class counts on its own.
    assert (yield vkbd(xs).createDevice(VkbdConfig())) == 0


@pytest_twisted.inlineCallbacks
def test_device_id_in_use_is_an_error_and_changes_nothing(xs, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    before = yield dump(xs)
    with pytest.raises(DeviceError) as info:
        yield control.createDevice(VfbConfig(sdl=True, display=":1"), devid=0)
    assert str(info.value) == "Device 0 (vfb) is already in use in domain 5"
    assert (yield dump(xs)) == before
    # A connected device is in use as well; the next free id is taken instead.
    yield xs.write(f"{BE}/vfb/5/0/state", "4")
    assert (yield control.createDevice(SECRET_VFB)) == 1


@pytest_twisted.inlineCallbacks
def test_driver_domain_backend_is_refused_and_changes_nothing(xs, host):
    before = yield dump(xs)
    with pytest.raises(DeviceError) as info:
        yield vfb(xs).createDevice(VfbConfig(vnc=True, backend=3))
    assert str(info.value) == (
        "vfb: backend=3 is not supported (xend-vfb runs every backend in domain 0)")
    assert (yield dump(xs)) == before


@pytest.mark.parametrize("leftover", ["backend-closed", "frontend-missing", "backend-missing"])
@pytest_twisted.inlineCallbacks
def test_stale_area_is_replaced(xs, host, leftover):
    control = vfb(xs)
    yield control.createDevice(VfbConfig(sdl=True, display=":1"))
    # What a dead device leaves: keys of its own in every area.
    yield xs.write(f"{BE}/vfb/5/0/vnc-port", "5901")
    yield xs.write(f"{BE}/vfb/5/0/hotplug-status", "connected")
    yield xs.write(f"{FE}/vfb/0/page-ref", "1234")
    yield xs.write(f"{PRIV}/vfb/0/vncpasswd", "old")
    old = yield xs.readOrNone(f"{BE}/vfb/5/0/generation")
    if leftover == "backend-closed":
        yield xs.write(f"{BE}/vfb/5/0/state", "6")
    elif leftover == "frontend-missing":
        yield xs.write(f"{BE}/vfb/5/0/state", "4")
        yield xs.rm(f"{FE}/vfb/0")
    else:
        yield xs.rm(f"{BE}/vfb/5/0")
    assert (yield control.createDevice(SECRET_VFB)) == 0
    assert (yield dump(xs)) == tree(
        HOST, dirs=VFB_DIRS, dev=vfbAreas(private={"vncpasswd": "s3cret"}))
    # A new instance of the area: a backend still serving the old one can tell.
    assert (yield xs.read(f"{BE}/vfb/5/0/generation")) != old


@pytest_twisted.inlineCallbacks
def test_failed_transaction_writes_nothing(xs, host):
    """A write failing inside the transaction leaves nothing of the device."""
    before = yield dump(xs)
    failing = FailingXenstore(xs, lambda path: path == f"{BE}/vfb/5/0/state")
    with pytest.raises(XenstoreError) as info:
        yield vfb(failing).createDevice(SECRET_VFB)
    assert info.value.errno == errno.EACCES
    assert (yield dump(xs)) == before


# -- waiting for the backend ---------------------------------------------------


def lookedAt(xenstored, path, since):
    """Whether a waiter watched the backend area at `path` and then read its
    hotplug-status (its first look), in xenstored's trace from `since` on."""
    requests = [(op, words[0]) for op, words in traced(xenstored, since)]
    if ("WATCH", path) not in requests:
        return False
    return ("READ", f"{path}/hotplug-status") in requests[requests.index(("WATCH", path)):]


@pytest_twisted.inlineCallbacks
def test_wait_for_device_connected(xs, xenstored, other, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    answer = Deferred()
    backend = StubBackend(other, f"{BE}/vfb/5/0", hotplug=("connected", None),
                          answerWhen=answer)
    yield backend.start()
    since = mark(xenstored)
    waiting = control.waitForDevice(0, timeout=5)
    # Answered only after the first look: it reaches the waiter through its watch.
    yield waitFor(lambda: lookedAt(xenstored, f"{BE}/vfb/5/0", since),
                  "the controller's first look at the backend")
    answer.callback(None)
    assert (yield waiting) is None
    assert (yield xs.read(f"{BE}/vfb/5/0/hotplug-status")) == "connected"
    # Already connected: returns at once.
    yield control.waitForDevice(0, timeout=5)


@pytest_twisted.inlineCallbacks
def test_wait_for_device_error_carries_hotplug_error_verbatim(xs, other, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    why = "vnc: port 5903 is in use (EADDRINUSE)"
    yield StubBackend(other, f"{BE}/vfb/5/0", hotplug=("error", why)).start()
    with pytest.raises(DeviceError) as info:
        yield control.waitForDevice(0, timeout=5)
    assert str(info.value) == f"Device 0 (vfb) could not be connected: {why}"


def timing(clock, waiting, timeout):
    """Let `timeout` seconds pass on `clock` for a wait that started its timer: not
    over a moment before, then over; the wait's Deferred."""
    clock.advance(timeout - 0.5)
    assert not waiting.called
    clock.advance(0.5)
    return waiting


@pytest_twisted.inlineCallbacks
def test_wait_for_device_timeout_says_what_was_seen(xs, host):
    clock = Clock()
    control = VkbdifController(xs, DOMID, NAME, reactor=clock)
    yield control.createDevice(VkbdConfig())
    waiting = control.waitForDevice(0, timeout=2)
    yield waitFor(clock.getDelayedCalls, "the wait to start its timer")
    with pytest.raises(DeviceError) as info:
        yield timing(clock, waiting, 2)
    assert str(info.value) == (
        "Device 0 (vkbd) could not be connected: no answer from its backend within 2 s "
        "(backend state Initialising, hotplug-status not written)")
    # A backend that moved but never reported.
    yield xs.write(f"{BE}/vkbd/5/0/state", "2")
    waiting = control.waitForDevice(0, timeout=1.5)
    yield waitFor(clock.getDelayedCalls, "the wait to start its timer")
    with pytest.raises(DeviceError) as info:
        yield timing(clock, waiting, 1.5)
    assert str(info.value).endswith("within 1.5 s (backend state InitWait, "
                                    "hotplug-status not written)")


@pytest_twisted.inlineCallbacks
def test_wait_for_device_whose_area_goes_away(xs, xenstored, other, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    since = mark(xenstored)
    waiting = control.waitForDevice(0, timeout=5)
    yield waitFor(lambda: lookedAt(xenstored, f"{BE}/vfb/5/0", since),
                  "the controller's first look at the backend")
    yield other.rm(f"{BE}/vfb/5/0")
    with pytest.raises(DeviceError) as info:
        yield waiting
    assert str(info.value) == "Device 0 (vfb) could not be connected: its backend area was removed"


# -- destroying --------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_graceful_destroy_waits_for_closed_then_removes(xs, xenstored, other, host):
    before = yield dump(xs)
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    yield StubBackend(other, f"{BE}/vfb/5/0").start()
    # A timeout would only be reached after the test's own (pytest-timeout) bound.
    yield control.destroyDevice(0, timeout=600)
    assert writes(xenstored, f"{BE}/vfb/5/0/")[-3:] == [
        (f"{BE}/vfb/5/0/online", "0"),  # before state: the backend watches state
        (f"{BE}/vfb/5/0/state", "5"),
        (f"{BE}/vfb/5/0/state", "6"),  # the stub backend
    ]
    # Removed only after the backend said Closed.
    requests = [(op, " ".join(words)) for op, words in traced(xenstored) if op in ("WRITE", "RM")]
    offline = requests.index(("WRITE", f"{BE}/vfb/5/0/online 0"))
    closed = requests.index(("WRITE", f"{BE}/vfb/5/0/state 6"))
    removed = [i for i, (op, _) in enumerate(requests) if op == "RM" and i > offline]
    assert removed and removed[0] > closed
    assert {requests[i][1] for i in removed} >= {
        f"{FE}/vfb/0 ", f"{BE}/vfb/5/0 ", f"{PRIV}/vfb/0 "}
    assert (yield dump(xs)) == before


@pytest_twisted.inlineCallbacks
def test_forced_destroy_does_not_wait(xs, xenstored, host):
    before = yield dump(xs)
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    # Waiting would outlast the test's own (pytest-timeout) bound.
    yield control.destroyDevice(0, force=True, timeout=600)
    assert writes(xenstored, f"{BE}/vfb/5/0/")[-2:] == [
        (f"{BE}/vfb/5/0/online", "0"), (f"{BE}/vfb/5/0/state", "5")]
    assert (yield dump(xs)) == before


@pytest_twisted.inlineCallbacks
def test_destroy_timeout_removes_anyway(xs, host):
    before = yield dump(xs)
    clock = Clock()
    control = VkbdifController(xs, DOMID, NAME, reactor=clock)
    yield control.createDevice(VkbdConfig())
    warnings = []

    def observe(event):
        if event["log_level"] == LogLevel.warn:
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        destroying = control.destroyDevice(0, timeout=2)
        yield waitFor(clock.getDelayedCalls, "the destroy to start its timer")
        yield timing(clock, destroying, 2)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert (yield dump(xs)) == before
    assert warnings == [
        "Device 0 (vkbd) did not close: no answer from its backend within 2 s "
        "(backend state Closing, hotplug-status not written); removing it anyway"]


@pytest_twisted.inlineCallbacks
def test_destroy_keeps_other_devices(xs, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    yield control.createDevice(SECRET_VFB)
    yield control.destroyDevice(0, force=True)
    fresh = vfbAreas(1, private={"vncpasswd": "s3cret"})
    assert (yield dump(xs)) == tree(HOST, dirs=VFB_DIRS, dev=fresh)


# -- reading back ------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_configurations_from_a_fresh_connection(xs, other, host):
    configs = [SECRET_VFB, VfbConfig(sdl=True, display=":0", xauthority="/root/.Xauthority",
                                     keymap="de", depth=16, videoram=4, uuid=UUID)]
    for config in configs:
        yield vfb(xs).createDevice(config)
    yield vkbd(xs).createDevice(VkbdConfig(uuid=UUID, script="vkbd-hotplug"),
                                extra={"width": "1024", "height": "768"})
    xs.close()
    restarted = vfb(other)
    assert (yield restarted.deviceIDs()) == [0, 1]
    assert (yield restarted.getDeviceConfiguration(0)) == configs[0]
    assert (yield restarted.getDeviceConfiguration(1)) == configs[1]
    assert (yield restarted.getDeviceConfiguration(0)).vncpasswd == "s3cret"
    assert (yield vkbd(other).getDeviceConfiguration(0)) == VkbdConfig(
        uuid=UUID, script="vkbd-hotplug")
    with pytest.raises(DeviceError) as info:
        yield restarted.getDeviceConfiguration(7)
    assert str(info.value) == "Device 7 (vfb) does not exist in domain 5"


UUID = "12345678-9abc-def0-1234-56789abcdef0"


@pytest_twisted.inlineCallbacks
def test_reconfigure_changes_keys_and_secret_stays_private(xs, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB)
    yield xs.write(f"{BE}/vfb/5/0/vnc-port", "5903")  # the backend's own key stays
    new = VfbConfig(vnc=True, vncpasswd="n3w", keymap="fr", width=1024, height=768)
    yield control.reconfigureDevice(0, new)
    keys = dict(VFB_BACKEND_KEYS, keymap="fr", vncunused="1", **{"vnc-port": "5903"})
    del keys["vncdisplay"]
    assert (yield dump(xs)) == tree(
        HOST, dirs=VFB_DIRS, dev=vfbAreas(backendKeys=keys, private={"vncpasswd": "n3w"}))
    assert (yield control.getDeviceConfiguration(0)) == new
    # No password any more: gone from the private record too.
    yield control.reconfigureDevice(0, VfbConfig(vnc=True, width=1024, height=768))
    assert (yield xs.list(f"{PRIV}/vfb/0")) == []
    with pytest.raises(DeviceError) as info:
        yield control.reconfigureDevice(4, new)
    assert str(info.value) == "Device 4 (vfb) does not exist in domain 5"


@pytest_twisted.inlineCallbacks
def test_reconfigure_writes_and_removes_private_keys(xs, host):
    control = vfb(xs)
    yield control.createDevice(SECRET_VFB, private={"vkbd": "0"})
    new = VfbConfig(vnc=True, vncpasswd="n3w", width=1024, height=768)
    yield control.reconfigureDevice(0, new, private={"vncpasswd-expires": "1234"})
    assert sorted((yield xs.list(f"{PRIV}/vfb/0"))) == ["vkbd", "vncpasswd",
                                                        "vncpasswd-expires"]
    assert (yield xs.read(f"{PRIV}/vfb/0/vncpasswd-expires")) == "1234"
    yield control.reconfigureDevice(0, new, private={"vncpasswd-expires": None})
    assert sorted((yield xs.list(f"{PRIV}/vfb/0"))) == ["vkbd", "vncpasswd"]


@pytest_twisted.inlineCallbacks
def test_reconfigure_vkbd_keeps_probe_time_features(xs, host):
    control = vkbd(xs)
    yield control.createDevice(VkbdConfig(), extra={"width": "1024", "height": "768"})
    yield control.reconfigureDevice(0, VkbdConfig(script="vkbd-hotplug"))
    back = yield dump(xs, f"{BE}/vkbd/5/0")
    assert {path.rsplit("/", 1)[1]: value for path, (value, _) in back.items()} == {
        "0": "", **VKBD_BACKEND_KEYS, "script": "vkbd-hotplug"}


# -- the registry -------------------------------------------------------------------


def test_registry_knows_vfb_and_vkbd():
    assert [cls.name for cls in DEVICE_CLASSES] == ["vkbd", "vfb"]
    assert VFB.controllerClass() is VfbifController
    assert VKBD.controllerClass() is VkbdifController
    assert VFB.companion == "vkbd" and VKBD.companion is None
    assert issubclass(VfbifController, DevController)
    with pytest.raises(DeviceError) as info:
        classNamed("vtpm")
    assert str(info.value) == "unknown device class 'vtpm' (known: vkbd, vfb)"


@pytest_twisted.inlineCallbacks
def test_a_third_class_is_a_short_subclass(xs, host):
    class VconsController(DevController):
        deviceClass = "vcons"
        configClass = VkbdConfig

        def getDeviceDetails(self, config, extra):
            back, front = super().getDeviceDetails(config, extra)
            return dict(back, rows="25"), {"type": "ioemu"}

    control = VconsController(xs, DOMID, NAME)
    assert (yield control.createDevice(VkbdConfig(script="c"))) == 0
    assert (yield dump(xs, f"{FE}/vcons/0")) == area(f"{FE}/vcons/0", GUEST, {
        "backend": "/local/domain/0/backend/vcons/5/0", "backend-id": "0", "state": "1",
        "type": "ioemu"})
    assert (yield dump(xs, f"{BE}/vcons/5/0")) == area(f"{BE}/vcons/5/0", BACK, {
        "backend": "0", "domain": "guest", "frontend": "/local/domain/5/device/vcons/0",
        "frontend-id": "5", "generation": GENERATION, "online": "1", "rows": "25",
        "script": "c", "state": "1"})
    assert (yield control.getDeviceConfiguration(0)) == VkbdConfig(script="c")
    yield control.destroyDevice(0, force=True)
    assert (yield xs.exists(f"{BE}/vcons/5")) is False
