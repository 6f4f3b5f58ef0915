"""Our protocol layouts against Xen's own headers, compiled by gcc (tests/layout_check.c).

The Python side is measured, not restated: fields are found by encoding
marker values and looking for them in the bytes produced.
"""

import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from xend_vfb.protocol import fbif, kbdif
from xend_vfb.protocol.ring import EVENT_SIZE, Ring

SOURCE = Path(__file__).with_name("layout_check.c")
HEADERS = [Path("/usr/include/xen/io/fbif.h"), Path("/usr/include/xen/io/kbdif.h")]
NATIVE_ABI = {"x86_64": "x86_64-abi", "aarch64": "arm-abi"}.get(platform.machine())


def where(raw: bytes, value: int, fmt: str = "<i") -> int:
    """The offset of the one occurrence of ``value`` packed as ``fmt`` in ``raw``."""
    needle = struct.pack(fmt, value)
    assert raw.count(needle) == 1
    return raw.find(needle)


def ringLayout(prefix: str, ring: Ring, direction: str) -> dict[str, int]:
    return {
        f"{prefix}_{direction}_cons": ring.cons_offset,
        f"{prefix}_{direction}_prod": ring.prod_offset,
        f"{prefix}_{direction}_ring_offs": ring.offset,
        f"{prefix}_{direction}_ring_size": ring.size,
        f"{prefix}_{direction}_ring_len": ring.length,
    }


def pythonLayout(protocol: str) -> dict[str, int]:
    """Every value layout_check.c reports, as our Python modules produce it."""
    page = bytearray(4096)
    fbif.writePage(
        page,
        protocol,
        width=0x11223301,
        height=0x11223302,
        line_length=0x11223303,
        mem_length=0x11223304,
        depth=0xA5,
        pd=[0x55667788],
    )
    layout = fbif.pdLayout(protocol)
    update = fbif.UpdateEvent(0x11223301, 0x11223302, 0x11223303, 0x11223304).encode()
    resize = fbif.ResizeEvent(0x11223301, 0x11223302, 0x11223303, 0x11223304, 0x11223305)
    resize_raw = resize.encode()
    motion = kbdif.MotionEvent(0x11223301, 0x11223302, 0x11223303).encode()
    key = kbdif.KeyEvent(True, 0x11223301).encode()
    pos = kbdif.PositionEvent(0x11223301, 0x11223302, 0x11223303).encode()
    return {
        **ringLayout("fb", fbif.IN_RING, "in"),
        **ringLayout("fb", fbif.OUT_RING, "out"),
        **ringLayout("kbd", kbdif.IN_RING, "in"),
        **ringLayout("kbd", kbdif.OUT_RING, "out"),
        "fb_width": where(page, 0x11223301),
        "fb_height": where(page, 0x11223302),
        "fb_line_length": where(page, 0x11223303),
        "fb_mem_length": where(page, 0x11223304),
        "fb_depth": where(page, 0xA5, "<B"),
        "fb_pd": where(page, 0x55667788, "<" + layout.entryFormat),
        "fb_pd_entry": layout.entry_size,
        "fb_in_event_size": EVENT_SIZE,
        "fb_out_event_size": EVENT_SIZE,
        "fb_type_update": update[0],
        "fb_type_resize": resize_raw[0],
        "fb_type_refresh_period": fbif.RefreshPeriodEvent(7).encode()[0],
        "fb_no_refresh": fbif.NO_REFRESH,
        "fb_update_type": 0,
        "fb_update_x": where(update, 0x11223301),
        "fb_update_y": where(update, 0x11223302),
        "fb_update_width": where(update, 0x11223303),
        "fb_update_height": where(update, 0x11223304),
        "fb_resize_width": where(resize_raw, 0x11223301),
        "fb_resize_height": where(resize_raw, 0x11223302),
        "fb_resize_stride": where(resize_raw, 0x11223303),
        "fb_resize_depth": where(resize_raw, 0x11223304),
        "fb_resize_offset": where(resize_raw, 0x11223305),
        "fb_refresh_period": where(fbif.RefreshPeriodEvent(0x11223301).encode(), 0x11223301),
        "kbd_in_event_size": EVENT_SIZE,
        "kbd_type_motion": motion[0],
        "kbd_type_key": key[0],
        "kbd_type_pos": pos[0],
        "kbd_motion_rel_x": where(motion, 0x11223301),
        "kbd_motion_rel_y": where(motion, 0x11223302),
        "kbd_motion_rel_z": where(motion, 0x11223303),
        "kbd_key_pressed": key.index(1, 1),
        "kbd_key_keycode": where(key, 0x11223301),
        "kbd_pos_abs_x": where(pos, 0x11223301),
        "kbd_pos_abs_y": where(pos, 0x11223302),
        "kbd_pos_rel_z": where(pos, 0x11223303),
    }


def requireCompiler() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile tests/layout_check.c")
    missing = [str(h) for h in HEADERS if not h.exists()]
    if missing:
        pytest.skip(f"Xen headers missing ({', '.join(missing)}): apt-get install libxen-dev")
    return gcc


def test_nativeAbiMatchesHeaders(tmp_path):
    """The compiler's own ABI: the program prints the headers' values, we compare each."""
    gcc = requireCompiler()
    if NATIVE_ABI is None:
        pytest.skip(f"no Xen ABI known for machine {platform.machine()!r}")
    binary = tmp_path / "layout_check"
    subprocess.run([gcc, "-Wall", "-Werror", "-o", binary, SOURCE], check=True)
    output = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    headers = {name: int(value) for name, value in (line.split() for line in output.splitlines())}
    assert pythonLayout(NATIVE_ABI) == headers


def test_x86_32AbiMatchesHeaders(tmp_path):
    """The 32-bit ABI, checked at compile time by gcc -m32 (no 32-bit libc needed)."""
    gcc = requireCompiler()
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\n")
    flags = ["-m32", "-ffreestanding", "-fsyntax-only"]
    if subprocess.run([gcc, *flags, probe], capture_output=True).returncode:
        pytest.skip("gcc cannot target -m32 here")
    expect = tmp_path / "expect.h"
    expect.write_text(
        "".join(f"#define EXPECT_{k} {v}\n" for k, v in pythonLayout("x86_32-abi").items())
    )
    result = subprocess.run(
        [gcc, *flags, f'-DLAYOUT_EXPECT="{expect}"', SOURCE],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
