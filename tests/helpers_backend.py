"""What the backend's tests share: a toolstack, a backend process, in-process guests.

The toolstack part is the project's own (`Domain` writes the areas), the
backend is the real ``xend-vfb-backend`` program, and guests are the
simulator's `GuestDomain` in the test's reactor, so a test can draw on a
guest's screen, or swap in a frontend that misbehaves (`HostileDomain`).
The fixtures that start them (`runDir`, `backendProcess`, `guestFactory`,
`xenstoreProxy`) are in conftest.py.
"""

import base64
import io
import os
import signal
import subprocess
import sys
import tempfile

from PIL import Image
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from tests.helpers_wait import waitFor
from xend_vfb import jsonline
from xend_vfb.backend.control import controlSocketPath
from xend_vfb.domain import Domain
from xend_vfb.guest.domain import GuestDomain
from xend_vfb.model import VfbConfig, VkbdConfig
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import backendPath, domainPath, frontendPath

__all__ = [
    "BACKEND_PROGRAM",
    "GUEST_PROGRAM",
    "MEMORY_SIZE",
    "BackendControl",
    "BackendProcess",
    "HostileDomain",
    "createDomain",
    "imageBytes",
    "makeRunDir",
    "readState",
    "screenshot",
    "status",
    "waitKey",
    "waitStates",
]

BACKEND_PROGRAM = os.path.join(os.path.dirname(sys.executable), "xend-vfb-backend")
GUEST_PROGRAM = os.path.join(os.path.dirname(sys.executable), "xend-vfb-guest")
MEMORY_SIZE = 64 * 1024 * 1024  # sparse: pages cost nothing until written


def makeRunDir() -> str:
    # Short: the control socket's path must fit a sockaddr_un (108 bytes).
    return tempfile.mkdtemp(prefix="xvb-", dir="/tmp")


class BackendControl:
    """The control socket of domain `domid`'s backend in `runDir`, whoever started the
    backend (a test's `BackendProcess`, or a supervisor)."""

    def __init__(self, runDir: str, domid: int) -> None:
        self.controlPath = controlSocketPath(runDir, domid)


class BackendProcess:
    """One real ``xend-vfb-backend --domid D`` with its log in the run dir."""

    def __init__(self, xenstored, runDir: str, domid: int) -> None:
        self.runDir = runDir
        self.domid = domid
        self.logPath = os.path.join(runDir, f"backend-{domid}.log")
        env = dict(os.environ, XENSTORED_PATH=xenstored.socketPath)
        self.process = subprocess.Popen(
            [BACKEND_PROGRAM, "--domid", str(domid), "--run-dir", runDir, "--mode", "emulated",
             "--log-file", self.logPath],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def controlPath(self) -> str:
        return controlSocketPath(self.runDir, self.domid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            with open(self.logPath) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def waitExit(self, timeout: float = 15.0):
        return waitFor(lambda: self.process.poll() is not None, "the backend to exit", timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def reap(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def assertHealthy(self) -> None:
        """Alive, and nothing in its log that says a handler crashed."""
        assert self.alive(), f"backend exited ({self.process.returncode}):\n{self.log()}"
        text = self.log()
        for bad in ("Traceback", "Unhandled", "step failed", "scan failed"):
            assert bad not in text, f"{bad!r} in the backend's log:\n{text}"


class HostileDomain(GuestDomain):
    """A simulated guest whose listed devices use other frontend classes."""

    def __init__(self, *args, frontends=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frontends = dict(frontends or {})

    def _kick(self, devClass: str, devid: int) -> None:
        key = (devClass, devid)
        if not self._stopping and key not in self.devices and key in self.frontends:
            self.devices[key] = self.frontends[key](self, devid, self._forget)
        super()._kick(devClass, devid)


@inlineCallbacks
def createDomain(xs, domid: int, name: str = "guest", vfbs=None, vkbds=(), keyboard=None):
    """Write the domain's name and its devices as the daemon does; returns the `Domain`
    and the [(class, devid)] it created.  `vfbs` are VfbConfig keyword dicts; `keyboard`
    the VkbdConfig keywords of each display's own keyboard; `vkbds` extra keyboards'."""
    yield xs.write(f"{domainPath(domid)}/name", name)
    yield xs.write(f"{domainPath(domid)}/domid", str(domid))
    domain = Domain(xs, domid, name, reactor)
    created = []
    for keys in (vfbs if vfbs is not None else [{}]):
        created += yield domain.attach(
            "vfb", VfbConfig(**dict({"vnc": True, "vncunused": True}, **keys)),
            VkbdConfig(**(keyboard or {})))
    for keys in vkbds:
        created.append(("vkbd", (yield domain.controller("vkbd").createDevice(
            VkbdConfig(**keys)))))
    return domain, created


def readState(xs, path: str):
    return xs.readOrNone(path + "/state")


def waitStates(xs, domid: int, devices, backend=XenbusState.Connected,
               frontend=XenbusState.Connected, timeout: float = 15.0):
    """Wait until every (class, devid) shows `backend`/`frontend` states (None: any)."""

    @inlineCallbacks
    def check():
        for devClass, devid in devices:
            for path, want in ((backendPath(domid, devClass, devid), backend),
                               (frontendPath(domid, devClass, devid), frontend)):
                if want is not None and (yield readState(xs, path)) != str(int(want)):
                    return False
        return True

    return waitFor(check, f"states {backend}/{frontend} of {list(devices)}", timeout)


def waitKey(xs, path: str, timeout: float = 15.0, predicate=lambda value: value is not None):
    """Wait until the node at `path` satisfies `predicate`; returns its value."""

    @inlineCallbacks
    def check():
        value = yield xs.readOrNone(path)
        return (value,) if predicate(value) else None

    return waitFor(check, f"{path}", timeout).addCallback(lambda box: box[0])


def status(backend: BackendProcess | BackendControl):
    return jsonline.request(reactor, backend.controlPath, {"op": "status"})


@inlineCallbacks
def screenshot(backend: BackendProcess | BackendControl, devid: int = 0):
    """The backend's screen copy of vfb `devid`, through its control socket, as an image."""
    reply = yield jsonline.request(reactor, backend.controlPath,
                                   {"op": "screenshot", "devid": devid})
    image = Image.open(io.BytesIO(base64.b64decode(reply["png"])))
    image.load()
    return image


def imageBytes(pixels: bytes, width: int, height: int) -> bytes:
    """XRGB guest pixels (bytes B, G, R, 0) as the RGB bytes of a screenshot."""
    return Image.frombytes("RGB", (width, height), pixels, "raw", "BGRX").tobytes()
