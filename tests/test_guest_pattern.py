"""What the simulated guest draws, and how its command line reads sizes and domain ids."""

import argparse

import pytest
from PIL import Image

from xend_vfb.guest.main import parseArgs, parseDomids, parseSize
from xend_vfb.guest.pattern import (
    BARS,
    MARKER_CELL,
    animationBand,
    loadImage,
    patternBytes,
    pixel,
)


def pixelAt(data, width, x, y):
    start = (y * width + x) * 4
    return data[start : start + 4]


def test_pattern_is_deterministic_and_sized():
    assert patternBytes(800, 600, 3, 0) == patternBytes(800, 600, 3, 0)
    assert len(patternBytes(800, 600)) == 800 * 600 * 4
    assert len(patternBytes(1, 1)) == 4
    with pytest.raises(ValueError):
        patternBytes(0, 10)


def test_pattern_bars_and_ramps():
    data = patternBytes(800, 600)
    for i, colour in enumerate(BARS):
        assert pixelAt(data, 800, i * 100 + 50, 300) == pixel(*colour)
    # Grey ramp from black at the left to white at the right, below the bars.
    assert pixelAt(data, 800, 0, 410) == pixel(0, 0, 0)
    assert pixelAt(data, 800, 799, 410) == pixel(255, 255, 255)
    assert pixelAt(data, 800, 799, 599) == pixel(0, 0, 255)


def test_marker_identifies_domain_and_device():
    base = patternBytes(800, 600, 1, 0)
    assert base != patternBytes(800, 600, 2, 0)
    assert base != patternBytes(800, 600, 1, 1)
    # Domain 1: only the last of the 16 domid cells is set.
    y = 2 * MARKER_CELL
    assert pixelAt(base, 800, 2 * MARKER_CELL, y) == pixel(64, 64, 64)
    assert pixelAt(base, 800, 17 * MARKER_CELL, y) == pixel(255, 255, 255)
    # Outside the marker the two are equal.
    other = patternBytes(800, 600, 2, 1)
    assert base[800 * 4 * 64 :] == other[800 * 4 * 64 :]


def test_load_image_scales_to_xrgb(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (4, 2), (255, 0, 0)).save(path)
    assert loadImage(path, 8, 4) == pixel(255, 0, 0) * 32
    with pytest.raises(OSError):
        loadImage(tmp_path / "missing.png", 8, 4)


def test_animation_band_moves():
    rect0, band0 = animationBand(800, 600, 0)
    rect1, band1 = animationBand(800, 600, 1)
    assert rect0 == rect1 == (0, 568, 800, 32)
    assert len(band0) == 800 * 32 * 4
    assert band0 != band1
    assert animationBand(10, 5, 7)[0] == (0, 0, 10, 5)


def test_command_line_parsers():
    assert parseDomids("5") == [5]
    assert parseDomids("1-3,7") == [1, 2, 3, 7]
    assert parseSize("640x480") == (640, 480)
    for bad in ("0", "x", "3-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parseDomids(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parseSize("640")
    args = parseArgs(["--domid", "2", "--run-dir", "/r", "--animate"])
    assert (args.domid, args.animate, args.size, args.protocol) == (
        [2],
        0.1,
        (800, 600),
        "x86_64-abi",
    )
