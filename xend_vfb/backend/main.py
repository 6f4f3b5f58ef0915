"""`xend-vfb-backend`: the per-domain backend process the daemon spawns.

    xend-vfb-backend --domid D [--run-dir DIR] [--mode emulated|xen] [--log-file F]

It serves domain D's vfb and vkbd devices until none is left, then exits 0.
SIGTERM stops it without touching xenstore, so that a new backend reattaches
to the guest's devices.  xenstore is found through `XENSTORED_PATH` as Xen's
tools find it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger, LogLevel

from xend_vfb.backend.control import controlSocketPath, listenControl
from xend_vfb.backend.service import DomainBackend
from xend_vfb.errors import XendVfbError
from xend_vfb.guestmem import MODES, guestmemFor
from xend_vfb.log import startLogging
from xend_vfb.procid import setCommandLine
from xend_vfb.settings import runDir
from xend_vfb.xenstore import connect

__all__ = ["main", "defaultMode"]

log = Logger()


def defaultMode() -> str:
    """`xen` where a hypervisor is reachable, else `emulated`."""
    return "xen" if os.path.exists("/dev/xen/privcmd") else "emulated"


def parseArguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xend-vfb-backend", description=__doc__.splitlines()[0])
    parser.add_argument("--domid", type=int, required=True)
    parser.add_argument("--run-dir", default=runDir())
    parser.add_argument("--mode", choices=MODES, default=None)
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


@inlineCallbacks
def serve(reactor, arguments: argparse.Namespace):
    memory, channels = guestmemFor(arguments.mode or defaultMode(), arguments.run_dir, reactor)
    xs = yield connect()
    backend = DomainBackend(xs, arguments.domid, memory, channels, reactor, arguments.run_dir)
    ports = [(yield listenControl(reactor, controlSocketPath(arguments.run_dir,
                                                             arguments.domid), backend))]
    stopped: Deferred[str] = Deferred()

    @inlineCallbacks
    def followed(old: int, new: int):
        # The guest's new domain: answer at its control socket, under its name.
        yield ports.pop().stopListening()
        with contextlib.suppress(OSError):
            os.unlink(controlSocketPath(arguments.run_dir, old))
        ports.append((yield listenControl(reactor, controlSocketPath(arguments.run_dir, new),
                                          backend)))
        words = sys.argv[1:]
        if "--domid" in words[:-1]:
            words[words.index("--domid") + 1] = str(new)
        setCommandLine(["xend-vfb-backend", *words])

    backend.onFollow = lambda old, new: followed(old, new).addErrback(
        lambda f: log.failure("moving the control socket to domain {new}", f, new=new))

    def shuttingDown() -> None:
        # SIGTERM: a clean stop.  Closing connections on the way out must not read as
        # "xenstore lost" below, which is an error.
        if not stopped.called:
            stopped.callback("stopped")
        backend.stop()

    reactor.addSystemEventTrigger("before", "shutdown", shuttingDown)
    xs.whenLost().addCallback(lambda _: stopped.called or stopped.callback("xenstore lost"))
    backend.finished.addCallback(lambda _: stopped.called or stopped.callback("no devices"))
    yield backend.start()
    log.info("backend of domain {domid} running (pid {pid})", domid=arguments.domid,
             pid=os.getpid())
    why = yield stopped
    log.info("backend of domain {domid} exiting: {why}", domid=backend.domid, why=why)
    yield ports.pop().stopListening()
    backend.stop()
    xs.close()
    if why not in ("no devices", "stopped"):
        raise XendVfbError(f"backend of domain {backend.domid}: {why}")


def main(argv: list[str] | None = None) -> None:
    arguments = parseArguments(argv)
    out = open(arguments.log_file, "a", buffering=1) if arguments.log_file else sys.stderr
    startLogging(out, LogLevel.debug if arguments.verbose else LogLevel.info)
    task.react(serve, [arguments])
