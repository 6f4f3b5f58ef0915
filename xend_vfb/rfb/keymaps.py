"""RFB keysyms to Linux input keycodes, for the keyboard layout the guest uses.

A VNC client sends keysyms: the symbol the user meant ('@', 'z', Return).  The
guest only understands key positions (Linux KEY_* codes) and applies its own
layout to them.  The keymap (xm's ``keymap=``) names the guest's layout, so
for each symbol we find the key, and the Shift/AltGr level, that produces it
there: on a German guest 'z' is KEY_Y and '@' is AltGr+KEY_Q.

Each layout is described below as data: for each key of the main block, the
characters of its plain, Shift and AltGr levels, in that order.  Keys whose
meaning does not depend on the layout (Return, arrows, F-keys, modifiers,
keypad) are in one shared table and carry no level.

Dead keys are mapped to the key that carries them ('^' on a German guest is
its dead circumflex key: the guest composes it with the next key as usual).
"""

from __future__ import annotations

from dataclasses import dataclass

from xend_vfb.errors import ConfigError

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

# Linux keycodes (linux/input-event-codes.h) of the main block, row by row, in
# the order the layout tables below list them.
_NUMBER_ROW = (41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)  # GRAVE, 1..0, MINUS, EQUAL
_TOP_ROW = (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27)  # Q..P, LEFTBRACE, RIGHTBRACE
_HOME_ROW = (30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 43)  # A..L, SEMICOLON, APOSTR., BACKSLASH
_BOTTOM_ROW = (86, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53)  # 102ND, Z..M, COMMA, DOT, SLASH
_ROWS = (_NUMBER_ROW, _TOP_ROW, _HOME_ROW, _BOTTOM_ROW)
_KEY_SPACE = 57

# One string per row; one space-separated word per key: its plain, Shift and
# AltGr characters.  "-" alone stands for a key the layout does not have.
_LAYOUTS = {
    "en-us": (
        "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) -_ =+",
        "qQ wW eE rR tT yY uU iI oO pP [{ ]}",
        "aA sS dD fF gG hH jJ kK lL ;: '\" \\|",
        "- zZ xX cC vV bB nN mM ,< .> /?",
    ),
    "de": (
        "^° 1! 2\"² 3§³ 4$ 5% 6& 7/{ 8([ 9)] 0=} ß?\\ ´`",
        "qQ@ wW eE€ rR tT zZ uU iI oO pP üÜ +*~",
        "aA sS dD fF gG hH jJ kK lL öÖ äÄ #'",
        "<>| yY xX cC vV bB nN mMµ ,; .: -_",
    ),
    "fr": (
        "² &1 é2~ \"3# '4{ (5[ -6| è7` _8\\ ç9^ à0@ )°] =+}",
        "aA zZ eE€ rR tT yY uU iI oO pP ^¨ $£¤",
        "qQ sS dD fF gG hH jJ kK lL mM ù% *µ",
        "<> wW xX cC vV bB nN ,? ;. :/ !§",
    ),
}

# Keys that mean the same on every layout: keysym -> keycode.
_COMMON = {
    0xFF08: 14,  # BackSpace
    0xFF09: 15,  # Tab
    0xFE20: 15,  # ISO_Left_Tab (Shift+Tab)
    0xFF0D: 28,  # Return
    0xFF13: 119,  # Pause
    0xFF14: 70,  # Scroll_Lock
    0xFF15: 99,  # Sys_Req
    0xFF1B: 1,  # Escape
    0xFF50: 102,  # Home
    0xFF51: 105,  # Left
    0xFF52: 103,  # Up
    0xFF53: 106,  # Right
    0xFF54: 108,  # Down
    0xFF55: 104,  # Page_Up
    0xFF56: 109,  # Page_Down
    0xFF57: 107,  # End
    0xFF61: 99,  # Print
    0xFF63: 110,  # Insert
    0xFF67: 127,  # Menu
    0xFF7E: KEY_RIGHTALT,  # Mode_switch
    0xFF7F: 69,  # Num_Lock
    0xFF8D: 96,  # KP_Enter
    0xFF95: 71,  # KP_Home
    0xFF96: 75,  # KP_Left
    0xFF97: 72,  # KP_Up
    0xFF98: 77,  # KP_Right
    0xFF99: 80,  # KP_Down
    0xFF9A: 73,  # KP_Prior
    0xFF9B: 81,  # KP_Next
    0xFF9C: 79,  # KP_End
    0xFF9D: 76,  # KP_Begin
    0xFF9E: 82,  # KP_Insert
    0xFF9F: 83,  # KP_Delete
    0xFFAA: 55,  # KP_Multiply
    0xFFAB: 78,  # KP_Add
    0xFFAC: 121,  # KP_Separator (KEY_KPCOMMA)
    0xFFAD: 74,  # KP_Subtract
    0xFFAE: 83,  # KP_Decimal
    0xFFAF: 98,  # KP_Divide
    **{0xFFB0 + i: code for i, code in enumerate((82, 79, 80, 81, 75, 76, 77, 71, 72, 73))},
    **{0xFFBE + i: 59 + i for i in range(10)},  # F1..F10
    0xFFC8: 87,  # F11
    0xFFC9: 88,  # F12
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
    0xFE03: KEY_RIGHTALT,  # ISO_Level3_Shift (AltGr)
    0xFFFF: 111,  # Delete
}

# Dead-key keysyms -> the character whose key carries them.
_DEAD_KEYS = {
    0xFE50: "`",  # dead_grave
    0xFE51: "´",  # dead_acute
    0xFE52: "^",  # dead_circumflex
    0xFE53: "~",  # dead_tilde
    0xFE57: "¨",  # dead_diaeresis
}


def _keysym(char: str) -> int:
    """The keysym of a character: Latin-1 maps to itself, the rest to Unicode keysyms."""
    code = ord(char)
    return code if code < 0x100 else 0x1000000 | code


@dataclass(frozen=True)
class KeyCombo:
    """The key producing a keysym, and the levels it needs (None: no level, e.g. Return)."""

    keycode: int
    shift: bool | None = None
    altgr: bool = False

    @property
    def hasLevel(self) -> bool:
        """Whether the client's modifiers must be adjusted to this combo's level."""
        return self.shift is not None


class Keymap:
    """The keysym -> key table of one guest layout."""

    def __init__(self, name: str, rows: tuple[str, ...]) -> None:
        self.name = name
        self.usesAltGr = False
        self._combos: dict[int, KeyCombo] = {0x20: KeyCombo(_KEY_SPACE, False)}
        for codes, row in zip(_ROWS, rows, strict=True):
            words = row.split()
            if len(words) != len(codes):
                raise ValueError(f"keymap {name}: row {row!r} has {len(words)} keys")
            for code, word in zip(codes, words, strict=True):
                if word == "-":
                    continue
                for level, char in enumerate(word):
                    combo = KeyCombo(code, shift=level == 1, altgr=level == 2)
                    self.usesAltGr |= combo.altgr
                    # The first (lowest) level producing a character wins.
                    self._combos.setdefault(_keysym(char), combo)
        if "€" in "".join(rows):
            self._combos[0x20AC] = self._combos[_keysym("€")]  # EuroSign, the legacy keysym
        for keysym, char in _DEAD_KEYS.items():
            if _keysym(char) in self._combos:
                self._combos[keysym] = self._combos[_keysym(char)]
        for keysym, code in _COMMON.items():
            self._combos[keysym] = KeyCombo(code)

    def lookup(self, keysym: int) -> KeyCombo | None:
        """The key for `keysym`, or None when this layout cannot type it."""
        return self._combos.get(keysym)

    def isLetter(self, keysym: int) -> bool:
        """Whether Caps Lock inverts the Shift level of this keysym (a cased letter)."""
        char = chr(keysym) if keysym < 0x100 else ""
        return len(char.upper()) == 1 and char.lower() != char.upper()


KEYMAPS = tuple(sorted(_LAYOUTS))


def loadKeymap(name: str) -> Keymap:
    """The keymap called `name` (xm's ``keymap=`` value); ConfigError if there is none."""
    if name not in _LAYOUTS:
        raise ConfigError(f"unknown keymap {name!r} (supported: {', '.join(KEYMAPS)})")
    return Keymap(name, _LAYOUTS[name])
