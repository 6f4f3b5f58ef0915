"""The contracts between a backend (or a simulated guest) and guest memory.

A backend in domain 0 maps pages a guest names (`IForeignMemory`) and binds
the event channel the guest offers (`IEventChannels`).  The simulated guest
uses `IGuestMemory`, the guest's own side, which exists only in emulated mode.
"""

from collections.abc import Callable, Sequence

from zope.interface import Attribute, Interface

__all__ = [
    "IMappedRegion",
    "IForeignMemory",
    "IEventChannel",
    "IEventChannels",
    "IGuestPages",
    "IGuestMemory",
]


class IMappedRegion(Interface):
    """Guest pages mapped into this process, in the order they were named.

    Also a context manager: leaving the ``with`` block calls `close`.
    """

    view = Attribute(
        "A memoryview (format 'B') of the pages, 4096 bytes per page; read-only unless "
        "`writable`.  Valid until `close`; after it, the view is released."
    )
    writable = Attribute("True if the pages were mapped for writing.")

    def close() -> None:
        """Release the mapping; called when the backend is done with the pages.

        Idempotent.  Memory stays mapped while slices taken from `view` are still
        alive and is unmapped when the last of them goes, so a forgotten slice
        never points at unmapped memory.
        """


class IForeignMemory(Interface):
    """Map pages of another domain (the backend's view of guest memory)."""

    def mapFrames(domid: int, frames: Sequence[int], writable: bool) -> IMappedRegion:
        """Map the guest frames `frames` of domain `domid`, contiguously in order.

        Called when a backend connects to a frontend (shared page, framebuffer).
        Raises `GuestError` naming the frame when a frame does not exist (negative,
        beyond the guest's memory, too large for the platform) or the domain has
        no memory to map; `ValueError` when `frames` is empty.
        """

    def mapGrant(domid: int, gref: int, writable: bool) -> IMappedRegion:
        """Map the one page that domain `domid` granted to us as `gref`.

        Raises `GuestError` when the grant is invalid (not granted, granted to
        another domain, read-only while `writable` is asked, naming a bad frame),
        `XendVfbError` when this host cannot map grants at all.
        """

    def close() -> None:
        """Release the handles; called once when the backend stops.

        Regions still open stay valid until they are closed.
        """


class IEventChannel(Interface):
    """The backend's end of one interdomain event channel."""

    localPort = Attribute("This end's port number (int); valid until `close`.")

    def notify() -> None:
        """Signal the guest; called after producing a batch of ring events.

        A guest end that went away makes this a silent no-op, as on Xen; so
        does a `close` before it.
        """

    def close() -> None:
        """Unbind this end; called at disconnect.  Idempotent.

        The guest's port returns to unbound, so a later `bindInterdomain` (for
        instance by a restarted backend) can bind it again.
        """


class IEventChannels(Interface):
    """Bind event channels that guests offer to the backend's domain."""

    def bindInterdomain(domid: int, remotePort: int, onEvent: Callable[[], None]) -> IEventChannel:
        """Bind to the unbound port `remotePort` that domain `domid` offered.

        `onEvent` is called in the reactor thread each time the guest notifies;
        notifications that arrive together are coalesced into one call, so it
        must process everything pending (the rings) each time.  Raises
        `GuestError` when the port does not exist, is not unbound, or is invalid.
        """

    def close() -> None:
        """Unbind every channel and release the handle; called when the backend stops."""


class IGuestPages(Interface):
    """Pages a guest allocated from its own memory."""

    frames = Attribute("The frame numbers, a tuple of ints, consecutive and ascending.")
    view = Attribute("A writable memoryview of the pages, 4096 bytes per frame.")


class IGuestMemory(Interface):
    """The guest's side of its memory, grants and event channels.

    Used by the simulated guest frontend; only emulated mode has one.
    """

    frameCount = Attribute("Number of frames in the guest's memory (int).")

    def allocPages(count: int) -> IGuestPages:
        """Allocate `count` consecutive free frames, zeroed; raises `XendVfbError` when full."""

    def freePages(pages: IGuestPages) -> None:
        """Give pages back; called when the frontend disconnects."""

    def grantAccess(frame: int, readonly: bool = False) -> int:
        """Grant domain 0 access to `frame`; returns the grant reference (``page-gref``)."""

    def endAccess(gref: int) -> None:
        """Revoke a grant made by `grantAccess`."""

    def allocUnbound(onEvent: Callable[[], None], remoteDomid: int = 0) -> int:
        """Allocate a port offered to `remoteDomid`; returns it (``event-channel``).

        `onEvent` is called in the reactor thread when the backend notifies,
        coalesced like `IEventChannels.bindInterdomain`.
        """

    def notify(port: int) -> None:
        """Signal the backend bound to `port`; a no-op while none is bound."""

    def closePort(port: int) -> None:
        """Close a port made by `allocUnbound`; the backend's notifications then go nowhere."""

    def close() -> None:
        """Close every port and unmap the memory; called when the guest stops."""
