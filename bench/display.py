"""VNC display throughput, latency and encodings, each next to its floor measured in the same run.

    .venv/bin/python bench/display.py [--seconds 1] [--rounds 5] [--only encodings]

1. Floor: a plain loopback TCP stream of 800x600x4-byte frames from this
   process to a minimal receiver process: the most any raw-encoding server
   could deliver on this machine.  Floor and raw VNC are measured in
   alternating rounds and the ratio taken per round (medians reported), so
   that other load on the machine affects both alike.
2. The VNC server (this process, Twisted) showing an 800x600x32 screen that the
   "guest" redraws entirely every millisecond, to one minimal counting client
   (another process: RFB 3.8 handshake, then FramebufferUpdateRequests, each
   update counted, never decoded).  Raw encoding, then ZRLE for comparison.
3. Latency: the guest writes the time into the first pixels of a rectangle and
   calls screen.update; the client, holding an incremental request, reads the
   time back out of the received pixels once the whole update has arrived.
4. Pixels on demand: a guest framebuffer (a buffer of its own, 800x600x32) redrawn
   flat out, every redraw reported as a full-screen UPDATE, one viewer (raw).
   "eager copy" is the backend's old way: each UPDATE copies the rectangle out of
   guest memory into the screen and tells the viewers; "on demand" only marks it
   stale, and the viewer about to send copies it and compares it in 16-pixel
   tiles (`Screen.sync`).  Two guests: a picture that changes everywhere
   (scrolling), and a console where one text line changes.  Frames are the
   updates the client receives.  The guest is another process sharing its
   framebuffer (a file in /dev/shm) and writing a byte per redraw to a pipe (its
   event channel).  Alternating rounds, medians.
5. Encodings (issue 17): bytes and encode time of one full frame for Raw, ZRLE,
   Tight lossless and Tight JPEG (quality 5 and 8) on three screens (fbcon-like
   text, the simulated guest's test pattern, a photo-like picture made from a
   fixed seed), next to `zlib.compress` of the same raw frame.  Encode time is the
   process's CPU time (median of the repeats): on a shared machine the wall clock
   mostly measures the other processes.

The "64 idle guests" figure of issue 7 needs the backend; it is not here.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib

WIDTH, HEIGHT, BPP = 800, 600, 4
FRAME = WIDTH * HEIGHT * BPP
RAW, ZRLE = 0, 16


# -- the minimal clients (run as child processes of this script) ------------------------------


def _recvExactly(sock: socket.socket, view: memoryview, size: int) -> None:
    got = 0
    while got < size:
        n = sock.recv_into(view[got:size])
        if not n:
            raise ConnectionError("server closed the connection")
        got += n


def _handshake(sock: socket.socket, encoding: int) -> None:
    scratch = memoryview(bytearray(64))
    _recvExactly(sock, scratch, 12)
    sock.sendall(b"RFB 003.008\n")
    _recvExactly(sock, scratch, 2)  # one security type: None (1)
    sock.sendall(b"\x01")
    _recvExactly(sock, scratch, 4)  # SecurityResult OK
    sock.sendall(b"\x01")  # ClientInit, shared
    _recvExactly(sock, scratch, 24)
    (nameLength,) = struct.unpack("!I", scratch[20:24])
    _recvExactly(sock, scratch, nameLength)
    sock.sendall(struct.pack("!BxHi", 2, 1, encoding))


def _readUpdate(
    sock: socket.socket, buffer: memoryview, nextRequest: bytes = b""
) -> tuple[int, int, bytes]:
    """One FramebufferUpdate: (bytes, pixels covered, first 8 pixel bytes of the first rect).

    `nextRequest` goes out as soon as the update starts arriving, as real viewers do, so that
    the server never waits for a round trip between frames.
    """
    _recvExactly(sock, buffer, 4)
    if buffer[0] != 0:
        raise ValueError(f"unexpected message {buffer[0]}")
    if nextRequest:
        sock.sendall(nextRequest)
    (count,) = struct.unpack("!xxH", buffer[:4])
    total, area, stamp = 4, 0, b""
    for _ in range(count):
        _recvExactly(sock, buffer, 12)
        x, y, w, h, encoding = struct.unpack("!HHHHi", buffer[:12])
        if encoding == ZRLE:
            _recvExactly(sock, buffer, 4)
            (size,) = struct.unpack("!I", buffer[:4])
            total += 4
        else:
            size = w * h * BPP
        _recvExactly(sock, buffer, size)
        if not stamp and encoding == RAW:
            stamp = bytes(buffer[:8])
        total += 12 + size
        area += w * h
    return total, area, stamp


def clientMain(mode: str, port: int, seconds: float) -> None:
    """Child process: print one JSON line of what it measured."""
    buffer = memoryview(bytearray(FRAME + 65536))
    if mode == "floor":
        with socket.create_connection(("127.0.0.1", port)) as sock:
            total = sock.recv_into(buffer)
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                total += sock.recv_into(buffer)
            elapsed = time.perf_counter() - start
        print(json.dumps({"bytes": total, "seconds": elapsed}))
        return
    encoding = ZRLE if mode == "zrle" else RAW
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _handshake(sock, encoding)
        request = struct.pack("!BBHHHH", 3, 1, 0, 0, WIDTH, HEIGHT)
        sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, WIDTH, HEIGHT))
        _readUpdate(sock, buffer)  # the first, full update
        if mode == "latency":
            samples = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                sock.sendall(request)
                _, _, stamp = _readUpdate(sock, buffer)
                samples.append(time.monotonic_ns() - struct.unpack("<q", stamp)[0])
            print(json.dumps({"samples_ns": samples}))
            return
        total = frames = updates = 0
        sock.sendall(request)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            size, area, _ = _readUpdate(sock, buffer, request)
            total += size
            frames += area / (WIDTH * HEIGHT)
            updates += 1
        elapsed = time.perf_counter() - start
    print(json.dumps({"bytes": total, "frames": frames, "updates": updates, "seconds": elapsed}))


def _child(mode: str, port: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--client", mode, str(port), str(seconds)],
        stdout=subprocess.PIPE,
    )


# -- floor: plain loopback TCP ----------------------------------------------------------------


def measureFloor(seconds: float) -> dict:
    frame = bytes(range(256)) * (FRAME // 256)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        child = _child("floor", server.getsockname()[1], seconds)
        conn, _ = server.accept()
        with conn:
            try:
                while True:
                    conn.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                pass
    return json.loads(child.communicate()[0])


# -- the VNC server side ----------------------------------------------------------------------


def _noInput():
    from zope.interface import implementer

    from xend_vfb.display.screen import IInputSink

    @implementer(IInputSink)
    class NoInput:
        absolute = False

        def keyEvent(self, keycode: int, pressed: bool) -> None:
            pass

        def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
            pass

        def pointerPosition(self, x: int, y: int, dz: int) -> None:
            pass

    return NoInput()


async def _countingClient(mode: str, port: int, seconds: float) -> tuple[dict, float]:
    """Run a counting client against `port`: (what it measured, this process's CPU seconds)."""
    from twisted.internet.utils import getProcessOutputAndValue

    cpu = time.process_time()
    out, err, code = await getProcessOutputAndValue(
        sys.executable, [__file__, "--client", mode, str(port), str(seconds)]
    )
    cpu = time.process_time() - cpu
    if code != 0:
        raise RuntimeError(err.decode())
    return json.loads(out), cpu


async def measureDisplay(reactor, seconds: float, rounds: int) -> dict:
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread

    from xend_vfb.display.screen import Screen
    from xend_vfb.rfb.vncdisplay import VNCDisplay

    screen = Screen(WIDTH, HEIGHT)
    # A console-like picture: a gradient, stamped below with a frame time.
    screen.buffer[:] = bytes((i // 4 + i // (WIDTH * 4)) & 0xFF for i in range(WIDTH * 4)) * HEIGHT
    display = VNCDisplay(screen, _noInput(), reactor=reactor)
    _, port = await display.start()

    def stamp(x: int, y: int) -> None:
        offset = (y * WIDTH + x) * BPP
        screen.buffer[offset : offset + 8] = struct.pack("<q", time.monotonic_ns())

    def redraw(x: int, y: int, w: int, h: int) -> None:
        stamp(x, y)
        screen.update(x, y, w, h)

    async def run(mode: str, interval: float, rect: tuple[int, int, int, int]) -> tuple:
        guest = LoopingCall(redraw, *rect)
        guest.clock = reactor
        guest.start(interval)
        try:
            return await _countingClient(mode, port, seconds)
        finally:
            guest.stop()

    full = (0, 0, WIDTH, HEIGHT)
    results: dict = {"floor": [], "raw": []}
    for _ in range(rounds):
        results["floor"].append(await deferToThread(measureFloor, seconds))
        results["raw"].append(await run("raw", 0.001, full))
    results["zrle"] = await run("zrle", 0.001, full)
    results["latency full"] = await run("latency", 0.02, full)
    results["latency 64x64"] = await run("latency", 0.02, (368, 268, 64, 64))
    await display.stop()
    return results


# -- pixels on demand: a guest redrawing flat out -----------------------------------------------


def guestMain(kind: str, path: str) -> None:
    """Child process: the guest, redrawing its framebuffer (the shared file at `path`) flat
    out, one byte on standard output after each redraw (its UPDATE, the whole screen),
    until the bench closes the pipe.

    ``scroll``: a gradient whose every value moves by one a redraw (a new picture each
    time for 256 redraws); ``line``: text-like stripes where one 16-pixel line takes a new
    colour each redraw, a thousand redraws a second (a console scrolling fast; unpaced, it
    would change every line between two frames)."""
    import mmap

    stride = WIDTH * BPP
    base = bytes((i // 4 + i // stride) & 0xFF for i in range(stride)) * HEIGHT
    shift = [bytes((v + k) & 0xFF for v in range(256)) for k in range(256)]
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), FRAME) as memory:
        memory[:] = base
        tick = 0
        while True:
            tick += 1
            if kind == "line":
                top = (tick % (HEIGHT // 16)) * 16 * stride
                colour = bytes((tick * 37 & 0xFF, tick * 91 & 0xFF, 0xC0, 0))
                memory[top : top + 16 * stride] = (colour * 5 + bytes(12)) * (16 * WIDTH // 8)
                time.sleep(0.001)
            else:
                memory[:] = base.translate(shift[tick % 256])
            try:
                sys.stdout.buffer.write(b"u")
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                return


async def measureFlatOut(reactor, seconds: float, rounds: int) -> dict:
    """frames/s and server CPU per frame, eager copy vs on demand, for each guest."""
    import mmap
    import os
    import tempfile

    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    from xend_vfb.display.screen import Screen
    from xend_vfb.protocol.pixels import copyRect, readRect
    from xend_vfb.rfb.vncdisplay import VNCDisplay

    class Guest(ProcessProtocol):
        """The guest's UPDATE notifications: each batch read is one event, as from an
        event channel."""

        def __init__(self, onUpdate) -> None:
            self.onUpdate = onUpdate
            self.updates = 0
            self.ended: Deferred[None] = Deferred()

        def outReceived(self, data: bytes) -> None:
            self.updates += len(data)
            self.onUpdate()

        def processEnded(self, reason) -> None:
            self.ended.callback(None)

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(dir=shm) as f:
        f.truncate(FRAME)
        memory = mmap.mmap(f.fileno(), FRAME)

        async def run(kind: str, eager: bool) -> dict:
            screen = Screen(WIDTH, HEIGHT)
            copies = 0

            def read(x: int, y: int, w: int, h: int) -> bytearray:
                nonlocal copies
                copies += 1
                return readRect(memory, WIDTH * BPP, 32, 0, x, y, w, h)

            def eagerCopy() -> None:
                nonlocal copies
                copies += 1
                copyRect(memory, WIDTH * BPP, 32, 0, screen.buffer, WIDTH, 0, 0, WIDTH, HEIGHT)
                screen.update(0, 0, WIDTH, HEIGHT)

            if eager:
                guest = Guest(eagerCopy)
            else:
                screen.source = read
                guest = Guest(lambda: screen.invalidate(0, 0, WIDTH, HEIGHT))
            display = VNCDisplay(screen, _noInput(), reactor=reactor)
            _, port = await display.start()
            process = reactor.spawnProcess(
                guest, sys.executable, [sys.executable, __file__, "--guest", kind, f.name],
                env=None)
            try:
                client, cpu = await _countingClient("raw", port, seconds)
            finally:
                process.loseConnection()
                await guest.ended
                await display.stop()
            return {"fps": client["updates"] / client["seconds"],
                    "MBps": client["bytes"] / client["seconds"] / 1e6,
                    "copies": copies / client["seconds"],
                    "redraws": guest.updates / client["seconds"],
                    "cpu": cpu / client["seconds"],
                    "cpuPerFrame": cpu / max(client["updates"], 1)}

        results: dict = {}
        try:
            for name, kind in (("scrolling picture", "scroll"), ("one text line changing", "line")):
                for _ in range(rounds):
                    for mode, eager in (("eager copy", True), ("on demand", False)):
                        results.setdefault((name, mode), []).append(await run(kind, eager))
        finally:
            memory.close()
    return results


def reportFlatOut(flat: dict, seconds: float, rounds: int) -> None:
    median = statistics.median
    print(f"\nguest (another process) redrawing flat out, every redraw a full-screen UPDATE, "
          f"one raw viewer, {rounds} alternating rounds of {seconds:g} s, medians")
    print(f"{'guest':<24}{'backend':<12}{'frames/s':>9}{'MB/s':>8}{'redraws/s':>11}"
          f"{'copies/s':>10}{'CPU':>7}{'CPU/frame':>11}")
    for (name, mode), runs in flat.items():
        def m(key: str, runs: list = runs) -> float:
            return median(r[key] for r in runs)

        print(f"{name:<24}{mode:<12}{m('fps'):>9.1f}{m('MBps'):>8.1f}{m('redraws'):>11.0f}"
              f"{m('copies'):>10.0f}{m('cpu'):>7.0%}{m('cpuPerFrame') * 1e3:>9.2f}ms")
    for name in dict.fromkeys(n for n, _ in flat):
        before, after = flat[(name, "eager copy")], flat[(name, "on demand")]
        pairs = list(zip(after, before, strict=True))
        fps = median(a["fps"] / b["fps"] for a, b in pairs)
        cpu = median(a["cpuPerFrame"] / b["cpuPerFrame"] for a, b in pairs)
        print(f"  {name}: on demand / eager: {fps:.2f}x frames/s at {cpu:.2f}x CPU per frame")


# -- encodings (issue 17) -----------------------------------------------------------------------


def _textScreen() -> bytes:
    """fbcon-like: grey boot-log text in 8x16 cells on black."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for line in range(HEIGHT // 16):
        t = line * 0.0371 + line * line * 0.0013
        text = (f"[{t:12.6f}] xen-fbfront: vfb{line % 3}: frame {line * 7919 % 10007:5d} "
                f"mapped, {line * 31 % 97} pages, state Connected ({line:04x})")
        draw.text((0, line * 16), text[: WIDTH // 8], fill=(170, 170, 170), font=font)
    return image.tobytes("raw", "BGRX")


def _photoScreen() -> bytes:
    """Photo-like: smooth colour fields (random colours at 1/16 scale, enlarged bicubically)
    with fine grain (up to 12 levels per channel), from a fixed seed."""
    import random

    from PIL import Image, ImageChops, ImageFilter

    rng = random.Random(17)
    small = Image.frombytes("RGB", (WIDTH // 16, HEIGHT // 16),
                            rng.randbytes(WIDTH // 16 * HEIGHT // 16 * 3))
    fields = small.resize((WIDTH, HEIGHT), Image.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    grain = Image.frombytes("RGB", (WIDTH, HEIGHT), rng.randbytes(WIDTH * HEIGHT * 3))
    picture = ImageChops.add(fields, grain.point(lambda v: v * 12 // 256))
    return picture.tobytes("raw", "BGRX")


def measureEncodings(repeat: int) -> dict:
    """Per screen and codec: (bytes of one full frame, median CPU seconds to encode it)."""
    from xend_vfb.guest.pattern import patternBytes
    from xend_vfb.rfb.encodings import Encoding, RectEncoder

    codecs = {
        "Raw": [Encoding.RAW],
        "ZRLE": [Encoding.ZRLE],
        "Tight lossless": [Encoding.TIGHT],
        "Tight JPEG q5": [Encoding.TIGHT, Encoding.QUALITY_LEVEL_0 + 5],
        "Tight JPEG q8": [Encoding.TIGHT, Encoding.QUALITY_LEVEL_0 + 8],
    }
    screens = {"fbcon text": _textScreen(), "test pattern": patternBytes(WIDTH, HEIGHT, 1, 0),
               "photo-like": _photoScreen()}
    results: dict = {}
    for screenName, frame in screens.items():
        pixels = memoryview(frame)
        for codec, encodings in codecs.items():
            encoder = RectEncoder(lossyAllowed=True)
            encoder.setEncodings(encodings)
            times, size = [], 0
            for _ in range(repeat):
                started = time.process_time()
                _, chunks, _ = encoder.encode(pixels, WIDTH, 0, 0, WIDTH, HEIGHT)
                size = len(b"".join(chunks))
                times.append(time.process_time() - started)
            results[(screenName, codec)] = (size, statistics.median(times))
        for level in (1, 6):
            times = []
            for _ in range(repeat):
                started = time.process_time()
                size = len(zlib.compress(frame, level))
                times.append(time.process_time() - started)
            results[(screenName, f"zlib.compress level {level}")] = (size, statistics.median(times))
    return results


def reportEncodings(encodings: dict, repeat: int) -> None:
    print(f"\nencodings: one full {WIDTH}x{HEIGHT}x32 frame ({FRAME / 1e6:.2f} MB raw), "
          f"native pixel format, median CPU time of {repeat} encodes")
    print(f"{'screen':<14}{'codec':<24}{'bytes':>10}{'of raw':>8}{'CPU ms':>9}")
    for (screenName, codec), (size, seconds) in encodings.items():
        print(f"{screenName:<14}{codec:<24}{size:>10}{size / FRAME:>8.1%}{seconds * 1e3:>9.2f}")
    print("targets:")
    for screenName in dict.fromkeys(name for name, _ in encodings):
        tight, zrle = encodings[(screenName, "Tight lossless")], encodings[(screenName, "ZRLE")]
        met = tight[0] <= zrle[0] and tight[1] <= zrle[1]
        print(f"  {screenName}: Tight lossless <= ZRLE bytes at <= ZRLE time: "
              f"{'met' if met else 'NOT met'} ({tight[0] / zrle[0]:.2f}x bytes, "
              f"{tight[1] / zrle[1]:.2f}x time)")
    q5, raw = encodings[("photo-like", "Tight JPEG q5")], encodings[("photo-like", "Raw")]
    met = q5[0] * 10 <= raw[0]
    print(f"  photo-like: JPEG q5 <= 1/10 of Raw bytes: {'met' if met else 'NOT met'} "
          f"(1/{raw[0] / q5[0]:.0f})")


def report(display: dict, seconds: float, rounds: int) -> None:
    floorFps = [f["bytes"] / f["seconds"] / FRAME for f in display["floor"]]
    rawFps = [r["frames"] / r["seconds"] for r, _ in display["raw"]]
    rawCpu = [cpu / r["seconds"] for r, cpu in display["raw"]]
    ratios = [raw / floor for raw, floor in zip(rawFps, floorFps, strict=True)]
    median = statistics.median
    print(f"VNC display bench: {WIDTH}x{HEIGHT}x32 ({FRAME / 1e6:.2f} MB a frame), "
          f"{rounds} rounds of {seconds:g} s, medians\n")
    print(f"{'figure':<34}{'frames/s':>10}{'MB/s':>10}{'of floor':>10}{'server CPU':>12}")
    print(f"{'loopback TCP stream (floor)':<34}{median(floorFps):>10.1f}"
          f"{median(floorFps) * FRAME / 1e6:>10.1f}{'100%':>10}{'':>12}")
    print(f"{'VNC raw, full-screen redraws':<34}{median(rawFps):>10.1f}"
          f"{median(rawFps) * FRAME / 1e6:>10.1f}{median(ratios):>10.0%}{median(rawCpu):>12.0%}")
    zrle, cpu = display["zrle"]
    print(f"{'VNC zrle (one round, comparison)':<34}{zrle['frames'] / zrle['seconds']:>10.1f}"
          f"{zrle['bytes'] / zrle['seconds'] / 1e6:>10.1f}{'':>10}{cpu / zrle['seconds']:>12.0%}")
    print("  per-round raw/floor: " + ", ".join(f"{r:.0%}" for r in ratios))
    print(f"\n{'latency update -> client has pixels':<40}{'median':>10}{'p95':>10}{'max':>10}")
    for name in ("latency full", "latency 64x64"):
        samples = [s / 1e6 for s in display[name][0]["samples_ns"]]
        p95 = statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]
        label = f"  {name.split()[1]} ({len(samples)} samples), ms"
        print(f"{label:<40}{median(samples):>10.2f}{p95:>10.2f}{max(samples):>10.2f}")
    floorLatency = 1e3 / median(floorFps)
    print(f"\nfloor for a full frame: {floorLatency:.2f} ms to stream its bytes over loopback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per figure and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="encodes per codec and screen")
    parser.add_argument("--only", choices=("throughput", "flat-out", "encodings"),
                        help="run one part only")
    parser.add_argument("--client", nargs=3, metavar=("MODE", "PORT", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--guest", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest:
        guestMain(*args.guest)
        return
    if args.client:
        mode, port, seconds = args.client
        clientMain(mode, int(port), float(seconds))
        return
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    results: dict = {}
    flat: dict = {}

    async def run(reactor) -> None:
        if args.only in (None, "throughput"):
            results.update(await measureDisplay(reactor, args.seconds, args.rounds))
        if args.only in (None, "flat-out"):
            flat.update(await measureFlatOut(reactor, args.seconds, args.rounds))

    if args.only != "encodings":
        try:
            react(lambda reactor: ensureDeferred(run(reactor)))
        except SystemExit as e:
            if e.code:
                raise
    if results:
        report(results, args.seconds, args.rounds)
    if flat:
        reportFlatOut(flat, args.seconds, args.rounds)
    if args.only in (None, "encodings"):
        reportEncodings(measureEncodings(args.repeat), args.repeat)


if __name__ == "__main__":
    main()
