"""The journal: one pending operation per domain, kept in its private record.

Each multi-step operation on a domain (create, destroy, attach, detach, a guest's
re-make) writes what it is about to do first, and clears it when done; a daemon
killed half-way finds the entry when it starts again (`recovery`) and finishes or
rolls back that operation.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from xend_vfb.xenstore.paths import privatePath

__all__ = ["Journal"]


class Journal:
    """The pending entries of the daemon's domains, in xenstore (through `store`,
    whose connection is made when the daemon starts)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @property
    def xs(self) -> Any:
        return self.store.xs

    @staticmethod
    def _path(domid: int) -> str:
        return f"{privatePath(domid)}/pending"

    @inlineCallbacks
    def pending(self, domid: int):
        """The entry of domain `domid` (a dict with at least ``op``), or None."""
        value = yield self.xs.readOrNone(self._path(domid))
        return json.loads(value) if value else None

    def write(self, domid: int, entry: dict) -> Deferred[None]:
        return self.xs.write(self._path(domid), json.dumps(entry, separators=(",", ":")))

    def clear(self, domid: int) -> Deferred[None]:
        return self.xs.rm(self._path(domid))
