"""``xend-vfb-guest``: the simulated guest kernel's vfb and vkbd drivers, as a program.

Started by the emulated host (one per domain) or by tests; finds xenstore as
Xen's tools do (``XENSTORED_PATH``) and the domain's memory under the run
directory.  Signals:

- SIGTERM, SIGINT: the guest powers off: close every device (Closing, wait at
  most ``--close-timeout`` seconds for the backend, Closed), then exit 0.
- SIGHUP: the guest reboots itself: the same, with the reason ``reboot``.
- SIGUSR1: every connected vfb switches to the ``--resize-to`` mode (default
  1024x768), or back to its first mode if it shows that one already (sends
  RESIZE, redraws); a mode that does not fit the framebuffer (the vfb's
  ``videoram``) is refused in the guest's log.

As a Linux guest does, it also obeys the toolstack's requests in
``/local/domain/D/control/shutdown`` (``poweroff``, ``reboot``, ``suspend``;
it acknowledges by clearing the key).  Before exiting it tells the emulated
hypervisor why, as a real guest's shutdown hypercall does: the reason's name
in ``guests/D/shutdown`` (`SHUTDOWN_FILE`).  A suspending guest leaves its
devices as they are (a real one is frozen until resumed or destroyed).  A
simulator that exits without writing it has crashed.

Exit status 1 with one ``Error:`` line on stderr when the domain has no
memory yet or xenstore is unreachable; 1 too if xenstore goes away later.
"""

from __future__ import annotations

import argparse
import signal
import sys

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorCore, IReactorFDSet
from twisted.logger import Logger, LogLevel

from xend_vfb.errors import XendVfbError
from xend_vfb.guest.domain import CLOSE_TIMEOUT, GuestDomain, GuestOptions
from xend_vfb.guest.fb import VfbFrontend
from xend_vfb.guest.pattern import loadImage
from xend_vfb.guestmem.emulated import SHUTDOWN_FILE, EmulatedGuestMemory, guestDir
from xend_vfb.guestmem.interfaces import IGuestMemory
from xend_vfb.log import startLogging
from xend_vfb.protocol.fbif import pdLayout
from xend_vfb.settings import runDir
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore import connect
from xend_vfb.xenstore.paths import domainPath

__all__ = ["Simulator", "main", "parseArgs", "parseDomids", "parseSize"]

log = Logger()

#: Seconds a stop may take beyond the close timeout before the process exits anyway.
STOP_MARGIN = 5.0
#: The mode SIGUSR1 switches to without ``--resize-to``: it fits the default videoram (8 MiB).
DEFAULT_RESIZE = (1024, 768)
#: What the toolstack may write to ``control/shutdown``, as the reason it means.
SHUTDOWN_REQUESTS = {"poweroff": "poweroff", "halt": "poweroff", "reboot": "reboot",
                     "suspend": "suspend"}


def parseDomids(text: str) -> list[int]:
    """``5``, ``1-64`` or ``1,3,7-9`` as a sorted list of domain ids."""
    domids: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            start = int(first)
            domids.update(range(start, int(last) + 1 if last else start + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid domain ids: {text!r}") from None
    if not domids or min(domids) < 1:
        raise argparse.ArgumentTypeError(f"invalid domain ids: {text!r}")
    return sorted(domids)


def parseSize(text: str) -> tuple[int, int]:
    """``WxH`` as (width, height)."""
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (expected WxH)") from None
    if min(size) <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}")
    return size


def _protocol(text: str) -> str:
    try:
        pdLayout(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parseArgs(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; argparse exits with status 2 on a bad one."""
    parser = argparse.ArgumentParser(
        prog="xend-vfb-guest",
        description="Simulated guest frontends (Linux xen-fbfront/xen-kbdfront) "
        "on emulated guest memory.",
    )
    parser.add_argument(
        "--domid", required=True, type=parseDomids, help="domain id, or ids (1-64, 1,3)"
    )
    parser.add_argument(
        "--run-dir",
        default=runDir(),
        help="run directory holding guests/<domid>/ (default $XEND_VFB_RUN_DIR)",
    )
    parser.add_argument("--image", help="show this image instead of the test pattern")
    parser.add_argument("--log-file", help="log here instead of stderr")
    parser.add_argument("--size", type=parseSize, default=(800, 600), help="mode WxH (800x600)")
    parser.add_argument(
        "--videoram", type=int, default=0,
        help="least framebuffer MiB (default: the backend's videoram, at least one screen)"
    )
    parser.add_argument("--protocol", type=_protocol, default="x86_64-abi", help="guest ABI")
    parser.add_argument(
        "--animate",
        type=float,
        nargs="?",
        const=0.1,
        default=0.0,
        metavar="SECONDS",
        help="redraw a moving band every SECONDS (0.1 if none given)",
    )
    parser.add_argument(
        "--vkbd-grant", action="store_true", help="publish the vkbd page as page-gref"
    )
    parser.add_argument(
        "--raw-pointer", action="store_true",
        help="ask for raw pointer coordinates (0-32767) when the backend offers them")
    parser.add_argument("--resize-to", type=parseSize,
                        help="mode SIGUSR1 switches to (WxH, default 1024x768)")
    parser.add_argument(
        "--close-timeout",
        type=float,
        default=CLOSE_TIMEOUT,
        help=f"seconds to wait for a backend when closing ({CLOSE_TIMEOUT:g})",
    )
    parser.add_argument("--verbose", action="store_true", help="log every event sent")
    return parser.parse_args(argv)


class Simulator:
    """The guests of one process, from connecting to xenstore to the last Closed."""

    def __init__(
        self,
        reactor: IReactorCore,
        options: GuestOptions,
        memories: dict[int, IGuestMemory],
        closeTimeout: float,
    ) -> None:
        self.reactor = reactor
        self.options = options
        self.memories = memories
        self.closeTimeout = closeTimeout
        self.domains: list[GuestDomain] = []
        self.xs = None
        self.exitCode = 0
        self._stopping = False

    @inlineCallbacks
    def start(self):
        """Connect to xenstore and start every domain's drivers."""
        try:
            xs = self.xs = yield connect(reactor=self.reactor)
            xs.whenLost().addCallback(self._lost)
            for domid, memory in self.memories.items():
                domain = GuestDomain(self.reactor, xs, memory, domid, self.options)
                self.domains.append(domain)
                yield domain.start()
                request = f"{domainPath(domid)}/control/shutdown"
                yield xs.watch(request, self._requested)
                self._requested(request)  # one written before the watch was in place
        except XendVfbError as e:
            self._fail(str(e))
            return
        log.info("guest simulator running for domains {domids}", domids=list(self.memories))

    def stop(self, reason: str = "poweroff") -> None:
        """Shut down for `reason` (``poweroff``, ``reboot`` or ``suspend``): close every
        device of every domain (bounded; not when suspending), leave the reason for
        the host, then stop the reactor."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down ({reason})", reason=reason)
        if reason == "suspend":
            d = DeferredList([])
        else:
            d = DeferredList([domain.stop(self.closeTimeout) for domain in self.domains])
            d.addTimeout(self.closeTimeout + STOP_MARGIN, self.reactor)
            d.addErrback(lambda failure: log.failure("stopping did not finish", failure))
        d.addBoth(lambda _: self._leaveReason(reason))
        d.addBoth(lambda _: self.reactor.stop())

    def _leaveReason(self, reason: str) -> None:
        for domid in self.memories:
            path = guestDir(self.options.runDir, domid) / SHUTDOWN_FILE
            path.write_text(reason + "\n")

    def _requested(self, path: str) -> None:
        """`control/shutdown` changed: obey a request there, once, and clear it."""
        d = self.xs.readOrNone(path)

        def obey(value: str | None) -> None:
            reason = SHUTDOWN_REQUESTS.get(value or "")
            if reason is None or self._stopping:
                return
            log.info("the toolstack asks for {reason}", reason=reason)
            self.xs.write(path, "").addErrback(lambda f: None)
            self.stop(reason)

        d.addCallback(obey)
        d.addErrback(lambda failure: log.failure("reading {path}", failure, path=path))

    def toggleResize(self) -> None:
        """SIGUSR1: each connected vfb to ``resizeTo``, or back to its first mode."""
        target = self.options.resizeTo or DEFAULT_RESIZE
        for domain in self.domains:
            for frontend in list(domain.devices.values()):
                if not isinstance(frontend, VfbFrontend):
                    continue
                if frontend.state != XenbusState.Connected:
                    continue
                size = target if frontend.geometry[:2] != target else frontend.originalSize
                try:
                    frontend.resize(*size)
                except (XendVfbError, ValueError) as e:
                    frontend.log("error", "cannot resize: {error}", error=e)

    def _lost(self, _) -> None:
        if self._stopping:
            return
        self._fail("lost the connection to xenstored")

    def _fail(self, message: str) -> None:
        log.error("{message}", message=message)
        print(f"Error: {message}", file=sys.stderr)
        self.exitCode = 1
        self._stopping = True
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)


def _openMemories(
    runDir: str, domids: list[int], reactor: IReactorFDSet
) -> dict[int, IGuestMemory]:
    memories: dict[int, IGuestMemory] = {}
    try:
        for domid in domids:
            memories[domid] = EmulatedGuestMemory(runDir, domid, reactor)
    except BaseException:
        for memory in memories.values():
            memory.close()
        raise
    return memories


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``xend-vfb-guest``; exits with the simulator's status."""
    from twisted.internet import reactor

    args = parseArgs(argv)
    options = GuestOptions(
        runDir=args.run_dir,
        protocol=args.protocol,
        size=args.size,
        videoram=args.videoram * 1024 * 1024,
        image=args.image,
        animate=args.animate,
        vkbdGrant=args.vkbd_grant,
        rawPointer=args.raw_pointer,
        resizeTo=args.resize_to,
    )
    try:
        if args.image is not None:
            loadImage(args.image, 1, 1)  # unreadable: say so now, not at the first probe
        memories = _openMemories(args.run_dir, args.domid, reactor)
        out = open(args.log_file, "a", buffering=1) if args.log_file else sys.stderr
    except (XendVfbError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    startLogging(out, LogLevel.debug if args.verbose else LogLevel.info)
    simulator = Simulator(reactor, options, memories, args.close_timeout)

    def later(function):
        return lambda signum, frame: reactor.callFromThread(function)

    signal.signal(signal.SIGTERM, later(simulator.stop))
    signal.signal(signal.SIGINT, later(simulator.stop))
    signal.signal(signal.SIGHUP, later(lambda: simulator.stop("reboot")))
    signal.signal(signal.SIGUSR1, later(simulator.toggleResize))
    reactor.callWhenRunning(simulator.start)
    reactor.run(installSignalHandlers=False)
    sys.exit(simulator.exitCode)
