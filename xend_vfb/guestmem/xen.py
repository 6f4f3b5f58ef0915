"""Guest memory and event channels on real Xen, through Xen's user-space libraries.

Uses ctypes on ``libxenforeignmemory`` (map a guest's frames), ``libxengnttab``
(map a grant) and ``libxenevtchn`` (interdomain event channels), with the
signatures their public headers document.  The libraries are loaded when an
object is made, never at import, and each needs its ``/dev/xen`` device: where
it is missing (no hypervisor) the constructor raises one `XendVfbError` that
says so.

Handles are never shared across ``fork``: the libraries forbid using a parent's
handle in a child, so a process opens its own.
"""

import ctypes
import errno
import functools
import mmap
import os
import platform
import select
from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.errors import GuestError, XendVfbError
from xend_vfb.fdreader import FdReader
from xend_vfb.guestmem.base import MappedRegion, checkDomid, checkFrames
from xend_vfb.guestmem.interfaces import IEventChannel, IEventChannels, IForeignMemory

__all__ = ["XenForeignMemory", "XenEventChannel", "XenEventChannels"]

PRIVCMD = "/dev/xen/privcmd"
EVTCHN = "/dev/xen/evtchn"
GNTDEV = "/dev/xen/gntdev"

# xen_pfn_t is `unsigned long` on x86 (xen/arch-x86/xen.h), uint64_t on Arm.
_PFN = ctypes.c_ulong if platform.machine() in ("x86_64", "i386", "i686") else ctypes.c_uint64
_PFN_LIMIT = 1 << (8 * ctypes.sizeof(_PFN))
_U32_LIMIT = 1 << 32
# "A port identifier is guaranteed to fit in 31 bits" (xenevtchn.h).
_PORT_LIMIT = 1 << 31
# Ports collected per wake-up at most, so a flood of events cannot hold the reactor.
_PENDING_LIMIT = 256

_VP = ctypes.c_void_p
_INT = ctypes.c_int
_U32 = ctypes.c_uint32

log = Logger()


# What each library gives, as the subject of "... not available".
_MEMORY = "Xen guest memory is"
_GRANTS = "Xen grant mapping is"
_EVENTS = "Xen event channels are"


def _unavailable(what: str, why: str) -> XendVfbError:
    return XendVfbError(f"{what} not available: {why}; use emulated mode")


_Prototypes = dict[str, tuple[object, list[object]]]


def _load(what: str, soname: str, device: str, prototypes: _Prototypes) -> ctypes.CDLL:
    """Load `soname` and declare `prototypes` ({name: (restype, argtypes)}).

    The device is checked first: without it the library only fails later with
    a less telling message (and logs to stderr).
    """
    if not os.path.exists(device):
        raise _unavailable(what, f"cannot open {device} (no hypervisor?)")
    try:
        lib = ctypes.CDLL(soname, use_errno=True)
    except OSError:
        raise _unavailable(
            what, f"cannot load {soname} (install Xen's user-space libraries)"
        ) from None
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def _openHandle(what: str, device: str, opener: Callable[[None, int], int | None]) -> int:
    """Call a library's ``*_open(NULL, 0)``; turn a NULL into `_unavailable`."""
    handle = opener(None, 0)
    if not handle:
        err = ctypes.get_errno()
        hint = " (run as root)" if err == errno.EACCES else ""
        raise _unavailable(what, f"cannot open {device}: {os.strerror(err)}{hint}")
    return handle


def _strerror() -> str:
    return os.strerror(ctypes.get_errno())


class _Handle:
    """A library handle closed by `close(handle)` once nothing refers to this object.

    Regions keep their handle's `_Handle` alive, so a handle is never closed
    under a mapping still in use.
    """

    def __init__(self, lib: ctypes.CDLL, handle: int, close: Callable[[int], int]) -> None:
        self.lib = lib
        self.handle = handle
        self._close = close

    def __del__(self) -> None:
        self._close(self.handle)


def _unmapForeign(owner: _Handle, address: int, pages: int) -> None:
    owner.lib.xenforeignmemory_unmap(owner.handle, address, pages)


def _unmapGrant(owner: _Handle, address: int, pages: int) -> None:
    owner.lib.xengnttab_unmap(owner.handle, address, pages)


_FOREIGNMEMORY = {
    "xenforeignmemory_open": (_VP, [_VP, ctypes.c_uint]),
    "xenforeignmemory_close": (_INT, [_VP]),
    "xenforeignmemory_map": (
        _VP,
        [_VP, _U32, _INT, ctypes.c_size_t, ctypes.POINTER(_PFN), ctypes.POINTER(_INT)],
    ),
    "xenforeignmemory_unmap": (_INT, [_VP, _VP, ctypes.c_size_t]),
}

_GNTTAB = {
    "xengnttab_open": (_VP, [_VP, ctypes.c_uint]),
    "xengnttab_close": (_INT, [_VP]),
    "xengnttab_map_grant_ref": (_VP, [_VP, _U32, _U32, _INT]),
    "xengnttab_unmap": (_INT, [_VP, _VP, _U32]),
}

_EVTCHN = {
    "xenevtchn_open": (_VP, [_VP, ctypes.c_uint]),
    "xenevtchn_close": (_INT, [_VP]),
    "xenevtchn_fd": (_INT, [_VP]),
    "xenevtchn_notify": (_INT, [_VP, _U32]),
    "xenevtchn_bind_interdomain": (_INT, [_VP, _U32, _U32]),
    "xenevtchn_unbind": (_INT, [_VP, _U32]),
    "xenevtchn_pending": (_INT, [_VP]),
    "xenevtchn_unmask": (_INT, [_VP, _U32]),
}


def _prot(writable: bool) -> int:
    return mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)


@implementer(IForeignMemory)
class XenForeignMemory:
    """Map guest frames (libxenforeignmemory) and grants (libxengnttab).

    Raises `XendVfbError` at construction when foreign mapping is impossible;
    grant mapping is opened on first use, as many hosts never need it.
    """

    def __init__(self) -> None:
        lib = _load(_MEMORY, "libxenforeignmemory.so.1", PRIVCMD, _FOREIGNMEMORY)
        handle = _openHandle(_MEMORY, PRIVCMD, lib.xenforeignmemory_open)
        self._fmem: _Handle | None = _Handle(lib, handle, lib.xenforeignmemory_close)
        self._gnttab: _Handle | None = None

    def mapFrames(self, domid: int, frames: Sequence[int], writable: bool) -> MappedRegion:
        """Map with ``xenforeignmemory_map``, checking every page's error (see `IForeignMemory`)."""
        owner = self._owner(self._fmem)
        checkDomid(domid)
        checked = checkFrames(domid, frames, _PFN_LIMIT)
        count = len(checked)
        errors = (_INT * count)()
        address = owner.lib.xenforeignmemory_map(
            owner.handle, domid, _prot(writable), count, (_PFN * count)(*checked), errors
        )
        if not address:
            raise GuestError(f"domain {domid}: cannot map frames: {_strerror()}")
        failed = [(frame, err) for frame, err in zip(checked, errors, strict=True) if err]
        if failed:
            owner.lib.xenforeignmemory_unmap(owner.handle, address, count)
            frame, err = failed[0]
            # The library reports errno values; take the magnitude to be safe.
            raise GuestError(
                f"domain {domid}: frame {frame} cannot be mapped: {os.strerror(abs(err))}"
            )
        return MappedRegion(address, count, writable, functools.partial(_unmapForeign, owner))

    def mapGrant(self, domid: int, gref: int, writable: bool) -> MappedRegion:
        """Map with ``xengnttab_map_grant_ref`` (see `IForeignMemory`)."""
        checkDomid(domid)
        if not isinstance(gref, int) or isinstance(gref, bool) or not 0 <= gref < _U32_LIMIT:
            raise GuestError(f"domain {domid}: grant reference {gref!r} does not exist")
        self._owner(self._fmem)
        if self._gnttab is None:
            lib = _load(_GRANTS, "libxengnttab.so.1", GNTDEV, _GNTTAB)
            handle = _openHandle(_GRANTS, GNTDEV, lib.xengnttab_open)
            self._gnttab = _Handle(lib, handle, lib.xengnttab_close)
        owner = self._gnttab
        address = owner.lib.xengnttab_map_grant_ref(owner.handle, domid, gref, _prot(writable))
        if not address:
            raise GuestError(
                f"domain {domid}: grant reference {gref} cannot be mapped: {_strerror()}"
            )
        return MappedRegion(address, 1, writable, functools.partial(_unmapGrant, owner))

    @staticmethod
    def _owner(handle: _Handle | None) -> _Handle:
        if handle is None:
            raise XendVfbError("Xen guest memory is closed")
        return handle

    def close(self) -> None:
        """Drop the handles; each closes once its last region is gone."""
        self._fmem = None
        self._gnttab = None


@implementer(IEventChannel)
class XenEventChannel:
    """The backend's end of one interdomain event channel (made by `XenEventChannels`)."""

    def __init__(
        self, channels: "XenEventChannels", localPort: int, onEvent: Callable[[], None]
    ) -> None:
        self._channels = channels
        self.localPort = localPort
        self.onEvent = onEvent

    def notify(self) -> None:
        """``xenevtchn_notify``; a failure is logged, never raised (see `IEventChannel`)."""
        self._channels._notify(self)

    def close(self) -> None:
        """``xenevtchn_unbind``; Xen returns the guest's port to unbound."""
        self._channels._unbind(self)


@implementer(IEventChannels)
class XenEventChannels:
    """Interdomain event channels through one ``xenevtchn`` handle in the reactor."""

    def __init__(self, reactor: IReactorFDSet | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor  # type: ignore[assignment]
        self._lib = _load(_EVENTS, "libxenevtchn.so.1", EVTCHN, _EVTCHN)
        self._xce: int | None = _openHandle(_EVENTS, EVTCHN, self._lib.xenevtchn_open)
        fd = self._lib.xenevtchn_fd(self._xce)
        # xenevtchn.h: poll before every xenevtchn_pending, which may block otherwise.
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._channels: dict[int, XenEventChannel] = {}
        self._reactor = reactor
        self._reader = FdReader(fd, self._dispatch, "xen evtchn")
        reactor.addReader(self._reader)

    def bindInterdomain(
        self, domid: int, remotePort: int, onEvent: Callable[[], None]
    ) -> XenEventChannel:
        """``xenevtchn_bind_interdomain`` (see `IEventChannels`)."""
        checkDomid(domid)
        if self._xce is None:
            raise XendVfbError("Xen event channels are closed")
        if (
            not isinstance(remotePort, int)
            or isinstance(remotePort, bool)
            or not 0 < remotePort < _PORT_LIMIT
        ):
            raise GuestError(f"domain {domid}: event channel port {remotePort!r} is not valid")
        local = self._lib.xenevtchn_bind_interdomain(self._xce, domid, remotePort)
        if local < 0:
            raise GuestError(
                f"domain {domid}: cannot bind event channel port {remotePort}: {_strerror()}"
            )
        channel = XenEventChannel(self, local, onEvent)
        self._channels[local] = channel
        return channel

    def _dispatch(self) -> None:
        """Collect pending ports, unmask each, then call each channel's handler once."""
        ready: list[int] = []
        while len(ready) < _PENDING_LIMIT and self._poll.poll(0):
            port = self._lib.xenevtchn_pending(self._xce)
            if port < 0:
                log.warn("xenevtchn_pending failed: {error}", error=_strerror())
                break
            # Unmask before handling: an event arriving meanwhile is delivered again.
            self._lib.xenevtchn_unmask(self._xce, port)
            if port not in ready:
                ready.append(port)
        for port in ready:
            channel = self._channels.get(port)
            if channel is None:
                continue
            try:
                channel.onEvent()
            except Exception:
                log.failure("Event handler of event channel {port} failed", port=port)

    def _notify(self, channel: XenEventChannel) -> None:
        port = channel.localPort
        if self._channels.get(port) is not channel:
            return  # closed
        if self._lib.xenevtchn_notify(self._xce, port) < 0:
            log.warn("cannot notify event channel {port}: {error}", port=port, error=_strerror())

    def _unbind(self, channel: XenEventChannel) -> None:
        if self._channels.get(channel.localPort) is channel:
            del self._channels[channel.localPort]
            self._lib.xenevtchn_unbind(self._xce, channel.localPort)

    def close(self) -> None:
        """Unbind every channel, stop watching the descriptor and close the handle."""
        if self._xce is None:
            return
        for channel in list(self._channels.values()):
            channel.close()
        self._reactor.removeReader(self._reader)
        self._lib.xenevtchn_close(self._xce)
        self._xce = None
