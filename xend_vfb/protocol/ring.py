"""The event rings of Xen's shared vfb/vkbd pages (fbif.h, kbdif.h), both ends.

A ring is a fixed run of 40-byte slots inside the 4096-byte shared page plus
two free-running ``uint32_t`` counters, ``cons`` and ``prod``, elsewhere in the
same page.  Event number ``i`` lives in slot ``i % length`` (``i`` taken as a
``uint32_t``, exactly as the C macros ``XENFB_IN_RING_REF`` & co. compute it).
The ring holds ``prod - cons`` (mod 2**32) unconsumed events.  The ring
lengths (25, 51) don't divide 2**32, so where the counters wrap, indices just
before and just after share slots; the C macros map indices the same way, so
we must too, and our producer stops short rather than overwrite a live slot.

Every byte of the page, our own counters included, can be rewritten by the
guest at any time.  So each side reads each counter once per batch, checks the
pair before trusting it, and only ever touches bytes inside the ring's slots.

Memory ordering: in Python every store into an mmap is a plain store that the
other side can see at once, and CPython emits no reordering of its own, but the
CPU may still reorder relative to another domain's CPU.  Where C code puts a
barrier we say so in a ``# barrier:`` comment; on x86 (total store order) the
stores need none and the loads are ordered by the interpreter's own calls.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from xend_vfb.errors import GuestError

__all__ = ["EVENT_SIZE", "Page", "Ring", "RingOverflow"]

#: A mapped shared page (or a test's stand-in for one); must be writable.
Page = bytearray | memoryview | mmap.mmap

#: Every vfb and vkbd event, in and out, is padded to this many bytes.
EVENT_SIZE = 40

_COUNTER = struct.Struct("<I")
_MASK = 0xFFFFFFFF


class RingOverflow(GuestError):
    """The counters claim more events than the ring holds."""


@dataclass(frozen=True)
class Ring:
    """Where one ring sits in a shared page; stateless, so a backend and a guest share it.

    ``cons_offset``/``prod_offset`` locate the two counters, ``offset``/``size``
    the slot area.  The page is any writable bytes-like object (mmap, bytearray,
    memoryview) at least ``offset + size`` bytes long.
    """

    name: str
    cons_offset: int
    prod_offset: int
    offset: int
    size: int
    event_size: int = EVENT_SIZE

    @property
    def length(self) -> int:
        """How many slots the ring has (whole events only, as in the C macros)."""
        return self.size // self.event_size

    def consume(self, page: Page) -> list[bytes]:
        """Take every event the producer has published; called when the event channel fires.

        Returns copies of the slots (so a guest rewriting a slot afterwards cannot
        change what we dispatch) and advances ``cons`` past them.  Raises
        `RingOverflow` when the counters claim more events than the ring holds.
        """
        prod, cons, pending = self._counters(page)
        # barrier: rmb() here in C, so no slot is read before the prod value above.
        slots = [self._slot(cons + i) for i in range(pending)]
        events = [bytes(page[at : at + self.event_size]) for at in slots]
        # barrier: mb() here in C, so the slot reads finish before the producer
        # may see the slots as free and reuse them.
        _COUNTER.pack_into(page, self.cons_offset, prod)
        return events

    def catchUp(self, page: Page) -> int:
        """Move ``cons`` to one ring-full behind ``prod``; for a consumer whose producer
        overran the ring.  The newest ``length`` events are still in their slots and
        the next `consume` takes them; the older ones were overwritten.  Returns how
        many were lost."""
        self._checkPage(page)
        prod = _COUNTER.unpack_from(page, self.prod_offset)[0]
        cons = _COUNTER.unpack_from(page, self.cons_offset)[0]
        lost = max(((prod - cons) & _MASK) - self.length, 0)
        _COUNTER.pack_into(page, self.cons_offset, (cons + lost) & _MASK)
        return lost

    def produce(self, page: Page, events: Sequence[bytes]) -> int:
        """Publish as many ``events`` as fit; called by whoever owns this ring's ``prod``.

        Returns how many were written, from the front (the rest did not fit:
        the caller drops or retries them).  Never touches a slot the consumer
        has not released; a ``cons`` that claims more than the ring holds
        raises `RingOverflow`.  Each event must be exactly ``event_size`` bytes
        (the encoders' output).
        """
        self._checkPage(page)
        for event in events:
            if len(event) != self.event_size:
                raise ValueError(
                    f"{self.name} ring: event of {len(event)} bytes, expected {self.event_size}"
                )
        prod, cons, used = self._counters(page)
        # At most "length - used" events, and fewer near the counter wrap:
        # lengths 25 and 51 don't divide 2**32, so two live indices can share
        # a slot there.  Stop at the first slot holding an unconsumed (or just
        # written) event.
        taken = {self._slot(cons + i) for i in range(used)}
        written = 0
        for event in events[: self.length - used]:
            start = self._slot(prod + written)
            if start in taken:
                break
            page[start : start + self.event_size] = event
            taken.add(start)
            written += 1
        if written:
            # barrier: wmb() here in C, so the slots are visible before the new prod.
            _COUNTER.pack_into(page, self.prod_offset, (prod + written) & _MASK)
        return written

    def _counters(self, page: Page) -> tuple[int, int, int]:
        """``prod``, ``cons`` and how many events are in the ring between them, read
        once each; `RingOverflow` when they claim more than the ring holds."""
        self._checkPage(page)
        prod = _COUNTER.unpack_from(page, self.prod_offset)[0]
        cons = _COUNTER.unpack_from(page, self.cons_offset)[0]
        inRing = (prod - cons) & _MASK
        if inRing > self.length:
            raise RingOverflow(
                f"{self.name} ring overflow: prod={prod} cons={cons} "
                f"({inRing} in a ring of {self.length})"
            )
        return prod, cons, inRing

    def _slot(self, index: int) -> int:
        """Byte offset in the page of event ``index`` (a free-running uint32 counter)."""
        return self.offset + ((index & _MASK) % self.length) * self.event_size

    def _checkPage(self, page: Page) -> None:
        if len(page) < self.offset + self.size:
            raise ValueError(
                f"{self.name} ring: page of {len(page)} bytes, needs {self.offset + self.size}"
            )
