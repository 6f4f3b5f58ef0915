"""The host a daemon runs on: who builds domains, and whether they still run.

On Xen, domains are built by `xl` (`XenHost`): xend-vfb adds only the display
devices, between `xl create -p` and `xl unpause`.  In emulated mode
(SURFACE.md) the daemon stands in for the hypervisor (`EmulatedHost`): it
hands out domain ids from 1, writes `/local/domain/D/name` and `domid`,
creates the guest's memory file and runs one simulated guest
(`xend-vfb-guest`) per domain; that process exiting means the domain died.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from zope.interface import Interface, implementer

from xend_vfb.errors import DaemonError
from xend_vfb.guestmem.emulated import createGuestMemory, destroyGuestMemory, guestDir
from xend_vfb.model import DomainConfig
from xend_vfb.supervisor import ProcessSupervisor, programCommand
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import PRIVATE_ROOT, domainPath

__all__ = ["IHost", "EmulatedHost", "XenHost", "guestKey", "xlConfig"]

log = Logger()

MIB = 1024 * 1024


def guestKey(domid: int) -> str:
    """The supervisor's key for a simulated guest."""
    return f"guest/{domid}"


class IHost(Interface):
    """Building and tearing down domains; the daemon adds the display devices."""

    def createDomain(config: DomainConfig) -> Any:
        """Build the domain (paused where that exists); fires with its domid."""

    def startDomain(domid: int) -> Any:
        """Let the domain run, once its devices are written."""

    def destroyDomain(domid: int) -> Any:
        """Stop the domain and remove what the host made for it."""

    def isAlive(domid: int) -> bool:
        """Whether the domain still exists."""

    def recover(domid: int) -> bool:
        """After a daemon restart: find the domain again; whether it is alive."""


@implementer(IHost)
class EmulatedHost:
    """The hypervisor's stand-in for machines without Xen."""

    def __init__(self, xs: IXenstore, runDir: str, supervisor: ProcessSupervisor) -> None:
        self.xs = xs
        self.runDir = runDir
        self.supervisor = supervisor

    @inlineCallbacks
    def createDomain(self, config: DomainConfig):
        domid = yield self._freeDomid()
        home = domainPath(domid)
        yield self.xs.write(f"{home}/name", config.name)
        yield self.xs.write(f"{home}/domid", str(domid))
        yield self.xs.setPerms(home, ["n0", f"r{domid}"])
        yield self.xs.mkdir(f"{home}/device")
        yield self.xs.setPerms(f"{home}/device", [f"n{domid}", "r0"])
        yield self.xs.mkdir(f"{home}/console")
        yield self.xs.setPerms(f"{home}/console", [f"n{domid}", "r0"])
        # A new domain starts with a clean directory: no logs or input events left by
        # an earlier domain that had the same id.
        shutil.rmtree(guestDir(self.runDir, domid), ignore_errors=True)
        createGuestMemory(self.runDir, domid, config.memory * MIB)
        return domid

    @inlineCallbacks
    def _freeDomid(self):
        used = set()
        for root in ("/local/domain", PRIVATE_ROOT):
            used.update(int(n) for n in (yield self.xs.list(root)) if n.isdigit())
        domid = 1
        while domid in used:
            domid += 1
        return domid

    def _paths(self, domid: int) -> tuple[str, str]:
        directory = str(guestDir(self.runDir, domid))
        return os.path.join(directory, "guest.pid"), os.path.join(directory, "guest.log")

    def startDomain(self, domid: int) -> None:
        record, logPath = self._paths(domid)
        command = [*programCommand("xend-vfb-guest"), "--domid", str(domid),
                   "--run-dir", self.runDir]
        self.supervisor.ensure(guestKey(domid), command, record, logPath)

    @inlineCallbacks
    def destroyDomain(self, domid: int):
        yield self.supervisor.terminate(guestKey(domid))
        yield self.xs.rm(domainPath(domid))
        destroyGuestMemory(self.runDir, domid)

    def isAlive(self, domid: int) -> bool:
        return self.supervisor.processOf(guestKey(domid)) is not None

    def recover(self, domid: int) -> bool:
        record, _ = self._paths(domid)
        return self.supervisor.find(guestKey(domid), record) is not None


def xlConfig(config: DomainConfig) -> str:
    """The part of `config` that `xl create` builds: everything but the displays and
    keyboards, which xend-vfb adds itself once the domain exists (paused)."""
    lines = [f"name = {_xlValue(config.name)}", f"memory = {config.memory}",
             f"vcpus = {config.vcpus}"]
    for key in ("uuid", "kernel", "ramdisk", "extra"):
        value = getattr(config, key)
        if value is not None:
            lines.append(f"{key} = {_xlValue(value)}")
    lines.extend(f"{key} = {_xlValue(value)}" for key, value in config.other)
    return "\n".join(lines) + "\n"


def _xlValue(value: Any) -> str:
    if isinstance(value, tuple):
        return "[ " + ", ".join(_xlValue(v) for v in value) + " ]"
    if value.isdigit():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@implementer(IHost)
class XenHost:
    """A real Xen host: `xl` builds and destroys domains, the hypervisor runs them."""

    def __init__(self, xs: IXenstore, runDir: str) -> None:
        self.xs = xs
        self.runDir = runDir

    @inlineCallbacks
    def _xl(self, *arguments: str):
        out, err, code = yield getProcessOutputAndValue("xl", arguments, env=os.environ)
        if code != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            raise DaemonError(f"xl {arguments[0]} failed: {lines[-1] if lines else code}")
        return out.decode("utf-8", "replace")

    @inlineCallbacks
    def createDomain(self, config: DomainConfig):
        path = os.path.join(self.runDir, f"{config.name}.xl.cfg")
        with open(path, "w") as f:
            f.write(xlConfig(config))
        yield self._xl("create", "-p", path)
        return int((yield self._xl("domid", config.name)).strip())

    def startDomain(self, domid: int) -> Any:
        return self._xl("unpause", str(domid))

    @inlineCallbacks
    def destroyDomain(self, domid: int):
        if (yield self.xs.exists(domainPath(domid))):
            yield self._xl("destroy", str(domid))

    def isAlive(self, domid: int) -> bool:
        return True  # a domain's death shows in xenstore: see XendVfbDaemon.recover

    def recover(self, domid: int) -> bool:
        return True
