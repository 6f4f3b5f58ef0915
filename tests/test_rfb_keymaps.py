"""Keysyms to Linux keycodes per guest layout, and one viewer's keyboard and pointer state."""

import pytest
from zope.interface import implementer

from xend_vfb.display.screen import IInputSink
from xend_vfb.errors import ConfigError
from xend_vfb.rfb.input import BTN_LEFT, BTN_RIGHT, Keyboard, Pointer
from xend_vfb.rfb.keymaps import KEYMAPS, KeyCombo, loadKeymap

SHIFT_L, SHIFT_R, ALTGR, CAPS, ALT_R_KEYSYM = 42, 54, 100, 58, 0xFFEA
KEY_Q, KEY_Y, KEY_Z, KEY_A, KEY_2, KEY_E, KEY_GRAVE, KEY_102ND = 16, 21, 44, 30, 3, 18, 41, 86
SHIFT_L_KEYSYM, CAPS_KEYSYM = 0xFFE1, 0xFFE5


@implementer(IInputSink)
class Sink:
    absolute = False

    def __init__(self):
        self.events = []

    def keyEvent(self, keycode, pressed):
        self.events.append((keycode, pressed))

    def pointerMotion(self, dx, dy, dz):
        self.events.append(("motion", dx, dy, dz))

    def pointerPosition(self, x, y, dz):
        self.events.append(("pos", x, y, dz))


def keyboard(name):
    sink = Sink()
    return Keyboard(loadKeymap(name), sink), sink


def tap(kb, keysym):
    kb.keyEvent(keysym, True)
    kb.keyEvent(keysym, False)


def sym(char):
    """A character's keysym: Latin-1 is itself, the rest Unicode keysyms."""
    return ord(char) if ord(char) < 0x100 else 0x1000000 | ord(char)


def test_known_keymaps_and_unknown_one():
    # The names xm and QEMU users know, each compiled from the system's XKB data.
    for name in ("en-us", "en-gb", "de", "de-ch", "fr", "fr-be", "fr-ch", "es", "it", "pt",
                 "pt-br", "sv", "no", "da", "fi", "nl", "pl", "cz", "hu", "ru", "ja", "tr"):
        assert name in KEYMAPS
    with pytest.raises(ConfigError, match=r"^unknown keymap 'xx' \(known: en-us, en-gb, de, "):
        loadKeymap("xx")


@pytest.mark.parametrize("name", sorted(KEYMAPS))
def test_every_keymap_types_letters_digits_and_space(name):
    keymap = loadKeymap(name)
    for char in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ":
        combo = keymap.lookup(sym(char))
        assert combo is not None and combo.hasLevel, (name, char)
    assert keymap.lookup(0xFF0D) == KeyCombo(28)  # Return: the same key, no level
    assert keymap.lookup(0xFFE1) == KeyCombo(SHIFT_L)


# The expected keys are read off the keyboards themselves (German DIN 2137, French AZERTY,
# US ANSI, Swiss German, Spanish, Russian ЙЦУКЕН), not from XKB.
@pytest.mark.parametrize(
    "name, char, combo",
    [
        ("en-us", "@", KeyCombo(KEY_2, shift=True)),
        ("en-us", "<", KeyCombo(51, shift=True)),  # Shift+comma: US keyboards have no ISO key
        ("en-us", "a", KeyCombo(KEY_A, shift=False, caps=True)),
        ("de", "@", KeyCombo(KEY_Q, shift=False, altgr=True, caps=True)),
        ("de", "z", KeyCombo(KEY_Y, shift=False, caps=True)),
        ("de", "Z", KeyCombo(KEY_Y, shift=True, caps=True)),
        ("de", "y", KeyCombo(KEY_Z, shift=False, caps=True)),
        ("de", "<", KeyCombo(KEY_102ND, shift=False)),
        ("de", "|", KeyCombo(KEY_102ND, shift=False, altgr=True)),
        ("de", "ß", KeyCombo(12, shift=False)),
        ("de", "?", KeyCombo(12, shift=True)),
        ("de", "{", KeyCombo(8, shift=False, altgr=True)),
        ("de", "[", KeyCombo(9, shift=False, altgr=True)),
        ("de", "]", KeyCombo(10, shift=False, altgr=True)),
        ("de", "}", KeyCombo(11, shift=False, altgr=True)),
        ("de", "\\", KeyCombo(12, shift=False, altgr=True)),
        ("de", "~", KeyCombo(27, shift=False, altgr=True)),
        ("de", "€", KeyCombo(KEY_E, shift=False, altgr=True, caps=True)),
        ("de", "ü", KeyCombo(26, shift=False, caps=True)),
        ("de", "Ö", KeyCombo(39, shift=True, caps=True)),
        ("fr", "@", KeyCombo(11, shift=False, altgr=True)),
        ("fr", "a", KeyCombo(KEY_Q, shift=False, caps=True)),
        ("fr", "1", KeyCombo(2, shift=True)),
        ("fr", "é", KeyCombo(3, shift=False)),
        ("fr", "<", KeyCombo(KEY_102ND, shift=False)),
        ("de-ch", "z", KeyCombo(KEY_Y, shift=False, caps=True)),
        ("de-ch", "@", KeyCombo(KEY_2, shift=False, altgr=True)),
        ("es", "ñ", KeyCombo(39, shift=False, caps=True)),
        ("ru", "й", KeyCombo(KEY_Q, shift=False, caps=True)),
        ("ru", "a", KeyCombo(KEY_A, shift=False, caps=True)),  # Latin: where US keyboards have it
        ("en-us", " ", KeyCombo(57, shift=False)),
    ],
)
def test_characters(name, char, combo):
    assert loadKeymap(name).lookup(sym(char)) == combo


def test_layout_independent_and_special_keysyms():
    de = loadKeymap("de")
    assert de.lookup(0x20AC) == de.lookup(0x10020AC)  # EuroSign, legacy and Unicode keysym
    assert de.lookup(0xFE52) == KeyCombo(KEY_GRAVE, shift=False)  # dead_circumflex
    assert de.lookup(ord("^")) == de.lookup(0xFE52)  # the spacing character: the dead key
    assert de.lookup(0xFE20) == KeyCombo(15)  # ISO_Left_Tab: Tab, with the client's Shift
    assert de.lookup(0xFFBE) == KeyCombo(59)  # F1
    assert de.lookup(0xFFB1) == KeyCombo(79)  # KP_1: the guest's Num Lock decides
    assert de.lookup(0xFE03) == de.lookup(ALT_R_KEYSYM) == KeyCombo(ALTGR)
    assert de.lookup(0x1234) is None
    assert de.usesAltGr and loadKeymap("fr").usesAltGr and not loadKeymap("en-us").usesAltGr


def test_modifier_added_and_restored_around_the_key():
    kb, sink = keyboard("en-us")
    tap(kb, ord("A"))
    assert sink.events == [(SHIFT_L, True), (KEY_A, True), (SHIFT_L, False), (KEY_A, False)]


def test_client_shift_released_for_an_unshifted_altgr_symbol():
    # A US client types '@' as Shift+2: a German guest needs AltGr+Q without Shift.
    kb, sink = keyboard("de")
    kb.keyEvent(SHIFT_L_KEYSYM, True)
    tap(kb, ord("@"))
    kb.keyEvent(SHIFT_L_KEYSYM, False)
    assert sink.events == [
        (SHIFT_L, True),
        (SHIFT_L, False), (ALTGR, True), (KEY_Q, True), (ALTGR, False), (SHIFT_L, True),
        (KEY_Q, False),
        (SHIFT_L, False),
    ]


def test_right_alt_is_left_alone_on_layouts_without_altgr():
    kb, sink = keyboard("en-us")
    kb.keyEvent(ALT_R_KEYSYM, True)
    tap(kb, ord("q"))
    assert sink.events == [(ALTGR, True), (KEY_Q, True), (KEY_Q, False)]


def test_caps_lock_is_not_applied_twice():
    kb, sink = keyboard("en-us")
    tap(kb, CAPS_KEYSYM)
    tap(kb, ord("A"))  # Caps Lock on in the guest already makes it upper case
    tap(kb, ord("a"))
    assert sink.events == [
        (CAPS, True), (CAPS, False),
        (KEY_A, True), (KEY_A, False),
        (SHIFT_L, True), (KEY_A, True), (SHIFT_L, False), (KEY_A, False),
    ]


def test_release_under_another_keysym_and_unknown_keys():
    kb, sink = keyboard("en-us")
    kb.keyEvent(SHIFT_L_KEYSYM, True)
    kb.keyEvent(ord("A"), True)
    kb.keyEvent(SHIFT_L_KEYSYM, False)
    kb.keyEvent(ord("a"), False)  # released as 'a' once Shift was up
    kb.keyEvent(ord("a"), False)  # not held: nothing
    tap(kb, 0x1234)  # no key for it: nothing
    assert sink.events == [(SHIFT_L, True), (KEY_A, True), (SHIFT_L, False), (KEY_A, False)]


def test_release_all():
    kb, sink = keyboard("en-us")
    kb.keyEvent(SHIFT_L_KEYSYM, True)
    kb.keyEvent(ord("A"), True)
    sink.events.clear()
    kb.releaseAll()
    kb.releaseAll()
    assert sink.events == [(KEY_A, False), (SHIFT_L, False)]  # once only


def test_pointer_buttons_wheel_and_release():
    sink = Sink()
    pointer = Pointer(sink)
    pointer.pointerEvent(0b00001, 5, 5)
    pointer.pointerEvent(0b00101, 6, 5)
    pointer.pointerEvent(0b01100, 6, 5)  # left up, wheel up pressed
    pointer.pointerEvent(0b00100, 6, 5)  # wheel released: no event
    pointer.releaseAll()
    assert sink.events == [
        (BTN_LEFT, True),
        ("motion", 1, 0, 0), (BTN_RIGHT, True),
        ("motion", 0, 0, -1), (BTN_LEFT, False),
        (BTN_RIGHT, False),
    ]
