"""The simulated guest: Linux's xen-fbfront and xen-kbdfront on emulated guest memory.

`domain.GuestDomain` watches one guest's ``device/`` area and runs a frontend
per device (`frontend.Frontend`, the generic XenbusState machine, with
`fb.VfbFrontend` and `kbd.VkbdFrontend`); `pattern` is what it draws;
`main` is the ``xend-vfb-guest`` program, which hosts one or many domains.
"""
