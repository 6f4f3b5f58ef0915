"""PC/XT (set 1) scancodes, as QEMU's extended key event carries them, to Linux keycodes.

A client that has QEMU extended key events sends, with each key, the scancode
of the key pressed on its own keyboard: a physical position, whatever the
client's layout.  The guest applies its own layout to key positions, so the
position is all it needs: no keysym guessing, no keymap.

The number is a set-1 make code; a key whose code comes after an 0xE0 prefix
is written 0x80 | code (Right Ctrl, E0 1D, is 0x9D).  Linux keycodes were laid
out after set 1: codes 0x01-0x53 are the same numbers; the rest are listed
below from the scancode tables of the PC keyboard (IBM's Set 1 table and
Microsoft's keyboard scan code specification) and linux/input-event-codes.h.
"""

from __future__ import annotations

__all__ = ["xtToLinux"]

_TABLE: dict[int, int] = {code: code for code in range(0x01, 0x54)}  # Esc .. KP_Decimal
_TABLE.update({
    0x54: 99,  # Alt+PrintScreen (SysRq) -> KEY_SYSRQ
    0x56: 86,  # the ISO key left of Z -> KEY_102ND
    0x57: 87,  # F11
    0x58: 88,  # F12
    0x59: 117,  # KP_Equal
    **{0x64 + i: 183 + i for i in range(11)},  # F13..F23
    0x76: 194,  # F24
    0x70: 93,  # Katakana/Hiragana
    0x73: 89,  # Ro (Japanese, Brazilian /?)
    0x79: 92,  # Henkan
    0x7B: 94,  # Muhenkan
    0x7D: 124,  # Yen
    0x7E: 121,  # KP_Separator (Brazilian keypad .)
    # 0xE0-prefixed keys, written 0x80 | code.
    0x90: 165,  # Previous track
    0x99: 163,  # Next track
    0x9C: 96,  # KP_Enter
    0x9D: 97,  # Right Ctrl
    0xA0: 113,  # Mute
    0xA1: 140,  # Calculator
    0xA2: 164,  # Play/Pause
    0xA4: 166,  # Stop
    0xAE: 114,  # Volume down
    0xB0: 115,  # Volume up
    0xB2: 172,  # WWW home
    0xB5: 98,  # KP_Divide
    0xB7: 99,  # PrintScreen -> KEY_SYSRQ, as Linux's PS/2 driver reports it
    0xB8: 100,  # Right Alt (AltGr)
    0xC6: 119,  # Pause (Ctrl+Break's code, which clients send for Pause)
    0xC7: 102,  # Home
    0xC8: 103,  # Up
    0xC9: 104,  # Page Up
    0xCB: 105,  # Left
    0xCD: 106,  # Right
    0xCF: 107,  # End
    0xD0: 108,  # Down
    0xD1: 109,  # Page Down
    0xD2: 110,  # Insert
    0xD3: 111,  # Delete
    0xDB: 125,  # Left Windows (KEY_LEFTMETA)
    0xDC: 126,  # Right Windows (KEY_RIGHTMETA)
    0xDD: 127,  # Menu (KEY_COMPOSE)
    0xDE: 116,  # Power
    0xDF: 142,  # Sleep
    0xE3: 143,  # Wake
    0xE5: 217,  # WWW search
    0xE6: 156,  # WWW favourites (KEY_BOOKMARKS)
    0xE7: 173,  # WWW refresh
    0xE8: 128,  # WWW stop
    0xE9: 159,  # WWW forward
    0xEA: 158,  # WWW back
    0xEB: 157,  # My computer
    0xEC: 155,  # Mail
    0xED: 226,  # Media select
})


def xtToLinux(scancode: int) -> int | None:
    """The Linux keycode of an extended key event's scancode, or None for one we do not know."""
    return _TABLE.get(scancode)
