"""What the daemon tests share: one run of the real `xend-vfb` CLI and daemon per test.

`DaemonRun` drives `.venv/bin/xend-vfb` as subprocesses with its own
`XEND_VFB_RUN_DIR` under the test's tmp_path, reads xenstore with
`xenstore-ls`, and cleans up after the test whatever happened: `stop
--all` when a daemon answers, then SIGKILL for anything still recorded (daemon,
backends, guests, xenstored) or still running with this run dir.

The guest `life` (`guestConfig`, `createGuest`) is the lifecycle tests' guest; `connectedAs`
waits for it to come back as a new domain and `assertNothingLeftOf` checks that the old
domain left nothing behind.

`VncClient` is vncdotool in a child process (its API runs a reactor in a
thread, which must not meet pytest-twisted's), driven by lines on stdin.

Run as `python -m tests.helpers_daemon vnc PORT` it is that child.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from typing import Any

from tests.helpers_wait import WAIT, waitUntil
from xend_vfb import jsonline
from xend_vfb.procid import ProcessId

BIN = os.path.dirname(sys.executable)
XEND_VFB = os.path.join(BIN, "xend-vfb")
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(CHECKOUT, "examples")
FAKE_SSH = os.path.join(CHECKOUT, "tests", "fake_ssh.py")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


class DaemonRun:
    """One run directory with its daemon, guests, backends and xenstored."""

    def __init__(self, runDir: str) -> None:
        self.runDir = str(runDir)
        os.makedirs(self.runDir, mode=0o700, exist_ok=True)
        self.env = dict(os.environ, XEND_VFB_RUN_DIR=self.runDir)
        self.env.pop("XEND_VFB_CRASH_AT", None)
        self.env.pop("XENSTORED_PATH", None)
        # Daemons of parallel tests cannot all have the console's default port.
        self.env["XEND_VFB_WEB_LISTEN"] = "127.0.0.1:0"
        # `migrate` to another host goes through ssh's stand-in: no host answers
        # unless a test names it (`XEND_VFB_TEST_HOSTS`, tests/fake_ssh.py).
        self.env["XEND_VFB_SSH"] = f"{sys.executable} {FAKE_SSH}"
        self.daemonPids: set[int] = set()

    # -- the CLI ------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, env: dict | None = None,
            timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([XEND_VFB, *args], env=env or self.env, capture_output=True,
                                text=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"xend-vfb {' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stderr.strip()}")
        return result

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Run a command that must fail; its one `Error:` line."""
        result = self.cli(*args, check=False, stdin=stdin)
        assert result.returncode != 0, f"xend-vfb {' '.join(args)} succeeded: {result.stdout}"
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return lines[0]

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def start(self, crashAt: str | None = None) -> int:
        """Start the emulated daemon (dying at `crashAt`); its pid."""
        env = dict(self.env)
        if crashAt:
            env["XEND_VFB_CRASH_AT"] = crashAt
        self.cli("daemon", "--emulated", env=env)
        pid = self.ping()["pid"]
        self.daemonPids.add(pid)
        return pid

    def createConnected(self, config: str, name: str) -> None:
        """`xend-vfb create CONFIG`, then wait until every device of `name` is Connected."""
        self.cli("create", config)
        waitUntil(lambda: allConnected(self, name), f"{name}'s devices to connect")

    def ping(self) -> dict:
        return jsonline.requestBlocking(os.path.join(self.runDir, "xend-vfb.sock"),
                                        {"op": "ping"}, 10)

    def daemonPid(self) -> int | None:
        try:
            return self.ping()["pid"]
        except (OSError, jsonline.ChannelError):
            return None

    def kill9(self) -> None:
        """kill -9 the daemon and wait until it is gone."""
        pid = self.daemonPid()
        assert pid is not None, "no daemon to kill"
        self.waitDaemonGone(pid, kill=True)

    def waitDaemonGone(self, pid: int, kill: bool = False) -> None:
        process = ProcessId.of(pid)
        if process is None:
            return
        if kill:
            process.kill(signal.SIGKILL)
        waitUntil(lambda: not process.alive(), f"daemon {pid} to exit")

    def createCrashing(self, crashAt: str, *args: str) -> subprocess.CompletedProcess:
        """Start a daemon that dies at `crashAt`, run `args` against it; the CLI's result
        (it fails: the daemon died under it)."""
        pid = self.start(crashAt)
        result = self.cli(*args, check=False)
        assert result.returncode != 0, f"{args} survived the crash point {crashAt}"
        self.waitDaemonGone(pid)
        return result

    # -- what is there ----------------------------------------------------------

    def record(self, path: str) -> ProcessId | None:
        """The process in a record file, if it still runs."""
        process = ProcessId.parse(_read(path).decode(errors="replace"))
        return process if process is not None and process.alive() else None

    def backend(self, domid: int) -> ProcessId | None:
        return self.record(os.path.join(self.runDir, "backends", f"{domid}.pid"))

    def guest(self, domid: int) -> ProcessId | None:
        return self.record(os.path.join(self.runDir, "guests", str(domid), "guest.pid"))

    def recorded(self) -> list[ProcessId]:
        """Every live process this run's records name."""
        paths = [os.path.join(self.runDir, "xenstored", "pid"),
                 *glob.glob(os.path.join(self.runDir, "backends", "*.pid")),
                 *glob.glob(os.path.join(self.runDir, "guests", "*", "guest.pid"))]
        found = [self.record(path) for path in paths]
        return [p for p in found if p is not None]

    def processes(self) -> list[int]:
        """Pids of every process of this run: recorded ones, daemons we started, and
        anything whose command line or environment names this run dir."""
        pids = {p.pid for p in self.recorded()}
        pids.update(pid for pid in self.daemonPids if ProcessId.of(pid) is not None)
        marks = (self.runDir.encode(), f"XEND_VFB_RUN_DIR={self.runDir}\0".encode())
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            text = _read(f"/proc/{entry}/cmdline") + b"\0" + _read(f"/proc/{entry}/environ")
            if any(mark in text for mark in marks) and ProcessId.of(int(entry)) is not None:
                pids.add(int(entry))
        return sorted(pids)

    def xenstore(self) -> dict[str, str]:
        """The whole store as {path: value} (xenstore-ls -f), or {} if xenstored is down."""
        socketPath = os.path.join(self.runDir, "xenstored", "socket")
        if not os.path.exists(socketPath):
            return {}
        result = subprocess.run(["xenstore-ls", "-f"], capture_output=True, text=True,
                                env=dict(os.environ, XENSTORED_PATH=socketPath), timeout=30)
        assert result.returncode == 0, result.stderr
        tree = {}
        for line in result.stdout.splitlines():
            path, _, value = line.partition(" = ")
            tree[path] = value.strip('"')
        return tree

    def xsrm(self, *paths: str) -> None:
        socketPath = os.path.join(self.runDir, "xenstored", "socket")
        for path in paths:
            subprocess.run(["xenstore-rm", path], check=True, timeout=30,
                           env=dict(os.environ, XENSTORED_PATH=socketPath))

    def inputEvents(self, domid: int) -> list[dict]:
        text = _read(os.path.join(self.runDir, "guests", str(domid), "input.jsonl"))
        return [json.loads(line) for line in text.decode().splitlines() if line.strip()]

    def log(self) -> str:
        return _read(os.path.join(self.runDir, "xend-vfb.log")).decode(errors="replace")

    # -- cleaning up --------------------------------------------------------------

    def cleanup(self) -> list[int]:
        """Stop everything of this run; the pids that had to be killed by hand."""
        if self.daemonPid() is not None:
            self.cli("stop", "--all", check=False, timeout=60)
            for pid in list(self.daemonPids):
                try:
                    self.waitDaemonGone(pid)
                except AssertionError:
                    pass
        left = self.processes()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in left:
            process = ProcessId.of(pid)
            if process is not None:
                try:
                    waitUntil(lambda p=process: not p.alive(), f"pid {pid} to exit", 10)
                except AssertionError:
                    pass
        return left


def devices(run: DaemonRun, domain: str, deviceClass: str) -> dict[int, dict]:
    return {row["devid"]: row for row in run.json(f"{deviceClass}-list", domain)}


def allConnected(run: DaemonRun, domain: str) -> bool:
    rows = [*devices(run, domain, "vfb").values(), *devices(run, domain, "vkbd").values()]
    return bool(rows) and all(r["backend_state"] == 4 and r["frontend_state"] == 4
                              for r in rows)


def domainOf(run: DaemonRun, name: str) -> dict | None:
    """The `xend-vfb list` row of the domain named `name`, or None if it is not there."""
    found = [d for d in run.json("list") if d["name"] == name]
    return found[0] if found else None


# -- the guest `life` whose lifecycle tests drive (test_daemon_lifecycle.py and others) ---


def guestConfig(tmp_path, name: str = "life", extra: str = "") -> str:
    """Write `name`.cfg (one VNC display with a password and a keymap, plus `extra`
    lines) into `tmp_path`; its path."""
    path = tmp_path / f"{name}.cfg"
    path.write_text(f"name = '{name}'\nmemory = 32\n"
                    "vfb = [ 'vnc=1,vncunused=1,vncpasswd=pw,keymap=de' ]\n" + extra)
    return str(path)


def createGuest(run: DaemonRun, tmp_path, extra: str = "") -> int:
    """Create the guest `life` and wait until its devices are Connected; its domid."""
    run.createConnected(guestConfig(tmp_path, extra=extra), "life")
    return domainOf(run, "life")["domid"]


def connectedAs(run: DaemonRun, name: str, old: int) -> int:
    """Wait until `name` runs as a domain other than `old`, all devices Connected; its id."""
    def remade():
        domain = domainOf(run, name)
        return domain and domain["domid"] != old and allConnected(run, name) and domain
    return waitUntil(remade, f"{name} to come back as a new domain")["domid"]


def assertNothingLeftOf(run: DaemonRun, domid: int, backendHeld: bool = False) -> None:
    """Domain `domid` left nothing: xenstore, guest, memory; and its backend exited, or
    (`backendHeld`) it is still there, recorded for no domain, holding the displays."""
    tree = run.xenstore()
    left = [path for path in tree if f"/{domid}/" in path + "/" and (
        path.startswith(f"/local/domain/{domid}") or f"backend/vfb/{domid}" in path
        or f"backend/vkbd/{domid}" in path or path.startswith(f"/xend-vfb/{domid}"))]
    assert left == []
    if not backendHeld:
        waitUntil(lambda: run.backend(domid) is None, f"the backend of domain {domid} to exit")
    assert run.guest(domid) is None
    assert not os.path.exists(os.path.join(run.runDir, "guests", str(domid), "memory"))


# -- a VNC client in a child process -------------------------------------------------


class VncClient:
    """vncdotool connected to 127.0.0.1:`port`, in a child process."""

    def __init__(self, port: int, password: str | None = None) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers_daemon", "vnc", str(port),
             *([password] if password else [])], cwd=CHECKOUT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._expect("connected")

    def _expect(self, word: str) -> None:
        line = self.child.stdout.readline().strip()
        if line != word:
            self.child.kill()
            raise AssertionError(f"VNC client: {line or self.child.stderr.read()[-2000:]}")

    def command(self, *words: str) -> None:
        self.child.stdin.write(" ".join(words) + "\n")
        self.child.stdin.flush()
        self._expect("ok")

    def close(self) -> None:
        if self.child.poll() is None:
            try:
                self.child.stdin.write("quit\n")
                self.child.stdin.flush()
                self.child.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.child.kill()
                self.child.wait()

    def __enter__(self) -> VncClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _vncChild(port: int, password: str | None) -> None:
    import warnings

    from vncdotool import api

    warnings.simplefilter("ignore")
    client = api.connect(f"127.0.0.1::{port}", password=password, timeout=WAIT)
    try:
        client.refreshScreen()
        print("connected", flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            if words[0] == "key":
                client.keyPress(words[1])
            elif words[0] == "capture":
                client.captureScreen(words[1])
            print("ok", flush=True)
    finally:
        client.disconnect()
        api.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["vnc"]:
        _vncChild(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
