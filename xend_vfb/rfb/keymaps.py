"""RFB keysyms to Linux input keycodes, for the keyboard layout the guest uses.

A VNC client sends keysyms: the symbol the user meant ('@', 'z', Return).  The
guest only understands key positions (Linux KEY_* codes) and applies its own
layout to them.  The keymap (xm's ``keymap=``) names the guest's layout, so
for each symbol we find the key, and the Shift/AltGr level, that produces it
there: on a German guest 'z' is KEY_Y and '@' is AltGr+KEY_Q.

Layouts are not described here: each is compiled from the system's XKB data
by libxkbcommon (the layouts X and Wayland use), under the names xm and QEMU
users know (`xend_vfb.kinds.KEYMAPS`).  Every key of the compiled keymap
(XKB keycode = Linux keycode + 8) is read level by level; a level reached
with Shift and/or AltGr (XKB's LevelThree) alone makes a `KeyCombo`.  When a
keysym is on several keys, the cheapest wins (`KeyCombo._cost`): a key of a
PC keyboard's main block with fewer modifiers, then the ISO key left of Z (US
keyboards lack it), then keys a PC keyboard does not have.  Only characters
carry a level; Tab, F1 or Home go with whatever modifiers the client holds,
and keypad keys with the guest's own Num Lock, as on a real keyboard.

Modifier keys are fixed positions, whatever the layout (Alt_R, Mode_switch
and ISO_Level3_Shift are all the right Alt key).  Dead keys also stand for
their spacing character and the other way round ('^' on a German guest is
its dead circumflex key: the guest composes it with the next key as usual).
A layout whose main keys lack Latin letters or digits (ru, th, ...) types
them where a US keyboard has them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from xend_vfb.errors import ConfigError
from xend_vfb.kinds import KEYMAPS

__all__ = [
    "KeyCombo",
    "Keymap",
    "loadKeymap",
    "KEYMAPS",
    "KEY_LEFTSHIFT",
    "KEY_RIGHTSHIFT",
    "KEY_RIGHTALT",
    "KEY_CAPSLOCK",
]

KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_RIGHTALT = 100
KEY_CAPSLOCK = 58

_ISO_LEVEL3_SHIFT, _MODE_SWITCH = 0xFE03, 0xFF7E
_KEY_102ND = 86
_XKB_OFFSET = 8  # XKB keycode = Linux keycode + 8 (evdev rules)
# Real modifier masks of XKB's core modifiers, as the evdev rules bind them.
_SHIFT, _LOCK, _MOD2_NUMLOCK, _MOD5_LEVEL3 = 0x01, 0x02, 0x10, 0x80
# Fake keys XKB uses to hold modifiers (LVL3, MDSW, ALT, META, SUPR, HYPR): no keyboard has them.
_VIRTUAL_KEYS = frozenset({84, 195, 196, 197, 198, 199})
# The keys of a PC keyboard (its ISO key left of Z aside): preferred when a symbol is on several.
_MAIN_KEYS = frozenset(range(1, 84)) | {87, 88} | frozenset(range(96, 112)) | {119, 125, 126, 127}

# Modifiers: the same key on every layout, no level.
_MODIFIERS = {
    0xFFE1: KEY_LEFTSHIFT,  # Shift_L
    0xFFE2: KEY_RIGHTSHIFT,  # Shift_R
    0xFFE3: 29,  # Control_L
    0xFFE4: 97,  # Control_R
    0xFFE5: KEY_CAPSLOCK,  # Caps_Lock
    0xFFE7: 125,  # Meta_L
    0xFFE8: 126,  # Meta_R
    0xFFE9: 56,  # Alt_L
    0xFFEA: KEY_RIGHTALT,  # Alt_R
    0xFFEB: 125,  # Super_L
    0xFFEC: 126,  # Super_R
    _ISO_LEVEL3_SHIFT: KEY_RIGHTALT,  # AltGr
    _MODE_SWITCH: KEY_RIGHTALT,
    0xFF7F: 69,  # Num_Lock
    0xFF14: 70,  # Scroll_Lock
}
# Keysyms clients send that XKB only has with Alt or Ctrl held: the key alone.
_FALLBACKS = {
    0xFF15: 99,  # Sys_Req (Alt+Print)
    0xFF6B: 119,  # Break (Ctrl+Pause)
}
# Dead keysym <-> the spacing character it stands for.
_DEAD_KEYS = {
    0xFE50: 0x60,  # dead_grave: grave
    0xFE51: 0xB4,  # dead_acute: acute
    0xFE52: 0x5E,  # dead_circumflex: asciicircum
    0xFE53: 0x7E,  # dead_tilde: asciitilde
    0xFE57: 0xA8,  # dead_diaeresis: diaeresis
    0xFE5B: 0xB8,  # dead_cedilla: cedilla
}
_UNICODE_KEYSYM = 0x1000000
_LATIN = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class KeyCombo:
    """The key producing a keysym, and the levels it needs (None: no level, e.g. Return).

    `caps`: Caps Lock acts as Shift on this key (cased letters).
    """

    keycode: int
    shift: bool | None = None
    altgr: bool = False
    caps: bool = False

    @property
    def hasLevel(self) -> bool:
        """Whether the client's modifiers must be adjusted to this combo's level."""
        return self.shift is not None

    def _cost(self) -> tuple[int, int]:
        # Shift costs 2, AltGr 4, the ISO key 3: a US guest types '<' as Shift+comma, a
        # French one on its ISO key rather than as Shift+AltGr+Z.  Keys beyond a PC
        # keyboard's (multimedia, Euro, ...) come last.
        levels = 2 * bool(self.shift) + 4 * self.altgr
        key = 0 if self.keycode in _MAIN_KEYS else 3 if self.keycode == _KEY_102ND else 7
        return (levels + key, self.keycode)


_NONE = KeyCombo(0)


def _isCharacter(xkb: object, keysym: int) -> bool:
    """Whether a keysym types a character (or is a dead key): then its level matters."""
    if 0xFE50 <= keysym <= 0xFE8F:
        return True
    text = xkb.keysym_to_string(keysym)  # type: ignore[attr-defined]
    return bool(text) and text.isprintable()


class Keymap:
    """The keysym -> key table of one guest layout."""

    def __init__(self, name: str, combos: dict[int, KeyCombo], usesAltGr: bool) -> None:
        self.name = name
        self._combos = combos
        #: Whether the right Alt key is AltGr (then its state is adjusted per symbol).
        self.usesAltGr = usesAltGr

    def lookup(self, keysym: int) -> KeyCombo | None:
        """The key for `keysym`, or None when this layout cannot type it."""
        return self._combos.get(keysym)

    def keysyms(self) -> frozenset[int]:
        """Every keysym this layout can type."""
        return frozenset(self._combos)


def _readXkb(layout: str, variant: str) -> tuple[dict[int, KeyCombo], bool]:
    """Every keysym the XKB layout types with Shift/AltGr alone, and its cheapest key;
    whether its right Alt key is AltGr."""
    from xkbcommon import xkb  # imported here: the config model imports this module's names

    context = xkb.Context(no_environment_names=True)
    keymap = context.keymap_new_from_names(
        rules="evdev", model="pc105", layout=layout, variant=variant or None
    )
    combos: dict[int, KeyCombo] = {}
    costs: dict[int, tuple[int, int]] = {}
    for xkbCode in range(keymap.min_keycode(), keymap.max_keycode() + 1):
        keycode = xkbCode - _XKB_OFFSET
        if keycode <= 0 or keycode in _VIRTUAL_KEYS or keymap.num_layouts_for_key(xkbCode) == 0:
            continue
        levels = keymap.num_levels_for_key(xkbCode, 0)
        masks = [keymap.key_get_mods_for_level(xkbCode, 0, level) for level in range(levels)]
        numLock = any(mask & _MOD2_NUMLOCK for level in masks for mask in level)
        caps = levels > 1 and _LOCK in masks[1]
        for level in range(levels):
            allowed = _SHIFT | _MOD5_LEVEL3 | (_MOD2_NUMLOCK if numLock else 0)
            usable = [m for m in masks[level] if not m & ~allowed]
            if not usable:
                continue
            mask = min(usable, key=lambda m: (m & _MOD5_LEVEL3, m & _SHIFT, m))
            leveled = KeyCombo(keycode, bool(mask & _SHIFT), bool(mask & _MOD5_LEVEL3), caps)
            for keysym in keymap.key_get_syms_by_level(xkbCode, 0, level):
                # Only characters need their level; Tab, F1 or Home go with whatever
                # modifiers the client holds (Shift+Tab, Ctrl+F1).
                combo = leveled if _isCharacter(xkb, keysym) and not numLock else KeyCombo(keycode)
                cost = leveled._cost()
                if keysym not in costs or cost < costs[keysym]:
                    combos[keysym], costs[keysym] = combo, cost
    rightAlt = set(keymap.key_get_syms_by_level(KEY_RIGHTALT + _XKB_OFFSET, 0, 0))
    altGr = bool(rightAlt & {_ISO_LEVEL3_SHIFT, _MODE_SWITCH})
    # The same characters under their other keysyms: Unicode (0x1000000 | code point) and
    # legacy (Latin-1 and named ones such as EuroSign).
    for keysym, combo in list(combos.items()):
        text = xkb.keysym_to_string(keysym)
        if text and len(text) == 1 and ord(text) >= 0x20:
            code = ord(text)
            combos.setdefault(_UNICODE_KEYSYM | code, combo)
            if code < 0x100:
                combos.setdefault(code, combo)
    return combos, altGr


def _build(name: str) -> Keymap:
    layout, variant = KEYMAPS[name]
    try:
        combos, altGr = _readXkb(layout, variant)
    except Exception as e:  # xkbcommon's errors have no common base
        raise ConfigError(
            f"keymap {name!r}: the system's XKB data has no layout {layout!r} "
            f"(variant {variant!r}): {e}"
        ) from None
    if not all(combos.get(ord(c), _NONE).hasLevel for c in _LATIN):
        # No Latin letters or digits on the main keys (ru, th, ...): type the ASCII ones it
        # lacks as on a US keyboard; the guest's own layout switch decides what they mean.
        for keysym, combo in _readXkb(*KEYMAPS["en-us"])[0].items():
            if 0x20 <= keysym < 0x7F and not combos.get(keysym, _NONE).hasLevel:
                combos[keysym] = combo
    for dead, spacing in _DEAD_KEYS.items():
        for wanted, having in ((dead, spacing), (spacing, dead)):
            if having in combos:
                combos.setdefault(wanted, combos[having])
    for keysym, keycode in _FALLBACKS.items():
        combos.setdefault(keysym, KeyCombo(keycode))
    for keysym, keycode in _MODIFIERS.items():
        combos[keysym] = KeyCombo(keycode)
    return Keymap(name, combos, altGr)


@functools.cache
def loadKeymap(name: str) -> Keymap:
    """The keymap called `name` (xm's ``keymap=`` value); ConfigError if there is none."""
    if name not in KEYMAPS:
        raise ConfigError(f"unknown keymap {name!r} (known: {', '.join(_someNames())}, ...)")
    return _build(name)


def _someNames() -> list[str]:
    return [name for name in ("en-us", "en-gb", "de", "fr", "es", "it", "ja") if name in KEYMAPS]
