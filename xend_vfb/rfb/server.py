"""The VNC (RFB 3.3/3.7/3.8) server showing one `IScreen` and feeding one `IInputSink`:
one viewer's connection (`RFBServerProtocol`); the listening side is `vncdisplay`.

Each connection, once past authentication and ClientInit, is a viewer: an
`IScreenObserver` of the screen that collects the rectangles the guest
changed and sends them only when its client asks (FramebufferUpdateRequest),
coalesced, in the encoding and pixel format the client chose.  Pixels are
copied from the guest only then: a viewer about to send syncs the screen
(`IScreen.sync`), which copies what the guest redrew and reports the 16-pixel
tiles that really changed to every viewer.  What changes
while a client has no request outstanding, or while its connection's send
buffer is full (the connection pauses us as a push producer), just widens its
dirty region: a slow client gets fewer, fresher frames, never a growing queue.

Several viewers watch and type at once, like xm's VNC consoles.  The ClientInit
shared flag is handled as QEMU's ``share=`` says (`vncdisplay.VNCDisplay`'s `share`): by
default a viewer asking for exclusive access disconnects the others.  A client that cannot
take a new screen size (no DesktopSize pseudo-encoding) is disconnected when
the screen is resized; reconnecting shows the new size.  A screen size RFB
cannot carry (beyond 65535 either way) is never announced: the viewer is
disconnected instead, with the reason in the log.

With TLS (`xend_vfb.tls`), the display offers VeNCrypt only, with the x509
subtype that matches its password (X509Vnc, or X509None without one), and
starts TLS on the connection once the client has chosen it; a client that
cannot do VeNCrypt is refused with the reason.  The password may change while
the display runs (`setPassword`): viewers already in stay, new ones need the
new one, and after its expiry time nobody new gets in.

A client listing QEMU's extended key event pseudo-encoding is told, as QEMU
does, with a rectangle of that encoding (in its next update); from then on its
keys may come as positions (XT scancodes), which need no keymap (`input`).

Power control (the xvp extension): a display given a `powerControl` callback
tells authenticated clients that list xvp (XVP_INIT) and passes their
shutdown, reboot and reset requests to it; anything refused (power control
off, a viewer that did not authenticate, a bad version or code, a callback
that failed) is answered with XVP_FAIL.  A display without a password has no
authenticated viewers, so never offers it.

Longer than most modules on purpose: one connection's whole life, handshake to
updates, is one protocol class whose steps hand over to each other (`_expect`);
the encoders (`encodings`, `tight`), pixel formats (`pixels`), input (`input`)
and the listening side (`vncdisplay`) are apart.
"""

from __future__ import annotations

import enum
import hmac
import os
import re
import struct
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IAddress,
    IPushProducer,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xend_vfb.display.region import DirtyRegion, Rect, intersect
from xend_vfb.display.screen import IScreenObserver
from xend_vfb.rfb.encodings import Encoding, RectEncoder
from xend_vfb.rfb.input import Keyboard, Pointer
from xend_vfb.rfb.pixels import NATIVE, PixelFormat, colourMapEntries
from xend_vfb.rfb.vncauth import vncAuthResponse

if TYPE_CHECKING:
    from xend_vfb.rfb.vncdisplay import VNCDisplay

__all__ = ["RFBServerProtocol", "PowerAction", "VNC_BASE_PORT", "LOSSLESS_REFRESH_SECONDS"]

VNC_BASE_PORT = 5900
_SECURITY_INVALID = 0
_SECURITY_NONE = 1
_SECURITY_VNC = 2
_SECURITY_VENCRYPT = 19
#: VeNCrypt: the version spoken (0.2), and the x509 subtypes offered.
_VENCRYPT_VERSION = b"\x00\x02"
_X509_NONE = 260
_X509_VNC = 261
_VENCRYPT_REQUIRED = "this display requires VeNCrypt (TLS with x509 certificates)"
_RESULT_OK = struct.pack("!I", 0)
_RESULT_FAILED = struct.pack("!I", 1)
_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_MAX_CUT_TEXT = 1 << 20
#: How long after the last lossy (JPEG) update its areas are sent again losslessly (as QEMU).
LOSSLESS_REFRESH_SECONDS = 2.0
#: RFB sizes are 16-bit (ServerInit, rectangle headers, DesktopSize).
_MAX_SIZE = 0xFFFF

_U32 = struct.Struct("!I")
_UPDATE_HEADER = struct.Struct("!BxH")  # FramebufferUpdate, number of rectangles
_SERVER_INIT = struct.Struct("!HH16sI")
_COLOUR_MAP_HEADER = struct.Struct("!BxHH")
_UPDATE_REQUEST = struct.Struct("!BHHHH")
_KEY_EVENT = struct.Struct("!BxxI")
_POINTER_EVENT = struct.Struct("!BHH")

# Client message type -> bytes that follow the type byte before any variable part.
_SET_PIXEL_FORMAT, _SET_ENCODINGS, _UPDATE, _KEY, _POINTER, _CUT_TEXT = 0, 2, 3, 4, 5, 6
_SET_DESKTOP_SIZE = 251  # ExtendedDesktopSize's request: then 16 bytes per screen
_QEMU = 255  # QEMU client message: a subtype byte, then the subtype's body
_XVP = 250  # xvp client message: padding, version, code
_MESSAGE_SIZES = {
    _SET_PIXEL_FORMAT: 19, _SET_ENCODINGS: 3, _UPDATE: 9, _KEY: 7, _POINTER: 5, _CUT_TEXT: 7,
    _SET_DESKTOP_SIZE: 7, _QEMU: 1, _XVP: 3,
}
_SET_DESKTOP_SIZE_MESSAGE = struct.Struct("!xHHBx")
_SCREEN_SIZE = 16
#: ExtendedDesktopSize: why (x) and a client request's outcome (y).
_BY_SERVER, _BY_CLIENT, _PROHIBITED = 0, 1, 1
_MAX_RECTS = 0xFFFF  # the update header's count: "ended by a LastRect rectangle"
_QEMU_EXTENDED_KEY = 0
_QEMU_KEY_EVENT = struct.Struct("!HII")  # down, keysym, XT scancode
_XVP_MESSAGE = struct.Struct("!BxBB")  # type 250, padding, version, code
_XVP_VERSION = 1
_XVP_FAIL, _XVP_INIT = 0, 1


class PowerAction(enum.IntEnum):
    """What an xvp client may ask (its message codes), named as the daemon calls them."""

    shutdown = 2
    reboot = 3
    reset = 4


_POWER_CODES = frozenset(action.value for action in PowerAction)

log = Logger()


@implementer(IScreenObserver, IPushProducer)
class RFBServerProtocol(Protocol):
    """One client connection: handshake, then messages in, updates out."""

    def __init__(self, display: VNCDisplay, local: bool = False) -> None:
        """`local`: a connection on the display's local socket, from the daemon's browser
        console, whose far side has TLS of its own: no VeNCrypt even with TLS on."""
        self._display = display
        self._tls = None if local else display.tls
        self._buffer = bytearray()
        self._need = 12
        self._handler = self._gotVersion
        self._minor = 3
        self._challenge = b""
        #: The VeNCrypt subtype chosen, once TLS is on.
        self._subtype: int | None = None
        self._encoder = RectEncoder(display.lossy)
        self._dirty = DirtyRegion()
        #: Areas last sent as JPEG, and those owed a lossless refresh.
        self._lossy = DirtyRegion()
        self._lossless = DirtyRegion()
        self._refreshCall: Any = None
        self._request: Rect | None = None
        self._clientSize = (0, 0)
        self._resizePending = False
        #: Pseudo-rectangles owed to the client, sent with its next update.
        self._pseudo: list[bytes] = []
        self._ledsPending = False
        self._paused = False
        self._sendCall: Any = None
        self._closing = False
        self.viewing = False
        #: Whether this viewer asked for exclusive access and got it.
        self.exclusive = False
        #: Whether this viewer proved it knows the display's password.
        self.authenticated = False
        self.closed: Deferred[None] = Deferred()
        self._keyboard = Keyboard(display.keymap, display.input, display.locks)
        self._pointer = Pointer(display.input)

    # -- connection

    def connectionMade(self) -> None:
        """Register for flow control and offer protocol version 3.8."""
        self.transport.registerProducer(self, True)
        self.transport.write(b"RFB 003.008\n")

    def dataReceived(self, data: bytes) -> None:
        """Run the handler of each complete piece the current state waits for."""
        self._buffer += data
        while not self._closing and len(self._buffer) >= self._need:
            piece = bytes(self._buffer[: self._need])
            del self._buffer[: self._need]
            self._handler(piece)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop watching the screen and release whatever this viewer held down."""
        if self._subtype is not None and not self.viewing and not self._closing:
            log.info("VNC client {peer}: TLS ended before the viewer got in: {why}",
                     peer=_peer(self.transport.getPeer()), why=reason.getErrorMessage())
        self._closing = True
        for call in (self._sendCall, self._refreshCall):
            if call is not None and call.active():
                call.cancel()
        if self.viewing:
            self.viewing = False
            self._keyboard.releaseAll()
            self._pointer.releaseAll()
            self._display._viewerLeft(self)
        self._display._connectionLost(self)
        self.closed.callback(None)

    def _expect(self, size: int, handler: Any) -> None:
        self._need = size
        self._handler = handler

    def _drop(self, why: str) -> None:
        log.info("VNC client {peer} dropped: {why}", peer=_peer(self.transport.getPeer()), why=why)
        self._closing = True
        self.transport.loseConnection()

    # -- handshake

    def _gotVersion(self, data: bytes) -> None:
        match = _VERSION.fullmatch(data)
        if match is None or int(match.group(1)) != 3:
            self._drop(f"unsupported protocol version {data!r}")
            return
        # 3.7 and 3.8 as themselves, anything newer as 3.8, anything else as 3.3 (RFC 6143 7.1.1).
        minor = int(match.group(2))
        self._minor = 8 if minor >= 8 else 7 if minor == 7 else 3
        security = self._offered()
        if self._minor == 3:
            if security == _SECURITY_VENCRYPT:
                # 3.3 has the server choose, and knows no VeNCrypt: "invalid", and why.
                reason = _VENCRYPT_REQUIRED.encode()
                self.transport.write(_U32.pack(_SECURITY_INVALID) + _U32.pack(len(reason))
                                     + reason)
                self._drop(f"RFB 3.3 client: {_VENCRYPT_REQUIRED}")
                return
            self.transport.write(_U32.pack(security))
            self._startSecurity(security)
        else:
            self.transport.write(bytes((1, security)))
            self._expect(1, self._gotSecurityType)

    def _offered(self) -> int:
        """The one security type this display offers."""
        if self._tls is not None:
            return _SECURITY_VENCRYPT
        return _SECURITY_VNC if self._display.password else _SECURITY_NONE

    def _gotSecurityType(self, data: bytes) -> None:
        offered = self._offered()
        if data[0] != offered:
            self._refuse(_VENCRYPT_REQUIRED if offered == _SECURITY_VENCRYPT
                         else "security type not offered")
            return
        if offered == _SECURITY_VENCRYPT:
            self.transport.write(_VENCRYPT_VERSION)
            self._expect(2, self._gotVeNCryptVersion)
            return
        self._startSecurity(offered)

    # -- VeNCrypt

    def _gotVeNCryptVersion(self, data: bytes) -> None:
        if data != _VENCRYPT_VERSION:
            self.transport.write(b"\x01")
            self._drop(f"VeNCrypt version {data[0]}.{data[1]} (only 0.2 is spoken)")
            return
        subtype = _X509_VNC if self._display.password else _X509_NONE
        self.transport.write(b"\x00\x01" + _U32.pack(subtype))
        self._expect(4, lambda chosen: self._gotVeNCryptSubtype(subtype, chosen))

    def _gotVeNCryptSubtype(self, offered: int, data: bytes) -> None:
        (chosen,) = _U32.unpack(data)
        if chosen != offered:
            self.transport.write(b"\x00")
            self._drop(f"VeNCrypt subtype {chosen} chosen, {offered} offered")
            return
        if self._buffer:
            # The client may not speak before the TLS handshake it starts.
            self._drop("data before the TLS handshake")
            return
        self.transport.write(b"\x01")
        self._subtype = chosen
        self.transport.startTLS(self._tls)
        # Sent once the handshake is done (Twisted holds writes until then).
        self._startSecurity(_SECURITY_VNC if chosen == _X509_VNC else _SECURITY_NONE)

    # -- authentication

    def _startSecurity(self, security: int) -> None:
        if security == _SECURITY_VNC:
            self._challenge = os.urandom(16)
            self.transport.write(self._challenge)
            self._expect(16, self._gotAuthResponse)
            return
        if self._minor == 8:
            self.transport.write(_RESULT_OK)
        self._expect(1, self._gotClientInit)

    def _gotAuthResponse(self, data: bytes) -> None:
        if self._display.passwordExpired:
            log.warn("VNC client {peer} refused: the display's password has expired",
                     peer=_peer(self.transport.getPeer()))
            self._refuse("password expired")
            return
        expected = vncAuthResponse(self._display.password, self._challenge)
        if not hmac.compare_digest(data, expected):
            peer = _peer(self.transport.getPeer())
            log.warn("VNC client {peer} failed authentication", peer=peer)
            self._refuse("authentication failed")
            return
        self.authenticated = True
        self.transport.write(_RESULT_OK)
        self._expect(1, self._gotClientInit)

    def _refuse(self, reason: str) -> None:
        """SecurityResult failed (with its reason from 3.8 on), then close."""
        message = _RESULT_FAILED
        if self._minor == 8:
            text = reason.encode()
            message += _U32.pack(len(text)) + text
        self.transport.write(message)
        self._drop(reason)

    def _gotClientInit(self, data: bytes) -> None:
        shared, policy = bool(data[0]), self._display.share
        if policy == "force-shared" and not shared:
            self._drop("exclusive access asked, and the display is force-shared")
            return
        if policy == "allow-exclusive":
            if shared and any(v.exclusive for v in self._display._viewers):
                self._drop("another viewer has exclusive access")
                return
            if not shared:
                self.exclusive = True
                for other in list(self._display._connections):
                    if other is not self:
                        log.info("VNC client {peer} disconnected: another asked for exclusive "
                                 "access", peer=_peer(other.transport.getPeer()))
                        other.transport.loseConnection()
        screen = self._display.screen
        if not _announceable(screen.width, screen.height):
            self._drop(f"screen {screen.width}x{screen.height} is too large for RFB")
            return
        name = self._display.name.encode()
        self._clientSize = (screen.width, screen.height)
        self.transport.write(
            _SERVER_INIT.pack(screen.width, screen.height, NATIVE.toBytes(), len(name)) + name
        )
        self._dirty.add((0, 0, screen.width, screen.height))
        self.viewing = True
        self._display._viewerJoined(self)
        self._expect(1, self._gotMessageType)

    # -- client messages

    def _gotMessageType(self, data: bytes) -> None:
        kind = data[0]
        size = _MESSAGE_SIZES.get(kind)
        if size is None:
            self._drop(f"unknown message type {kind}")
            return
        self._expect(size, lambda body: self._gotMessage(kind, body))

    def _gotMessage(self, kind: int, body: bytes) -> None:
        self._expect(1, self._gotMessageType)
        if kind == _SET_PIXEL_FORMAT:
            self._setPixelFormat(body[3:])
        elif kind == _SET_ENCODINGS:
            (count,) = struct.unpack("!xH", body)
            self._expect(4 * count, self._gotEncodings)
        elif kind == _UPDATE:
            incremental, x, y, w, h = _UPDATE_REQUEST.unpack(body)
            self._updateRequested(bool(incremental), (x, y, w, h))
        elif kind == _KEY:
            down, keysym = _KEY_EVENT.unpack(body)
            self._keyboard.keyEvent(keysym, bool(down))
        elif kind == _POINTER:
            self._pointer.pointerEvent(*_POINTER_EVENT.unpack(body))
        elif kind == _SET_DESKTOP_SIZE:
            count = _SET_DESKTOP_SIZE_MESSAGE.unpack(body)[2]
            self._expect(count * _SCREEN_SIZE, self._gotSetDesktopSize)
        elif kind == _XVP:
            self._gotPowerRequest(body[1], body[2])
        elif kind == _QEMU:
            if body[0] != _QEMU_EXTENDED_KEY or not self._extendedKeys:
                self._drop(f"unexpected QEMU message subtype {body[0]}")
            else:
                self._expect(_QEMU_KEY_EVENT.size, self._gotExtendedKey)
        else:
            # ClientCutText: the text is read and ignored (the guest has no clipboard channel).
            (length,) = struct.unpack("!xxxI", body)
            if length > _MAX_CUT_TEXT:
                self._drop(f"cut text of {length} bytes")
            elif length:
                self._expect(length, lambda text: self._expect(1, self._gotMessageType))

    def _gotExtendedKey(self, data: bytes) -> None:
        down, keysym, scancode = _QEMU_KEY_EVENT.unpack(data)
        self._keyboard.scancodeEvent(scancode, keysym, bool(down))
        self._expect(1, self._gotMessageType)

    @property
    def _powerControl(self) -> bool:
        """Whether this viewer may use xvp: the display allows it and the viewer authenticated."""
        return self._display.powerControl is not None and self.authenticated

    def _gotPowerRequest(self, version: int, code: int) -> None:
        peer = _peer(self.transport.getPeer())
        if not self._powerControl or version != _XVP_VERSION or code not in _POWER_CODES:
            log.warn("VNC client {peer}: power request (xvp version {version}, code {code}) "
                     "refused", peer=peer, version=version, code=code)
            self._sendXvp(_XVP_FAIL)
            return
        action = PowerAction(code)
        log.info("VNC client {peer} asks for {action}", peer=peer, action=action.name)

        def failed(failure: Failure) -> None:
            log.error("VNC client {peer}: {action} could not be asked for: {why}",
                      peer=peer, action=action.name, why=failure.getErrorMessage())
            self._sendXvp(_XVP_FAIL)

        maybeDeferred(self._display.powerControl, action).addErrback(failed)

    def _sendXvp(self, code: int) -> None:
        if not self._closing:
            self.transport.write(_XVP_MESSAGE.pack(_XVP, _XVP_VERSION, code))

    @property
    def _extendedKeys(self) -> bool:
        return Encoding.QEMU_EXTENDED_KEY_EVENT in self._encoder.accepted

    def _gotSetDesktopSize(self, data: bytes) -> None:
        # Only the guest chooses its size (the vfb protocol has no request for it).
        self._expect(1, self._gotMessageType)
        if self._encoder.extendedDesktopSize:
            screen = self._display.screen
            self._pseudo.append(self._encoder.desktopSizeRect(
                screen.width, screen.height, _BY_CLIENT, _PROHIBITED))
            self._maybeSend()

    def _gotEncodings(self, data: bytes) -> None:
        before = self._encoder.accepted
        self._encoder.setEncodings(struct.unpack(f"!{len(data) // 4}i", data))
        self._expect(1, self._gotMessageType)
        new = self._encoder.accepted - before
        screen = self._display.screen
        if Encoding.QEMU_EXTENDED_KEY_EVENT in new:
            # As QEMU does: a rectangle of that pseudo-encoding says the server takes
            # them.  It goes with the next update the client asks for (RFB sends
            # updates only on request; clients ask right after SetEncodings).
            self._pseudo.append(self._encoder.pseudoRect(
                Encoding.QEMU_EXTENDED_KEY_EVENT, screen.width, screen.height))
        if Encoding.EXTENDED_DESKTOP_SIZE in new:
            # The screen layout, as the extension asks in reply to a first SetEncodings.
            self._pseudo.append(self._encoder.desktopSizeRect(screen.width, screen.height))
        if Encoding.QEMU_LED_STATE in new:
            self._ledsPending = True
        if Encoding.XVP in new and self._powerControl:
            self._sendXvp(_XVP_INIT)  # a server message: it needs no update request
        self._maybeSend()

    def _ledsChanged(self, leds: int) -> None:
        if Encoding.QEMU_LED_STATE in self._encoder.accepted:
            self._ledsPending = True
            self._maybeSend()

    def _setPixelFormat(self, data: bytes) -> None:
        try:
            pf = PixelFormat.fromBytes(data)
        except ValueError as e:
            self._drop(f"pixel format refused: {e}")
            return
        self._encoder.setPixelFormat(pf)
        if not pf.trueColour:
            colours = colourMapEntries()
            self.transport.write(
                _COLOUR_MAP_HEADER.pack(1, 0, len(colours))
                + b"".join(struct.pack("!HHH", *c) for c in colours)
            )

    def _updateRequested(self, incremental: bool, area: Rect) -> None:
        if not incremental:
            self._dirty.add(area)
        self._request = area
        self._maybeSend()

    # -- screen observer

    def screenUpdated(self, x: int, y: int, w: int, h: int) -> None:
        """See `IScreenObserver.screenUpdated`."""
        self._dirty.add((x, y, w, h))
        self._maybeSend()

    def screenStale(self) -> None:
        """See `IScreenObserver.screenStale`: synced when this viewer next sends."""
        self._maybeSend()

    def screenResized(self, width: int, height: int) -> None:
        """See `IScreenObserver.screenResized`."""
        if not self._encoder.desktopSize:
            self._drop("screen resized and the client cannot take a new size (no DesktopSize)")
            return
        self._dirty.clear()
        self._lossy.clear()
        self._lossless.clear()
        self._dirty.add((0, 0, width, height))
        self._resizePending = True
        self._maybeSend()

    # -- push producer (the transport pauses us while its buffer is full)

    def pauseProducing(self) -> None:
        """See `IPushProducer.pauseProducing`."""
        self._paused = True

    def resumeProducing(self) -> None:
        """See `IPushProducer.resumeProducing`."""
        self._paused = False
        self._maybeSend()

    def stopProducing(self) -> None:
        """See `IPushProducer.stopProducing`: the connection is going away."""
        self._closing = True

    # -- updates

    def _maybeSend(self) -> None:
        """Send soon (after the changes reported in this reactor turn) if there is anything."""
        if (
            self._sendCall is None
            and self._request is not None
            and not self._paused
            and not self._closing
            and (self._resizePending or self._dirty or self._pseudo or self._lossless
                 or self._ledsPending or self._display.screen.stale)
        ):
            self._sendCall = self._display.reactor.callLater(0, self._sendUpdate)

    def _sendUpdate(self) -> None:
        if self._request is None or self._paused or self._closing:
            self._sendCall = None
            return
        screen = self._display.screen
        # The guest's new pixels, copied now that they are about to be sent; the tiles
        # that changed come back through screenUpdated (to every viewer).  Synced while
        # `_sendCall` is still set, so that this viewer's do not schedule another send.
        screen.sync()
        self._sendCall = None
        size = (screen.width, screen.height)
        pseudo, self._pseudo = self._pseudo, []
        if self._ledsPending:
            self._ledsPending = False
            pseudo.append(self._encoder.pseudoRect(Encoding.QEMU_LED_STATE, 1, 1)
                          + bytes((self._display.locks.leds,)))
        if self._resizePending:
            self._resizePending = False
            if size != self._clientSize:
                if not _announceable(*size):
                    self._drop(f"screen resized to {size[0]}x{size[1]}, too large for RFB")
                    return
                # Alone in its update: the client may drop its framebuffer; all is dirty.
                self._clientSize = size
                self._request = None
                self.transport.write(
                    _UPDATE_HEADER.pack(0, len(pseudo) + 1) + b"".join(pseudo)
                    + self._encoder.desktopSizeRect(*size)
                )
                return
        area = intersect(self._request, (0, 0, *size))
        rects = self._dirty.take(area) if area is not None else []
        for rect in rects:
            self._lossless.take(rect)  # changed again: sent now, however it is encoded
        refreshes = self._lossless.take(area) if area is not None else []
        if not rects and not refreshes and not pseudo:
            return
        self._request = None
        pixels = screen.pixels()
        count = len(pseudo)
        chunks: list[bytes | memoryview] = [b"", *pseudo]
        sentLossy = False
        for rect, lossless in [(r, False) for r in rects] + [(r, True) for r in refreshes]:
            n, encoded, lossy = self._encoder.encode(pixels, screen.width, *rect, lossless)
            count += n
            chunks += encoded
            if lossy:
                self._lossy.add(rect)
                sentLossy = True
            else:
                self._lossy.take(rect)
        # At most 64 dirty rectangles, each cut by Tight into at most one piece per 64x64
        # tile plus two per band: far below 65535 for any screen videoram can hold.
        if Encoding.LAST_RECT in self._encoder.accepted:
            # The count is not needed in advance then (clients that list it, vncdotool
            # and TigerVNC among them, all take it).
            count = _MAX_RECTS
            chunks.append(self._encoder.pseudoRect(Encoding.LAST_RECT))
        chunks[0] = _UPDATE_HEADER.pack(0, count)
        self.transport.write(b"".join(chunks))
        if sentLossy:
            # Lossy areas are sent again losslessly once nothing was sent lossy for a while.
            if self._refreshCall is not None and self._refreshCall.active():
                self._refreshCall.cancel()
            self._refreshCall = self._display.clock.callLater(
                LOSSLESS_REFRESH_SECONDS, self._refreshLossy)

    def _refreshLossy(self) -> None:
        self._refreshCall = None
        for rect in self._lossy.rects():
            self._lossless.add(rect)
        self._lossy.clear()
        self._maybeSend()


def _announceable(width: int, height: int) -> bool:
    """Whether RFB can tell a client about a screen of this size."""
    return 0 < width <= _MAX_SIZE and 0 < height <= _MAX_SIZE


def _peer(address: IAddress) -> str:
    host, port = getattr(address, "host", "?"), getattr(address, "port", "?")
    return f"{host}:{port}"
