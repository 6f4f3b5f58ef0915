"""The daemon's connection to xenstore, and in emulated mode the xenstored itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from xend_vfb.xenstore import EmbeddedXenstored, connect

__all__ = ["XenstoreService"]

log = Logger()


class XenstoreService(Service):
    """`xs`, the daemon's xenstore connection, once started.  In emulated mode it
    first starts (or finds) the embedded xenstored, in a thread: its wait for the
    socket must not stall the reactor.  `onLost` is called if the connection drops
    while the service runs."""

    def __init__(self, runDir: str, emulated: bool, onLost: Callable[[], None]) -> None:
        self.runDir = runDir
        self.emulated = emulated
        self.onLost = onLost
        self.xs: Any = None
        self.xenstored: EmbeddedXenstored | None = None
        #: What processes the daemon starts need in their environment to find xenstored.
        self.environ: dict[str, str] = {}

    @inlineCallbacks
    def startService(self):
        Service.startService(self)
        if self.emulated:
            self.xenstored = EmbeddedXenstored(self.runDir)
            yield deferToThread(self.xenstored.start)
            self.environ = self.xenstored.environ
            os.environ.update(self.environ)
        self.xs = yield connect(self.environ.get("XENSTORED_PATH"))
        self.xs.whenLost().addCallback(self._lost)

    def stopService(self) -> None:
        Service.stopService(self)
        if self.xs is not None:
            self.xs.close()

    def stopXenstored(self) -> Any:
        """Stop the embedded xenstored too (`stop --all`); a Deferred."""
        Service.stopService(self)
        self.xs.close()
        return deferToThread(self.xenstored.stop)

    def _lost(self, _: Any) -> None:
        if self.running:
            log.error("lost the connection to xenstored: stopping")
            self.onLost()
