"""Rings under any counters a guest can write: GuestError or correct, never out of bounds."""

import mmap
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xend_vfb.errors import GuestError
from xend_vfb.protocol import fbif, kbdif
from xend_vfb.protocol.ring import EVENT_SIZE, RingOverflow

RINGS = [fbif.IN_RING, fbif.OUT_RING, kbdif.IN_RING, kbdif.OUT_RING]
U32 = 2**32

counters = st.one_of(
    st.integers(0, U32 - 1),
    st.integers(0, 200),
    st.integers(U32 - 200, U32 - 1),
)


def counter(page, offset: int) -> int:
    return struct.unpack_from("<I", page, offset)[0]


def setCounters(page, ring, cons: int, prod: int) -> None:
    struct.pack_into("<I", page, ring.cons_offset, cons % U32)
    struct.pack_into("<I", page, ring.prod_offset, prod % U32)


def stampedPage(ring) -> bytearray:
    """A page whose every ring slot says which slot it is, and whose other bytes are 0xEE."""
    page = bytearray(b"\xee" * 4096)
    for slot in range(ring.length):
        at = ring.offset + slot * EVENT_SIZE
        page[at : at + EVENT_SIZE] = struct.pack("<I", slot) + b"\xab" * (EVENT_SIZE - 4)
    return page


def event(n: int) -> bytes:
    return struct.pack("<Q", n) + bytes(EVENT_SIZE - 8)


def outside(page: bytes, ring, *keep: int) -> bytes:
    """The page with the ring's slots and the counters at ``keep`` blanked out."""
    copy = bytearray(page)
    copy[ring.offset : ring.offset + ring.size] = bytes(ring.size)
    for offset in keep:
        copy[offset : offset + 4] = bytes(4)
    return bytes(copy)


def test_lengths():
    """The event counts REFERENCE.md section 5 gives."""
    assert [r.length for r in RINGS] == [25, 51, 51, 25]


@settings(max_examples=1500, deadline=None)
@given(ring=st.sampled_from(RINGS), cons=counters, prod=counters)
def test_consumeAnyCounters(ring, cons, prod):
    """GuestError, or exactly the published slots, read from the ring and nowhere else."""
    page = stampedPage(ring)
    setCounters(page, ring, cons, prod)
    before = bytes(page)
    try:
        events = ring.consume(page)
    except GuestError as e:
        assert "ring overflow" in str(e)
        assert (prod - cons) % U32 > ring.length
        assert bytes(page) == before
        return
    assert len(events) == (prod - cons) % U32 <= ring.length
    for i, raw in enumerate(events):
        slot = ((cons + i) % U32) % ring.length
        assert raw == struct.pack("<I", slot) + b"\xab" * (EVENT_SIZE - 4)
    assert counter(page, ring.cons_offset) == prod
    assert outside(page, ring, ring.cons_offset) == outside(before, ring, ring.cons_offset)
    assert (
        page[ring.offset : ring.offset + ring.size] == before[ring.offset : ring.offset + ring.size]
    )


@settings(max_examples=1500, deadline=None)
@given(ring=st.sampled_from(RINGS), cons=counters, prod=counters, count=st.integers(0, 60))
def test_produceAnyCounters(ring, cons, prod, count):
    """GuestError, or only free slots written, in order, and prod advanced by the number written."""
    page = stampedPage(ring)
    setCounters(page, ring, cons, prod)
    before = bytes(page)
    used = (prod - cons) % U32
    try:
        written = ring.produce(page, [event(n) for n in range(count)])
    except GuestError:
        assert used > ring.length
        assert bytes(page) == before
        return
    unconsumed = {((cons + i) % U32) % ring.length for i in range(used)}
    fits = 0  # free slots from prod on, up to the first one already taken
    while fits < min(count, ring.length - used) and (
        (prod + fits) % U32
    ) % ring.length not in unconsumed | {((prod + i) % U32) % ring.length for i in range(fits)}:
        fits += 1
    assert written == fits
    assert counter(page, ring.prod_offset) == (prod + written) % U32
    assert outside(page, ring, ring.prod_offset) == outside(before, ring, ring.prod_offset)
    changed = {
        slot
        for slot in range(ring.length)
        if page[ring.offset + slot * EVENT_SIZE : ring.offset + (slot + 1) * EVENT_SIZE]
        != before[ring.offset + slot * EVENT_SIZE : ring.offset + (slot + 1) * EVENT_SIZE]
    }
    expected = {((prod + i) % U32) % ring.length for i in range(written)}
    assert changed == expected
    assert not changed & unconsumed


@settings(max_examples=500, deadline=None)
@given(
    ring=st.sampled_from(RINGS),
    start=counters,
    batches=st.lists(st.integers(0, 60), min_size=1, max_size=8),
)
def test_produceThenConsumeRoundTrip(ring, start, batches):
    """Both ends together deliver every event once, in order, across the 2**32 wrap."""
    page = bytearray(4096)
    setCounters(page, ring, start, start)
    sent, received, n = [], [], 0
    for count in batches:
        batch = [event(n + i) for i in range(count)]
        written = ring.produce(page, batch)
        sent += batch[:written]
        n += written
        received += ring.consume(page)
    assert received == sent


def test_produceStopsShortAtCounterWrap():
    """Indices 2**32-5.. and 0.. share slots on a 25-slot ring: never overwrite a live one."""
    page = bytearray(4096)
    ring = fbif.IN_RING
    setCounters(page, ring, U32 - 5, U32 - 5)
    assert ring.produce(page, [event(i) for i in range(25)]) == 21
    assert ring.consume(page) == [event(i) for i in range(21)]


def test_produceFullRingWritesNothing():
    page = bytearray(4096)
    ring = fbif.IN_RING
    assert ring.produce(page, [event(i) for i in range(ring.length)]) == ring.length
    before = bytes(page)
    assert ring.produce(page, [event(99)]) == 0
    assert bytes(page) == before


def test_produceWrongSizeEvent():
    with pytest.raises(ValueError, match="39 bytes"):
        fbif.IN_RING.produce(bytearray(4096), [bytes(39)])


def test_shortPage():
    with pytest.raises(ValueError, match="needs 4096"):
        fbif.OUT_RING.consume(bytearray(4000))


def test_overflowMessageNamesRingAndCounters():
    page = bytearray(4096)
    setCounters(page, fbif.OUT_RING, 0, 52)
    with pytest.raises(RingOverflow, match=r"vfb out ring overflow: prod=52 cons=0"):
        fbif.OUT_RING.consume(page)


@settings(max_examples=500, deadline=None)
@given(ring=st.sampled_from(RINGS), cons=counters, prod=counters)
def test_catchUpKeepsTheNewestRingFull(ring, cons, prod):
    """After a catch-up the ring holds at most a ring-full, the newest: those the
    producer wrote last, still in their slots; nothing outside cons changes."""
    page = stampedPage(ring)
    setCounters(page, ring, cons, prod)
    before = bytes(page)
    used = (prod - cons) % U32
    assert ring.catchUp(page) == max(used - ring.length, 0)
    kept = min(used, ring.length)
    assert counter(page, ring.cons_offset) == (prod - kept) % U32
    assert outside(page, ring, ring.cons_offset) == outside(before, ring, ring.cons_offset)
    assert len(ring.consume(page)) == kept


def test_overrunLikeLinuxFbfront():
    """xen-fbfront's race: one event past full, then it writes on (its test is "== 51")."""
    page = bytearray(4096)
    produced = [fbif.UpdateEvent(n, 0, 1, 1).encode() for n in range(120)]
    for n, raw in enumerate(produced):  # slots written in order, overwriting as Linux does
        slot = fbif.OUT_RING.offset + (n % fbif.OUT_RING.length) * EVENT_SIZE
        page[slot : slot + EVENT_SIZE] = raw
    setCounters(page, fbif.OUT_RING, 0, len(produced))
    assert fbif.OUT_RING.catchUp(page) == 120 - 51
    assert fbif.OUT_RING.consume(page) == produced[-51:]


@pytest.mark.parametrize("wrap", [memoryview, None])
def test_worksOnMmapAndMemoryview(wrap):
    """The backend hands the rings an mmap of the shared page (or a memoryview of one)."""
    with mmap.mmap(-1, 4096) as m:
        page = m if wrap is None else wrap(m)
        ring = kbdif.IN_RING
        assert ring.produce(page, [kbdif.KeyEvent(True, 30).encode()]) == 1
        assert [kbdif.decodeInEvent(raw) for raw in ring.consume(page)] == [
            kbdif.KeyEvent(True, 30)
        ]
        if wrap is not None:
            page.release()
