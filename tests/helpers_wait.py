"""Waiting in tests: one way from the reactor, one way from a blocking test.

Both poll a check until it returns something truthy and return that value, within a
deadline of real time however long each check takes (two cores shared by many
processes: the bounds are generous, and a check that succeeds ends the wait at once).
On timeout both raise an AssertionError that names what was awaited.

- `waitFor` for tests running in the reactor (pytest-twisted): returns a Deferred, and
  its check may return a Deferred.
- `waitUntil` for tests that drive processes from outside the reactor (the daemon's
  CLI tests): blocks.

They are for waiting on something that must happen.  That something must *not* happen
is proven by an outcome that has to come after it (a later event, a protocol round
trip, xenstored's request trace) or on a `twisted.internet.task.Clock`, never by
waiting a while and looking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

#: Generous bound for anything the tests wait on (2 shared cores).
WAIT = 30.0
_POLL = 0.01


def _timedOut(what: str, timeout: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def waitFor(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Deferred:
    """Poll `check()` (it may return a Deferred) from the reactor until it is truthy;
    a Deferred firing with its value, or failing with an AssertionError naming `what`."""

    @inlineCallbacks
    def poll():
        deadline = time.monotonic() + timeout
        while True:
            value = yield check()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise _timedOut(what, timeout)
            yield deferLater(reactor, _POLL, lambda: None)

    return poll()


def waitUntil(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `check()`, blocking, until it returns something truthy; its value, or an
    AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timedOut(what, timeout)
        time.sleep(_POLL)
