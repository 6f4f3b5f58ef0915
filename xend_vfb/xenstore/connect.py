"""Finding and connecting to xenstored, the way Xen's own tools do.

`XENSTORED_PATH` wins; a path under /dev or /proc is the xenbus device (a
guest or a dom0 without a socket), anything else a Unix socket.  Otherwise
the daemon's socket in `XENSTORED_RUNDIR` (default /var/run/xenstored), and
failing that the xenbus device.
"""

import os

from twisted.internet import stdio
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater

from xend_vfb.errors import XenstoreConnectionError
from xend_vfb.xenstore.client import DEFAULT_TIMEOUT, Xenstore, XenstoreProtocol

__all__ = ["connect", "defaultPath"]

XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")


def defaultPath(environ: dict[str, str] | None = None) -> str:
    """Where xenstored is to be found on this host."""
    env = os.environ if environ is None else environ
    if env.get("XENSTORED_PATH"):
        return env["XENSTORED_PATH"]
    socket = os.path.join(env.get("XENSTORED_RUNDIR", "/var/run/xenstored"), "socket")
    if os.path.exists(socket):
        return socket
    for device in XENBUS_DEVICES:
        if os.path.exists(device):
            return device
    return socket


def _isDevice(path: str) -> bool:
    return path.startswith(("/dev/", "/proc/"))


@inlineCallbacks
def connect(
    path: str | None = None,
    reactor=None,
    timeout: float = DEFAULT_TIMEOUT,
    retryFor: float = 5.0,
):
    """Connect to xenstored at `path` (default: `defaultPath()`); fires with a `Xenstore`.

    A refused or missing socket is retried for up to `retryFor` seconds: the
    embedded xenstored listens with a backlog of 1, so many processes starting at
    once are refused for a moment, and a daemon being restarted is briefly absent.
    """
    if reactor is None:
        from twisted.internet import reactor
    path = path or defaultPath()
    client = Xenstore(reactor, path, timeout)
    if _isDevice(path):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise XenstoreConnectionError(
                f"cannot open xenstore device {path}: {e.strerror}"
            ) from None
        stdio.StandardIO(XenstoreProtocol(client), stdin=fd, stdout=fd, reactor=reactor)
        return client
    endpoint = UNIXClientEndpoint(reactor, path, timeout=timeout)
    factory = Factory.forProtocol(lambda: XenstoreProtocol(client))
    delay, waited = 0.01, 0.0
    while True:
        try:
            yield endpoint.connect(factory)
            return client
        except ConnectError as e:
            if waited >= retryFor:
                reason = e.osError or e
                raise XenstoreConnectionError(
                    f"cannot connect to xenstored at {path}: {reason}"
                ) from None
        yield deferLater(reactor, delay, lambda: None)
        waited += delay
        delay = min(delay * 2, 0.25)

