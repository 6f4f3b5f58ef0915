"""The host a daemon runs on: who builds domains, runs them and tells of their end.

On Xen (`xend_vfb.host.xen.XenHost`) `xl` builds, saves, restores and
migrates domains and the hypervisor runs them; xend-vfb adds the display
devices while a domain is paused.  In emulated mode
(`xend_vfb.host.emulated.EmulatedHost`, SURFACE.md) the daemon stands in for
both.

A guest outlives its domain ids: a reboot, a restore or a migration makes a
new domain (new id, same name and uuid).  The host never restarts a domain by
itself: domains are built with every `on_*` action set to `preserve`, so a
domain that stops stays, shut down with its reason, until the daemon (which
follows the guest's own `on_poweroff`/`on_reboot`/`on_crash`) destroys or
re-makes it.  That keeps the display configuration in one owner's hands and
lets the daemon write a re-made domain's devices before it runs.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zope.interface import Interface

from xend_vfb.model import DomainConfig

__all__ = ["IHost", "IRemoteHost", "DomainInfo", "ShutdownReason", "LOCAL_HOSTS", "isLocalHost"]

#: Names under which a host means itself: `migrate` to one of them is local.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def isLocalHost(host: str) -> bool:
    """Whether `migrate` to `host` means this host (a local migration)."""
    return host in LOCAL_HOSTS or host in (socket.gethostname(), socket.getfqdn())


class ShutdownReason(enum.IntEnum):
    """Why a domain stopped running: Xen's `SHUTDOWN_*` codes (sched.h)."""

    poweroff = 0
    reboot = 1
    suspend = 2
    crash = 3
    watchdog = 4
    soft_reset = 5


@dataclass(frozen=True)
class DomainInfo:
    """What the host says of one domain."""

    domid: int
    name: str
    uuid: str
    #: None while the domain runs (or is paused); why it stopped once it has.
    shutdown: ShutdownReason | None = None
    #: Built or moved here but not let run yet (`startDomain` has not been called).
    paused: bool = False


class IHost(Interface):
    """Building, running and tearing down domains; the daemon adds the display devices.

    Every method that builds a domain leaves it paused: the daemon writes its
    devices, then calls `startDomain`.
    """

    def watchDomains(changed: Callable[[], None]) -> Any:
        """Call `changed()` whenever a domain appears, stops or goes (it may also be
        called when nothing changed).  Fires once the watch is in place."""

    def domains() -> Any:
        """Fire with {domid: DomainInfo} of every guest domain that exists now."""

    def createDomain(config: DomainConfig) -> Any:
        """Build the domain, paused, with `config.uuid`; fires with its domid."""

    def startDomain(domid: int) -> Any:
        """Let a paused domain run, once its devices are written."""

    def destroyDomain(domid: int) -> Any:
        """Stop the domain at once and remove what the host made for it (no error if
        it is already gone)."""

    def requestShutdown(domid: int, reason: ShutdownReason) -> Any:
        """Ask the guest to power off (`poweroff`) or reboot (`reboot`); fires once the
        request is delivered, not when the guest has acted on it."""

    def save(domid: int, path: str) -> Any:
        """Write the running domain to `path` and destroy it; on failure the domain
        keeps running and the Deferred fails with a `DaemonError`."""

    def savedGuest(path: str) -> Any:
        """Fire with (name, uuid) of the guest a file `save` wrote (uuid None if the
        file does not say); fail with a `DaemonError` if it is not one."""

    def restore(path: str) -> Any:
        """Build a domain from a file `save` wrote, paused; fires with its domid."""

    def migrate(domid: int, host: str, remote: IRemoteHost | None) -> Any:
        """Move the running domain to `host`, where it arrives paused.  A local
        migration (`remote` None) fires with the new domid; to another host (reached
        through `remote`) it fires with None once the domain is there.  On failure
        the domain keeps running here (or, in emulated mode, is built here again,
        paused, from what was sent)."""

    def recover(domid: int) -> bool:
        """After a daemon restart: find the domain's host-side pieces again (the
        simulated guest's process); whether the domain is alive."""


class IRemoteHost(Interface):
    """Another host's xend-vfb, reached by a command (`ssh HOST ...`)."""

    host: str
    #: The command that reaches it, as xl's `migrate -s` takes it (`ssh`).
    sshCommand: str

    def call(*arguments: str, stdin: bytes = b"", stdinPath: str | None = None) -> Any:
        """Run `xend-vfb ARGUMENTS` there; fires with its output, or fails with a
        `DaemonError` carrying its error line."""
