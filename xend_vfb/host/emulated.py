"""The emulated host: the hypervisor's stand-in for machines without Xen (SURFACE.md).

It hands out domain ids from 1, writes `/local/domain/D/name`, `domid` and
`vm`, creates the guest's memory file and runs one simulated guest
(`xend-vfb-guest`) per domain; that process exiting means the domain stopped.
It saves a guest as one file (a header, then its memory) and restores it as
a new domain; a migration is a save and a restore (to another host: the file
goes to that host's `xend-vfb migrate-receive image`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.errors import DaemonError
from xend_vfb.guestmem.emulated import (
    SHUTDOWN_FILE,
    createGuestMemory,
    destroyGuestMemory,
    guestDir,
)
from xend_vfb.host import DomainInfo, IHost, IRemoteHost, ShutdownReason
from xend_vfb.model import DomainConfig
from xend_vfb.supervisor import ProcessSupervisor, programCommand, readRecord
from xend_vfb.xenstore.embedded import EmbeddedXenstored
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import PRIVATE_ROOT, domainPath

__all__ = ["EmulatedHost", "guestKey", "stopEmulatedHost"]

log = Logger()

MIB = 1024 * 1024
#: Xen's highest domain id for guests (DOMID_FIRST_RESERVED - 1).
MAX_DOMID = 0x7FEF


def guestKey(domid: int) -> str:
    """The supervisor's key for a simulated guest."""
    return f"guest/{domid}"


#: First line of a file `save` writes; the next is a JSON header, then the memory.
SAVE_MAGIC = b"xend-vfb emulated saved guest 1\n"
#: Seconds a guest may take to suspend when asked to (`save`, `migrate`).
SUSPEND_TIMEOUT = 30.0
#: Marks a domain the host has let run (absent: built, still paused).
STARTED_FILE = "started"


@implementer(IHost)
class EmulatedHost:
    """The hypervisor's stand-in for machines without Xen.

    A domain is paused from `createDomain` until `startDomain` runs its simulator;
    once the simulator exits the domain is shut down, with the reason the guest left
    in `guests/D/shutdown` (none: it crashed), until `destroyDomain`.  `changed` (see
    `watchDomains`) is called by the daemon's supervisor callback when a simulator
    ends, through `guestEnded`.
    """

    def __init__(self, xs: IXenstore, runDir: str, supervisor: ProcessSupervisor) -> None:
        self.xs = xs
        self.runDir = runDir
        self.supervisor = supervisor
        self._changed: Callable[[], None] = lambda: None

    def watchDomains(self, changed: Callable[[], None]) -> Deferred[None]:
        self._changed = changed
        return succeed(None)

    def guestEnded(self, domid: int) -> None:
        """A simulator exited: its domain is shut down."""
        self._changed()

    @inlineCallbacks
    def domains(self):
        found = {}
        for entry in (yield self.xs.list("/local/domain")):
            if not entry.isdigit() or entry == "0":
                continue
            domid = int(entry)
            name = yield self.xs.readOrNone(f"{domainPath(domid)}/name")
            vm = yield self.xs.readOrNone(f"{domainPath(domid)}/vm")
            if name is None or vm is None:
                continue  # being built or torn down
            found[domid] = DomainInfo(domid, name, vm.rsplit("/", 1)[-1],
                                      self._shutdownReason(domid), paused=not (
                                          guestDir(self.runDir, domid) / STARTED_FILE).exists())
        return found

    def _shutdownReason(self, domid: int) -> ShutdownReason | None:
        directory = guestDir(self.runDir, domid)
        if not (directory / STARTED_FILE).exists() or self.recover(domid):
            return None
        try:
            name = (directory / SHUTDOWN_FILE).read_text().strip()
        except OSError:
            return ShutdownReason.crash
        return ShutdownReason.__members__.get(name, ShutdownReason.crash)

    @inlineCallbacks
    def createDomain(self, config: DomainConfig):
        domid = yield self._buildDomain(config.name, config.uuid)
        createGuestMemory(self.runDir, domid, config.memory * MIB)
        return domid

    @inlineCallbacks
    def _buildDomain(self, name: str, uuid: str | None):
        """A new domain's home in xenstore and a clean directory; its domid."""
        domid = yield self._nextDomid()
        home = domainPath(domid)
        # A new domain starts with a clean directory: no logs or input events left by
        # an earlier domain that had the same id.
        shutil.rmtree(guestDir(self.runDir, domid), ignore_errors=True)

        @inlineCallbacks
        def write(tx):
            yield tx.write(f"{home}/name", name)
            yield tx.write(f"{home}/domid", str(domid))
            yield tx.write(f"{home}/vm", f"/vm/{uuid}")
            yield tx.setPerms(home, ["n0", f"r{domid}"])
            for area in ("device", "console", "control"):
                yield tx.mkdir(f"{home}/{area}")
                yield tx.setPerms(f"{home}/{area}", [f"n{domid}", "r0"])

        yield self.xs.transaction(write)
        return domid

    @inlineCallbacks
    def _nextDomid(self):
        """As Xen does: the id after the last one handed out, skipping those in use,
        so a re-made domain (reboot, restore) gets a new id."""
        used = set()
        for root in ("/local/domain", PRIVATE_ROOT):
            used.update(int(n) for n in (yield self.xs.list(root)) if n.isdigit())
        counter = os.path.join(self.runDir, "guests", "last-domid")
        try:
            with open(counter) as f:
                last = int(f.read())
        except (OSError, ValueError):
            last = 0
        domid = last % MAX_DOMID + 1
        while domid in used:
            domid = domid % MAX_DOMID + 1
        os.makedirs(os.path.dirname(counter), mode=0o700, exist_ok=True)
        with open(counter, "w") as f:
            f.write(str(domid))
        return domid

    def _paths(self, domid: int) -> tuple[str, str]:
        directory = str(guestDir(self.runDir, domid))
        return os.path.join(directory, "guest.pid"), os.path.join(directory, "guest.log")

    def startDomain(self, domid: int) -> None:
        directory = guestDir(self.runDir, domid)
        (directory / SHUTDOWN_FILE).unlink(missing_ok=True)
        (directory / STARTED_FILE).touch()
        record, logPath = self._paths(domid)
        command = [*programCommand("xend-vfb-guest"), "--domid", str(domid),
                   "--run-dir", self.runDir]
        self.supervisor.ensure(guestKey(domid), command, record, logPath)

    @inlineCallbacks
    def destroyDomain(self, domid: int):
        yield self.supervisor.terminate(guestKey(domid), signal.SIGKILL)
        yield self.xs.rm(domainPath(domid))
        destroyGuestMemory(self.runDir, domid)
        for name in (STARTED_FILE, SHUTDOWN_FILE):
            (guestDir(self.runDir, domid) / name).unlink(missing_ok=True)

    def requestShutdown(self, domid: int, reason: ShutdownReason) -> Deferred[None]:
        # What xl does too: the guest's kernel watches control/shutdown.
        return self.xs.write(f"{domainPath(domid)}/control/shutdown", reason.name)

    @inlineCallbacks
    def save(self, domid: int, path: str):
        try:
            out = open(path, "wb")
        except OSError as e:
            raise DaemonError(f"cannot save domain {domid} to {path}: {e.strerror}") from None
        try:
            ended = self.supervisor.whenEnded(guestKey(domid))
            ended.addTimeout(SUSPEND_TIMEOUT, self.supervisor.reactor)
            yield self.requestShutdown(domid, ShutdownReason.suspend)
            try:
                yield ended
            except defer.TimeoutError:
                raise DaemonError(f"domain {domid} did not suspend within "
                                  f"{SUSPEND_TIMEOUT:g} s") from None
            if self._shutdownReason(domid) != ShutdownReason.suspend:
                raise DaemonError(f"domain {domid} stopped while suspending")
            name = yield self.xs.read(f"{domainPath(domid)}/name")
            vm = yield self.xs.read(f"{domainPath(domid)}/vm")
            header = {"name": name, "uuid": vm.rsplit("/", 1)[-1]}
            memory = guestDir(self.runDir, domid) / "memory"
            yield deferToThread(_writeSave, out, header, memory)
        except BaseException:
            out.close()
            os.unlink(path)
            raise
        out.close()
        yield self.destroyDomain(domid)

    @inlineCallbacks
    def savedGuest(self, path: str):
        header = yield deferToThread(_readSaveHeader, path)
        return header["name"], header["uuid"]

    @inlineCallbacks
    def restore(self, path: str):
        header = yield deferToThread(_readSaveHeader, path)
        domid = yield self._buildDomain(header["name"], header["uuid"])
        try:
            directory = createGuestMemory(self.runDir, domid, header["memory"])
            yield deferToThread(_readSaveMemory, path, directory / "memory")
        except BaseException:
            yield self.destroyDomain(domid)
            raise
        return domid

    @inlineCallbacks
    def migrate(self, domid: int, host: str, remote: IRemoteHost | None):
        # A migration is a save here and a restore there, through a file of the host's
        # (to another host: sent to its `xend-vfb migrate-receive image`).
        path = os.path.join(self.runDir, "guests", f"migrating-{domid}")
        yield self.save(domid, path)
        try:
            if remote is None:
                return (yield self.restore(path))
            try:
                yield remote.call("migrate-receive", "image", stdinPath=path)
            except BaseException:
                # What xl does when the other side fails: the guest stays here (built
                # again, paused: the daemon gives it its devices and lets it run).
                yield self.restore(path)
                raise
            return None
        finally:
            os.unlink(path)

    def recover(self, domid: int) -> bool:
        record, _ = self._paths(domid)
        return self.supervisor.find(guestKey(domid), record) is not None


def _writeSave(out: BinaryIO, header: dict, memory: Path) -> None:
    with open(memory, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        out.write(SAVE_MAGIC + json.dumps(dict(header, memory=size)).encode() + b"\n")
        shutil.copyfileobj(source, out, 1 << 20)


def _readSaveHeader(path: str) -> dict:
    """The header of a saved guest, checked; `DaemonError` if `path` is not one."""
    try:
        with open(path, "rb") as f:
            magic = f.readline(len(SAVE_MAGIC))
            line = f.readline(4096)
            f.seek(0, os.SEEK_END)
            size = f.tell()
    except OSError as e:
        raise DaemonError(f"cannot restore from {path}: {e.strerror}") from None
    try:
        if magic != SAVE_MAGIC:
            raise ValueError("no saved-guest header")
        header = json.loads(line)
        name, uuid, memory = header["name"], header["uuid"], header["memory"]
        if not (isinstance(name, str) and isinstance(uuid, str) and isinstance(memory, int)
                and memory > 0 and memory % 4096 == 0
                and size == len(magic) + len(line) + memory):
            raise ValueError("damaged header")
    except (ValueError, KeyError, TypeError):
        raise DaemonError(f"cannot restore from {path}: not a guest saved by "
                          "xend-vfb save (emulated mode)") from None
    return {"name": name, "uuid": uuid, "memory": memory, "offset": len(magic) + len(line)}


def _readSaveMemory(path: str, memory: Path) -> None:
    header = _readSaveHeader(path)
    with open(path, "rb") as source, open(memory, "r+b") as target:
        source.seek(header["offset"])
        shutil.copyfileobj(source, target, 1 << 20)


def stopEmulatedHost(runDir: str) -> list[str]:
    """Bring an emulated host down without its daemon (`stop --all` after the daemon
    was killed): kill every guest and backend its records name, the zygote, then the
    embedded xenstored, and remove the guests' memory.  Returns what it stopped."""
    records = sorted(glob.glob(os.path.join(runDir, "guests", "*", "guest.pid")))
    records += sorted(glob.glob(os.path.join(runDir, "backends", "*.pid")))
    stopped = []
    for record in records:
        process = readRecord(record)
        if process is not None:
            process.kill(signal.SIGKILL)
            stopped.append(f"{os.path.basename(os.path.dirname(record))}/"
                           f"{os.path.basename(record)} {process}")
        with contextlib.suppress(OSError):
            os.unlink(record)
    xenstored = EmbeddedXenstored(runDir)
    if xenstored.running() is not None:
        stopped.append("xenstored")
    xenstored.stop()
    for directory in glob.glob(os.path.join(runDir, "guests", "*")):
        if os.path.basename(directory).isdigit():
            destroyGuestMemory(runDir, int(os.path.basename(directory)))
    return stopped
