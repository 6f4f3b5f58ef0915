"""The daemon's control socket: one `op_*` method per request the CLI sends.

Requests arrive as JSON lines on `<runDir>/xend-vfb.sock` (root only); see
`xend_vfb.jsonline`.  Each method checks the request, hands it to the
daemon or its guests, and returns what the CLI prints.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from twisted.internet.defer import inlineCallbacks

from xend_vfb import jsonline, sxp
from xend_vfb.backend.control import controlSocketPath
from xend_vfb.devices import VFB, classNamed
from xend_vfb.errors import DeviceError
from xend_vfb.host import ShutdownReason
from xend_vfb.model import DomainConfig
from xend_vfb.rfb.vncauth import obfuscatedPassword
from xend_vfb.tls import CA_CERT

if TYPE_CHECKING:
    from xend_vfb.daemon.service import XendVfbDaemon

__all__ = ["ControlRequests", "SCREENSHOT_TIMEOUT"]

#: Seconds a backend may take to answer a screenshot: a full copy out of the guest's
#: framebuffer plus PNG encoding, 12-15 s on real Xen under QEMU TCG (docs/xen-harness.md).
SCREENSHOT_TIMEOUT = 120.0

class ControlRequests:
    """The requests of the control socket, served for `daemon`."""

    def __init__(self, daemon: XendVfbDaemon) -> None:
        self.daemon = daemon

    def op_ping(self, request: dict) -> dict:
        return {"pid": os.getpid(), "emulated": self.daemon.emulated}

    @inlineCallbacks
    def op_create(self, request: dict):
        config = DomainConfig.fromSXP(sxp.parse(request["sxp"], "<create>"))
        domid = yield self.daemon.create(config)
        return {"domid": domid, "name": config.name,
                "devices": (yield self.daemon.describe(domid))}

    @inlineCallbacks
    def op_destroy(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        yield self.daemon.teardown(domid, graceful=True)
        yield self.daemon.guests.forget(domid)
        return {"domid": domid}

    @inlineCallbacks
    def op_list(self, request: dict):
        states = yield self.daemon.guests.states()
        domains = []
        for domid in (yield self.daemon.domids()):
            domain = yield self.daemon.domain(domid)
            domains.append({"domid": domid, "name": domain.name,
                            "state": states.get(domid, "running"),
                            "devices": (yield self.daemon.describe(domid))})
        return {"domains": domains}

    @inlineCallbacks
    def op_attach(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        name = classNamed(request["class"]).name
        config = classNamed(name).config.parse(request["spec"], name,
                                               environ=request.get("environ"))
        devid = yield self.daemon.attach(domid, name, config)
        rows = yield self.daemon.deviceList(domid, name)
        return {"domid": domid, "device": next(r for r in rows if r["devid"] == devid)}

    @inlineCallbacks
    def op_detach(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        yield self.daemon.detach(domid, classNamed(request["class"]).name, int(request["devid"]),
                                 bool(request.get("force")))
        return {"domid": domid}

    @inlineCallbacks
    def op_devices(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        name = classNamed(request["class"]).name
        return {"devices": (yield self.daemon.deviceList(domid, name))}

    @inlineCallbacks
    def op_screenshot(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        reply = yield jsonline.request(
            self.daemon.reactor, controlSocketPath(self.daemon.runDir, domid),
            {"op": "screenshot", "devid": request.get("devid", 0)},
            timeout=SCREENSHOT_TIMEOUT)
        base64.b64decode(reply["png"], validate=True)
        return {"png": reply["png"]}

    # -- the console ----------------------------------------------------------------------

    @inlineCallbacks
    def op_vnc_passwd(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        expire = request.get("expire")
        yield self.daemon.setVncPassword(domid, int(request.get("devid", 0)),
                                         str(request["password"]),
                                         None if expire is None else float(expire))
        return {"domid": domid}

    @inlineCallbacks
    def op_vnc_viewer(self, request: dict):
        """Where display `devid` listens, the CA file a viewer checks it with (TLS on),
        and with `autopass` its password as a VNC password file holds it."""
        domid = yield self.daemon.resolve(request["domain"])
        devid = int(request.get("devid", 0))
        rows = {row["devid"]: row for row in (yield self.daemon.deviceList(domid, VFB.name))}
        row = rows.get(devid)
        if row is None or row["vnc_port"] is None:
            raise DeviceError(f"domain {domid} has no VNC display vfb {devid}")
        reply = {"domid": domid, "listen": row["vnc_listen"], "port": row["vnc_port"],
                 "ca": self.daemon.tls.path(CA_CERT) if self.daemon.tls else None}
        if request.get("autopass"):
            config = yield (yield self.daemon.domain(domid)).controller(
                VFB.name).getDeviceConfiguration(devid)
            if config.vncpasswd:
                reply["passwd_file"] = base64.b64encode(
                    obfuscatedPassword(config.vncpasswd)).decode("ascii")
        return reply

    @inlineCallbacks
    def op_console_url(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        return {"url": (yield self.daemon.web.consoleURL(domid, int(request.get("devid", 0))))}

    # -- a guest's life ----------------------------------------------------------------

    @inlineCallbacks
    def op_reboot(self, request: dict):
        return (yield self._shutdown(request, ShutdownReason.reboot))

    @inlineCallbacks
    def op_shutdown(self, request: dict):
        return (yield self._shutdown(request, ShutdownReason.poweroff))

    @inlineCallbacks
    def _shutdown(self, request: dict, reason: ShutdownReason):
        domid = yield self.daemon.resolve(request["domain"])
        record = yield self.daemon.guests.requestShutdown(domid, reason, request.get("wait"))
        now = record["domid"] if record is not None and record["domid"] != domid else None
        return {"domid": domid, "now": now}

    @inlineCallbacks
    def op_save(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        yield self.daemon.guests.save(domid, request["file"])
        return {"domid": domid}

    @inlineCallbacks
    def op_restore(self, request: dict):
        domid = yield self.daemon.guests.restore(request["file"])
        domain = yield self.daemon.domain(domid)
        return {"domid": domid, "name": domain.name,
                "devices": (yield self.daemon.describe(domid))}

    @inlineCallbacks
    def op_migrate(self, request: dict):
        domid = yield self.daemon.resolve(request["domain"])
        new = yield self.daemon.guests.migrate(domid, request["host"])
        return {"domid": domid, "now": new}

    # -- a guest migrating here (`migrate-receive`, run by the source over ssh) -----------

    @inlineCallbacks
    def op_receive_guest(self, request: dict):
        return {"name": (yield self.daemon.guests.receive(request["record"]))}

    @inlineCallbacks
    def op_receive_image(self, request: dict):
        # Emulated mode: the saved guest the source sent, restored here.
        return {"domid": (yield self.daemon.guests.restore(request["file"]))}

    @inlineCallbacks
    def op_guest_arrived(self, request: dict):
        return {"domid": (yield self.daemon.guests.arrived(request["uuid"]))}

    @inlineCallbacks
    def op_cancel_guest(self, request: dict):
        yield self.daemon.guests.cancel(request["uuid"])
        return {}

    # -- the daemon itself ---------------------------------------------------------------

    @inlineCallbacks
    def op_stop(self, request: dict):
        if request.get("all"):
            yield self.daemon.stopEverything()
        self.daemon.stop(bool(request.get("all")))
        return {}
