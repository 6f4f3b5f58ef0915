"""vkbd events: round trips and any slot decoding."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xend_vfb.protocol import kbdif
from xend_vfb.protocol.ring import EVENT_SIZE

S32 = st.integers(-(2**31), 2**31 - 1)
events = st.one_of(
    st.builds(kbdif.MotionEvent, S32, S32, S32),
    st.builds(kbdif.KeyEvent, st.booleans(), st.integers(0, 2**32 - 1)),
    st.builds(kbdif.PositionEvent, S32, S32, S32),
)


@settings(max_examples=1000, deadline=None)
@given(ev=events)
def test_roundTrip(ev):
    raw = ev.encode()
    assert len(raw) == EVENT_SIZE
    assert kbdif.decodeInEvent(raw) == ev


@settings(max_examples=1000, deadline=None)
@given(raw=st.binary(min_size=EVENT_SIZE, max_size=EVENT_SIZE))
def test_decodeAnySlot(raw):
    """Any 40 bytes: the event its type byte names (non-zero ``pressed``: a press), or None."""
    ev = kbdif.decodeInEvent(raw)
    expected = {1: kbdif.MotionEvent, 3: kbdif.KeyEvent, 4: kbdif.PositionEvent}
    assert type(ev) is expected.get(raw[0], type(None))
    if isinstance(ev, kbdif.KeyEvent):
        assert ev.pressed == (raw[1] != 0)


def test_buttonsAndDefaults():
    assert (kbdif.BTN_LEFT, kbdif.BTN_RIGHT, kbdif.BTN_MIDDLE) == (0x110, 0x111, 0x112)
    assert kbdif.MotionEvent(1, 2) == kbdif.MotionEvent(1, 2, 0)
    assert kbdif.KeyEvent(True, kbdif.BTN_LEFT).encode()[:8] == bytes(
        [3, 1, 0, 0, 0x10, 0x01, 0, 0]
    )


def test_decodeWrongSize():
    with pytest.raises(ValueError, match="41 bytes"):
        kbdif.decodeInEvent(bytes(41))


def test_positions_are_scaled_to_what_the_guest_read_at_probe():
    scale = kbdif.scalePosition
    # Same size: unchanged.
    assert scale(0, 0, (800, 600), (800, 600)) == (0, 0)
    assert scale(799, 599, (800, 600), (800, 600)) == (799, 599)
    # The guest resized to 1024x768 but still takes 0..800 x 0..600.
    assert scale(1023, 767, (1024, 768), (800, 600)) == (799, 599)
    assert scale(512, 384, (1024, 768), (800, 600)) == (400, 300)
    # Off the screen: clamped to its edges.
    assert scale(5000, -3, (1024, 768), (800, 600)) == (799, 0)
    # Raw: 0..0x7fff across the whole screen, corners exact.
    assert scale(0, 0, (640, 480), None) == (0, 0)
    assert scale(639, 479, (640, 480), None) == (kbdif.RAW_POINTER_MAX, kbdif.RAW_POINTER_MAX)
    assert scale(0, 0, (1, 1), None) == (0, 0)
