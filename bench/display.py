"""VNC display throughput and latency, each next to its floor measured in the same run.

    .venv/bin/python bench/display.py [--seconds 1] [--rounds 5]

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
        total = frames = 0
        sock.sendall(request)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            size, area, _ = _readUpdate(sock, buffer, request)
            total += size
            frames += area / (WIDTH * HEIGHT)
        elapsed = time.perf_counter() - start
    print(json.dumps({"bytes": total, "frames": frames, "seconds": elapsed}))


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


async def measureDisplay(reactor, seconds: float, rounds: int) -> dict:
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread
    from twisted.internet.utils import getProcessOutputAndValue
    from zope.interface import implementer

    from xend_vfb.display.screen import IInputSink, Screen
    from xend_vfb.rfb.server import VNCDisplay

    @implementer(IInputSink)
    class NoInput:
        absolute = False

        def keyEvent(self, keycode: int, pressed: bool) -> None:
            pass

        def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
            pass

        def pointerPosition(self, x: int, y: int, dz: int) -> None:
            pass

    screen = Screen(WIDTH, HEIGHT)
    # A console-like picture: a gradient, stamped below with a frame time.
    screen.buffer[:] = bytes((i // 4 + i // (WIDTH * 4)) & 0xFF for i in range(WIDTH * 4)) * HEIGHT
    display = VNCDisplay(screen, NoInput(), reactor=reactor)
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
        cpu = time.process_time()
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [__file__, "--client", mode, str(port), str(seconds)]
        )
        cpu = time.process_time() - cpu
        guest.stop()
        if code != 0:
            raise RuntimeError(err.decode())
        return json.loads(out), cpu

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
    parser.add_argument("--client", nargs=3, metavar=("MODE", "PORT", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        mode, port, seconds = args.client
        clientMain(mode, int(port), float(seconds))
        return
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    results: dict = {}

    async def run(reactor) -> None:
        results.update(await measureDisplay(reactor, args.seconds, args.rounds))

    try:
        react(lambda reactor: ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    report(results, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
