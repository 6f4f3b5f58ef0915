"""The control channel to a running backend: one Unix socket per domain.

The CLI and the daemon use it for status and screenshots.  The socket lives
in the run directory, mode 0600 (root only).  Each request and each reply is
one line of JSON; replies carry `ok` and either results or `error`.
Screenshots travel back as base64 PNG data, so no file is written with the
backend's rights where the caller asked.
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from xend_vfb.display import screenshot
from xend_vfb.errors import BackendError

__all__ = ["controlSocketPath", "listenControl", "controlRequest"]

log = Logger()

MAX_LINE = 64 * 1024 * 1024


def controlSocketPath(runDir: str, domid: int) -> str:
    """Where the backend of domain `domid` listens."""
    return os.path.join(runDir, "backends", f"{domid}.sock")


class _ControlServer(LineOnlyReceiver):
    MAX_LENGTH = 64 * 1024
    delimiter = b"\n"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            reply = {"ok": True, **self._handle(request)}
        except Exception as e:
            reply = {"ok": False, "error": str(e)}
        self.sendLine(json.dumps(reply).encode())

    def _handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return self.backend.status()
        if op == "screenshot":
            screen = self.backend.screen(int(request.get("devid", 0)))
            png = io.BytesIO()
            screenshot(screen, png)
            return {"png": base64.b64encode(png.getvalue()).decode("ascii")}
        raise ValueError(f"unknown request {op!r}")


def listenControl(reactor: Any, path: str, backend: Any) -> Deferred:
    """Listen on `path` for requests about `backend` (its `status()` and `screen(devid)`)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    endpoint = UNIXServerEndpoint(reactor, path, mode=0o600)
    return endpoint.listen(Factory.forProtocol(lambda: _ControlServer(backend)))


class _ControlClient(LineOnlyReceiver):
    MAX_LENGTH = MAX_LINE
    delimiter = b"\n"

    def __init__(self) -> None:
        self.reply: Deferred[dict] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        if not self.reply.called:
            self.reply.callback(json.loads(line))
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.reply.called:
            self.reply.errback(BackendError("the backend closed its control connection"))


def controlRequest(reactor: Any, path: str, request: dict, timeout: float = 10.0):
    """Send one request to the backend listening on `path`; fires with its reply,
    or fails with `BackendError` (no backend there, error reply, timeout)."""
    endpoint = UNIXClientEndpoint(reactor, path, timeout=timeout)
    client = _ControlClient()
    d = endpoint.connect(Factory.forProtocol(lambda: client))

    def send(protocol: _ControlClient) -> Deferred[dict]:
        protocol.sendLine(json.dumps(request).encode())
        return protocol.reply

    def check(reply: dict) -> dict:
        if not reply.get("ok"):
            raise BackendError(reply.get("error") or "the backend refused the request")
        return reply

    def unreachable(failure: Any) -> Any:
        if failure.check(BackendError):
            return failure
        raise BackendError(f"no backend answers on {path}: {failure.getErrorMessage()}")

    d.addCallback(send)
    d.addTimeout(timeout, reactor)
    d.addCallbacks(check, unreachable)
    return d
