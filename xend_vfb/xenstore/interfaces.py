"""What the rest of xend-vfb needs from xenstore, as one interface.

Every method returns a Deferred; none may wait forever: a request fails with
`XenstoreConnectionError` when the daemon goes away and with `XenstoreTimeout`
when it does not answer within the connection's bound.  Paths and values are
`str`; anything xenstore cannot carry is refused with a `ValueError` naming
the path before a byte is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = ["IXenstoreOps", "IXenstore", "ITransaction", "IWatch"]


class IXenstoreOps(Interface):
    """Plain reads and writes, available on a connection and inside a transaction."""

    def read(path: str) -> Deferred[str]:
        """The value at `path`; fails with `XenstoreError` (errno ENOENT) if absent."""

    def readOrNone(path: str) -> Deferred[str | None]:
        """The value at `path`, or None if there is no such node."""

    def write(path: str, value: str) -> Deferred[None]:
        """Set `path` to `value` (empty allowed), creating missing parents."""

    def mkdir(path: str) -> Deferred[None]:
        """Create `path` (and parents) with an empty value; no-op if it exists."""

    def rm(path: str) -> Deferred[None]:
        """Remove `path` and everything below it; no-op if it does not exist."""

    def list(path: str) -> Deferred[list[str]]:
        """Names of the children of `path`, or [] if there is no such node."""

    def exists(path: str) -> Deferred[bool]:
        """Whether a node exists at `path`."""

    def getPerms(path: str) -> Deferred[list[str]]:
        """Permissions of `path` as xenstore spells them: owner first (`n5`), then `r0`..."""

    def setPerms(path: str, perms: list[str]) -> Deferred[None]:
        """Replace the permissions of `path`; `perms[0]` names the owner."""


class ITransaction(IXenstoreOps):
    """The operations of one open transaction; valid only inside the function passed to
    `IXenstore.transaction`, which commits it."""

    id = Attribute("The transaction id xenstored gave (an int, never 0).")


class IWatch(Interface):
    """A registered watch, returned by `IXenstore.watch`."""

    path = Attribute("The watched path.")

    def cancel() -> Deferred[None]:
        """Unregister; the callback is not called after this Deferred fires."""


class IXenstore(IXenstoreOps):
    """A connection to xenstored."""

    def transaction(
        function: Callable[[ITransaction], Deferred[Any]], attempts: int = 16
    ) -> Deferred[Any]:
        """Run `function(tx)` in a transaction and commit it; rerun all of it when the
        commit conflicts (EAGAIN), at most `attempts` times, then fail with
        `TransactionConflict`.  If `function` fails, the transaction is aborted and the
        failure passed on.  Fires with what `function`'s Deferred fired with."""

    def watch(path: str, callback: Callable[[str], None]) -> Deferred[IWatch]:
        """Call `callback(changedPath)` in the reactor whenever `path` or a node below it
        changes.  The event xenstored sends on registration is consumed here: the
        returned Deferred fires after it, so a caller reads the current state once
        after registering and then reacts to changes."""

    def whenLost() -> Deferred[None]:
        """A new Deferred that fires once the connection is gone (daemon died, or `close`)."""

    def close() -> None:
        """Drop the connection; pending requests fail with `XenstoreConnectionError`."""
