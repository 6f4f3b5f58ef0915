"""TigerVNC's viewer (Debian's `tigervnc-viewer`) as a test client, on an Xvfb screen.

`Xvfb` starts a virtual X server on a free display number.  `TigerVNC` runs
`vncviewer` in the test's reactor with its debug log on stderr, which says how
far it got ("server cert signer not found", "Authentication failure: <the
server's reason>"); that it got in is seen on the server (a viewer joins).  It
never opens a dialog that waits for a click: fatal errors end it
(`-AlertOnFatalError=0 -ReconnectOnError=0`), except an unknown certificate
issuer, which it asks about, and which `waitFor` sees in its log first.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol

from xend_vfb.rfb.vncauth import obfuscatedPassword

__all__ = ["Xvfb", "TigerVNC", "runViewer"]

VIEWER = shutil.which("vncviewer") or "/usr/bin/vncviewer"


class Xvfb:
    """A virtual X server on a display number it picks itself."""

    def __init__(self) -> None:
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0",
             "1024x768x24"], pass_fds=(write,), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            self.process.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class TigerVNC(ProcessProtocol):
    """One `vncviewer` run: its stderr, and when it ends."""

    def __init__(self) -> None:
        self.stderr = ""
        self.ended: Deferred[str] = Deferred()
        self._waits: list[tuple[str, Deferred]] = []

    def errReceived(self, data: bytes) -> None:
        self.stderr += data.decode(errors="replace")
        for wait in list(self._waits):
            text, d = wait
            if text in self.stderr:
                self._waits.remove(wait)
                d.callback(self.stderr)

    outReceived = errReceived

    def waitFor(self, text: str) -> Deferred[str]:
        """Fires with the log once it says `text`; fails if the viewer ends first."""
        d: Deferred[str] = Deferred()
        if text in self.stderr:
            d.callback(self.stderr)
        else:
            self._waits.append((text, d))
        return d

    def processEnded(self, reason) -> None:
        for text, d in self._waits:
            d.errback(AssertionError(f"vncviewer ended before saying {text!r}:\n"
                                     f"{self.stderr[-3000:]}"))
        self._waits = []
        self.ended.callback(self.stderr)

    async def stop(self) -> str:
        """End the viewer (if it still runs); its log."""
        try:
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        return await self.ended


def runViewer(display: str, home: str, port: int, *options: str,
              password: str | None = None) -> TigerVNC:
    """`vncviewer OPTIONS 127.0.0.1::PORT` on X display `display`, with `home` as its
    home (where it keeps known certificates); `password` goes in a password file."""
    if password is not None:
        path = os.path.join(home, "passwd")
        with open(path, "wb") as f:
            f.write(obfuscatedPassword(password))
        options = (*options, "-passwd", path)
    viewer = TigerVNC()
    env = {"DISPLAY": display, "HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    reactor.spawnProcess(viewer, VIEWER, [VIEWER, "-Log", "*:stderr:100",
                                          "-AlertOnFatalError=0", "-ReconnectOnError=0",
                                          *options, f"127.0.0.1::{port}"], env=env)
    return viewer

