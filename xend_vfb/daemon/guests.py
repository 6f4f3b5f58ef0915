"""Guests: what outlives a domain id, and the daemon's part in a guest's life.

A guest created by `xend-vfb create` keeps a record under
`/xend-vfb/guest/<uuid>` (domain 0 only): its configuration, the domain that
runs it now, and a snapshot of its devices (configuration, secrets, pairing,
VNC port).  The uuid is what every domain of the guest shares (xl keeps it
through reboot, save/restore and migration), so a record finds the guest
again whatever its domain id.

Domains are built with every `on_*` action set to `preserve` (see
`xend_vfb.host`): a guest that powers off, reboots or crashes leaves its
domain shut down, and `reconcile` follows the guest's own `on_poweroff`,
`on_reboot` and `on_crash`: destroy, preserve, or restart, which re-makes the
domain with the same devices written before it runs, so its kernel finds
them when it probes, as on first boot.  A domain of a known guest that
appears from elsewhere (`xl restore`, `xl migrate`) is given the guest's
devices as soon as it is seen.

A guest migrating to another host sends its record ahead (`migrate-receive
record`, over ssh): the daemon there keeps it as `incoming` until the domain
arrives, then gives it its devices and lets it run (`migrate-receive arrived`).

Every change goes through one lock, and a re-make is journalled in the
record (`pending`), so a daemon killed at any point finishes it on restart.
Longer than most modules on purpose: each way a domain is re-made (reboot,
restore, migration) is a few steps of the same journalled sequence, and they
are easiest to check against each other side by side.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from xend_vfb import sxp
from xend_vfb.daemon.crash import crashPoint
from xend_vfb.domain import Domain
from xend_vfb.errors import DaemonError, XendVfbError
from xend_vfb.host import ShutdownReason, isLocalHost
from xend_vfb.host.remote import RemoteHost
from xend_vfb.model import DomainConfig
from xend_vfb.settings import sshCommand
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import PRIVATE_ROOT

if TYPE_CHECKING:
    from xend_vfb.daemon.service import XendVfbDaemon

__all__ = ["Guests", "GUEST_ROOT", "RUNNING", "AWAY", "PRESERVED", "INCOMING"]

log = Logger()

#: Where guests' records live (domain 0 only, like every private record).
GUEST_ROOT = f"{PRIVATE_ROOT}/guest"

#: A guest's record's `state`: its domain runs (or is paused); it is saved or being
#: moved, its next domain to come from a restore or a migration; its domain is kept
#: shut down for inspection (`preserve`); or it is migrating here from another host
#: and has no domain here yet (its record has no `domid`).
RUNNING, AWAY, PRESERVED, INCOMING = "running", "away", "preserved", "incoming"

#: A record's `pending` while the daemon brings the guest's next domain in itself
#: (`xend-vfb restore`, a local `migrate`: xl leaves it paused): a daemon killed
#: meanwhile lets the next one start a paused domain it would otherwise leave paused.
ARRIVING = {"op": "arrive"}

#: Re-probing the devices of a guest that ran before they were written (plain `xl
#: restore`): how long its frontends may stay Initialising first (seconds: a guest
#: under TCG resumes slowly), how long its device areas stay removed the first time
#: (doubled at each further attempt), and how many attempts.
REPROBE_WAIT, REPROBE_GAP, REPROBE_ATTEMPTS = 30.0, 2.0, 4


def _action(config: DomainConfig, reason: ShutdownReason) -> str:
    """What the guest's configuration says to do after `reason`."""
    if reason == ShutdownReason.poweroff:
        return config.on_poweroff
    if reason in (ShutdownReason.reboot, ShutdownReason.soft_reset):
        return config.on_reboot
    return config.on_crash


class Guests(Service):
    """The records of the daemon's guests and what it does when their domains change.
    Started after recovery: watches the host's domains and catches up with what
    happened to them while no daemon ran."""

    def __init__(self, daemon: XendVfbDaemon) -> None:
        self.daemon = daemon
        self.lock = DeferredLock()
        self._reconciling = self._queued = self._again = False
        self._waiters: dict[str, list[Deferred]] = {}
        #: The re-probes running, by domid (see `_reprobe`).
        self.reprobes: dict[int, Deferred[None]] = {}

    @property
    def xs(self) -> Any:
        return self.daemon.xs

    @inlineCallbacks
    def startService(self):
        Service.startService(self)
        yield self.daemon.host.watchDomains(self.changed)
        yield self.reconcile()

    # -- records --------------------------------------------------------------

    @staticmethod
    def withUUID(config: DomainConfig) -> DomainConfig:
        """`config`, with a uuid of its own if it had none: the guest's identity."""
        return config if config.uuid else replace(config, uuid=str(uuidlib.uuid4()))

    def _path(self, uuid: str, key: str | None = None) -> str:
        return f"{GUEST_ROOT}/{uuid}" + (f"/{key}" if key else "")

    @inlineCallbacks
    def _read(self, uuid: str):
        """The record of guest `uuid` as a dict, or None."""

        @inlineCallbacks
        def read(tx):
            values = {}
            for key in (yield tx.list(self._path(uuid))):
                values[key] = yield tx.readOrNone(self._path(uuid, key))
            return values

        record = dict((yield self.xs.transaction(read)), uuid=uuid)
        if not record.get("config") or not (record.get("domid")
                                            or record.get("state") == INCOMING):
            return None
        record["domid"] = int(record["domid"]) if record.get("domid") else None
        record["devices"] = json.loads(record.get("devices") or "[]")
        record["pending"] = json.loads(record["pending"]) if record.get("pending") else None
        record["config"] = DomainConfig.fromSXP(sxp.parse(record["config"]), "<record>")
        return record

    @inlineCallbacks
    def _records(self):
        records = []
        for uuid in (yield self.xs.list(GUEST_ROOT)):
            record = yield self._read(uuid)
            if record is not None:
                records.append(record)
        return records

    @inlineCallbacks
    def _update(self, uuid: str, **values: Any):
        """Write some keys of a record (None removes one) in one transaction."""

        @inlineCallbacks
        def write(tx):
            for key, value in values.items():
                if value is None:
                    yield tx.rm(self._path(uuid, key))
                elif isinstance(value, str):
                    yield tx.write(self._path(uuid, key), value)
                else:
                    yield tx.write(self._path(uuid, key),
                                   json.dumps(value, separators=(",", ":")))

        yield self.xs.transaction(write)

    @inlineCallbacks
    def record(self, config: DomainConfig, domain: Domain):
        """Start the record of a guest just created as `domain`."""
        uuid = config.uuid
        yield self.xs.write(f"{PRIVATE_ROOT}/{domain.domid}/uuid", uuid)
        yield self._update(uuid, name=config.name, domid=str(domain.domid),
                           config=sxp.show(config.toSXP()), state=RUNNING,
                           devices=(yield domain.snapshot()))
        yield self.xs.setPerms(GUEST_ROOT, ["n0"])

    @inlineCallbacks
    def recordOf(self, domid: int):
        """The record of the guest domain `domid` runs, or None."""
        uuid = yield self.xs.readOrNone(f"{PRIVATE_ROOT}/{domid}/uuid")
        record = (yield self._read(uuid)) if uuid else None
        return record if record is not None and record["domid"] == domid else None

    @inlineCallbacks
    def knows(self, uuid: str):
        """Whether `uuid` is one of our guests."""
        return (yield self._read(uuid)) is not None

    @inlineCallbacks
    def devicesChanged(self, domain: Domain):
        """A device was attached or detached: the guest keeps it from now on."""
        record = yield self.recordOf(domain.domid)
        if record is not None:
            yield self._update(record["uuid"], devices=(yield domain.snapshot()))

    @inlineCallbacks
    def forget(self, domid: int):
        """Remove the record of the guest domain `domid` ran, if any."""
        record = yield self.recordOf(domid)
        if record is not None:
            yield self._forget(record["uuid"])

    @inlineCallbacks
    def _forget(self, uuid: str):
        @inlineCallbacks
        def remove(tx):
            yield tx.rm(self._path(uuid))
            if not (yield tx.list(GUEST_ROOT)):
                yield tx.rm(GUEST_ROOT)

        yield self.xs.transaction(remove)
        self._notify(uuid)

    @inlineCallbacks
    def forgetAll(self):
        yield self.xs.rm(GUEST_ROOT)

    @inlineCallbacks
    def states(self):
        """{domid: state} of the domains of our guests."""
        return {r["domid"]: r["state"] for r in (yield self._records())
                if r["domid"] is not None}

    # -- waiting for a guest ------------------------------------------------------

    def whenChanged(self, uuid: str) -> Deferred[None]:
        """Fires the next time the guest's domain is re-made, kept or forgotten."""
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(uuid, []).append(d)
        return d

    def _notify(self, uuid: str) -> None:
        for d in self._waiters.pop(uuid, []):
            d.callback(None)

    # -- following the domains -----------------------------------------------------

    def changed(self) -> None:
        """The host says a domain appeared, stopped or went: reconcile once the lock is
        free (once more if a reconcile is running: it may have looked before this
        change; one reconcile waiting for the lock is enough)."""
        if self._reconciling:
            self._again = True
        elif not self._queued:
            self._queued = True
            d = self.reconcile()
            d.addErrback(lambda f: log.failure("following the guests' domains", f))

    @inlineCallbacks
    def reconcile(self):
        """Bring every guest in line with its domains (see the module's docstring), and
        clean up after managed domains that went."""
        yield self.lock.acquire()
        self._queued, self._reconciling = False, True
        try:
            while True:
                self._again = False
                yield self._reconcileOnce()
                if not self._again:
                    break
        finally:
            self._reconciling = False
            self.lock.release()

    @inlineCallbacks
    def _reconcileOnce(self):
        domains = yield self.daemon.host.domains()
        for record in (yield self._records()):
            if record["domid"] in self.daemon.busy:
                continue
            try:
                yield self._follow(record, domains)
            except DaemonError as e:
                log.error("guest {name}: {e}", name=record["name"], e=e)
            except Exception:
                log.failure("guest {name} ({uuid})", name=record["name"], uuid=record["uuid"])
        # Managed domains no record names (a display attached to a guest started by
        # plain `xl create`): cleaned up once their domain is gone.  Looked at afresh:
        # following the records may have made domains.
        domains = yield self.daemon.host.domains()
        named = {record["domid"] for record in (yield self._records())}
        for domid in (yield self.daemon.domids()):
            if domid not in named | self.daemon.busy and domid not in domains:
                log.info("domain {domid} is gone: cleaning up", domid=domid)
                yield self.daemon.teardown(domid, graceful=False)

    @inlineCallbacks
    def _follow(self, record: dict, domains: dict):
        uuid, domid = record["uuid"], record["domid"]
        if record["state"] == INCOMING:
            # Arrived while no daemon ran, or before `migrate-receive arrived`.
            new = _arrival(uuid, domains)
            if new is not None:
                yield self._arrived(record, new)
            return
        if (record["pending"] and record["pending"]["op"] == "reprobe"
                and record["pending"]["domid"] not in self.reprobes):
            yield self._finishReprobe(record, domains)
        if record["pending"] and record["pending"]["op"] == "migrate":
            yield self._finishMigration(record, domains)
            return
        if record["pending"] and record["pending"]["op"] == "remake":
            log.info("guest {name}: finishing an interrupted re-make", name=record["name"])
            if "to" in record["pending"]:
                yield self.daemon.teardown(record["pending"]["to"], graceful=False)
            yield self._remake(record)
            return
        info = domains.get(domid)
        if info is not None and info.uuid == uuid:
            if info.shutdown is None and record["state"] == AWAY:
                # A save or migration that a daemon killed before it began.
                yield self._update(uuid, state=RUNNING, pending=None)
            if info.shutdown is None or record["state"] == PRESERVED:
                return
            if info.shutdown == ShutdownReason.suspend:
                if record["state"] != AWAY:  # plain `xl save` or `xl migrate`
                    yield self._update(uuid, state=AWAY)
                return
            yield self._stopped(record, info.shutdown)
            return
        successors = [d for d in domains.values()
                      if d.uuid == uuid and d.domid != domid and d.shutdown is None]
        if successors:
            # Restored or migrated here by plain xl, or by a daemon killed before it
            # could let the domain run: give it its devices now (and let it run).
            new = successors[0]
            log.info("guest {name}: now domain {new} (was {old})", name=record["name"],
                     new=new.domid, old=domid)
            yield self.daemon.teardown(domid, graceful=False)
            if new.paused and _arriving(record):
                yield self._arrived(record, new.domid)
                return
            # Plain `xl restore` or `xl migrate`: never unpaused here (xl may still be
            # restoring it, and unpauses it once done), and it may have run, or may
            # start running while its devices are written, before they were there.
            yield self._adopt(record, new.domid)
            self._startReprobe(record, new.domid)
            return
        if record["state"] == AWAY:
            if (yield self.xs.exists(f"{PRIVATE_ROOT}/{domid}")):
                yield self.daemon.teardown(domid, graceful=False)
            return
        log.info("guest {name}: domain {domid} is gone: cleaning up", name=record["name"],
                 domid=domid)
        yield self.daemon.teardown(domid, graceful=False)
        yield self._forget(uuid)

    @inlineCallbacks
    def _stopped(self, record: dict, reason: ShutdownReason):
        """The guest's domain shut down for `reason`: do what its config says."""
        action = _action(record["config"], reason)
        log.info("guest {name} (domain {domid}): {reason}, so {action}", name=record["name"],
                 domid=record["domid"], reason=reason.name, action=action)
        if action == "restart":
            yield self._remake(record)
        elif action == "preserve":
            yield self._update(record["uuid"], state=PRESERVED)
            self._notify(record["uuid"])
        else:
            yield self.daemon.teardown(record["domid"], graceful=False)
            yield self._forget(record["uuid"])

    @inlineCallbacks
    def _remake(self, record: dict):
        """Destroy the guest's domain and build a new one from its configuration, with
        its devices written before it runs."""
        uuid, old = record["uuid"], record["domid"]
        domain = yield self.daemon.domain(old)
        if any((yield domain.deviceIDs()).values()):
            record["devices"] = yield domain.snapshot()  # with the ports in use now
        pending = {"op": "remake", "from": old}
        yield self._update(uuid, devices=record["devices"], pending=pending)
        held = yield self.daemon.backends.hold(old)
        yield self.daemon.teardown(old, graceful=False, keepBackend=held)
        crashPoint("remake:destroyed")
        new = yield self.daemon.host.createDomain(record["config"])
        self.daemon.busy.add(new)
        try:
            yield self._update(uuid, pending=dict(pending, to=new))
            crashPoint("remake:built")
            yield self._adopt(record, new, start=True)
        finally:
            self.daemon.busy.discard(new)
        yield self._update(uuid, pending=None)
        log.info("guest {name}: re-made as domain {new} (was {old})", name=record["name"],
                 new=new, old=old)

    @inlineCallbacks
    def _adopt(self, record: dict, domid: int, start: bool = False):
        """Make `domid` the guest's domain: its devices (unless it has them), its
        backend (the one that held the previous domain's displays, if it still
        runs), and (`start`) let it run."""
        domain = yield self.daemon.domain(domid)
        yield self.xs.write(f"{PRIVATE_ROOT}/{domid}/uuid", record["uuid"])
        if not any((yield domain.deviceIDs()).values()):
            yield domain.restoreDevices(record["devices"])
        yield self.daemon.backends.follow(domain, record["domid"])
        if start:
            yield self.daemon.host.startDomain(domid)
        yield self._update(record["uuid"], domid=str(domid), state=RUNNING)
        self._notify(record["uuid"])

    def _startReprobe(self, record: dict, domid: int) -> None:
        """Run `_reprobe` for `domid` in the background, unless one runs already."""
        if domid in self.reprobes:
            return

        def ended(_: object) -> None:
            del self.reprobes[domid]

        d = self.reprobes[domid] = self._reprobe(record, domid)
        d.addErrback(lambda f: log.failure("guest {name}: re-probing its devices", f,
                                           name=record["name"]))
        d.addBoth(ended)

    @inlineCallbacks
    def _finishReprobe(self, record: dict, domains: dict):
        """A daemon was killed while a re-probe had the guest's frontend areas removed:
        write the devices again (if the domain still runs) and watch them as the
        re-probe would have."""
        uuid, domid = record["uuid"], record["pending"]["domid"]
        runs = domid == record["domid"] and domid in domains
        if runs:
            log.info("guest {name}: writing the devices an interrupted re-probe removed",
                     name=record["name"])
            domain = yield self.daemon.domain(domid)
            yield domain.restoreDevices(record["devices"])
            yield self.daemon.backends.ensure(domain)
        yield self._update(uuid, pending=None)
        record["pending"] = None
        if runs:
            self._startReprobe(record, domid)

    @inlineCallbacks
    def _reprobe(self, record: dict, domid: int):
        """Make a domain that ran before its devices were written find them.

        A Linux guest resumed by plain `xl restore` looks for the devices it had at
        once; their areas are not written yet, so their resume fails and the kernel
        keeps those devices as they are: it does not probe them again when the areas
        appear, and their frontends stay Initialising.  It drops such a device when
        told that its area was removed and finds the area missing: so remove the
        frontend areas, give the guest time to see them gone, and write the devices
        afresh (a new probe), waiting longer between the two each time it does not
        take."""
        domain = yield self.daemon.domain(domid)
        fronts = [domain.controller(row["class"]).frontendPath(row["devid"])
                  for row in record["devices"]]
        if not fronts:
            return
        gap, attempt = REPROBE_GAP, 0
        while attempt < REPROBE_ATTEMPTS:
            if (yield self._frontendsMoved(fronts, REPROBE_WAIT)):
                if attempt:
                    log.info("guest {name}: domain {domid} found its devices again",
                             name=record["name"], domid=domid)
                return
            if domid != (yield self._currentDomid(record["uuid"])):
                return  # gone, or re-made since
            info = (yield self.daemon.host.domains()).get(domid)
            if info is None or info.shutdown is not None:
                return
            if info.paused:
                continue  # nothing probes its devices until it runs
            attempt += 1
            log.info("guest {name}: domain {domid} ran before its devices were written "
                     "and does not see them: removing them for {gap:g} s, then writing "
                     "them again", name=record["name"], domid=domid, gap=gap)
            # The backend keeps the displays (and their viewers) meanwhile; the record
            # says what a daemon killed before the devices are back must write.
            held = yield self.daemon.backends.hold(domid)
            yield self._update(record["uuid"], pending={"op": "reprobe", "domid": domid})
            for path in fronts:
                yield self.xs.rm(path)
            crashPoint("reprobe:removed")
            yield deferLater(self.daemon.reactor, gap, lambda: None)
            yield self.lock.acquire()
            try:
                if domid != (yield self._currentDomid(record["uuid"])):
                    return
                yield domain.restoreDevices(record["devices"])
                yield self.daemon.backends.ensure(domain)
                yield self._update(record["uuid"], pending=None)
            finally:
                self.lock.release()
                if held:
                    yield self.daemon.backends.hold(domid, 0)
            gap *= 2
        log.error("guest {name}: domain {domid} does not find its devices: its kernel did "
                  "not probe them again", name=record["name"], domid=domid)

    @inlineCallbacks
    def _currentDomid(self, uuid: str):
        """The domain guest `uuid` runs in now (None if it has no record)."""
        record = yield self._read(uuid)
        return None if record is None else record["domid"]

    @inlineCallbacks
    def _frontendsMoved(self, paths: list[str], timeout: float):
        """Whether every frontend in `paths` leaves Initialising (the state the
        toolstack writes) within `timeout` seconds."""
        moved: Deferred[bool] = Deferred()
        initialising = str(int(XenbusState.Initialising))

        def judge(states: list[str | None]) -> None:
            if not moved.called and all(s not in (None, initialising) for s in states):
                moved.callback(True)

        def failed(failure: Failure) -> None:
            if not moved.called:
                moved.errback(failure)

        def check(_: str = "") -> None:
            d = defer.gatherResults([self.xs.readOrNone(f"{p}/state") for p in paths])
            d.addCallback(judge)
            d.addErrback(failed)

        def expired() -> None:
            if not moved.called:
                moved.callback(False)

        watches = []
        for path in paths:
            watches.append((yield self.xs.watch(path, check)))
        timer = self.daemon.reactor.callLater(timeout, expired)
        check()
        try:
            return (yield moved)
        finally:
            if timer.active():
                timer.cancel()
            for watch in watches:
                yield watch.cancel()

    # -- operations an admin asks for ------------------------------------------------

    @inlineCallbacks
    def requestShutdown(self, domid: int, reason: ShutdownReason, wait: float | None):
        """Ask the guest to power off or reboot; with `wait`, fire once the daemon has
        acted on it (domain re-made, kept or destroyed)."""
        record = yield self.recordOf(domid)
        changed = self.whenChanged(record["uuid"]) if record and wait else None
        yield self.daemon.host.requestShutdown(domid, reason)
        if changed is not None:
            changed.addTimeout(wait, self.daemon.reactor)
            try:
                yield changed
            except defer.TimeoutError:
                raise DaemonError(f"domain {domid} did not {reason.name} within "
                                  f"{wait:g} s (it was asked to)") from None
        return None if record is None else (yield self._read(record["uuid"]))

    def reset(self, domid: int) -> Deferred[None]:
        """Destroy the guest's domain and re-make it at once, whatever the guest does
        (a viewer's reset button): what a crash with ``on_crash=restart`` leads to."""
        return self.lock.run(self._reset, domid)

    @inlineCallbacks
    def _reset(self, domid: int):
        record = yield self.recordOf(domid)
        if record is None:
            raise DaemonError(f"domain {domid} was not created by xend-vfb: it cannot be "
                              "re-made, so it is not reset")
        yield self._remake(record)

    def save(self, domid: int, path: str) -> Deferred[None]:
        """Save the guest to `path`; its record stays, waiting for the restore."""
        return self.lock.run(self._leave, domid, self.daemon.host.save, path)

    def migrate(self, domid: int, host: str) -> Deferred[int | None]:
        """Move the guest to `host`; fires with its new domid when that is this host
        (it arrives paused and runs once its devices are written), None otherwise."""
        if isLocalHost(host):
            return self.lock.run(self._migrate, domid, host)
        return self.lock.run(self._migrateAway, domid, host)

    @inlineCallbacks
    def _migrate(self, domid: int, host: str):
        record = yield self.recordOf(domid)
        uuid = record["uuid"] if record is not None else None
        record, new = yield self._arrivingDuring(
            uuid, self._leave, domid, self.daemon.host.migrate, host, None)
        yield self._arrived(record, new)
        return new

    @inlineCallbacks
    def _arrivingDuring(self, uuid: str | None, bringIn: Any, *arguments: Any):
        """Run `bringIn(*arguments)` (a restore, a local migration) while the record of
        guest `uuid` says it is arriving: its domain comes in paused, and the daemon
        must not let it run before `_arrived` has given it its devices."""
        if uuid is not None:
            yield self._update(uuid, pending=ARRIVING)
        try:
            return (yield bringIn(*arguments))
        except BaseException:
            if uuid is not None:
                yield self._update(uuid, pending=None)
            raise

    @inlineCallbacks
    def _migrateAway(self, domid: int, host: str):
        """Move the guest to another host: its record first, to the daemon there (which
        keeps it until the domain arrives); then the domain (arriving paused); then the
        daemon there gives it its devices and lets it run.  Its viewers here are
        dropped, as xm and xl drop them."""
        remote = RemoteHost(host, sshCommand(), self.daemon.reactor)
        info = (yield self.daemon.host.domains()).get(domid)
        if info is None:
            raise DaemonError(f"cannot migrate domain {domid}: it does not exist")
        record = yield self.recordOf(domid)
        if record is not None:
            devices = yield (yield self.daemon.domain(domid)).snapshot()
            sent = {"uuid": record["uuid"], "name": record["name"], "devices": devices,
                    "config": sxp.show(record["config"].toSXP())}
            try:
                yield remote.call("migrate-receive", "record",
                                  stdin=json.dumps(sent).encode())
            except DaemonError as e:
                raise DaemonError(f"cannot migrate domain {domid} to {host}: {e}") from None
        if record is not None:
            yield self._update(record["uuid"], pending={"op": "migrate", "host": host})
        try:
            yield self._leave(domid, self.daemon.host.migrate, host, remote, hold=False)
        except DaemonError as e:
            if record is not None:
                # Still here (xl resumed it), or, in emulated mode, built here again,
                # paused, from what was sent: the daemon lets that domain run.
                stayed = domid in (yield self.daemon.host.domains())
                yield self._update(record["uuid"], pending=None if stayed else ARRIVING)
                cancelled = remote.call("migrate-receive", "cancel", info.uuid)
                yield cancelled.addErrback(lambda f: log.warn(
                    "{host} keeps the record of guest {name} that did not arrive: {e}",
                    host=host, name=record["name"], e=f.value))
            raise DaemonError(f"cannot migrate domain {domid} to {host}: {e}") from None
        if record is not None:
            yield self._forget(record["uuid"])
        try:
            yield remote.call("migrate-receive", "arrived", info.uuid)
        except DaemonError as e:
            raise DaemonError(f"domain {domid} moved to {host}, where it waits paused: "
                              f"{e}") from None

    @inlineCallbacks
    def _finishMigration(self, record: dict, domains: dict):
        """A daemon was killed while the guest migrated to another host: if its domain
        is still here the migration did not happen; if it is gone, the guest is at
        the destination, paused, waiting for what `_migrateAway` did not finish."""
        uuid, host = record["uuid"], record["pending"]["host"]
        info = domains.get(record["domid"])
        if info is not None and info.uuid == uuid:
            if info.shutdown is None:
                yield self._update(uuid, pending=None, state=RUNNING)
            return  # suspended: the move may still be under way; looked at again later
        log.info("guest {name}: finishing its migration to {host}", name=record["name"],
                 host=host)
        yield self.daemon.teardown(record["domid"], graceful=False)
        yield self._forget(uuid)
        remote = RemoteHost(host, sshCommand(), self.daemon.reactor)
        try:
            yield remote.call("migrate-receive", "arrived", uuid)
        except DaemonError as e:
            log.error("guest {name} moved to {host}, where it waits paused: {e}",
                      name=record["name"], host=host, e=e)

    @inlineCallbacks
    def _leave(self, domid: int, move: Any, *arguments: Any, hold: bool = True):
        """Move the guest out of domain `domid` with `move(domid, *arguments)` (a save,
        a migration).  Its record says it is away first, so that a daemon killed
        meanwhile keeps it; on failure the guest keeps running here.  With `hold`, the
        backend keeps the displays (and their viewers) for the guest's next domain.
        Fires with the record (None for a domain without one) and what `move` fired
        with."""
        record = yield self.recordOf(domid)
        if record is not None:
            snapshot = yield (yield self.daemon.domain(domid)).snapshot()
            yield self._update(record["uuid"], devices=snapshot, state=AWAY)
            record["devices"] = snapshot
        # Before the move: once the domain is gone its devices go, and with them their
        # displays unless the backend holds them.
        held = hold and record is not None and (yield self.daemon.backends.hold(domid))
        crashPoint("leave:held")
        self.daemon.busy.add(domid)
        try:
            result = yield move(domid, *arguments)
        except BaseException:
            if record is not None:
                yield self._update(record["uuid"], state=RUNNING)
            if held:
                yield self.daemon.backends.hold(domid, 0)
            raise
        finally:
            self.daemon.busy.discard(domid)
        crashPoint("leave:moved")
        yield self.daemon.teardown(domid, graceful=False, keepBackend=held)
        return record, result

    def restore(self, path: str) -> Deferred[int]:
        """Restore a saved guest; fires with its new domid.  A guest we know gets its
        devices back before it runs again."""
        return self.lock.run(self._restore, path)

    @inlineCallbacks
    def _restore(self, path: str):
        _, uuid = yield self.daemon.host.savedGuest(path)
        known = (yield self._read(uuid)) if uuid else None
        domid = yield self._arrivingDuring(
            uuid if known is not None else None, self.daemon.host.restore, path)
        info = (yield self.daemon.host.domains()).get(domid)
        record = (yield self._read(info.uuid)) if info is not None else None
        if record is None:
            log.warn("domain {domid} restored from {path}: not a guest of ours, so no "
                     "display", domid=domid, path=path)
        elif record["domid"] is not None and (
                yield self.xs.exists(f"{PRIVATE_ROOT}/{record['domid']}")):
            yield self.daemon.teardown(record["domid"], graceful=False)
        yield self._arrived(record, domid)
        return domid

    @inlineCallbacks
    def _arrived(self, record: dict | None, domid: int):
        """A paused domain of the guest arrived (restored, migrated): give it the
        guest's devices and let it run; on failure, destroy it."""
        self.daemon.busy.add(domid)
        try:
            if record is not None:
                yield self._adopt(record, domid, start=True)
                if _arriving(record):
                    yield self._update(record["uuid"], pending=None)
            else:
                yield self.daemon.host.startDomain(domid)
        except BaseException:
            yield self.daemon.teardown(domid, graceful=False)
            raise
        finally:
            self.daemon.busy.discard(domid)

    # -- a guest migrating here from another host ------------------------------------

    @inlineCallbacks
    def receive(self, sent: dict):
        """Keep the record of a guest about to migrate here (`migrate-receive
        record`) until its domain arrives; fires with its name.  One transaction, not
        the lock: a migration to this very host under another name holds the lock
        while it waits for this answer."""
        config, devices = _checkSent(sent)
        uuid, name = config.uuid, config.name

        @inlineCallbacks
        def write(tx):
            domid = yield tx.readOrNone(self._path(uuid, "domid"))
            if domid is not None:
                raise DaemonError(f"guest {name} ({uuid}) already has a domain here "
                                  f"(domain {domid})")
            values = {"name": name, "config": sxp.show(config.toSXP()), "state": INCOMING,
                      "devices": json.dumps(devices, separators=(",", ":"))}
            for key, value in values.items():
                yield tx.write(self._path(uuid, key), value)

        yield self.xs.transaction(write)
        yield self.xs.setPerms(GUEST_ROOT, ["n0"])
        log.info("guest {name} is migrating here", name=name)
        return name

    def arrived(self, uuid: str) -> Deferred[int]:
        """The domain of guest `uuid` arrived paused (`migrate-receive arrived`): give
        it its devices, if the guest is ours, and let it run; fires with its domid."""
        return self.lock.run(self._arrivedHere, uuid)

    @inlineCallbacks
    def _arrivedHere(self, uuid: str):
        record = yield self._read(uuid)
        if record is not None and record["state"] != INCOMING:
            return record["domid"]  # given its devices as soon as it was seen
        domid = _arrival(uuid, (yield self.daemon.host.domains()))
        if domid is None:
            raise DaemonError(f"no domain of guest {uuid} has arrived")
        yield self._arrived(record, domid)
        return domid

    def cancel(self, uuid: str) -> Deferred[None]:
        """The migration of guest `uuid` failed: forget its record if it is still
        waiting for its domain."""
        return self.lock.run(self._cancel, uuid)

    @inlineCallbacks
    def _cancel(self, uuid: str):
        record = yield self._read(uuid)
        if record is not None and record["state"] == INCOMING:
            yield self._forget(uuid)


def _checkSent(sent: Any) -> tuple[DomainConfig, list[dict]]:
    """The configuration and devices of a record another host sent (`receive`);
    `DaemonError` naming what is wrong with it."""
    def wrong(why: str) -> DaemonError:
        return DaemonError(f"not the record of a migrating guest: {why}")

    if not isinstance(sent, dict):
        raise wrong("not a JSON object")
    missing = [key for key in ("uuid", "name", "config", "devices") if key not in sent]
    if missing:
        raise wrong(f"no {', '.join(missing)}")
    try:
        config = DomainConfig.fromSXP(sxp.parse(str(sent["config"]), "<migrating>"),
                                      "<migrating>")
    except (ValueError, XendVfbError) as e:
        raise wrong(str(e)) from None
    if (sent["uuid"], sent["name"]) != (config.uuid, config.name):
        raise wrong(f"uuid {sent['uuid']!r} and name {sent['name']!r} are not its config's "
                    f"({config.uuid!r}, {config.name!r})")
    devices = sent["devices"]
    if not (isinstance(devices, list) and all(isinstance(row, dict) for row in devices)):
        raise wrong("devices is not a list of objects")
    return config, devices


def _arriving(record: dict) -> bool:
    """Whether the daemon itself was bringing in the guest's next domain."""
    return record["pending"] == ARRIVING


def _arrival(uuid: str, domains: dict) -> int | None:
    """The domain of guest `uuid` that arrived and waits, paused, to be let run (xl
    names it NAME--incoming until the whole stream is in)."""
    for info in domains.values():
        if (info.uuid == uuid and info.paused and info.shutdown is None
                and not info.name.endswith("--incoming")):
            return info.domid
    return None
