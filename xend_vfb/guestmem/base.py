"""Pieces both implementations share: mapped regions, reactor readers, checks.

A mapped region is raw memory from ``mmap`` or a Xen library.  Python cannot
know when that memory goes away, so `MappedRegion` ties the unmapping to the
lifetime of the ctypes object its memoryview exports: the memory is unmapped
when the region is closed *and* no slice of its view is alive, never before.
"""

import ctypes
import functools
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.errors import GuestError
from xend_vfb.guestmem.interfaces import IMappedRegion

__all__ = ["PAGE_SIZE", "DOMID_FIRST_RESERVED", "MappedRegion", "checkDomid", "checkFrames"]

PAGE_SIZE = 4096
# Domain ids from here up are special (DOMID_SELF, DOMID_IO, ...): xen/xen.h.
DOMID_FIRST_RESERVED = 0x7FF0

log = Logger()


@functools.lru_cache(maxsize=64)
def _pagesType(pages: int) -> type:
    # A subclass, because only subclasses of ctypes arrays accept weak references.
    return type(f"Pages{pages}", (ctypes.c_ubyte * (pages * PAGE_SIZE),), {})


def _isInt(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checkDomid(domid: int) -> int:
    """Return `domid` if it names an ordinary domain, else raise `ValueError`.

    Domain ids reach file names in emulated mode and C calls on Xen.
    """
    if not _isInt(domid) or not 0 <= domid < DOMID_FIRST_RESERVED:
        raise ValueError(f"invalid domain id: {domid!r}")
    return domid


def checkFrames(domid: int, frames: Iterable[int], limit: int) -> list[int]:
    """Return `frames` as a list if each is an int in ``[0, limit)``.

    Raises `GuestError` naming the first frame that is not, `ValueError` when
    there are none.
    """
    checked = list(frames)
    if not checked:
        raise ValueError("no frames to map")
    for frame in checked:
        if not _isInt(frame) or not 0 <= frame < limit:
            raise GuestError(f"domain {domid}: frame {frame!r} does not exist")
    return checked


@implementer(IMappedRegion)
class MappedRegion:
    """`pages` pages mapped at `address`, given back with ``unmap(address, pages)``."""

    def __init__(
        self, address: int, pages: int, writable: bool, unmap: Callable[[int, int], Any]
    ) -> None:
        memory = _pagesType(pages).from_address(address)
        weakref.finalize(memory, unmap, address, pages)
        view = memoryview(memory).cast("B")
        self.view = view if writable else view.toreadonly()
        self.writable = writable

    def close(self) -> None:
        """Release the view; the memory goes once no slice of it is alive."""
        try:
            self.view.release()
        except BufferError:
            # Something holds a raw buffer of the view; it keeps the memory mapped
            # until it lets go, and the finalizer unmaps it then.
            pass

    def __enter__(self) -> "MappedRegion":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
