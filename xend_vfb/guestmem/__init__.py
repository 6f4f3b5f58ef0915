"""Guest memory and event channels: what a backend needs from the hypervisor.

Two implementations of the same interfaces (`interfaces`): `xen` through
Xen's user-space libraries, and `emulated`, files and sockets under the run
directory for machines without a hypervisor (docs/emulation.md).  A backend
asks `guestmemFor` for the pair its mode needs.
"""

import os

from twisted.internet.interfaces import IReactorFDSet

from xend_vfb.guestmem.emulated import EmulatedEventChannels, EmulatedForeignMemory
from xend_vfb.guestmem.interfaces import IEventChannels, IForeignMemory
from xend_vfb.guestmem.xen import XenEventChannels, XenForeignMemory

__all__ = ["MODES", "guestmemFor"]

#: Where guest memory can come from.
MODES = ("emulated", "xen")


def guestmemFor(
    mode: str, runDir: str | os.PathLike[str], reactor: IReactorFDSet | None = None
) -> tuple[IForeignMemory, IEventChannels]:
    """The foreign memory and event channels for `mode`; called once at backend start.

    `runDir` is used in emulated mode only.  Raises `ValueError` for an unknown
    mode, `XendVfbError` when Xen is asked for but not reachable.
    """
    if mode == "emulated":
        return EmulatedForeignMemory(runDir), EmulatedEventChannels(runDir, reactor)
    if mode == "xen":
        memory = XenForeignMemory()
        try:
            return memory, XenEventChannels(reactor)
        except BaseException:
            memory.close()
            raise
    raise ValueError(f"Unknown guest memory mode: {mode!r}")
