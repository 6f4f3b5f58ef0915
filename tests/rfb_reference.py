"""A reference RFB client for the tests, written from the RFB specification (RFC 6143 and
the community's protocol document for Tight, Zlib, LastRect, ExtendedDesktopSize, QEMU
extensions and xvp), independently of the server's code.

It decodes Raw, Zlib and Tight (fill, copy, palette; JPEG through Pillow) into a
framebuffer in the pixel format it asked for, and records every rectangle and
pseudo-rectangle it receives.  Messages are framed (their full length known) before
anything is decompressed, so zlib streams see each message exactly once.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

RAW, ZLIB, TIGHT = 0, 6, 7
LAST_RECT, DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE = -224, -223, -308
QEMU_EXTENDED_KEY, QEMU_LED_STATE, XVP = -258, -261, -309


@dataclass(frozen=True)
class PF:
    """A pixel format: bits per pixel, depth, big-endian, true colour, maxima and shifts."""

    bpp: int
    depth: int
    big: bool
    true: bool
    rmax: int
    gmax: int
    bmax: int
    rshift: int
    gshift: int
    bshift: int

    def pack(self) -> bytes:
        return struct.pack("!BB??HHHBBB3x", self.bpp, self.depth, self.big, self.true,
                           self.rmax, self.gmax, self.bmax, self.rshift, self.gshift, self.bshift)

    @property
    def size(self) -> int:
        return self.bpp // 8

    def value(self, r: int, g: int, b: int) -> bytes:
        """The pixel bytes of an 8-bit-per-channel colour, by the specification's scaling."""
        v = (((r * self.rmax + 127) // 255) << self.rshift
             | ((g * self.gmax + 127) // 255) << self.gshift
             | ((b * self.bmax + 127) // 255) << self.bshift)
        return v.to_bytes(self.size, "big" if self.big else "little")

    def channels(self, pixel: bytes) -> tuple[int, int, int]:
        """A pixel's channel values (at its own scale)."""
        v = int.from_bytes(pixel, "big" if self.big else "little")
        return (v >> self.rshift) & self.rmax, (v >> self.gshift) & self.gmax, \
            (v >> self.bshift) & self.bmax


FORMATS = {
    "xrgb32": PF(32, 24, False, True, 255, 255, 255, 16, 8, 0),
    "rgbx32": PF(32, 24, False, True, 255, 255, 255, 0, 8, 16),
    "xrgb32-big-endian": PF(32, 24, True, True, 255, 255, 255, 16, 8, 0),
    "rgb30-in-32": PF(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0),
    "rgb565": PF(16, 16, False, True, 31, 63, 31, 11, 5, 0),
    "rgb565-big-endian": PF(16, 16, True, True, 31, 63, 31, 11, 5, 0),
    "bgr233": PF(8, 8, False, True, 7, 7, 3, 0, 3, 6),
    "bgr233-big-endian": PF(8, 8, True, True, 7, 7, 3, 0, 3, 6),
}


def expected(buffer: bytes | bytearray, pf: PF) -> bytes:
    """A screen's XRGB8888 pixels in `pf`, pixel by pixel."""
    return b"".join(pf.value(buffer[i + 2], buffer[i + 1], buffer[i])
                    for i in range(0, len(buffer), 4))


def significant(fb: bytes | bytearray, pf: PF) -> bytes:
    """Pixels with the bits no channel uses cleared (a server may leave anything there)."""
    mask = (pf.rmax << pf.rshift) | (pf.gmax << pf.gshift) | (pf.bmax << pf.bshift)
    order = "big" if pf.big else "little"
    size = pf.size
    return b"".join(
        (int.from_bytes(fb[i : i + size], order) & mask).to_bytes(size, order)
        for i in range(0, len(fb), size)
    )


class _Short(Exception):
    """The message is not complete yet."""


class _Reader:
    def __init__(self, data: bytes | bytearray, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Short()
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def compact(self) -> int:
        """Tight's compact length: 7 bits a byte, least significant first, at most 3 bytes."""
        b = self.u8()
        n = b & 0x7F
        if b & 0x80:
            b = self.u8()
            n |= (b & 0x7F) << 7
            if b & 0x80:
                n |= self.u8() << 14
        return n


@dataclass
class Update:
    """One FramebufferUpdate: its rectangles as (x, y, w, h, encoding, detail)."""

    rects: list[tuple] = field(default_factory=list)


class Refused(Exception):
    """The server refused the connection: its SecurityResult failed, with this reason."""


class ReferenceClient(Protocol):
    """RFB 3.8, security None or VNC, or VeNCrypt 0.2 (X509None, X509Vnc) when given `tls`
    (client TLS options), then updates decoded into `fb`.  `ready` fails with `Refused`
    and the server's reason, or with the reason the connection was lost."""

    def __init__(self, pf: PF, encodings: list[int], shared: bool = True,
                 password: str | None = None, tls=None) -> None:
        self.pf = pf
        self.encodings = encodings
        self.shared = shared
        self.password = password
        self.tls = tls
        #: The VeNCrypt subtypes the server offered, once it has.
        self.subtypes: tuple[int, ...] = ()
        self.buffer = bytearray()
        self.state = "version"
        self.width = self.height = 0
        self.fb = bytearray()
        self.updates: list[Update] = []
        self.ready: Deferred = Deferred()
        self.lost: Deferred = Deferred()
        self.xvp: list[tuple[int, int]] = []  # (version, code) of xvp server messages
        self.colourMap: dict[int, tuple[int, int, int]] = {}
        self._waiting: list[Deferred] = []
        self._streams: list = [zlib.decompressobj() for _ in range(4)]
        self._zlib = zlib.decompressobj()

    # -- sending

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def setEncodings(self, encodings: list[int]) -> None:
        self.encodings = encodings
        self.send(struct.pack(f"!BxH{len(encodings)}i", 2, len(encodings), *encodings))

    def request(self, incremental: bool = False, area: tuple | None = None) -> Deferred:
        """Ask for an update; fires with it (an `Update`) once it is decoded."""
        x, y, w, h = area or (0, 0, self.width, self.height)
        d = Deferred()
        self._waiting.append(d)
        self.send(struct.pack("!BBHHHH", 3, incremental, x, y, w, h))
        return d

    def keyEvent(self, keysym: int, down: bool) -> None:
        self.send(struct.pack("!BBxxI", 4, down, keysym))

    def extendedKeyEvent(self, scancode: int, keysym: int, down: bool) -> None:
        self.send(struct.pack("!BBHII", 255, 0, down, keysym, scancode))

    def xvpRequest(self, code: int, version: int = 1) -> None:
        self.send(struct.pack("!BxBB", 250, version, code))

    def setDesktopSize(self, width: int, height: int) -> None:
        self.send(struct.pack("!BxHHBxIHHHHI", 251, width, height, 1, 0, 0, 0, width, height, 0))

    def nextUpdate(self) -> Deferred:
        d = Deferred()
        self._waiting.append(d)
        return d

    # -- receiving

    def connectionMade(self) -> None:
        pass

    def connectionLost(self, reason=None) -> None:
        if not self.ready.called:
            self.ready.errback(reason)
        if not self.lost.called:
            self.lost.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer and self.state != "refused":
            try:
                used = self._step(dryRun=True)
            except _Short:
                return
            self._step(dryRun=False)
            del self.buffer[:used]

    def _step(self, dryRun: bool) -> int:
        r = _Reader(self.buffer)
        if self.state == "version":
            r.take(12)
            if not dryRun:
                self.send(b"RFB 003.008\n")
                self.state = "security"
        elif self.state == "security":
            types = r.take(r.u8())
            if not dryRun:
                wanted = 19 if self.tls is not None else 2 if self.password is not None else 1
                self.send(bytes((wanted,)))
                # A type not offered, chosen anyway, is answered by a failed result.
                self.state = ({19: "vencrypt", 2: "challenge", 1: "result"}[wanted]
                              if wanted in types else "result")
        elif self.state == "vencrypt":
            version = r.take(2)
            if not dryRun:
                assert version == b"\x00\x02", version
                self.send(b"\x00\x02")
                self.state = "subtypes"
        elif self.state == "subtypes":
            status = r.u8()
            assert status == 0, "VeNCrypt version refused"
            count = r.u8()
            subtypes = r.unpack(f"!{count}I")
            if not dryRun:
                self.subtypes = subtypes
                self.send(struct.pack("!I", subtypes[0]))
                self.state = "accepted"
        elif self.state == "accepted":
            accepted = r.u8()
            if not dryRun:
                assert accepted == 1, "VeNCrypt subtype refused"
                self.transport.startTLS(self.tls)
                self.state = "challenge" if self.subtypes[0] == 261 else "result"
        elif self.state == "challenge":
            challenge = r.take(16)
            if not dryRun:
                from xend_vfb.rfb.vncauth import vncAuthResponse  # DES itself is tested on its own

                self.send(vncAuthResponse(self.password or "", challenge))
                self.state = "result"
        elif self.state == "result":
            (result,) = r.unpack("!I")
            reason = r.take(r.unpack("!I")[0]) if result != 0 else b""
            if not dryRun:
                if result != 0:
                    self.state = "refused"
                    self.ready.errback(Refused(reason.decode()))
                    self.transport.loseConnection()
                    return r.pos
                self.send(bytes((self.shared,)))
                self.state = "init"
        elif self.state == "init":
            w, h, _, nameLength = r.unpack("!HH16sI")
            r.take(nameLength)
            if not dryRun:
                self.width, self.height = w, h
                self.fb = bytearray(w * h * self.pf.size)
                self.send(struct.pack("!Bxxx", 0) + self.pf.pack())
                self.setEncodings(self.encodings)
                self.state = "normal"
                self.ready.callback(self)
        else:
            self._message(r, dryRun)
        return r.pos

    def _message(self, r: _Reader, dryRun: bool) -> None:
        kind = r.u8()
        if kind == 0:
            (count,) = r.unpack("!xH")
            update = Update()
            while count:
                x, y, w, h, encoding = r.unpack("!HHHHi")
                if encoding == LAST_RECT:
                    update.rects.append((x, y, w, h, encoding, None))
                    break
                update.rects.append((x, y, w, h, encoding, self._rect(r, x, y, w, h, encoding,
                                                                      dryRun)))
                count -= 1
            if not dryRun:
                self.updates.append(update)
                waiting, self._waiting = self._waiting, []
                for d in waiting:
                    d.callback(update)
        elif kind == 1:
            first, n = r.unpack("!xHH")
            colours = [r.unpack("!HHH") for _ in range(n)]
            if not dryRun:
                self.colourMap.update({first + i: c for i, c in enumerate(colours)})
        elif kind == 2:
            pass
        elif kind == 3:
            (n,) = r.unpack("!xxxI")
            r.take(n)
        elif kind == 250:
            version, code = r.unpack("!xBB")
            if not dryRun:
                self.xvp.append((version, code))
        else:
            raise AssertionError(f"unknown server message {kind}")

    # -- rectangles

    def _put(self, x: int, y: int, w: int, h: int, pixels: bytes) -> None:
        size = self.pf.size
        for row in range(h):
            start = ((y + row) * self.width + x) * size
            self.fb[start : start + w * size] = pixels[row * w * size : (row + 1) * w * size]

    def _rect(self, r: _Reader, x: int, y: int, w: int, h: int, encoding: int,
              dryRun: bool):
        size = self.pf.size
        if encoding == RAW:
            data = r.take(w * h * size)
            if not dryRun:
                self._put(x, y, w, h, data)
            return None
        if encoding == ZLIB:
            (n,) = r.unpack("!I")
            data = r.take(n)
            if not dryRun:
                self._put(x, y, w, h, self._zlib.decompress(data))
            return None
        if encoding == TIGHT:
            return self._tight(r, x, y, w, h, dryRun)
        if encoding in (DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE):
            screens = None
            if encoding == EXTENDED_DESKTOP_SIZE:
                (n,) = r.unpack("!B3x")
                screens = [r.unpack("!IHHHHI") for _ in range(n)]
            if not dryRun and (w, h) != (self.width, self.height):
                self.width, self.height = w, h
                self.fb = bytearray(w * h * size)
            return screens
        if encoding == QEMU_LED_STATE:
            return r.u8()
        if encoding in (QEMU_EXTENDED_KEY, XVP):
            return None
        raise AssertionError(f"unexpected encoding {encoding}")

    def _tpixelSize(self) -> int:
        pf = self.pf
        if pf.true and pf.bpp == 32 and pf.depth == 24 and pf.rmax == pf.gmax == pf.bmax == 255:
            return 3
        return pf.size

    def _tpixels(self, data: bytes) -> bytes:
        """TPIXELs (3 bytes R, G, B for 24-bit-deep 32-bit formats) as pixels."""
        if self._tpixelSize() == self.pf.size:
            return data
        return b"".join(self.pf.value(*data[i : i + 3]) for i in range(0, len(data), 3))

    def _tight(self, r: _Reader, x: int, y: int, w: int, h: int, dryRun: bool):
        assert w <= 2048, "Tight rectangles are at most 2048 pixels wide"
        control = r.u8()
        if not dryRun:
            for stream in range(4):
                if control & (1 << stream):
                    self._streams[stream] = zlib.decompressobj()
        kind = control >> 4
        tsize = self._tpixelSize()
        if kind == 8:
            colour = self._tpixels(r.take(tsize))
            if not dryRun:
                self._put(x, y, w, h, colour * (w * h))
            return ("fill",)
        if kind == 9:
            data = r.take(r.compact())
            if not dryRun:
                image = Image.open(io.BytesIO(data))
                assert image.format == "JPEG" and image.size == (w, h)
                rgb = image.convert("RGB").tobytes()
                self._put(x, y, w, h, b"".join(self.pf.value(*rgb[i : i + 3])
                                               for i in range(0, len(rgb), 3)))
            return ("jpeg",)
        assert kind < 8, f"compression type {kind}"
        stream = kind & 3
        filterId = r.u8() if kind & 4 else 0
        palette = None
        if filterId == 0:
            size = w * h * tsize
        elif filterId == 1:
            count = r.u8() + 1
            palette = self._tpixels(r.take(count * tsize))
            size = (w + 7) // 8 * h if count == 2 else w * h
        else:
            raise AssertionError(f"filter {filterId}")
        if size < 12:
            data = r.take(size)
        else:
            compressed = r.take(r.compact())
            data = b"" if dryRun else self._streams[stream].decompress(compressed)
        if dryRun:
            return None
        assert len(data) == size
        ps = self.pf.size
        if palette is None:
            pixels = self._tpixels(data)
        elif len(palette) == 2 * ps:
            rowBytes = (w + 7) // 8
            pixels = b"".join(
                palette[ps * ((data[row * rowBytes + col // 8] >> (7 - col % 8)) & 1):][:ps]
                for row in range(h) for col in range(w)
            )
        else:
            assert max(data) < len(palette) // ps
            pixels = b"".join(palette[i * ps : (i + 1) * ps] for i in data)
        self._put(x, y, w, h, pixels)
        return ("palette" if palette is not None else "copy", stream,
                None if palette is None else len(palette) // ps)


async def referenceConnect(port: int, pf: PF, encodings: list[int], shared: bool = True,
                           password: str | None = None, tls=None) -> ReferenceClient:
    client = ReferenceClient(pf, encodings, shared, password, tls)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return await client.ready


async def close(client: ReferenceClient) -> None:
    client.transport.loseConnection()
    await client.lost
