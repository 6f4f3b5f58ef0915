"""A real Xen host: `xl` builds, saves, restores and migrates domains.

xend-vfb hands `xl` everything of a domain but its displays and keyboards
(`xlConfig`), always with `on_poweroff`, `on_reboot` and `on_crash` set to
`preserve` (decided for issue 12): a domain that stops is left by xl as it
is, shut down with its reason, and the daemon follows the guest's own
`on_*` policy itself: it destroys the domain, or re-makes it and writes its
display devices before the new domain runs.  Left to xl, a reboot would be
a new domain built from xl's stored configuration, without the display.

What the host knows of a domain comes from xenstore (`/local/domain/D/name`
and `vm` = `/vm/<uuid>`) and, for whether and why it stopped, from
`xl list -v` (its Reason-Code column): xenstore does not hold the reason.
xenstored fires `@releaseDomain` when a domain shuts down as well as when it
goes, and `@introduceDomain` when one is made.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.errors import DaemonError
from xend_vfb.host import DomainInfo, IHost, IRemoteHost, ShutdownReason
from xend_vfb.model import DomainConfig
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import domainPath

__all__ = ["XenHost", "xlConfig", "parseXlList", "readXlSaveHeader"]

log = Logger()


#: What every domain xend-vfb builds does when it stops: stay, for the daemon to act on.
XL_ACTIONS = ("on_poweroff", "on_reboot", "on_crash")


def xlConfig(config: DomainConfig) -> str:
    """The part of `config` that `xl create` builds: everything but the displays and
    keyboards, which xend-vfb adds itself once the domain exists (paused).

    The guest's own `on_poweroff`/`on_reboot`/`on_crash` are not handed on: xl gets
    `preserve` for all three, and the daemon applies the guest's policy (see the module
    docstring)."""
    lines = [f"name = {_xlValue(config.name)}", f"memory = {config.memory}",
             f"vcpus = {config.vcpus}"]
    for key in ("uuid", "kernel", "ramdisk", "extra"):
        value = getattr(config, key)
        if value is not None:
            lines.append(f"{key} = {_xlValue(value)}")
    lines.extend(f"{key} = {_xlValue(value)}" for key, value in config.other
                 if key not in XL_ACTIONS)
    lines.extend(f'{key} = "preserve"' for key in XL_ACTIONS)
    return "\n".join(lines) + "\n"


def _xlValue(value: Any) -> str:
    if isinstance(value, tuple):
        return "[ " + ", ".join(_xlValue(v) for v in value) + " ]"
    if value.isdigit():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class XlDomain:
    """One row of `xl list -v`."""

    domid: int
    name: str
    uuid: str
    #: The State column: six positional letters, `r` running, `b` blocked, `p` paused,
    #: `s` shut down, the reason's letter (`-rscw`: poweroff, reboot, suspend, crash,
    #: watchdog), `d` dying; e.g. `--p---` (built paused), `---sr-` (rebooted, preserved).
    state: str
    shutdown: ShutdownReason | None

    @property
    def dying(self) -> bool:
        return self.state[5:6] == "d"


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parseXlList(text: str) -> dict[int, XlDomain]:
    """{domid: XlDomain} from `xl list -v`.

    A row is `Name ID Mem VCPUs State Time(s) UUID Reason-Code Security-Label` (seen on
    4.17: `xvfbx  1  128  1  ---sr-  78.3  0bb28071-...  1  -` after a reboot with
    on_reboot=preserve); Reason-Code is `-` until the domain shuts down, then Xen's
    SHUTDOWN_* code in hex.  A shut-down domain whose code is unknown counts as crashed."""
    found = {}
    for line in text.splitlines():
        words = line.split()
        uuids = [i for i, word in enumerate(words) if _UUID.match(word)]
        if len(words) < 6 or not words[1].isdigit() or not uuids or len(words[4]) != 6:
            continue  # the heading, or something that is not a row
        at = uuids[0]
        state = words[4]
        reason: ShutdownReason | None = None
        if state[3] == "s":
            code = words[at + 1] if at + 1 < len(words) else "-"
            try:
                reason = ShutdownReason(int(code, 16))
            except ValueError:
                reason = ShutdownReason.crash
        found[int(words[1])] = XlDomain(int(words[1]), words[0], words[at], state, reason)
    return found


#: The start of a file `xl save` writes (xl_saverestore.c: savefileheader_magic).
XL_SAVE_MAGIC = b"Xen saved domain, xl format\n \0 \r"
#: Then four u32s in the saving host's byte order: byteorder, mandatory_flags,
#: optional_flags, optional_data_len; the optional data is a u32 length and the
#: domain's libxl configuration in JSON (mandatory flag 1).
_XL_BYTEORDER = 0x01020304
_XL_FLAG_JSON = 1


def readXlSaveHeader(path: str) -> tuple[str, str | None]:
    """(name, uuid) of the domain in a file `xl save` wrote; `DaemonError` if it is not
    one.  `xl restore` does not print the new domain's id: this name finds it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(XL_SAVE_MAGIC) + 16)
            if head[:len(XL_SAVE_MAGIC)] != XL_SAVE_MAGIC or len(head) < len(XL_SAVE_MAGIC) + 16:
                raise ValueError("no xl save header")
            for order in "<>":
                byteorder, mandatory, _, optionalLength = struct.unpack(
                    order + "4I", head[len(XL_SAVE_MAGIC):])
                if byteorder == _XL_BYTEORDER:
                    break
            else:
                raise ValueError("unknown byte order")
            if not mandatory & _XL_FLAG_JSON or not 4 <= optionalLength <= 1 << 24:
                raise ValueError("no configuration in the file")
            optional = f.read(optionalLength)
    except OSError as e:
        raise DaemonError(f"cannot restore from {path}: {e.strerror}") from None
    except ValueError:
        raise DaemonError(f"cannot restore from {path}: not a guest saved by xl save "
                          "or xend-vfb save") from None
    try:
        length = struct.unpack(order + "I", optional[:4])[0]
        config = json.loads(optional[4:4 + length].rstrip(b"\0"))
        info = config["c_info"]
        return str(info["name"]), info.get("uuid")
    except (ValueError, KeyError, TypeError, struct.error):
        raise DaemonError(f"cannot restore from {path}: its domain configuration "
                          "is damaged") from None


@implementer(IHost)
class XenHost:
    """A real Xen host: `xl` builds and tears down domains, the hypervisor runs them.

    Every `xl` failure becomes one `DaemonError` line: `xl <command> failed: <xl's
    last line on stderr>`."""

    def __init__(self, xs: IXenstore, runDir: str) -> None:
        self.xs = xs
        self.runDir = runDir
        self._watches: list[Any] = []

    @inlineCallbacks
    def _xl(self, *arguments: str):
        out, err, code = yield getProcessOutputAndValue("xl", arguments, env=os.environ)
        if code != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            raise DaemonError(f"xl {arguments[0]} failed: "
                              f"{lines[-1].strip() if lines else f'exit status {code}'}")
        return out.decode("utf-8", "replace")

    @inlineCallbacks
    def watchDomains(self, changed: Callable[[], None]):
        # xenstored fires @releaseDomain when a domain shuts down (any reason, suspend
        # for `xl save` included) and again when it is destroyed.
        for path in ("@introduceDomain", "@releaseDomain"):
            self._watches.append((yield self.xs.watch(path, lambda _path: changed())))

    @inlineCallbacks
    def domains(self):
        rows = parseXlList((yield self._xl("list", "-v")))
        found = {}
        for domid, row in rows.items():
            if domid == 0 or row.dying:
                continue
            name = yield self.xs.readOrNone(f"{domainPath(domid)}/name")
            vm = yield self.xs.readOrNone(f"{domainPath(domid)}/vm")
            if name is None or vm is None:
                continue  # being built by xl, or torn down
            found[domid] = DomainInfo(domid, name, vm.rsplit("/", 1)[-1] or row.uuid,
                                      row.shutdown, paused=row.state[2:3] == "p")
        return found

    @inlineCallbacks
    def createDomain(self, config: DomainConfig):
        path = os.path.join(self.runDir, f"{config.name}.xl.cfg")
        with open(path, "w") as f:
            f.write(xlConfig(config))
        yield self._xl("create", "-p", path)
        return (yield self._domid(config.name))

    @inlineCallbacks
    def _domid(self, name: str):
        return int((yield self._xl("domid", name)).strip())

    def startDomain(self, domid: int) -> Deferred[str]:
        return self._xl("unpause", str(domid))

    @inlineCallbacks
    def destroyDomain(self, domid: int):
        if not (yield self._exists(domid)):
            return
        try:
            yield self._xl("destroy", str(domid))
        except DaemonError:
            if (yield self._exists(domid)):
                raise

    @inlineCallbacks
    def _exists(self, domid: int):
        out, _, code = yield getProcessOutputAndValue("xl", ("list", str(domid)),
                                                      env=os.environ)
        return code == 0

    def requestShutdown(self, domid: int, reason: ShutdownReason) -> Deferred[str]:
        # Both only write control/shutdown for the guest's kernel and return.
        if reason == ShutdownReason.poweroff:
            return self._xl("shutdown", str(domid))
        if reason == ShutdownReason.reboot:
            return self._xl("reboot", str(domid))
        raise ValueError(f"cannot ask a guest for {reason.name}")

    @inlineCallbacks
    def save(self, domid: int, path: str):
        # Opened here first for a clear reason: xl's own message has no errno.
        try:
            open(path, "wb").close()
        except OSError as e:
            raise DaemonError(f"cannot save domain {domid} to {path}: {e.strerror}") from None
        try:
            # On failure xl resumes the guest ("Failed to save domain, resuming domain").
            yield self._xl("save", str(domid), path)
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise

    def savedGuest(self, path: str) -> Deferred[tuple[str, str | None]]:
        return succeed(readXlSaveHeader(path))

    @inlineCallbacks
    def restore(self, path: str):
        name, _ = readXlSaveHeader(path)
        yield self._xl("restore", "-p", path)
        return (yield self._domid(name))

    @inlineCallbacks
    def migrate(self, domid: int, host: str, remote: IRemoteHost | None):
        name = yield self.xs.readOrNone(f"{domainPath(domid)}/name")
        if name is None:
            raise DaemonError(f"cannot migrate domain {domid}: it does not exist")
        if remote is not None:
            # xl runs `SSH HOST xl migrate-receive -p` and streams the domain to it.
            yield self._xl("migrate", "-s", remote.sshCommand, "-p", str(domid), host)
            return None
        # An empty ssh command makes xl run the "host" as the receiving command itself:
        # no sshd needed.  The new domain is NAME--incoming while the stream arrives (the
        # old one NAME--migratedaway at the end), then NAME, left paused (-p).
        yield self._xl("migrate", "-s", "", "-p", str(domid), "xl migrate-receive -p")
        return (yield self._domid(name))

    def recover(self, domid: int) -> bool:
        # Nothing of ours to find on the host side: xl and the hypervisor keep the
        # domain; whether it is alive shows in xenstore (the daemon reads it).
        return True
