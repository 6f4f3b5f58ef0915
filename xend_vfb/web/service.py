"""The browser console service: noVNC's page and the WebSocket to the displays.

One `WebConsole` in the daemon's service tree listens on `XEND_VFB_WEB_LISTEN`
(default 127.0.0.1:6080) and serves:

- ``/console``: the console page (`console.html`, `console.js`), which takes its token
  from the URL's fragment and shows the display with noVNC, or an error;
- ``/novnc/``: noVNC's files, as the npm package ships them;
- ``/websockify``: the WebSocket that carries RFB to the display (`proxy`).

`consoleURL` issues the one-time token `xend-vfb console-url` prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import pages, resource, static
from twisted.web.server import Site

from xend_vfb.backend.control import displaySocketPath
from xend_vfb.devices import VFB
from xend_vfb.errors import DaemonError, DeviceError
from xend_vfb.tls import TLSSettings
from xend_vfb.web.proxy import ConsoleSocketFactory, Locate
from xend_vfb.web.settings import WebSettings, publicHost
from xend_vfb.web.tokens import Grant, Tokens
from xend_vfb.xenstore.paths import backendPath

__all__ = ["WebConsole", "displaySocket"]

log = Logger()

_HERE = os.path.dirname(os.path.abspath(__file__))


class WebConsole(Service):
    """The browser console, listening as `environ` says (the daemon's environment)."""

    def __init__(self, reactor: Any, locate: Locate, environ: Mapping[str, str] | None = None,
                 clock: IReactorTime | None = None) -> None:
        """`locate` finds a display's local socket (`displaySocket`); `clock` times the
        tokens (the reactor, unless a test gives its own)."""
        self.reactor = reactor
        self.locate = locate
        self.environ = os.environ if environ is None else environ
        self.tokens = Tokens(clock or reactor)
        self.settings: WebSettings | None = None
        #: The origin of the console's pages, e.g. ``http://127.0.0.1:6080``, once listening.
        self.origin: str | None = None
        self._sockets = ConsoleSocketFactory(self.tokens, locate, reactor)
        self._port: Any = None

    def startService(self) -> None:
        """Read the settings and listen, with TLS (HTTPS, WSS) on the displays'
        certificates when they have it; `ConfigError` or `CannotListenError` say why
        not."""
        self.settings = WebSettings.fromEnvironment(dict(self.environ))
        tls = TLSSettings.fromEnvironment(self.environ)
        super().startService()
        if self.settings is None:
            log.info("web console off (XEND_VFB_WEB_LISTEN is empty)")
            return
        site = _Site(self._root())
        host, port = self.settings.host, self.settings.port
        if tls is None:
            self._port = self.reactor.listenTCP(port, site, interface=host)
        else:
            self._port = self.reactor.listenSSL(port, site, tls.contextFactory(),
                                                interface=host)
        self.origin = (f"{'http' if tls is None else 'https'}://{publicHost(host)}:"
                       f"{self._port.getHost().port}")
        self._sockets.allowOrigin(self.origin)
        log.info("web console on {origin}", origin=self.origin)

    def stopService(self) -> Any:
        super().stopService()
        for viewer in list(self._sockets.viewers):
            viewer.dropConnection(abort=True)
        if self._port is not None:
            return self._port.stopListening()
        return None

    @inlineCallbacks
    def consoleURL(self, domid: int, devid: int):
        """A console URL for display `devid` of domain `domid`, with a new token; fails
        with the reason when there is no console or no such VNC display."""
        if self.origin is None:
            raise DaemonError("the web console is off (the daemon's XEND_VFB_WEB_LISTEN is "
                              "empty)")
        grant = Grant(domid, devid)
        yield self.locate(grant)
        return f"{self.origin}/console#{self.tokens.issue(grant)}"

    def _root(self) -> resource.Resource:
        root = _Root()
        page = _ConsolePage()
        root.putChild(b"", page)
        root.putChild(b"console", page)
        root.putChild(b"console.js", _Files(os.path.join(_HERE, "console.js")))
        root.putChild(b"novnc", _Files(self.settings.novnc))
        root.putChild(b"websockify", WebSocketResource(self._sockets))
        return root


@inlineCallbacks
def displaySocket(xs: Any, runDir: str, grant: Grant):
    """The local socket of `grant`'s display, named by its port from its backend area
    (`xend_vfb.backend.control.displaySocketPath`).  `DeviceError` if it has no VNC
    display, or its backend no such socket."""
    area = backendPath(grant.domid, VFB.name, grant.devid)
    what = f"vfb {grant.devid} of domain {grant.domid}"
    if not (yield xs.exists(area)):
        raise DeviceError(f"domain {grant.domid} has no vfb {grant.devid}")
    port = yield xs.readOrNone(f"{area}/vnc-port")
    if not port or not port.isdigit():
        raise DeviceError(f"{what} has no VNC display")
    path = displaySocketPath(runDir, int(port))
    if not os.path.exists(path):
        raise DeviceError(f"{what} has no socket for the browser console ({path}): its "
                          "backend may predate it; a new one comes with the guest's reboot")
    return path


class _ConsolePage(resource.Resource):
    """console.html, with headers that keep it from being framed, cached or leaking
    its address (the token is in the fragment, which browsers do not send anyway)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        with open(os.path.join(_HERE, "console.html"), "rb") as f:
            self.body = f.read()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy",
                          b"default-src 'self'; img-src 'self' data:; "
                          b"style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return self.body


class _Root(resource.Resource):
    """The console's top: its children, and Not Found for anything else (through
    `pages`, which escapes what it shows, not Twisted's deprecated NoResource)."""

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return pages.notFound()


class _Files(static.File):
    """Files as they are, without directory listings; Not Found as `_Root` says it."""

    childNotFound = pages.notFound()

    def directoryListing(self) -> resource.Resource:
        return pages.notFound()


class _Site(Site):
    """A site without an access log: the console page loads some 40 noVNC modules, one
    line each would drown the daemon's log; viewers are logged by `proxy`."""

    noisy = False

    def log(self, request: Any) -> None:
        pass
