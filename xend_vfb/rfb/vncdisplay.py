"""A VNC display: the listening side of the VNC server, one per vfb with ``vnc=1``.

`VNCDisplay` finds its port (``vncdisplay``, ``vncunused``), listens, keeps the
password and the policies (share, lossy, power control) its viewers'
connections (`server.RFBServerProtocol`) ask it about, and counts them.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLContextFactory,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.display.screen import IDisplay, IInputSink, IScreen
from xend_vfb.errors import ConfigError, DeviceError
from xend_vfb.kinds import VNC_SHARE_POLICIES
from xend_vfb.rfb.input import LockState
from xend_vfb.rfb.keymaps import Keymap, loadKeymap
from xend_vfb.rfb.server import VNC_BASE_PORT, PowerAction, RFBServerProtocol

__all__ = ["VNCDisplay"]

log = Logger()


def _isLoopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RFBFactory(Factory):
    def __init__(self, display: VNCDisplay, local: bool = False) -> None:
        self._display = display
        self._local = local

    def buildProtocol(self, addr: IAddress) -> RFBServerProtocol:
        protocol = RFBServerProtocol(self._display, self._local)
        self._display._connections.add(protocol)
        return protocol


@implementer(IDisplay)
class VNCDisplay:
    """A VNC server for one screen: the vfb's ``vnc=1`` display.

    `display` N listens on port 5900+N; with `findUnused` the first free port
    from there up (xm's ``vncunused``, from 5900 when `display` is None); with
    neither, a port the system picks.  An empty `password` means no
    authentication.  `keymap` is the guest's keyboard layout; an unknown one
    raises ConfigError here.  `lossy` lets Tight clients that ask for a JPEG
    quality have JPEG (off by default, as QEMU's ``lossy=off``); areas sent as
    JPEG are sent again losslessly `LOSSLESS_REFRESH_SECONDS` after the last
    lossy update, timed by `clock` (the reactor unless given).  `share` is
    the shared-flag policy: ``allow-exclusive``, ``force-shared`` or ``ignore``
    (`xend_vfb.kinds.VNC_SHARE_POLICIES`).  `tls`, the server side of TLS
    (`xend_vfb.tls.TLSSettings.contextFactory`), makes the display VeNCrypt-only.
    `passwordExpires` is when (`clock`'s seconds) the password stops letting
    anyone in; None for never.  With `localSocket` (the path for a port) the display
    also listens on that Unix socket, mode 0600, for the daemon's browser console:
    there it offers no VeNCrypt, as the browser's side of that path has TLS of its
    own (QEMU lets its TLS WebSocket in the same way).  `powerControl`, when given,
    is called with the `PowerAction` an authenticated xvp client asks for; it returns
    when the request is passed on (or a Deferred), and fails if it cannot be.
    """

    def __init__(
        self,
        screen: IScreen,
        input: IInputSink,
        listen: str = "127.0.0.1",
        display: int | None = None,
        findUnused: bool = False,
        password: str = "",
        keymap: str = "en-us",
        reactor: IReactorTCP | None = None,  # also IReactorTime
        name: str = "xend-vfb",
        lossy: bool = False,
        clock: IReactorTime | None = None,
        share: str = "allow-exclusive",
        tls: IOpenSSLContextFactory | None = None,
        passwordExpires: float | None = None,
        localSocket: Callable[[int], str] | None = None,
        powerControl: Callable[[PowerAction], Any] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as defaultReactor

            reactor = defaultReactor  # type: ignore[assignment]
        if display is not None and not 0 <= display <= 65535 - VNC_BASE_PORT:
            raise ConfigError(f"vncdisplay {display} is out of range (0-{65535 - VNC_BASE_PORT})")
        self.screen = screen
        self.input = input
        self.keymap: Keymap = loadKeymap(keymap)
        #: The guest's lock keys as pressed by viewers (for QEMU's LED state).
        self.locks = LockState()
        self.password = password
        self.passwordExpires = passwordExpires
        self.tls = tls
        self.name = name
        if share not in VNC_SHARE_POLICIES:
            raise ConfigError(f"unknown VNC share policy {share!r} "
                              f"(expected one of {', '.join(VNC_SHARE_POLICIES)})")
        self.share = share
        self.powerControl = powerControl
        self.reactor = reactor
        self.lossy = lossy
        self.clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        self._listen = listen
        self._display = display
        self._findUnused = findUnused
        self._port: IListeningPort | None = None
        self._localSocket = localSocket
        self._local: IListeningPort | None = None
        self._connections: set[RFBServerProtocol] = set()
        self._viewers: list[RFBServerProtocol] = []

    @property
    def viewers(self) -> int:
        """See `IDisplay.viewers`."""
        return len(self._viewers)

    def setPassword(self, password: str, expires: float | None = None) -> None:
        """Ask `password` of viewers from now on, until `expires` (`clock`'s seconds;
        None for never).  Viewers already in stay."""
        self.password = password
        self.passwordExpires = expires

    @property
    def passwordExpired(self) -> bool:
        """Whether the password has expired: nobody new gets in."""
        return self.passwordExpires is not None and self.clock.seconds() >= self.passwordExpires

    def start(self) -> Deferred[tuple[str, int]]:
        """See `IDisplay.start`; fails with DeviceError when no port can be had."""
        if self._port is None:
            if not self.password and not _isLoopback(self._listen):
                log.warn(
                    "VNC display on {listen} has no password: anyone who can reach it "
                    "sees the guest's screen and types into it", listen=self._listen,
                )
            try:
                self._port = self._bind()
            except CannotListenError as e:
                return fail(DeviceError(f"VNC display cannot listen on {self._listen}: {e}"))
            address = self._port.getHost()
            log.info("VNC display listening on {host}:{port}", host=address.host, port=address.port)
            if self._localSocket is not None:
                try:
                    self._local = self._listenLocal(self._localSocket(address.port))
                except CannotListenError as e:
                    log.warn("VNC display: no local socket for the browser console: {e}", e=e)
        address = self._port.getHost()
        return succeed((address.host, address.port))

    def _bind(self) -> IListeningPort:
        factory = _RFBFactory(self)
        if self._display is None and not self._findUnused:
            return self.reactor.listenTCP(0, factory, interface=self._listen)
        first = VNC_BASE_PORT + (self._display or 0)
        if not self._findUnused:
            return self.reactor.listenTCP(first, factory, interface=self._listen)
        for port in range(first, 65536):
            try:
                return self.reactor.listenTCP(port, factory, interface=self._listen)
            except CannotListenError as e:
                if getattr(e.socketError, "errno", None) != errno.EADDRINUSE:
                    raise
        raise CannotListenError(self._listen, first, "no free port from there up")

    def _listenLocal(self, path: str) -> IListeningPort:
        # A socket left by a backend that died is in the way, and is ours to remove.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return self.reactor.listenUNIX(path, _RFBFactory(self, local=True), mode=0o600)

    def stop(self) -> Deferred[None]:
        """See `IDisplay.stop`."""
        ports = [port for port in (self._port, self._local) if port is not None]
        self._port = self._local = None
        waits: list[Deferred[Any]] = [maybeDeferred(port.stopListening) for port in ports]
        for connection in list(self._connections):
            waits.append(connection.closed)
            connection.transport.abortConnection()
        return gatherResults(waits).addCallback(lambda _: None)

    def _viewerJoined(self, viewer: RFBServerProtocol) -> None:
        self._viewers.append(viewer)
        self.locks.observers.append(viewer._ledsChanged)
        self.screen.addObserver(viewer)

    def _viewerLeft(self, viewer: RFBServerProtocol) -> None:
        self._viewers.remove(viewer)
        self.locks.observers.remove(viewer._ledsChanged)
        self.screen.removeObserver(viewer)

    def _connectionLost(self, connection: RFBServerProtocol) -> None:
        self._connections.discard(connection)
