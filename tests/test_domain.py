"""Domain: a guest's displays and keyboards, created, waited for, rolled back and
destroyed, against a real xenstored (helpers shared with test_controller)."""

import errno
import textwrap

import pytest
import pytest_twisted

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
from tests.helpers_xenstore import writes
from xend_vfb.domain import Domain
from xend_vfb.errors import DeviceError, XenstoreError
from xend_vfb.model import DomainConfig, VfbConfig, VkbdConfig
from xend_vfb.vfbif import VfbifController

CONFIG = """\
    name = "guest"
    memory = 128
    kernel = "/boot/vmlinuz"
    vfb = [ 'vnc=1,vncdisplay=1,vncunused=0,vncpasswd=s3cret,keymap=de,width=1024,height=768' ]
    vkbd = [ 'script=vkbd-extra' ]
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "guest.cfg"
    path.write_text(textwrap.dedent(CONFIG))
    return DomainConfig.fromXmConfig(path)


def frontend(deviceClass, devid):
    return area(f"{FE}/{deviceClass}/{devid}", GUEST, {
        "backend": f"/local/domain/0/backend/{deviceClass}/5/{devid}",
        "backend-id": "0",
        "state": "1",
    })


def vkbdBackend(devid, width="800", height="600", **keys):
    return area(f"{BE}/vkbd/5/{devid}", BACK, {
        "backend": "0",
        "domain": "guest",
        "feature-abs-pointer": "1",
        "feature-raw-pointer": "1",
        "frontend": f"/local/domain/5/device/vkbd/{devid}",
        "frontend-id": "5",
        "generation": GENERATION,
        "height": height,
        "online": "1",
        "state": "1",
        "width": width,
        **keys,
    })


#: The whole store after creating CONFIG's devices on HOST.
CREATED = tree(
    HOST,
    dirs={
        "/local/domain/0/backend": ("", DOM0),
        "/local/domain/0/backend/vfb": ("", DOM0),
        "/local/domain/0/backend/vfb/5": ("", DOM0),
        "/local/domain/0/backend/vkbd": ("", DOM0),
        "/local/domain/0/backend/vkbd/5": ("", DOM0),
        "/local/domain/5/console": ("", BACK),
        "/local/domain/5/console/use_graphics": ("1", BACK),
        "/local/domain/5/device": ("", BACK),
        "/local/domain/5/device/vfb": ("", BACK),
        "/local/domain/5/device/vkbd": ("", BACK),
        "/xend-vfb/5/device": ("", DOM0),
        "/xend-vfb/5/device/vfb": ("", DOM0),
        "/xend-vfb/5/device/vkbd": ("", DOM0),
    },
    # The display's own keyboard: its size is the display's, for the guest's probe.
    vkbd0=tree(frontend("vkbd", 0), back=vkbdBackend(0, "1024", "768"),
               priv=area(f"{PRIV}/vkbd/0", DOM0, {})),
    vfb0=tree(
        frontend("vfb", 0),
        back=area(f"{BE}/vfb/5/0", BACK, {
            "backend": "0",
            "depth": "32",
            "domain": "guest",
            "frontend": "/local/domain/5/device/vfb/0",
            "frontend-id": "5",
            "generation": GENERATION,
            "height": "768",
            "keymap": "de",
            "online": "1",
            "opengl": "0",
            "sdl": "0",
            "state": "1",
            "videoram": "8",
            "vnc": "1",
            "vncdisplay": "1",
            "vnclisten": "127.0.0.1",
            "vncunused": "0",
            "width": "1024",
        }),
        # The secret and the pairing: readable by domain 0 only.
        priv=area(f"{PRIV}/vfb/0", DOM0, {"vkbd": "0", "vncpasswd": "s3cret"}),
    ),
    # The extra keyboard: no display, the default size.
    vkbd1=tree(frontend("vkbd", 1), back=vkbdBackend(1, script="vkbd-extra"),
               priv=area(f"{PRIV}/vkbd/1", DOM0, {})),
)


@pytest_twisted.inlineCallbacks
def test_create_writes_the_full_skeleton(xs, host, config):
    domain = Domain(xs, DOMID, NAME)
    created = yield domain.createDevices(config)
    assert created == [("vkbd", 0), ("vfb", 0), ("vkbd", 1)]
    assert (yield dump(xs)) == CREATED
    assert (yield domain.companion("vfb", 0)) == 0
    assert (yield domain.deviceIDs()) == {"vkbd": [0, 1], "vfb": [0]}


@pytest_twisted.inlineCallbacks
def test_create_order(xs, xenstored, host, config):
    yield Domain(xs, DOMID, NAME).createDevices(config)

    def device(path):
        for prefix in (f"{FE}/", f"{BE}/", f"{PRIV}/"):
            if path.startswith(prefix):
                deviceClass, *rest = path[len(prefix):].split("/")
                return f"{deviceClass}/{rest[-2]}"  # .../<domid>/<devid>/<key> in the backend
        return path

    ordered = [(device(path), path) for path, _ in writes(xenstored)
               if path.startswith((FE, BE, PRIV, "/local/domain/5/console"))]
    # One device after the other: the display's keyboard, the display, the extra keyboard.
    sequence = []
    for name, _ in ordered:
        if not sequence or sequence[-1] != name:
            sequence.append(name)
    assert sequence == ["vkbd/0", "vfb/0", "vkbd/1", "/local/domain/5/console/use_graphics"]
    # In every area, `state` comes last.
    for areaPath in (f"{FE}/vkbd/0", f"{BE}/vkbd/5/0", f"{FE}/vfb/0", f"{BE}/vfb/5/0",
                     f"{FE}/vkbd/1", f"{BE}/vkbd/5/1"):
        keys = [path for _, path in ordered if path.startswith(f"{areaPath}/")]
        assert keys[-1] == f"{areaPath}/state" and keys.count(keys[-1]) == 1


@pytest_twisted.inlineCallbacks
def test_create_then_wait_with_a_backend(xs, other, host, config):
    domain = Domain(xs, DOMID, NAME)
    created = yield domain.createDevices(config)
    for deviceClass, devid in created:
        backend = StubBackend(other, f"{BE}/{deviceClass}/5/{devid}",
                              hotplug=("connected", None))
        yield backend.start()
    yield domain.waitForDevices(created, timeout=5)
    for deviceClass, devid in created:
        assert (yield xs.read(f"{BE}/{deviceClass}/5/{devid}/hotplug-status")) == "connected"


@pytest_twisted.inlineCallbacks
def test_wait_reports_the_backend_error_verbatim(xs, other, host, config):
    domain = Domain(xs, DOMID, NAME)
    created = yield domain.createDevices(config)
    yield StubBackend(other, f"{BE}/vkbd/5/0", hotplug=("connected", None)).start()
    why = "/etc/xen/scripts/vfb: no such file"
    yield StubBackend(other, f"{BE}/vfb/5/0", hotplug=("error", why)).start()
    with pytest.raises(DeviceError) as info:
        yield domain.waitForDevices(created, timeout=5)
    assert str(info.value) == f"Device 0 (vfb) could not be connected: {why}"


@pytest_twisted.inlineCallbacks
def test_no_display_no_graphics_flag(xs, host):
    domain = Domain(xs, DOMID, NAME)
    created = yield domain.createDevices(DomainConfig(name=NAME, vkbds=(VkbdConfig(),)))
    assert created == [("vkbd", 0)]
    assert (yield xs.exists("/local/domain/5/console")) is False


# -- rolling back --------------------------------------------------------------------


TWO_DISPLAYS = DomainConfig(
    name=NAME,
    vfbs=(VfbConfig(vnc=True), VfbConfig(vnc=True, vncpasswd="s3cret")),
    vkbds=(VkbdConfig(), VkbdConfig(), VkbdConfig(script="extra")),
)


@pytest.mark.parametrize("failing, devices", [
    # the second device of all, in its transaction's last write
    (f"{BE}/vfb/5/0/state", None),
    # the fourth: the second display, after three devices were written
    (f"{FE}/vfb/1/state", TWO_DISPLAYS),
    # the private record of the second display (its secret)
    (f"{PRIV}/vfb/1/vncpasswd", TWO_DISPLAYS),
    # the last device of all
    (f"{BE}/vkbd/5/2/state", TWO_DISPLAYS),
    # the graphics flag, after every device
    ("/local/domain/5/console/use_graphics", TWO_DISPLAYS),
])
@pytest_twisted.inlineCallbacks
def test_create_failing_halfway_leaves_the_store_as_it_was(xs, host, config, failing, devices):
    before = yield dump(xs)
    broken = FailingXenstore(xs, lambda path: path == failing)
    with pytest.raises(XenstoreError) as info:
        yield Domain(broken, DOMID, NAME).createDevices(devices or config)
    assert info.value.errno == errno.EACCES
    assert str(info.value) == f"xenstore: {failing}: Permission denied (EACCES)"
    assert (yield dump(xs)) == before


@pytest_twisted.inlineCallbacks
def test_create_failing_in_a_controller_leaves_the_store_as_it_was(
        xs, host, config, monkeypatch):
    yield xs.write("/local/domain/5/console/use_graphics", "1")  # the flag was there: it stays
    before = yield dump(xs)

    def refuse(self, config, devid=None, extra=None, private=None):
        raise DeviceError("Device 0 (vfb): injected failure")

    monkeypatch.setattr(VfbifController, "createDevice", refuse)
    with pytest.raises(DeviceError) as info:
        yield Domain(xs, DOMID, NAME).createDevices(config)
    assert str(info.value) == "Device 0 (vfb): injected failure"
    assert (yield dump(xs)) == before


@pytest_twisted.inlineCallbacks
def test_create_next_to_existing_devices_rolls_back_only_its_own(xs, host, config):
    domain = Domain(xs, DOMID, NAME)
    yield domain.createDevices(config)
    before = yield dump(xs)
    broken = FailingXenstore(xs, lambda path: path == f"{BE}/vfb/5/1/state")
    with pytest.raises(XenstoreError):
        yield Domain(broken, DOMID, NAME).attach("vfb", VfbConfig(vnc=True))
    assert (yield dump(xs)) == before


# -- attaching, detaching, destroying ------------------------------------------


@pytest_twisted.inlineCallbacks
def test_attach_and_detach_a_display_with_its_keyboard(xs, other, host, config):
    domain = Domain(xs, DOMID, NAME)
    yield domain.createDevices(config)
    before = yield dump(xs)
    big = VfbConfig(vnc=True, width=1280, height=1024, videoram=16)
    # The display's keyboard is the lowest free one (the extra keyboard holds 1).
    assert (yield domain.attach("vfb", big)) == [("vkbd", 2), ("vfb", 1)]
    assert (yield domain.companion("vfb", 1)) == 2
    assert (yield dump(xs, f"{BE}/vkbd/5/2")) == vkbdBackend(2, "1280", "1024")
    assert (yield dump(xs, f"{PRIV}/vfb/1")) == area(f"{PRIV}/vfb/1", DOM0, {"vkbd": "2"})
    for path in (f"{BE}/vkbd/5/2", f"{BE}/vfb/5/1"):
        yield StubBackend(other, path).start()
    yield domain.detach("vfb", 1)
    assert (yield dump(xs)) == before


@pytest_twisted.inlineCallbacks
def test_detach_a_display_that_does_not_exist(xs, host, config):
    domain = Domain(xs, DOMID, NAME)
    yield domain.createDevices(config)
    before = yield dump(xs)
    with pytest.raises(DeviceError) as info:
        yield domain.detach("vfb", 3, force=True)
    assert str(info.value) == "Device 3 (vfb) does not exist in domain 5"
    assert (yield dump(xs)) == before


@pytest.mark.parametrize("force", [False, True])
@pytest_twisted.inlineCallbacks
def test_destroy_devices_leaves_no_areas(xs, xenstored, other, host, config, force):
    before = yield dump(xs)
    domain = Domain(xs, DOMID, NAME)
    created = yield domain.createDevices(config)
    if not force:
        for deviceClass, devid in created:
            yield StubBackend(other, f"{BE}/{deviceClass}/5/{devid}").start()
    yield domain.destroyDevices(force=force)
    # The domain's private record stays (the daemon's journal is in it), and so does
    # the graphics flag: the domain itself may go on.
    def kept(tree):
        return {p: v for p, v in tree.items() if not p.startswith("/xend-vfb/5/")
                and "/console" not in p}

    assert kept((yield dump(xs))) == kept(before)
    assert (yield xs.exists("/xend-vfb/5")) is True
    assert (yield domain.deviceIDs()) == {"vkbd": [], "vfb": []}
    # Displays first, each told `online` = 0 before `state` = 5.
    closing = [(path, value) for path, value in writes(xenstored, BE)
               if path.endswith(("/online", "/state")) and value in ("0", "5")]
    assert closing == [
        (f"{BE}/vfb/5/0/online", "0"), (f"{BE}/vfb/5/0/state", "5"),
        (f"{BE}/vkbd/5/0/online", "0"), (f"{BE}/vkbd/5/0/state", "5"),
        (f"{BE}/vkbd/5/1/online", "0"), (f"{BE}/vkbd/5/1/state", "5"),
    ]


@pytest_twisted.inlineCallbacks
def test_a_restarted_daemon_reads_the_domain_back(xs, other, host, config):
    yield Domain(xs, DOMID, NAME).createDevices(config)
    restarted = Domain(other, DOMID, NAME)
    assert (yield restarted.controller("vfb").getDeviceConfiguration(0)) == config.vfbs[0]
    assert (yield restarted.controller("vkbd").getDeviceConfiguration(0)) == config.vkbds[0]
    assert (yield restarted.controller("vkbd").getDeviceConfiguration(1)) == config.vkbds[1]
    assert (yield restarted.companion("vfb", 0)) == 0
