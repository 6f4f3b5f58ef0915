"""The Screen the backend fills, its observers, and screenshots."""

import pytest
from PIL import Image
from zope.interface import implementer
from zope.interface.verify import verifyObject

from xend_vfb.display.screen import IScreen, IScreenObserver, Screen, screenshot


@implementer(IScreenObserver)
class Observer:
    def __init__(self):
        self.calls = []

    def screenUpdated(self, x, y, w, h):
        self.calls.append(("updated", x, y, w, h))

    def screenResized(self, width, height):
        self.calls.append(("resized", width, height))


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
