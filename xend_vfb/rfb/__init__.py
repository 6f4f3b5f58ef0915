"""The VNC side of a vfb: an RFB server showing a guest's screen and typing into it.

`server.VNCDisplay` is the entry point (an `xend_vfb.display.screen.IDisplay`); the
other modules are its parts: `pixels` (pixel formats), `encodings` (Raw,
Hextile, ZRLE), `tight` (Tight, JPEG, Zlib), `keymaps` (any XKB layout,
through libxkbcommon), `scancodes` and `input` (keysyms, QEMU's extended key
events and pointer to Linux input events), `des` (VNC authentication).
"""

from xend_vfb.rfb.vncdisplay import VNCDisplay

__all__ = ["VNCDisplay"]
