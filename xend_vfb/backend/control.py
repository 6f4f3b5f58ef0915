"""The control channel of a running backend: one socket per domain in the run dir.

The CLI and the daemon use it for status and screenshots (`xend_vfb.jsonline`
requests `status` and `screenshot`), and the daemon to have a display take a new
password (`vnc_password`: read from xenstore, it never travels here).  Screenshots
travel back as base64 PNG data, so no file is written with the backend's rights
where a caller asked.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

from twisted.internet.defer import Deferred

from xend_vfb import jsonline
from xend_vfb.display.screen import screenshot

__all__ = ["controlSocketPath", "displaySocketPath", "listenControl", "BackendControl"]


def controlSocketPath(runDir: str, domid: int) -> str:
    """Where the backend of domain `domid` listens."""
    return os.path.join(runDir, "backends", f"{domid}.sock")


def displaySocketPath(runDir: str, port: int) -> str:
    """Where the VNC display on `port` also listens, for the daemon's browser console
    (`xend_vfb.web`): named by its port, which stays when its backend follows the guest
    to another domain."""
    return os.path.join(runDir, "backends", f"vnc-{port}.sock")


class BackendControl:
    """The requests a backend answers, about its `DomainBackend`."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def op_status(self, request: dict) -> dict:
        return self.backend.status()

    def op_hold(self, request: dict) -> dict:
        self.backend.hold(float(request["seconds"]))
        return {}

    def op_follow(self, request: dict) -> Any:
        return self.backend.follow(int(request["domid"])).addCallback(lambda _: {})

    def op_vnc_password(self, request: dict) -> Any:
        return self.backend.reloadPassword(int(request.get("devid", 0))).addCallback(
            lambda _: {})

    def op_screenshot(self, request: dict) -> dict:
        png = io.BytesIO()
        screenshot(self.backend.screen(int(request.get("devid", 0))), png)
        return {"png": base64.b64encode(png.getvalue()).decode("ascii")}


def listenControl(reactor: Any, path: str, backend: Any) -> Deferred:
    """Serve `backend`'s control requests on `path`."""
    return jsonline.listen(reactor, path, BackendControl(backend))
