"""Keys from real RFB clients: QEMU extended key events, and keysyms through the guest's layout.

The client is vncdotool (it lists the QEMU extended key event pseudo-encoding
and records the server's acknowledgement); the extended key events themselves
are written as the QEMU client message defines them (type 255, subtype 0,
down, keysym, XT scancode), since vncdotool does not send them.  A German
client is simulated: what a user on a German keyboard produces is the
position (scancode) of the key pressed and the keysym the client's layout
gave it.
"""

import struct

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from vncdotool import rfb

from tests.helpers_rfb import FakeSink, connect, hangUp, roundTrip, startDisplay
from xend_vfb.display.screen import Screen

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

SHIFT, ALTGR, KEY_Q, KEY_Y, KEY_Z, KEY_E, KEY_7, KEY_MINUS, KEY_102ND = (
    42, 100, 16, 21, 44, 18, 8, 12, 86)
KEY_RIGHTCTRL, KEY_DELETE, KEY_KPENTER = 97, 111, 96
# XT scancodes of the keys a German user presses (positions: what US keyboards print on them).
XT = {"shift": 0x2A, "altgr": 0xB8, "q": 0x10, "y": 0x15, "z": 0x2C, "e": 0x12, "7": 0x08,
      "minus": 0x0C, "102nd": 0x56, "rctrl": 0x9D, "delete": 0xD3, "kpenter": 0x9C}
# The keysyms the German client's layout gives those keys.
SHIFT_L, ISO_LEVEL3_SHIFT, EURO = 0xFFE1, 0xFE03, 0x20AC
#: The guest's keys for z, y, ß, @, { and € typed on a German keyboard.
GERMAN_ZY_SZ_AT_BRACE_EURO = [
    (KEY_Y, True), (KEY_Y, False), (KEY_Z, True), (KEY_Z, False),
    (KEY_MINUS, True), (KEY_MINUS, False),
    (ALTGR, True), (KEY_Q, True), (KEY_Q, False), (ALTGR, False),
    (ALTGR, True), (KEY_7, True), (KEY_7, False), (ALTGR, False),
    (ALTGR, True), (KEY_E, True), (KEY_E, False), (ALTGR, False),
]


def extendedKey(client, scancode: int, keysym: int, down: bool) -> None:
    client.transport.write(struct.pack("!BBHII", 255, 0, down, keysym, scancode))


def tapExtended(client, scancode: int, keysym: int) -> None:
    extendedKey(client, scancode, keysym, True)
    extendedKey(client, scancode, keysym, False)


def keys(sink):
    return [(code, pressed) for kind, code, pressed in sink.events if kind == "key"]


async def extendedClient(port):
    """A client that listed the pseudo-encoding and got its acknowledgement."""
    client = await connect(port)
    await client.refreshScreen()
    assert rfb.Encoding.PSEUDO_QEMU_EXTENDED_KEY_EVENT in client.negotiated_encodings
    return client


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("keymap", ["de", "en-us"])
async def test_german_client_with_extended_key_events(keymap):
    # Whatever the keymap says, the guest gets the keys the user pressed: its own
    # German layout turns them into z, y, ß, @, { and €.
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink, keymap=keymap)
    client = await extendedClient(port)
    tapExtended(client, XT["y"], ord("z"))
    tapExtended(client, XT["z"], ord("y"))
    tapExtended(client, XT["minus"], ord("ß"))
    for key, sym in (("q", ord("@")), ("7", ord("{")), ("e", EURO)):
        extendedKey(client, XT["altgr"], ISO_LEVEL3_SHIFT, True)
        tapExtended(client, XT[key], sym)
        extendedKey(client, XT["altgr"], ISO_LEVEL3_SHIFT, False)
    extendedKey(client, XT["shift"], SHIFT_L, True)
    tapExtended(client, XT["102nd"], ord(">"))
    extendedKey(client, XT["shift"], SHIFT_L, False)
    await roundTrip(client)
    assert keys(sink) == [
        *GERMAN_ZY_SZ_AT_BRACE_EURO,
        (SHIFT, True), (KEY_102ND, True), (KEY_102ND, False), (SHIFT, False),
    ]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_extended_keys_with_the_e0_prefix_and_unknown_scancodes():
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink, keymap="de")
    client = await extendedClient(port)
    tapExtended(client, XT["rctrl"], 0xFFE4)
    tapExtended(client, XT["delete"], 0xFFFF)
    tapExtended(client, XT["kpenter"], 0xFF8D)
    tapExtended(client, 0, ord("z"))  # no scancode: the keysym, through the keymap
    tapExtended(client, 0x7F, ord("@"))  # a scancode no key has: likewise
    await roundTrip(client)
    assert keys(sink) == [
        (KEY_RIGHTCTRL, True), (KEY_RIGHTCTRL, False),
        (KEY_DELETE, True), (KEY_DELETE, False),
        (KEY_KPENTER, True), (KEY_KPENTER, False),
        (KEY_Y, True), (KEY_Y, False),
        (ALTGR, True), (KEY_Q, True), (ALTGR, False), (KEY_Q, False),
    ]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_extended_keys_held_by_a_leaving_viewer_are_released():
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink)
    gone = Deferred()
    display.screen.onViewersChanged = lambda count: count == 0 and gone.callback(None)
    client = await extendedClient(port)
    extendedKey(client, XT["altgr"], ISO_LEVEL3_SHIFT, True)
    extendedKey(client, XT["q"], ord("@"), True)
    extendedKey(client, XT["q"], ord("@"), False)
    await roundTrip(client)
    client.transport.abortConnection()
    await gone
    assert keys(sink)[-1] == (ALTGR, False)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_no_acknowledgement_unless_asked_and_the_message_is_then_refused():
    display, port = await startDisplay(Screen(16, 16))
    client = await connect(port, qemuExtendedKey=False)
    await client.refreshScreen()
    assert rfb.Encoding.PSEUDO_QEMU_EXTENDED_KEY_EVENT not in client.negotiated_encodings
    lost = Deferred()
    client.factory._disconnect_callbacks.append(lambda reason: lost.callback(None))
    tapExtended(client, XT["q"], ord("q"))
    await lost
    assert display.viewers == 0
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_acknowledged_once_with_the_next_update():
    screen = Screen(24, 12)
    display, port = await startDisplay(screen)
    client = await connect(port)
    seen = []
    handle = client._handleRectangle

    def recordRectangle(block):
        seen.append(struct.unpack("!HHHHi", block))
        handle(block)

    client._handleRectangle = recordRectangle
    await client.refreshScreen()
    # The encodings again: already acknowledged, not again.
    client.setEncodings([rfb.Encoding.RAW, rfb.Encoding.PSEUDO_QEMU_EXTENDED_KEY_EVENT])
    await client.refreshScreen()
    acks = [r for r in seen if r[4] == rfb.Encoding.PSEUDO_QEMU_EXTENDED_KEY_EVENT]
    assert acks == [(0, 0, 24, 12, -258)]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_german_client_without_extended_key_events():
    # Keysyms only: the de keymap finds each symbol's key on the guest's German layout.
    # The client holds AltGr (ISO_Level3_Shift) and Shift itself, as a German X client does.
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink, keymap="de")
    client = await connect(port, qemuExtendedKey=False)
    for char in "zyß":
        client.keyEvent(ord(char), True)
        client.keyEvent(ord(char), False)
    for sym in (ord("@"), ord("{"), EURO):
        client.keyEvent(ISO_LEVEL3_SHIFT, True)
        client.keyEvent(sym, True)
        client.keyEvent(sym, False)
        client.keyEvent(ISO_LEVEL3_SHIFT, False)
    client.keyEvent(SHIFT_L, True)
    client.keyEvent(ord("?"), True)
    client.keyEvent(ord("?"), False)
    client.keyEvent(SHIFT_L, False)
    client.keyEvent(ord("@"), True)  # '@' without AltGr held (a US client): added around it
    client.keyEvent(ord("@"), False)
    await roundTrip(client)
    assert keys(sink) == [
        *GERMAN_ZY_SZ_AT_BRACE_EURO,
        (SHIFT, True), (KEY_MINUS, True), (KEY_MINUS, False), (SHIFT, False),
        (ALTGR, True), (KEY_Q, True), (ALTGR, False), (KEY_Q, False),
    ]
    await hangUp(client)
    await display.stop()
