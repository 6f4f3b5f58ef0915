"""The vfb page and events: whatever a guest writes, a valid snapshot or GuestError."""

import random
import struct

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from xend_vfb.errors import GuestError
from xend_vfb.protocol import fbif
from xend_vfb.protocol.ring import EVENT_SIZE

PROTOCOLS = ["x86_32-abi", "x86_64-abi", "arm-abi"]
MiB = 2**20
S32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-5, 5000),
    st.sampled_from([-(2**31), 2**31 - 1, 0, 1, 800, 600, 3200]),
)
U32 = st.one_of(
    st.integers(0, 2**32 - 1),
    st.integers(0, 5000),
    st.integers(0, 300 * MiB),
    st.sampled_from([0, 1, 3200, 2 * MiB, 246 * MiB, 2**32 - 1]),
)


def linuxPage(protocol: str = "x86_64-abi", pd=(0x1234,), memLength: int = 2 * MiB) -> bytearray:
    """What Linux's xen-fbfront writes: 800x600x32 in 2 MiB (or `memLength`)."""
    page = bytearray(4096)
    fbif.writePage(
        page,
        protocol,
        width=800,
        height=600,
        line_length=3200,
        mem_length=memLength,
        depth=32,
        pd=list(pd),
    )
    return page


def test_linuxGuest():
    snap = fbif.FbPage.read(linuxPage(), "x86_64-abi", 8 * MiB)
    assert snap == fbif.FbPage("x86_64-abi", 800, 600, 3200, 2 * MiB, 32, (0x1234,), ())
    assert snap.geometry == fbif.Geometry(800, 600, 3200, 32, 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_readWriteRoundTrip(protocol):
    page = linuxPage(protocol, pd=(7, 8, 9))
    # 2 MiB needs one directory on 64-bit ABIs, one on 32-bit: only pd[0] is read.
    assert fbif.FbPage.read(page, protocol, 8 * MiB).pd == (7,)


def test_unknownProtocol():
    with pytest.raises(GuestError, match="unknown protocol 'sparc-abi'"):
        fbif.FbPage.read(linuxPage(), "sparc-abi", 8 * MiB)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("depth", 15, "depth 15 is not one of"),
        ("mem_length", 0, "mem_length 0"),
        ("line_length", 0, "line_length 0 outside"),
        ("line_length", 3, "line_length 3 outside 4"),
        ("line_length", 2 * MiB + 1, f"line_length {2 * MiB + 1} outside"),
        ("width", 16385, "width 16385 is beyond 16384"),
        ("height", 70000, "height 70000 is beyond 16384"),
    ],
)
def test_badFieldsNamed(field, value, message):
    values = dict(width=800, height=600, line_length=3200, mem_length=2 * MiB, depth=32)
    values[field] = value
    page = bytearray(4096)
    fbif.writePage(page, "x86_64-abi", pd=[1], **values)
    with pytest.raises(GuestError, match=message):
        fbif.FbPage.read(page, "x86_64-abi", 8 * MiB)


@pytest.mark.parametrize(
    "protocol, dirs, reach",
    [("x86_64-abi", 123, 246 * MiB), ("x86_32-abi", 247, 988 * MiB), ("arm-abi", 123, 246 * MiB)],
)
def test_pdReachStopsAtTheRings(protocol, dirs, reach):
    """REFERENCE.md section 5: pd[] entries never reach offset 1024."""
    layout = fbif.pdLayout(protocol)
    assert layout.maxDirectories == dirs
    assert layout.maxMemLength == reach
    assert layout.offset + dirs * layout.entry_size <= 1024
    page = linuxPage(protocol, range(1, dirs + 1), 2**32 - 1)
    page[1024:] = b"\xff" * 3072  # ring bytes must never be taken for pd[] entries
    snap = fbif.FbPage.read(page, protocol, 2**40)
    assert snap.mem_length == reach
    assert snap.pd == tuple(range(1, dirs + 1))
    assert snap.clamped == (f"vfb page: mem_length {2**32 - 1} capped to {reach}",)


def test_videoramLimitCaps():
    snap = fbif.FbPage.read(linuxPage(), "x86_64-abi", MiB)
    assert (snap.mem_length, snap.height) == (MiB, MiB // 3200)
    assert "height 600 clamped to 327" in snap.clamped[-1]


def test_clampingStopsAtTheRFBBound():
    """A size the guest left out (0) is clamped to what fits, but never beyond what a
    VNC viewer can be told (REFERENCE.md section 7)."""
    page = bytearray(4096)
    fbif.writePage(page, "x86_64-abi", width=0, height=0, line_length=70000,
                   mem_length=2 * MiB, depth=8, pd=[1])
    snap = fbif.FbPage.read(page, "x86_64-abi", 8 * MiB)
    assert (snap.width, snap.height) == (16384, 2 * MiB // 70000)
    fbif.writePage(page, "x86_64-abi", width=1, height=0, line_length=1,
                   mem_length=2 * MiB, depth=8, pd=[1])
    assert fbif.FbPage.read(page, "x86_64-abi", 8 * MiB).height == 16384
    geo = fbif.validateResize(fbif.ResizeEvent(-1, -1, 70000, 8, 0), 2 * MiB)
    assert (geo.width, geo.height) == (16384, 2 * MiB // 70000)


def test_writePageRefusesPdIntoRings():
    with pytest.raises(ValueError, match="run into the rings"):
        linuxPage(pd=range(124))


def nearlyValid(draw_line, draw_rows, draw_slack):
    return draw_line, max(draw_line * draw_rows + draw_slack, 0) % 2**32


geometries = st.one_of(
    st.tuples(U32, U32),
    st.builds(nearlyValid, st.integers(0, 20000), st.integers(0, 2000), st.integers(-5, 5)),
)
pages = st.builds(
    lambda noise, width, height, lengths, depth: (
        noise,
        dict(
            width=width,
            height=height,
            line_length=lengths[0],
            mem_length=lengths[1],
            depth=depth,
        ),
    ),
    st.integers(0, 2**64).map(lambda seed: random.Random(seed).randbytes(4096)),
    st.one_of(S32, st.integers(1, 3000)),
    st.one_of(S32, st.integers(1, 500)),
    geometries,
    st.sampled_from([*[8, 16, 24, 32] * 3, 0, 12, 33, 255]),
)


@settings(max_examples=2000, deadline=None)
@given(
    page=pages,
    protocol=st.sampled_from([*PROTOCOLS, *PROTOCOLS, *PROTOCOLS, "", "x86_64", "ARM-abi"]),
    limit=st.one_of(st.integers(1, 2**33), st.sampled_from([4096, 2 * MiB, 16 * MiB])),
    raw=st.sampled_from([False, False, False, True]),
)
def test_readAnyPage(page, protocol, limit, raw):
    """Any page bytes, any protocol: a snapshot meeting every invariant, or GuestError."""
    noise, fields = page
    buf = bytearray(noise)
    if not raw and protocol in PROTOCOLS:
        fbif.writePage(buf, protocol, pd=[], **fields)
    before = bytes(buf)
    try:
        snap = fbif.FbPage.read(buf, protocol, limit)
    except GuestError as e:
        event(str(e).split()[2])
        assert bytes(buf) == before
        return
    event("valid, clamped" if snap.clamped else "valid")
    assert bytes(buf) == before
    layout = fbif.pdLayout(protocol)
    width, height, line_length, mem_length, depth = struct.unpack_from("<iiIIB", buf, 16)
    bpp = snap.depth // 8
    assert snap.depth == depth in fbif.VALID_DEPTHS
    assert snap.line_length == line_length
    assert 0 < bpp <= snap.line_length <= snap.mem_length
    assert snap.mem_length == min(mem_length, limit, layout.maxMemLength)
    assert 1 <= snap.width <= min(snap.line_length // bpp, fbif.MAX_DIMENSION)
    assert 1 <= snap.height <= fbif.MAX_DIMENSION
    assert snap.height * snap.line_length <= snap.mem_length
    assert width <= fbif.MAX_DIMENSION and height <= fbif.MAX_DIMENSION
    assert snap.width == width or not 0 < width <= line_length // bpp
    assert snap.height == height or not 0 < height <= snap.mem_length // line_length
    assert len(snap.pd) == layout.directoryCount(snap.mem_length) <= layout.maxDirectories
    fmt = f"<{len(snap.pd)}{layout.entryFormat}"
    assert snap.pd == struct.unpack_from(fmt, buf, layout.offset)
    assert layout.offset + len(snap.pd) * layout.entry_size <= 1024
    assert bool(snap.clamped) == (
        (snap.width, snap.height, snap.mem_length) != (width, height, mem_length)
    )


@settings(max_examples=300, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    mem_length=st.integers(1, 64 * MiB),
    extra=st.integers(0, 3),
    seed=st.integers(0, 2**64),
)
def test_framebufferFramesRoundTrip(protocol, mem_length, extra, seed):
    """The guest's directory pages, read back: the first frames, in order."""
    layout = fbif.pdLayout(protocol)
    needed = -(-mem_length // 4096)
    rng = random.Random(seed)
    frames = [rng.getrandbits(layout.entry_size * 8) for _ in range(needed + extra)]
    dirs = fbif.directoryPages(frames, protocol)
    assert all(len(d) == 4096 for d in dirs)
    assert len(dirs) >= layout.directoryCount(mem_length)
    assert fbif.framebufferFrames(dirs, mem_length, protocol) == frames[:needed]


def test_framebufferFramesNeedsEnoughDirectories():
    with pytest.raises(ValueError, match="1 directory pages"):
        fbif.framebufferFrames([bytes(4096)], 3 * MiB, "x86_64-abi")


events = st.one_of(
    st.builds(fbif.UpdateEvent, S32, S32, S32, S32),
    st.builds(fbif.ResizeEvent, S32, S32, S32, S32, S32),
)


@settings(max_examples=1000, deadline=None)
@given(ev=events)
def test_outEventRoundTrip(ev):
    raw = ev.encode()
    assert len(raw) == EVENT_SIZE
    assert fbif.decodeOutEvent(raw) == ev


@settings(max_examples=300, deadline=None)
@given(period=st.integers(0, 2**32 - 1))
def test_inEventRoundTrip(period):
    raw = fbif.RefreshPeriodEvent(period).encode()
    assert fbif.decodeInEvent(raw) == fbif.RefreshPeriodEvent(period)
    assert fbif.decodeOutEvent(raw) is None  # type 1 is not an out event


@settings(max_examples=1000, deadline=None)
@given(raw=st.binary(min_size=EVENT_SIZE, max_size=EVENT_SIZE))
def test_decodeAnySlot(raw):
    """Any 40 bytes: an event of the type the first byte names, or None."""
    ev = fbif.decodeOutEvent(raw)
    expected = {2: fbif.UpdateEvent, 3: fbif.ResizeEvent}.get(raw[0], type(None))
    assert type(ev) is expected
    assert type(fbif.decodeInEvent(raw)) is (fbif.RefreshPeriodEvent if raw[0] == 1 else type(None))


def test_decodeWrongSize():
    with pytest.raises(ValueError, match="39 bytes"):
        fbif.decodeOutEvent(bytes(39))


@settings(max_examples=2000, deadline=None)
@given(ev=st.builds(fbif.UpdateEvent, S32, S32, S32, S32), w=st.integers(1, 5000), h=S32)
def test_clipUpdate(ev, w, h):
    """The result is a non-empty rectangle inside both the screen and the guest's rectangle."""
    assume(h > 0)
    clip = fbif.clipUpdate(ev, w, h)
    inside = max(ev.x, 0) < min(ev.x + ev.width, w) and max(ev.y, 0) < min(ev.y + ev.height, h)
    if clip is None:
        assert not inside
        return
    x, y, cw, ch = clip
    assert 0 <= x and x + cw <= w and 0 <= y and y + ch <= h and cw > 0 and ch > 0
    assert ev.x <= x and x + cw <= ev.x + ev.width
    assert ev.y <= y and y + ch <= ev.y + ev.height
    if 0 <= ev.x and ev.x + ev.width <= w and 0 <= ev.y and ev.y + ev.height <= h:
        assert clip == (ev.x, ev.y, ev.width, ev.height)


@settings(max_examples=2000, deadline=None)
@given(
    ev=st.builds(
        fbif.ResizeEvent,
        S32,
        S32,
        S32,
        st.one_of(st.sampled_from([8, 16, 24, 32]), S32),
        S32,
    ),
    mem_length=st.one_of(st.integers(1, 2**32 - 1), st.sampled_from([2 * MiB, 4096])),
)
def test_validateResize(ev, mem_length):
    """GuestError, or a geometry whose every pixel lies inside the mapping."""
    try:
        geo = fbif.validateResize(ev, mem_length)
    except GuestError:
        bpp = ev.depth // 8
        assert (
            ev.depth not in fbif.VALID_DEPTHS
            or max(ev.width, ev.height) > fbif.MAX_DIMENSION
            or not 0 <= ev.offset < mem_length
            or not bpp <= ev.stride <= mem_length - ev.offset
        )
        return
    bpp = geo.depth // 8
    assert (geo.stride, geo.depth, geo.offset) == (ev.stride, ev.depth, ev.offset)
    assert 1 <= geo.width <= fbif.MAX_DIMENSION and geo.width * bpp <= geo.stride
    assert 1 <= geo.height <= fbif.MAX_DIMENSION
    assert geo.offset + geo.height * geo.stride <= mem_length
    assert geo.width == ev.width or not 0 < ev.width <= ev.stride // bpp


@pytest.mark.parametrize(
    "ev, message",
    [
        (fbif.ResizeEvent(800, 600, 3200, 12, 0), "depth 12"),
        (fbif.ResizeEvent(800, 600, 3200, 32, -1), "offset -1"),
        (fbif.ResizeEvent(800, 600, 3200, 32, 2 * MiB), "offset 2097152"),
        (fbif.ResizeEvent(800, 600, 2, 32, 0), "stride 2 outside 4"),
        (fbif.ResizeEvent(800, 600, 3200, 32, 2 * MiB - 100), "stride 3200 outside 4..100"),
        (fbif.ResizeEvent(70000, 1, 70000, 8, 0), "width 70000 is beyond 16384"),
        (fbif.ResizeEvent(1, 65536, 1, 8, 0), "height 65536 is beyond 16384"),
    ],
)
def test_validateResizeMessages(ev, message):
    with pytest.raises(GuestError, match=message):
        fbif.validateResize(ev, 2 * MiB)


def test_validateResizeClamps():
    geo = fbif.validateResize(fbif.ResizeEvent(2000, 2000, 4096, 32, 4096), 2 * MiB)
    assert geo == fbif.Geometry(1024, 511, 4096, 32, 4096)
