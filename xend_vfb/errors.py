"""One exception tree for the whole project.

Every error a user can see derives from `XendVfbError`; its `str()` is the one
line the CLI prints after ``Error:``.  Errors about input are also
`ValueError`, as pyxs's `InvalidPath` is, so generic code can catch either.
"""

__all__ = [
    "XendVfbError",
    "ConfigError",
    "XenstoreError",
    "XenstoreConnectionError",
    "XenstoreTimeout",
    "TransactionConflict",
    "DeviceError",
    "GuestError",
    "DaemonError",
    "DaemonNotRunning",
    "ChannelError",
    "errorCode",
]


class XendVfbError(Exception):
    """Base of every error this project reports to a user."""


class ConfigError(XendVfbError, ValueError):
    """A domain or device configuration is invalid; the message names the key and value."""


class XenstoreError(XendVfbError):
    """xenstored answered a request with an error (``errno`` set, e.g. ENOENT)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class XenstoreConnectionError(XendVfbError):
    """The connection to xenstored could not be made or was lost."""


class XenstoreTimeout(XenstoreConnectionError):
    """xenstored did not answer a request within the bound."""


class TransactionConflict(XenstoreError):
    """A transaction kept conflicting (EAGAIN) after every allowed retry."""


class DeviceError(XendVfbError):
    """A device could not be created, connected or destroyed."""


class GuestError(XendVfbError, ValueError):
    """A guest wrote something invalid to its shared page, rings or xenstore area."""


class DaemonError(XendVfbError):
    """The daemon is not reachable or refused a request."""


class DaemonNotRunning(DaemonError):
    """Nobody listens on the daemon's control socket."""


class ChannelError(XendVfbError):
    """Nobody answers on a control socket, or the answer was an error: then `code`
    says which (`errorCode` of the error on the other side)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def errorCode(error: BaseException) -> str:
    """What a control socket's error reply calls `error`: its class name for the
    errors of this tree (``ConfigError``, ``DeviceError``, ...), ``ValueError`` for
    other bad requests, ``internal`` for anything else."""
    if isinstance(error, XendVfbError):
        return type(error).__name__
    return "ValueError" if isinstance(error, ValueError) else "internal"
