"""Xen's vfb and vkbd shared-page protocols (``io/fbif.h``, ``io/kbdif.h``), pure: no I/O.

`ring` moves 40-byte events through a shared page's rings (either end),
`fbif` and `kbdif` hold the layouts, the event codecs and the checks of what
a guest wrote (REFERENCE.md section 7), `pixels` converts guest pixels to the
backend's XRGB8888 screen copy.  Everything works on a bytes-like page the
caller has mapped; anything a hostile guest can write raises `GuestError`.
"""
