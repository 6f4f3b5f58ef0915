"""VNC end to end: vncdotool against a real backend process serving a simulated guest.

The guest runs in the test's reactor (the real simulator code, so the test can
resize it and read what it logs to ``input.jsonl``); the backend is the real
``xend-vfb-backend`` program; vncdotool is the independent client.  Pixels go
guest framebuffer -> backend copy -> RFB -> client; input goes client -> RFB ->
vkbd ring -> guest.
"""

import json
import os

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred
from vncdotool.client import AuthenticationError

from tests.helpers_backend import (
    createDomain,
    imageBytes,
    screenshot,
    status,
    waitStates,
)
from tests.helpers_rfb import (
    BTN_LEFT,
    BTN_RIGHT,
    KEY_H,
    KEY_I,
    VNCDOTOOL_WARNINGS,
    connect,
    hangUp,
    leaveMidUpdate,
    roundTrip,
)
from tests.helpers_wait import waitFor
from xend_vfb.guest.pattern import patternBytes, pixel
from xend_vfb.xenstore.paths import backendPath

pytestmark = [pytest.mark.timeout(60), *VNCDOTOOL_WARNINGS]

DOMID = 6
PATTERN = imageBytes(patternBytes(800, 600, DOMID, 0), 800, 600)


async def served(xs, guestFactory, backendProcess, runDir, guestOptions=None, keyboard=None,
                 **vfbKeys):
    """A guest with one display Connected to a real backend; (guest, backend, port)."""
    domain, created = await createDomain(xs, DOMID, vfbs=[vfbKeys], keyboard=keyboard)
    guest = await guestFactory(DOMID, **(guestOptions or {}))
    backend = backendProcess(DOMID)
    await waitStates(xs, DOMID, created)
    port = int(await xs.read(f"{backendPath(DOMID, 'vfb', 0)}/vnc-port"))
    return guest, backend, port


def inputEvents(runDir):
    path = os.path.join(runDir, "guests", str(DOMID), "input.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


async def waitInput(runDir, count):
    await waitFor(lambda: len(inputEvents(runDir)) >= count, f"{count} input events", 10)
    return inputEvents(runDir)


async def viewers(backend):
    """How many viewers the backend's vfb/0 display has."""
    devices = (await status(backend))["devices"]
    return next(d["viewers"] for d in devices if (d["class"], d["devid"]) == ("vfb", 0))


async def captured(client, expected, what):
    """Ask for updates until the client's screen equals `expected` (RGB bytes)."""

    async def check():
        await client.refreshScreen(incremental=False)
        return client.screen.tobytes() == expected

    await waitFor(lambda: ensureDeferred(check()), what, 10)


@pytest_twisted.ensureDeferred
async def test_capture_equals_guest_pattern(xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    client = await connect(port)
    assert (client.width, client.height) == (800, 600)
    await client.refreshScreen()
    assert client.screen.tobytes() == PATTERN

    # The guest draws: its UPDATE reaches the client through the backend.
    frontend = guest.device("vfb", 0)
    frontend.draw(200, 100, 50, 40, pixel(12, 34, 56) * (50 * 40))
    expected = bytearray(patternBytes(800, 600, DOMID, 0))
    for row in range(40):
        start = ((100 + row) * 800 + 200) * 4
        expected[start:start + 200] = pixel(12, 34, 56) * 50
    await captured(client, imageBytes(bytes(expected), 800, 600), "the guest's drawing")
    await hangUp(client)
    backend.assertHealthy()


async def copies(backend):
    """How many copies out of the guest's framebuffer vfb/0 made so far."""
    devices = (await status(backend))["devices"]
    return next(d["copies"] for d in devices if (d["class"], d["devid"]) == ("vfb", 0))


@pytest_twisted.ensureDeferred
async def test_pixels_copied_only_for_a_screenshot_or_a_viewer(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    # Connected, nobody watching: the framebuffer is mapped, nothing copied.
    assert await copies(backend) == 0
    assert (await screenshot(backend)).tobytes() == PATTERN
    assert await copies(backend) == 1  # the screenshot's, exact
    client = await connect(port)
    await client.refreshScreen()
    assert client.screen.tobytes() == PATTERN
    # The new viewer's first picture (and the guest's full update it asks for once
    # watched, if that arrives after the first picture).
    assert await copies(backend) >= 2
    await hangUp(client)
    backend.assertHealthy()


@pytest_twisted.ensureDeferred
async def test_typing_reaches_the_guest(xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    client = await connect(port)
    for char in "hi":
        client.keyPress(char)
    await roundTrip(client)
    events = await waitInput(runDir, 4)
    assert events == [
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_H, "pressed": True},
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_H, "pressed": False},
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_I, "pressed": True},
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_I, "pressed": False},
    ]
    await hangUp(client)


@pytest_twisted.ensureDeferred
async def test_pointer_reaches_the_guest(xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    client = await connect(port)
    client.mouseMove(10, 20)
    client.mousePress(1)
    client.mouseMove(799, 599)
    client.mousePress(3)
    await roundTrip(client)
    events = await waitInput(runDir, 6)
    assert events == [
        {"dev": "vkbd/0", "type": "pos", "abs_x": 10, "abs_y": 20, "rel_z": 0},
        {"dev": "vkbd/0", "type": "key", "keycode": BTN_LEFT, "pressed": True},
        {"dev": "vkbd/0", "type": "key", "keycode": BTN_LEFT, "pressed": False},
        {"dev": "vkbd/0", "type": "pos", "abs_x": 799, "abs_y": 599, "rel_z": 0},
        {"dev": "vkbd/0", "type": "key", "keycode": BTN_RIGHT, "pressed": True},
        {"dev": "vkbd/0", "type": "key", "keycode": BTN_RIGHT, "pressed": False},
    ]
    await hangUp(client)


@pytest_twisted.ensureDeferred
async def test_password_accepted_and_refused(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir,
                                        vncpasswd="s3cret!")
    # The password lives in the private record, not where the guest can read it.
    area = backendPath(DOMID, "vfb", 0)
    assert (await xs.readOrNone(f"{area}/vncpasswd")) is None
    with pytest.raises(AuthenticationError):
        await connect(port, password="wrong")
    client = await connect(port, password="s3cret!")
    await client.refreshScreen()
    assert client.screen.tobytes() == PATTERN
    await hangUp(client)
    assert "s3cret!" not in backend.log()


@pytest_twisted.ensureDeferred
async def test_resize_by_the_guest_seen_by_the_client(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    client = await connect(port)
    await client.refreshScreen()
    sizes = []
    resized = Deferred()
    original = client.updateDesktopSize

    def updateDesktopSize(width, height):
        sizes.append((width, height))
        original(width, height)
        if not resized.called:
            resized.callback(None)

    client.updateDesktopSize = updateDesktopSize
    guest.device("vfb", 0).resize(640, 480)
    client.framebufferUpdateRequest(incremental=True)
    await resized
    assert sizes == [(640, 480)]
    await captured(client, imageBytes(patternBytes(640, 480, DOMID, 0), 640, 480),
                   "the resized screen")
    assert client.screen.size == (640, 480)
    await hangUp(client)
    backend.assertHealthy()


async def resized(client, guest, width, height):
    """Resize the guest's screen and wait until the client has the new size."""
    done = Deferred()
    original = client.updateDesktopSize

    def updateDesktopSize(w, h):
        original(w, h)
        if (w, h) == (width, height) and not done.called:
            done.callback(None)

    client.updateDesktopSize = updateDesktopSize
    guest.device("vfb", 0).resize(width, height)
    client.framebufferUpdateRequest(incremental=True)
    await done


def positions(events):
    return [(e["abs_x"], e["abs_y"]) for e in events if e["type"] == "pos"]


@pytest_twisted.ensureDeferred
async def test_pointer_stays_right_after_the_guest_resizes(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    client = await connect(port)
    await client.refreshScreen()
    # 1024x768 fits because the guest took the vfb's videoram (8 MiB), as xen-fbfront does.
    await resized(client, guest, 1024, 768)
    # Its kbdfront still takes 0..800 x 0..600, the width/height it read at probe.
    client.mouseMove(1023, 767)
    client.mouseMove(512, 384)
    client.mouseMove(0, 0)
    await roundTrip(client)
    assert positions(await waitInput(runDir, 3)) == [(799, 599), (400, 300), (0, 0)]
    await hangUp(client)
    backend.assertHealthy()


@pytest_twisted.ensureDeferred
async def test_raw_pointer_for_a_guest_that_asks(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir,
                                        guestOptions={"rawPointer": True})
    assert (await xs.read(f"{backendPath(DOMID, 'vkbd', 0)}/feature-raw-pointer")) == "1"
    client = await connect(port)
    await client.refreshScreen()
    client.mouseMove(799, 599)
    await roundTrip(client)
    await resized(client, guest, 640, 480)
    client.mouseMove(639, 0)
    await roundTrip(client)
    assert positions(await waitInput(runDir, 2)) == [(0x7FFF, 0x7FFF), (0x7FFF, 0)]
    await hangUp(client)


@pytest_twisted.ensureDeferred
async def test_a_keyboard_without_keyboard_or_pointer(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(
        xs, guestFactory, backendProcess, runDir,
        keyboard={"disableKeyboard": True, "width": 1600, "height": 1200})
    client = await connect(port)
    client.keyPress("h")  # dropped: the guest has no keyboard
    client.mouseMove(400, 300)  # scaled to the keyboard's own range
    await roundTrip(client)
    events = await waitInput(runDir, 1)
    assert events == [{"dev": "vkbd/0", "type": "pos", "abs_x": 800, "abs_y": 600, "rel_z": 0}]
    await hangUp(client)


@pytest_twisted.ensureDeferred
async def test_a_keyboard_without_pointer(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir,
                                        keyboard={"disablePointer": True})
    client = await connect(port)
    client.mouseMove(10, 20)  # dropped, button too: the guest has no pointer
    client.mousePress(1)
    client.keyPress("h")
    await roundTrip(client)
    assert await waitInput(runDir, 2) == [
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_H, "pressed": True},
        {"dev": "vkbd/0", "type": "key", "keycode": KEY_H, "pressed": False},
    ]
    await hangUp(client)


@pytest_twisted.ensureDeferred
async def test_two_clients_and_one_leaving_mid_update(
        xs, guestFactory, backendProcess, runDir):
    guest, backend, port = await served(xs, guestFactory, backendProcess, runDir)
    steady = await connect(port)
    await steady.refreshScreen()
    leaver = await connect(port)
    await leaver.refreshScreen()
    assert steady.screen.tobytes() == leaver.screen.tobytes() == PATTERN
    assert (await viewers(backend)) == 2

    # The leaver asks for a full frame (1.9 MB) and drops the line at its first bytes.
    await leaveMidUpdate(leaver)

    async def oneViewer():
        return (await viewers(backend)) == 1

    await waitFor(lambda: ensureDeferred(oneViewer()), "the leaver to be gone", 10)
    guest.device("vfb", 0).draw(0, 0, 800, 600, pixel(200, 10, 10) * (800 * 600))
    await captured(steady, imageBytes(pixel(200, 10, 10) * (800 * 600), 800, 600),
                   "the redraw at the steady client")
    steady.keyPress("h")
    await roundTrip(steady)
    assert (await waitInput(runDir, 1))[0]["keycode"] == KEY_H
    await hangUp(steady)
    backend.assertHealthy()
