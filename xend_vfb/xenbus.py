"""XenbusState (xen/io/xenbus.h) and reading it safely from xenstore."""

import enum

__all__ = ["XenbusState", "parseState"]


class XenbusState(enum.IntEnum):
    """The state each end of a split device publishes in its `state` node."""

    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
    Reconfiguring = 7
    Reconfigured = 8


def parseState(value: str | None) -> XenbusState:
    """A `state` node's value; anything missing, malformed or out of range is Unknown,
    since a guest may write garbage into its own `state`."""
    if value is None or not value.isascii() or not value.strip().isdigit():
        return XenbusState.Unknown
    number = int(value)
    return XenbusState(number) if number <= XenbusState.Reconfigured else XenbusState.Unknown
