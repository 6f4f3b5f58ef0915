"""Reading a file descriptor in the reactor: event channels, pidfds."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["FdReader"]

log = Logger()


@implementer(IReadDescriptor)
class FdReader:
    """Call `onReadable` in the reactor whenever `fd` is readable.

    Errors from `onReadable` are logged and reading goes on: one bad event
    must not silently stop an event channel.
    """

    def __init__(self, fd: int, onReadable: Callable[[], None], name: str) -> None:
        self._fd = fd
        self._onReadable = onReadable
        self._name = name

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        try:
            self._onReadable()
        except Exception:
            log.failure("Event handler of {name} failed", name=self._name)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor stopped watching the descriptor; its owner closes it."""

    def logPrefix(self) -> str:
        return self._name
