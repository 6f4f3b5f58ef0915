"""One JSON object per line over a Unix socket: the project's request/reply channel.

Used between the CLI and the daemon, and between both and each backend.  A
request is `{"op": NAME, ...}`; the server calls `handler.op_NAME(request)`
(which may return a Deferred) and answers `{"ok": true, ...result}` or
`{"ok": false, "error": MESSAGE}`.  Sockets are created mode 0600: root only.
The framing and the blocking client are in `xend_vfb.jsonclient` (standard
library only, for the CLI); this module adds the Twisted server and client.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from xend_vfb.errors import ChannelError, errorCode
from xend_vfb.jsonclient import MAX_LINE, checked, encode, requestBlocking

__all__ = ["listen", "request", "requestBlocking", "ChannelError"]

log = Logger()


class _Server(LineOnlyReceiver):
    MAX_LENGTH = MAX_LINE
    delimiter = b"\n"

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def lineReceived(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            method = getattr(self.handler, f"op_{message.get('op')}", None)
            if method is None:
                raise ValueError(f"unknown request {message.get('op')!r}")
            d = maybeDeferred(method, message)
        except Exception as e:
            d = Deferred()
            d.errback(e)
        d.addCallbacks(lambda result: {"ok": True, **(result or {})}, self._failed)
        d.addCallback(lambda reply: self.sendLine(encode(reply)))

    def _failed(self, failure: Any) -> dict:
        code = errorCode(failure.value)
        if code == "internal":
            log.failure("request failed", failure)
            return {"ok": False, "error": f"internal error: {failure.getErrorMessage()}",
                    "code": code}
        return {"ok": False, "error": str(failure.value), "code": code}


def listen(reactor: Any, path: str, handler: Any) -> Deferred:
    """Serve `handler`'s `op_*` methods on the Unix socket `path`."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    endpoint = UNIXServerEndpoint(reactor, path, mode=0o600)
    return endpoint.listen(_quiet(Factory.forProtocol(lambda: _Server(handler))))


def _quiet(factory: Factory) -> Factory:
    """No "Starting factory"/"Stopping factory" log lines: a daemon waiting for its
    zygote makes hundreds of requests, and an admin's log should say what happened."""
    factory.noisy = False
    return factory


class _Client(LineOnlyReceiver):
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
            self.reply.errback(ChannelError("the connection closed before a reply"))


def request(reactor: Any, path: str, message: dict, timeout: float = 10.0) -> Deferred[dict]:
    """Send `message` to the server on `path`; fires with the reply, or fails with
    `ChannelError` (nobody there, an error reply, no reply within `timeout`)."""
    client = _Client()
    d = UNIXClientEndpoint(reactor, path, timeout=timeout).connect(
        _quiet(Factory.forProtocol(lambda: client)))

    def send(protocol: _Client) -> Deferred[dict]:
        protocol.sendLine(encode(message))
        return protocol.reply

    def unreachable(failure: Any) -> Any:
        if failure.check(ChannelError):
            return failure
        raise ChannelError(f"no answer on {path}: {failure.getErrorMessage()}")

    d.addCallback(send)
    d.addTimeout(timeout, reactor)
    d.addCallbacks(checked, unreachable)
    return d

