"""Another host's xend-vfb, reached over ssh: where a migrating guest goes.

xm sent a migrating domain's configuration to the destination's xend (its
relocation server); xl sends its own inside the stream it pipes to `ssh HOST
xl migrate-receive`.  A guest's display configuration travels the xl way:
over the same ssh, to `xend-vfb migrate-receive` on the destination, which
hands it to the daemon there (see `xend_vfb.daemon.guests`).
"""

from __future__ import annotations

import os
import shlex

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from xend_vfb.errors import DaemonError
from xend_vfb.host import IRemoteHost

__all__ = ["RemoteHost", "REMOTE_TIMEOUT"]

#: Seconds one command on the other host may take (a saved guest's whole memory
#: crosses in `migrate-receive image`).
REMOTE_TIMEOUT = 600.0


class _Call(ProcessProtocol):
    """One command: writes `stdin` (when it reads no file), gathers its output."""

    def __init__(self, stdin: bytes | None) -> None:
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred[tuple[bytes, bytes, int | None]] = Deferred()

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)
            self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback((b"".join(self.out), b"".join(self.err), reason.value.exitCode))


@implementer(IRemoteHost)
class RemoteHost:
    """`host`'s xend-vfb, reached with `sshCommand` (`XEND_VFB_SSH`, default `ssh`)."""

    def __init__(self, host: str, sshCommand: str,
                 reactor: IReactorProcess | IReactorTime) -> None:
        self.host = host
        self.sshCommand = sshCommand
        self.reactor = reactor

    def call(self, *arguments: str, stdin: bytes = b"",
             stdinPath: str | None = None) -> Deferred[str]:
        # The error line is the other side's (or ssh's), without the host: the caller
        # says where it went.
        argv = [*shlex.split(self.sshCommand), self.host, "xend-vfb", *arguments]
        protocol = _Call(None if stdinPath else stdin)
        source = open(stdinPath, "rb") if stdinPath else None  # noqa: SIM115 (closed below)
        try:
            childFDs = {0: source.fileno() if source else "w", 1: "r", 2: "r"}
            transport = self.reactor.spawnProcess(protocol, argv[0], argv, env=os.environ,
                                                  childFDs=childFDs)
        except OSError as e:
            raise DaemonError(f"cannot run {argv[0]}: {e.strerror}") from None
        finally:
            if source is not None:
                source.close()
        timer = self.reactor.callLater(REMOTE_TIMEOUT, transport.signalProcess, "KILL")

        def ended(result: tuple[bytes, bytes, int | None]) -> str:
            if timer.active():
                timer.cancel()
            out, err, code = result
            if code == 0:
                return out.decode("utf-8", "replace")
            lines = err.decode("utf-8", "replace").strip().splitlines()
            line = lines[-1].strip() if lines else f"exit status {code}"
            if code is None:
                line = f"no answer within {REMOTE_TIMEOUT:g} s"
            raise DaemonError(line.removeprefix("Error: "))

        return protocol.ended.addCallback(ended)
