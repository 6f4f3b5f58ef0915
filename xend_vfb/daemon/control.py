"""The daemon's control socket: where the CLI's requests come in."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks

from xend_vfb import jsonline

__all__ = ["ControlSocket", "socketPath"]


def socketPath(runDir: str) -> str:
    """The daemon's control socket (mode 0600: root only)."""
    return os.path.join(runDir, "xend-vfb.sock")


class ControlSocket(Service):
    """Serves `handler`'s ``op_*`` methods on `socketPath(runDir)`: started last, so
    that a daemon that answers is a daemon that is ready."""

    def __init__(self, reactor: Any, runDir: str, handler: Any) -> None:
        self.reactor = reactor
        self.path = socketPath(runDir)
        self.handler = handler
        self._port: Any = None

    @inlineCallbacks
    def startService(self):
        Service.startService(self)
        self._port = yield jsonline.listen(self.reactor, self.path, self.handler)

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        if self._port is not None:
            yield self._port.stopListening()
            self._port = None
            # No socket left behind to be mistaken for a daemon that listens.
            if os.path.exists(self.path):
                os.unlink(self.path)
