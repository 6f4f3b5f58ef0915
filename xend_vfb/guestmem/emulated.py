"""Guest memory, grants and event channels without a hypervisor.

Everything lives in files under ``<runDir>/guests/<domid>/`` (docs/emulation.md
is the contract, precise enough to write a frontend in C):

- ``memory``: the guest's memory, frame N at byte N*4096, mapped MAP_SHARED by
  both sides, so the backend sees the guest's writes as on Xen.
- ``grants``: the grant table, 8-byte entries laid out like Xen's
  ``grant_entry_v1`` (u16 flags, u16 domid, u32 frame), indexed by reference.
- ``evtchn/P.guest`` and ``evtchn/P.backend``: the two ends of event channel
  port P, Unix datagram sockets; a notification is one datagram to the peer.

The host stand-in calls `createGuestMemory` and `destroyGuestMemory`; the
backend uses `EmulatedForeignMemory` and `EmulatedEventChannels`; the simulated
guest uses `EmulatedGuestMemory`.

Longer than most modules on purpose: the three files are one contract, and
both sides of it (creating, mapping, granting, notifying) read best together
against docs/emulation.md.
"""

import contextlib
import ctypes
import errno
import functools
import itertools
import mmap
import os
import shutil
import socket
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.interfaces import IReactorFDSet
from zope.interface import implementer

from xend_vfb.errors import GuestError, XendVfbError
from xend_vfb.fdreader import FdReader
from xend_vfb.guestmem.base import PAGE_SIZE, MappedRegion, checkDomid, checkFrames
from xend_vfb.guestmem.interfaces import (
    IEventChannel,
    IEventChannels,
    IForeignMemory,
    IGuestMemory,
    IGuestPages,
)

__all__ = [
    "GRANT_ENTRY",
    "GRANT_TABLE_ENTRIES",
    "GTF_PERMIT_ACCESS",
    "GTF_READONLY",
    "MAX_PORTS",
    "SHUTDOWN_FILE",
    "createGuestMemory",
    "destroyGuestMemory",
    "guestDir",
    "EmulatedForeignMemory",
    "EmulatedEventChannel",
    "EmulatedEventChannels",
    "EmulatedGuestMemory",
    "GuestPages",
]

# One grant table entry, as xen/grant_table.h's grant_entry_v1: flags, the
# domain allowed to map, the frame.  Little-endian, like every field we share.
GRANT_ENTRY = struct.Struct("<HHI")
GTF_TYPE_MASK = 3
GTF_PERMIT_ACCESS = 1
GTF_READONLY = 1 << 2
# One 4 KiB page of entries, as the first frame of a Xen v1 grant table.
GRANT_TABLE_ENTRIES = PAGE_SIZE // GRANT_ENTRY.size
# References below this are reserved for the toolstack (GNTTAB_NR_RESERVED_ENTRIES).
FIRST_GUEST_GREF = 8
# Ports are 1 .. MAX_PORTS-1, as with Xen's FIFO event channels (port 0 is never valid).
MAX_PORTS = 1 << 17
# Datagrams read per wake-up at most, so a guest that never stops notifying
# cannot keep the reactor in one callback.
DRAIN_LIMIT = 256

# <sys/mman.h> values Python's mmap module does not export.
_PROT_NONE = 0
_MAP_FIXED = 0x10


#: The file in ``guests/D/`` where a guest leaves why it stopped (``poweroff``,
#: ``reboot``, ``suspend``), as Xen's shutdown hypercall tells the hypervisor.
SHUTDOWN_FILE = "shutdown"


def guestDir(runDir: str | os.PathLike[str], domid: int) -> Path:
    """The directory of domain `domid`'s emulated hardware under `runDir`."""
    return Path(runDir) / "guests" / str(checkDomid(domid))


def _memoryPath(runDir: str | os.PathLike[str], domid: int) -> Path:
    return guestDir(runDir, domid) / "memory"


def _grantsPath(runDir: str | os.PathLike[str], domid: int) -> Path:
    return guestDir(runDir, domid) / "grants"


def _evtchnDir(runDir: str | os.PathLike[str], domid: int) -> Path:
    return guestDir(runDir, domid) / "evtchn"


def createGuestMemory(runDir: str | os.PathLike[str], domid: int, sizeBytes: int) -> Path:
    """Create domain `domid`'s memory, grant table and event channel directory.

    Called by the host stand-in when it creates a domain, before the guest
    starts.  The memory is a sparse file, zero-filled.  Returns the domain's
    directory.  Raises `XendVfbError` if the domain already has memory.
    """
    if not isinstance(sizeBytes, int) or sizeBytes <= 0 or sizeBytes % PAGE_SIZE:
        raise ValueError(f"guest memory size must be a positive multiple of 4096: {sizeBytes!r}")
    directory = guestDir(runDir, domid)
    _evtchnDir(runDir, domid).mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(_memoryPath(runDir, domid), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise XendVfbError(f"domain {domid} already has guest memory in {directory}") from None
    try:
        os.ftruncate(fd, sizeBytes)
    finally:
        os.close(fd)
    _grantsPath(runDir, domid).write_bytes(bytes(GRANT_TABLE_ENTRIES * GRANT_ENTRY.size))
    return directory


def destroyGuestMemory(runDir: str | os.PathLike[str], domid: int) -> None:
    """Remove what `createGuestMemory` made; called when the domain is gone.

    Idempotent.  Other files in the domain's directory (the simulator's input
    log) stay, and the directory goes only once it is empty.
    """
    directory = guestDir(runDir, domid)
    _memoryPath(runDir, domid).unlink(missing_ok=True)
    _grantsPath(runDir, domid).unlink(missing_ok=True)
    shutil.rmtree(_evtchnDir(runDir, domid), ignore_errors=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


# -- mapping frames of the memory file -------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


_MAP_FAILED = ctypes.c_void_p(-1).value


def _mmap(address: int | None, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    result = _libc().mmap(address, length, prot, flags, fd, offset)
    if result in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _munmap(address: int, pages: int) -> None:
    _libc().munmap(address, pages * PAGE_SIZE)


def _runs(frames: Sequence[int]) -> list[tuple[int, int, int]]:
    """Split `frames` into runs of consecutive frames: (index, first frame, count)."""
    runs: list[tuple[int, int, int]] = []
    for index, frame in enumerate(frames):
        if runs and runs[-1][1] + runs[-1][2] == frame:
            start, first, count = runs[-1]
            runs[-1] = (start, first, count + 1)
        else:
            runs.append((index, frame, 1))
    return runs


def _mapFileFrames(fd: int, frames: Sequence[int], writable: bool) -> int:
    """Map `frames` of the file `fd` side by side; return the address."""
    length = len(frames) * PAGE_SIZE
    # Reserve the whole range first, then map each run of frames into it.
    base = _mmap(None, length, _PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        for index, first, count in _runs(frames):
            _mmap(
                base + index * PAGE_SIZE,
                count * PAGE_SIZE,
                prot,
                mmap.MAP_SHARED | _MAP_FIXED,
                fd,
                first * PAGE_SIZE,
            )
    except BaseException:
        _munmap(base, len(frames))
        raise
    return base


@implementer(IForeignMemory)
class EmulatedForeignMemory:
    """The backend's view of emulated guest memory under `runDir`."""

    def __init__(self, runDir: str | os.PathLike[str]) -> None:
        self._runDir = Path(runDir)

    def mapFrames(self, domid: int, frames: Sequence[int], writable: bool) -> MappedRegion:
        """Map `frames` of the domain's memory file (see `IForeignMemory`)."""
        path = _memoryPath(self._runDir, domid)
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise GuestError(f"domain {domid} has no guest memory (domain gone?)") from None
        try:
            checked = checkFrames(domid, frames, os.fstat(fd).st_size // PAGE_SIZE)
            address = _mapFileFrames(fd, checked, writable)
        finally:
            os.close(fd)
        return MappedRegion(address, len(checked), writable, _munmap)

    def mapGrant(self, domid: int, gref: int, writable: bool) -> MappedRegion:
        """Map the frame of grant `gref` after checking its entry (see `IForeignMemory`)."""
        if not isinstance(gref, int) or isinstance(gref, bool) or gref < 0:
            raise GuestError(f"domain {domid}: grant reference {gref!r} does not exist")
        try:
            fd = os.open(_grantsPath(self._runDir, domid), os.O_RDONLY)
        except FileNotFoundError:
            raise GuestError(f"domain {domid} has no grant table (domain gone?)") from None
        try:
            # Bounds: an offset past the end reads short, which is refused below.
            entry = os.pread(fd, GRANT_ENTRY.size, gref * GRANT_ENTRY.size)
        finally:
            os.close(fd)
        if len(entry) != GRANT_ENTRY.size:
            raise GuestError(f"domain {domid}: grant reference {gref} does not exist")
        flags, grantee, frame = GRANT_ENTRY.unpack(entry)
        if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS:
            raise GuestError(f"domain {domid}: grant reference {gref} is not granted")
        if grantee != 0:
            raise GuestError(
                f"domain {domid}: grant reference {gref} is for domain {grantee}, not 0"
            )
        if writable and flags & GTF_READONLY:
            raise GuestError(f"domain {domid}: grant reference {gref} is read-only")
        return self.mapFrames(domid, [frame], writable)

    def close(self) -> None:
        """Nothing to release: each mapping opens and closes its own file."""


# -- event channels ---------------------------------------------------------------------


def _addressOf(dirfd: int, name: str) -> str:
    # Through the directory's descriptor, so a long run directory never exceeds
    # the 108 bytes a Unix socket address can hold.
    return f"/proc/self/fd/{dirfd}/{name}"


def _openDir(directory: Path) -> int:
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)


def _bindAt(dirfd: int, name: str) -> socket.socket:
    """A non-blocking datagram socket bound at `name`; OSError(EADDRINUSE) if taken."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    try:
        sock.bind(_addressOf(dirfd, name))
    except BaseException:
        sock.close()
        raise
    return sock


def _isBound(dirfd: int, name: str) -> bool:
    """True if a live socket is bound at `name` (a dead owner leaves a file behind)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_addressOf(dirfd, name))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


class _Endpoint:
    """One end of an emulated event channel: a bound socket watched by the reactor.

    Owns `dirfd` and `sock`.  Incoming datagrams are drained and reported with
    one call of `onEvent`; `notify` sends one datagram to `peerName`.
    """

    def __init__(
        self,
        dirfd: int,
        sock: socket.socket,
        name: str,
        peerName: str,
        onEvent: Callable[[], None],
        reactor: IReactorFDSet,
    ) -> None:
        self._dirfd = dirfd
        self._sock = sock
        self._name = name
        self._peerAddress = _addressOf(dirfd, peerName)
        self._onEvent = onEvent
        self._reactor = reactor
        self._reader = FdReader(sock.fileno(), self._drain, f"evtchn {name}")
        self.closed = False
        reactor.addReader(self._reader)

    def _drain(self) -> None:
        received = 0
        while received < DRAIN_LIMIT:
            try:
                self._sock.recv(64)
            except BlockingIOError:
                break
            received += 1
        if received:
            self._onEvent()

    def notify(self) -> None:
        if self.closed:
            return
        try:
            self._sock.sendto(b"\x01", self._peerAddress)
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # no peer bound: the event is lost, as on Xen
        except BlockingIOError:
            pass  # the peer's queue is full: it has events pending already

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._reactor.removeReader(self._reader)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_addressOf(self._dirfd, self._name))
        self._sock.close()
        os.close(self._dirfd)


def _defaultReactor(reactor: IReactorFDSet | None) -> IReactorFDSet:
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor  # type: ignore[return-value]
    return reactor


def _checkPort(domid: int, port: int) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < MAX_PORTS:
        raise GuestError(f"domain {domid}: event channel port {port!r} is not valid")
    return port


@implementer(IEventChannel)
class EmulatedEventChannel:
    """The backend's end of one emulated event channel (made by `EmulatedEventChannels`)."""

    def __init__(self, endpoint: _Endpoint, localPort: int, onClose: Callable[[], None]) -> None:
        self._endpoint = endpoint
        self.localPort = localPort
        self._onClose = onClose

    def notify(self) -> None:
        """Send one datagram to the guest's end (see `IEventChannel`)."""
        self._endpoint.notify()

    def close(self) -> None:
        """Remove the backend's socket, so the guest's port is unbound again."""
        if not self._endpoint.closed:
            self._endpoint.close()
            self._onClose()


@implementer(IEventChannels)
class EmulatedEventChannels:
    """Bind guests' emulated event channel ports under `runDir` (backend side)."""

    def __init__(
        self, runDir: str | os.PathLike[str], reactor: IReactorFDSet | None = None
    ) -> None:
        self._runDir = Path(runDir)
        self._reactor = _defaultReactor(reactor)
        self._nextPort = itertools.count(1)
        self._channels: dict[int, EmulatedEventChannel] = {}

    def bindInterdomain(
        self, domid: int, remotePort: int, onEvent: Callable[[], None]
    ) -> EmulatedEventChannel:
        """Bind ``P.backend`` next to the guest's ``P.guest`` (see `IEventChannels`).

        A ``P.backend`` left by a backend that died is replaced, as Xen frees the
        port of a process that exits.
        """
        port = _checkPort(domid, remotePort)
        try:
            dirfd = _openDir(_evtchnDir(self._runDir, domid))
        except FileNotFoundError:
            raise GuestError(f"domain {domid} has no event channels (domain gone?)") from None
        try:
            sock = self._bind(dirfd, domid, port)
        except BaseException:
            os.close(dirfd)
            raise
        localPort = next(self._nextPort)
        endpoint = _Endpoint(
            dirfd, sock, f"{port}.backend", f"{port}.guest", onEvent, self._reactor
        )
        channel = EmulatedEventChannel(
            endpoint, localPort, lambda: self._channels.pop(localPort, None)
        )
        self._channels[localPort] = channel
        return channel

    @staticmethod
    def _bind(dirfd: int, domid: int, port: int) -> socket.socket:
        if not _isBound(dirfd, f"{port}.guest"):
            raise GuestError(f"domain {domid}: event channel port {port} is not allocated")
        name = f"{port}.backend"
        try:
            return _bindAt(dirfd, name)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
        if _isBound(dirfd, name):
            raise GuestError(f"domain {domid}: event channel port {port} is already bound")
        os.unlink(_addressOf(dirfd, name))
        try:
            return _bindAt(dirfd, name)
        except OSError as e:
            raise GuestError(
                f"domain {domid}: cannot bind event channel port {port}: {e.strerror}"
            ) from None

    def close(self) -> None:
        """Close every channel bound through this object."""
        for channel in list(self._channels.values()):
            channel.close()


# -- the guest's side --------------------------------------------------------------------


@implementer(IGuestPages)
class GuestPages:
    """Consecutive frames a guest allocated, with a writable view of them."""

    def __init__(self, frames: tuple[int, ...], view: memoryview) -> None:
        self.frames = frames
        self.view = view


@implementer(IGuestMemory)
class EmulatedGuestMemory:
    """Domain `domid`'s own side of its emulated memory, grants and event channels.

    The memory must exist (`createGuestMemory`).  Frame 0 is never allocated, so
    a zero frame number in a shared structure never points at live data.
    """

    def __init__(
        self,
        runDir: str | os.PathLike[str],
        domid: int,
        reactor: IReactorFDSet | None = None,
    ) -> None:
        self.domid = checkDomid(domid)
        self._runDir = Path(runDir)
        self._reactor = _defaultReactor(reactor)
        missing = XendVfbError(f"domain {domid} has no guest memory under {runDir}")
        try:
            fd = os.open(_memoryPath(runDir, domid), os.O_RDWR)
        except FileNotFoundError:
            raise missing from None
        try:
            self._memory = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            self._grantsFd = os.open(_grantsPath(runDir, domid), os.O_RDWR)
        except FileNotFoundError:
            self._memory.close()
            raise missing from None
        self._closed = False
        self.frameCount = len(self._memory) // PAGE_SIZE
        self._used = bytearray(self.frameCount)
        self._used[0] = 1
        self._pages: list[GuestPages] = []
        self._grants: set[int] = set()
        self._grantEntries = os.fstat(self._grantsFd).st_size // GRANT_ENTRY.size
        self._ports: dict[int, _Endpoint] = {}

    def allocPages(self, count: int) -> GuestPages:
        """Allocate `count` consecutive free frames, zeroed (see `IGuestMemory`)."""
        if not isinstance(count, int) or count <= 0:
            raise ValueError(f"page count must be positive: {count!r}")
        first = self._used.find(bytes(count))
        if first < 0:
            raise XendVfbError(
                f"guest memory of domain {self.domid} has no {count} consecutive free frames"
            )
        self._used[first : first + count] = b"\x01" * count
        view = memoryview(self._memory)[first * PAGE_SIZE : (first + count) * PAGE_SIZE]
        view[:] = bytes(len(view))
        pages = GuestPages(tuple(range(first, first + count)), view)
        self._pages.append(pages)
        return pages

    def freePages(self, pages: GuestPages) -> None:
        """Mark the frames free and release the view."""
        self._pages.remove(pages)
        first = pages.frames[0]
        self._used[first : first + len(pages.frames)] = bytes(len(pages.frames))
        with contextlib.suppress(BufferError):
            pages.view.release()

    def grantAccess(self, frame: int, readonly: bool = False) -> int:
        """Write a grant entry for `frame` to domain 0; return its reference."""
        if not isinstance(frame, int) or not 0 <= frame < self.frameCount:
            raise ValueError(f"frame {frame!r} is not in the guest's memory")
        free = (r for r in range(FIRST_GUEST_GREF, self._grantEntries) if r not in self._grants)
        gref = next(free, None)
        if gref is None:
            raise XendVfbError(f"grant table of domain {self.domid} is full")
        flags = GTF_PERMIT_ACCESS | (GTF_READONLY if readonly else 0)
        offset = gref * GRANT_ENTRY.size
        # Domain and frame first, flags last: the entry is valid only once complete.
        os.pwrite(self._grantsFd, GRANT_ENTRY.pack(0, 0, frame)[2:], offset + 2)
        os.pwrite(self._grantsFd, GRANT_ENTRY.pack(flags, 0, 0)[:2], offset)
        self._grants.add(gref)
        return gref

    def endAccess(self, gref: int) -> None:
        """Clear the grant entry; mappings the backend already made stay (see docs)."""
        self._grants.remove(gref)
        os.pwrite(self._grantsFd, bytes(GRANT_ENTRY.size), gref * GRANT_ENTRY.size)

    def allocUnbound(self, onEvent: Callable[[], None], remoteDomid: int = 0) -> int:
        """Bind the lowest free port's ``P.guest`` socket; return P."""
        if remoteDomid != 0:
            raise ValueError("emulated event channels connect to domain 0 only")
        dirfd = _openDir(_evtchnDir(self._runDir, self.domid))
        try:
            for port in range(1, MAX_PORTS):
                try:
                    sock = _bindAt(dirfd, f"{port}.guest")
                except OSError as e:
                    if e.errno == errno.EADDRINUSE:
                        continue
                    raise
                self._ports[port] = _Endpoint(
                    dirfd, sock, f"{port}.guest", f"{port}.backend", onEvent, self._reactor
                )
                return port
        except BaseException:
            os.close(dirfd)
            raise
        os.close(dirfd)
        raise XendVfbError(f"domain {self.domid} has no free event channel port")

    def notify(self, port: int) -> None:
        """Send one datagram to the backend's end of `port`, if bound."""
        self._endpoint(port).notify()

    def closePort(self, port: int) -> None:
        """Remove the ``P.guest`` socket."""
        self._endpoint(port).close()
        del self._ports[port]

    def _endpoint(self, port: int) -> _Endpoint:
        try:
            return self._ports[port]
        except KeyError:
            raise ValueError(f"event channel port {port!r} is not open") from None

    def close(self) -> None:
        """Close ports and unmap memory; grants stay, as the domain is going away."""
        if self._closed:
            return
        self._closed = True
        for port in list(self._ports):
            self.closePort(port)
        for pages in list(self._pages):
            self.freePages(pages)
        os.close(self._grantsFd)
        with contextlib.suppress(BufferError):
            # Slices still alive keep the mapping; it goes with the last of them.
            self._memory.close()
