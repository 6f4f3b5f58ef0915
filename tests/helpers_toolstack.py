"""A toolstack's view of xenstore, for the controller's and the domain's tests.

One guest (domain 5) on a host set up as libxl leaves it (`setUpHost`, the `host`
fixture in conftest.py); whole trees read back with their permissions (`dump`) and
written as literals (`tree`, `area`); a backend played by hand on its own connection
(`StubBackend`); a client whose writes to chosen paths are refused (`FailingXenstore`).
"""

import errno
import re

from twisted.internet.defer import inlineCallbacks

from xend_vfb.errors import XenstoreError

DOMID = 5
NAME = "guest"

#: Permissions, as xenstored spells them.
GUEST = ["n5", "r0"]  # frontend area: the guest owns it, domain 0 reads
BACK = ["n0", "r5"]  # backend area: domain 0 owns it, the guest reads
DOM0 = ["n0"]  # domain 0 only: the toolstack-private record, dom0's own nodes

FE = "/local/domain/5/device"
BE = "/local/domain/0/backend"
PRIV = "/xend-vfb/5/device"


#: What a host has before any device exists: dom0's home, the guest's home (owned
#: by 0, readable by the guest, as libxl makes it) and the guest's private record
#: (the daemon makes it first: it marks the domain as one the daemon manages).
HOST = {
    "/xend-vfb": ("", DOM0),
    "/xend-vfb/5": ("", DOM0),
    "/": ("", DOM0),
    "/local": ("", DOM0),
    "/local/domain": ("", DOM0),
    "/local/domain/0": ("", DOM0),
    "/local/domain/0/name": ("Domain-0", DOM0),
    "/local/domain/5": ("", BACK),
    "/local/domain/5/domid": ("5", BACK),
    "/local/domain/5/name": ("guest", BACK),
}


@inlineCallbacks
def setUpHost(xs):
    yield xs.write("/local/domain/0/name", "Domain-0")
    yield xs.mkdir("/local/domain/5")
    yield xs.setPerms("/local/domain/5", ["n0", "r5"])
    yield xs.write("/local/domain/5/name", NAME)
    yield xs.write("/local/domain/5/domid", str(DOMID))
    yield xs.mkdir("/xend-vfb/5")


#: What `dump` shows for a backend area's `generation`: a fresh random value each time
#: the area is written, checked there (16 hex digits) and shown as this.
GENERATION = "<generation>"
_GENERATION = re.compile(rf"{BE}/\w+/\d+/\d+/generation")


@inlineCallbacks
def dump(xs, root="/"):
    """{path: (value, perms)} for every node under `root` (xenstored's /tool left out)."""
    tree = {}
    todo = [root]
    while todo:
        path = todo.pop()
        if path == "/tool":
            continue
        value = yield xs.read(path)
        if _GENERATION.fullmatch(path):
            assert re.fullmatch("[0-9a-f]{16}", value), (path, value)
            value = GENERATION
        tree[path] = (value, (yield xs.getPerms(path)))
        for child in (yield xs.list(path)):
            todo.append(f"{path.rstrip('/')}/{child}")
    return tree


def tree(base, **areas):
    """`base` plus nodes given as {path: (value, perms)} dicts."""
    out = dict(base)
    for nodes in areas.values():
        out.update(nodes)
    return out


def area(path, perms, keys):
    """An area and its keys, all with the same permissions."""
    return {path: ("", perms), **{f"{path}/{k}": (v, perms) for k, v in keys.items()}}


class StubBackend:
    """Plays the backend on its own connection: answers a device's `state` the way
    the xend-vfb backend will.  Its hotplug answer waits for `answerWhen` (a Deferred)
    if one is given, so that a test can choose the moment."""

    def __init__(self, xs, path, hotplug=None, closes=True, answerWhen=None):
        self.xs, self.path, self.hotplug, self.closes = xs, path, hotplug, closes
        self.answerWhen = answerWhen

    @inlineCallbacks
    def start(self):
        self.watch = yield self.xs.watch(f"{self.path}/state", self.changed)
        self.changed()

    @inlineCallbacks
    def react(self):
        state = yield self.xs.readOrNone(f"{self.path}/state")
        if state == "1" and self.hotplug is not None:
            if self.answerWhen is not None:
                yield self.answerWhen
                self.answerWhen = None
            status, why = self.hotplug
            if why is not None:
                yield self.xs.write(f"{self.path}/hotplug-error", why)
            yield self.xs.write(f"{self.path}/state", "2")
            yield self.xs.write(f"{self.path}/hotplug-status", status)
        elif state == "5" and self.closes:
            yield self.xs.write(f"{self.path}/state", "6")

    def changed(self, _=None):
        self.react().addErrback(lambda f: f.trap(XenstoreError))


class FailingXenstore:
    """Delegates to a real client, but a write (in a transaction or not) to a path
    `fails(path)` accepts is refused (EACCES), as xenstored refuses a write without
    permission."""

    def __init__(self, xs, fails):
        self.xs, self.fails = xs, fails

    def __getattr__(self, name):
        return getattr(self.xs, name)

    def write(self, path, value):
        return FailingTransaction(self.xs, self.fails).write(path, value)

    def transaction(self, function, attempts=16):
        return self.xs.transaction(lambda tx: function(FailingTransaction(tx, self.fails)),
                                   attempts)


class FailingTransaction:
    def __init__(self, tx, fails):
        self.tx, self.fails = tx, fails

    def __getattr__(self, name):
        return getattr(self.tx, name)

    def write(self, path, value):
        if self.fails(path):
            raise XenstoreError(errno.EACCES, f"xenstore: {path}: Permission denied (EACCES)")
        return self.tx.write(path, value)
