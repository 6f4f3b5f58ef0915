"""The Screen the backend fills, its observers, and screenshots."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers_display import Guest, pixelsOf
from xend_vfb.display.screen import TILE, IScreen, IScreenObserver, Screen, screenshot


@implementer(IScreenObserver)
class Observer:
    def __init__(self):
        self.calls = []

    def screenUpdated(self, x, y, w, h):
        self.calls.append(("updated", x, y, w, h))

    def screenResized(self, width, height):
        self.calls.append(("resized", width, height))

    def screenStale(self):
        self.calls.append(("stale",))


def test_interfaces():
    verifyObject(IScreen, Screen(4, 3))
    verifyObject(IScreenObserver, Observer())


def test_pixels_layout():
    screen = Screen(4, 3)
    assert (screen.width, screen.height) == (4, 3)
    assert len(screen.pixels()) == 4 * 3 * 4
    screen.buffer[4:8] = b"\x01\x02\x03\x00"
    assert bytes(screen.pixels()[4:8]) == b"\x01\x02\x03\x00"


def test_updates_are_clipped_and_reach_every_observer():
    screen = Screen(10, 10)
    first, second = Observer(), Observer()
    screen.addObserver(first)
    screen.addObserver(second)
    screen.update(-5, 8, 10, 10)
    screen.update(10, 0, 5, 5)  # entirely outside: dropped
    screen.update(2, 2, 0, 3)  # empty: dropped
    assert first.calls == second.calls == [("updated", 0, 8, 5, 2)]


def test_a_failing_observer_does_not_stop_the_others():
    screen = Screen(10, 10)
    broken, fine = Observer(), Observer()
    broken.screenUpdated = lambda *args: 1 / 0
    screen.addObserver(broken)
    screen.addObserver(fine)
    screen.update(0, 0, 1, 1)
    assert fine.calls == [("updated", 0, 0, 1, 1)]


def test_resize_gives_a_new_buffer():
    screen = Screen(4, 4)
    observer = Observer()
    screen.addObserver(observer)
    old = screen.pixels()
    screen.resize(8, 2)
    assert observer.calls == [("resized", 8, 2)]
    assert len(screen.pixels()) == 8 * 2 * 4 and len(old) == 4 * 4 * 4
    with pytest.raises(ValueError):
        screen.resize(0, 2)


def test_viewer_count_hook():
    screen = Screen(4, 4)
    counts = []
    screen.onViewersChanged = counts.append
    a, b = Observer(), Observer()
    screen.addObserver(a)
    screen.addObserver(b)
    screen.addObserver(b)  # already there
    screen.removeObserver(a)
    screen.removeObserver(a)  # already gone
    screen.removeObserver(b)
    assert counts == [1, 2, 1, 0]


def test_screenshot(tmp_path):
    screen = Screen(3, 2)
    screen.buffer[:] = bytes(
        [0, 0, 255, 0,  0, 255, 0, 0,  255, 0, 0, 0,  # red, green, blue
         255, 255, 255, 0,  0, 0, 0, 0,  16, 32, 48, 0]
    )  # fmt: skip
    path = tmp_path / "shot.png"
    screenshot(screen, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (3, 2)
        assert image.convert("RGB").tobytes() == bytes(
            [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 48, 32, 16]
        )


# -- pixels on demand: a source, stale marks, sync -------------------------------------------


def sourced(width, height):
    screen = Screen(width, height)
    guest = screen.source = Guest(width, height)
    observer = Observer()
    screen.addObserver(observer)
    return screen, guest, observer


def test_invalidate_reads_nothing_and_marks_stale_once():
    screen, guest, observer = sourced(40, 30)
    screen.invalidate(0, 0, 10, 10)
    screen.invalidate(-5, 25, 100, 100)  # clipped
    screen.invalidate(50, 0, 5, 5)  # outside: dropped
    assert screen.stale
    assert guest.reads == []
    assert observer.calls == [("stale",)]
    screen.sync()
    assert not screen.stale
    assert sorted(guest.reads) == [(0, 0, 10, 10), (0, 25, 40, 5)]  # each stale rectangle once
    screen.invalidate(0, 0, 1, 1)
    assert observer.calls[-1] == ("stale",)


def test_sync_reports_only_the_tiles_that_changed():
    screen, guest, observer = sourced(100, 50)
    screen.invalidate(0, 0, 100, 50)
    screen.sync()
    assert bytes(screen.buffer) == bytes(guest.pixels)
    observer.calls.clear()
    guest.draw(37, 21)
    guest.draw(99, 49)
    screen.invalidate(0, 0, 100, 50)
    screen.sync()
    updated = [call[1:] for call in observer.calls if call[0] == "updated"]
    assert pixelsOf(updated) == pixelsOf([(32, 16, 16, 16), (96, 48, 4, 2)])
    assert bytes(screen.buffer) == bytes(guest.pixels)
    # Stale again with nothing new: copied, compared, nothing reported.
    observer.calls.clear()
    screen.invalidate(0, 0, 100, 50)
    screen.sync()
    assert observer.calls == [("stale",)]


def test_sync_without_stale_or_source_reads_nothing():
    screen, guest, observer = sourced(20, 20)
    screen.sync()
    assert guest.reads == []
    screen.invalidate(0, 0, 20, 20)
    screen.source = None  # the guest's mappings went away
    screen.sync()
    assert guest.reads == [] and not screen.stale


def test_resize_drops_stale_marks():
    screen, guest, observer = sourced(20, 20)
    screen.invalidate(0, 0, 20, 20)
    screen.resize(10, 10)
    assert not screen.stale
    screen.sync()
    assert guest.reads == []


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    size=st.tuples(st.integers(1, 50), st.integers(1, 40)),
    stale=st.lists(st.tuples(*[st.integers(-10, 60)] * 2, *[st.integers(0, 40)] * 2),
                   max_size=4),
    drawn=st.lists(st.tuples(st.integers(0, 49), st.integers(0, 39)), max_size=6),
)
def test_sync_copies_the_stale_region_and_reports_its_changed_tiles(size, stale, drawn):
    width, height = size
    screen, guest, observer = sourced(width, height)
    screen.invalidate(0, 0, width, height)
    screen.sync()
    observer.calls.clear()
    before = bytes(screen.buffer)
    drawn = {(x, y) for x, y in drawn if x < width and y < height}
    for x, y in drawn:
        guest.draw(x, y, b"\xff\xfe\xfd\x00")  # differs from every random pixel's X byte
    for rect in stale:
        screen.invalidate(*rect)
    staleRects = screen._stale.rects()
    screen.sync()
    inStale = pixelsOf(staleRects)
    # The stale region now shows the guest; the rest is as it was.
    for y in range(height):
        for x in range(width):
            at = (y * width + x) * 4
            source = guest.pixels if (x, y) in inStale else before
            assert screen.buffer[at:at + 4] == source[at:at + 4]
    # Reported: each tile part (tile x stale rectangle) holding a copied change, nothing else.
    expected = set()
    for rx, ry, rw, rh in staleRects:
        part = pixelsOf([(rx, ry, rw, rh)])
        for x, y in drawn & part:
            tx, ty = x - x % TILE, y - y % TILE
            expected |= pixelsOf([(tx, ty, TILE, TILE)]) & part
    updated = [call[1:] for call in observer.calls if call[0] == "updated"]
    assert pixelsOf(updated) == expected
    assert sum(w * h for _, _, w, h in updated) == len(expected)  # nothing twice
