"""Reading a device's area: both the toolstack and the backend rebuild a device's
config from its keys."""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks

from xend_vfb.xenstore.interfaces import IXenstore

__all__ = ["readArea"]


@inlineCallbacks
def readArea(xs: IXenstore, path: str):
    """Fires with every key directly under `path` as a dict (a missing area: {})."""
    details = {}
    for key in (yield xs.list(path)):
        value = yield xs.readOrNone(f"{path}/{key}")
        if value is not None:
            details[key] = value
    return details
