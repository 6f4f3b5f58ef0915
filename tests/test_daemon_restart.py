"""Restart and reattach: kill -9 of the daemon at every named step of create, destroy,
attach and detach, then a new daemon finishes or rolls back what was interrupted.

After each restart the checks are the same: the xenstore tree is exactly what it
would be had the operation finished (destroy, detach) or never started (create,
attach): no half-written area; the processes of the run are exactly the ones
there should be (no orphan); every device left is Connected; and a backend that
should have survived is the very same process (pid and start time), never a
second one.
"""

import glob
import os
import signal

from PIL import Image

from tests.helpers_daemon import (
    EXAMPLES,
    DaemonRun,
    VncClient,
    allConnected,
    devices,
)
from tests.helpers_wait import waitUntil
from xend_vfb.guest.pattern import patternBytes

DEMO = os.path.join(EXAMPLES, "demo.cfg")


def victimConfig(tmp_path, name="victim"):
    path = tmp_path / f"{name}.cfg"
    path.write_text(f"name = '{name}'\nmemory = 32\nvfb = [ 'vnc=1,vncunused=1' ]\n")
    return str(path)


class Snapshot:
    """What must be true again after a restart."""

    def __init__(self, run: DaemonRun) -> None:
        waitUntil(lambda: all(allConnected(run, d["name"]) for d in run.json("list")),
                  "every device to connect")
        self.tree = run.xenstore()
        self.processes = set(run.processes()) - run.daemonPids
        self.domains = [(d["domid"], d["name"]) for d in run.json("list")]
        self.backends = {domid: run.backend(domid) for domid, _ in self.domains}

    def check(self, run: DaemonRun) -> None:
        assert [(d["domid"], d["name"]) for d in run.json("list")] == self.domains
        for _, name in self.domains:
            waitUntil(lambda n=name: allConnected(run, n), f"{name}'s devices to connect")
        assert run.xenstore() == self.tree
        # Processes of a rolled-back or destroyed domain exit on their own: wait for it.
        waitUntil(lambda: set(run.processes()) - run.daemonPids == self.processes,
                  "the run's processes to be the expected ones")
        assert {domid: run.backend(domid) for domid, _ in self.domains} == self.backends


def restartAfterCrash(run: DaemonRun, crashAt: str, *command: str) -> None:
    """Stop the running daemon, start one that dies at `crashAt`, run `command` against
    it, then start a fresh daemon (which recovers)."""
    pid = run.daemonPid()
    run.cli("stop")
    run.waitDaemonGone(pid)
    result = run.createCrashing(crashAt, *command)
    assert result.stderr.startswith("Error: "), result.stderr
    run.start()


def test_crash_during_create(run, tmp_path):
    run.start()
    run.cli("create", DEMO)
    before = Snapshot(run)
    for point in ("create:journal", "create:devices", "create:backend"):
        restartAfterCrash(run, point, "create", victimConfig(tmp_path))
        before.check(run)
        assert glob.glob(os.path.join(run.runDir, "guests", "*", "memory")) == [
            os.path.join(run.runDir, "guests", "1", "memory")]
    # The name is free again; the domain gets the next id, as Xen hands them out.
    assert run.cli("create", victimConfig(tmp_path)).stdout.startswith(
        "Started domain victim (id=5)")


def test_crash_during_destroy(run, tmp_path):
    run.start()
    run.cli("create", DEMO)
    before = Snapshot(run)
    for point in ("destroy:journal", "destroy:devices"):
        run.createConnected(victimConfig(tmp_path), "victim")
        restartAfterCrash(run, point, "destroy", "victim")
        before.check(run)
        assert run.guest(2) is None and run.backend(2) is None


def test_crash_during_attach(run):
    run.start()
    run.cli("create", DEMO)
    before = Snapshot(run)
    for point in ("attach:journal", "attach:devices"):
        restartAfterCrash(run, point, "vfb-attach", "demo", "vnc=1,vncunused=1")
        before.check(run)  # rolled back; the same backend still serves display 0
    restartAfterCrash(run, "attach:devices", "vkbd-attach", "demo", "")
    before.check(run)


def test_crash_during_detach(run):
    run.start()
    run.cli("create", DEMO)
    before = Snapshot(run)
    for point in ("detach:journal", "detach:devices"):
        run.cli("vfb-attach", "demo", "vnc=1,vncunused=1")
        waitUntil(lambda: allConnected(run, "demo"), "the new display to connect")
        restartAfterCrash(run, point, "vfb-detach", "demo", "1")
        before.check(run)  # finished: both devices of the pair are gone


def test_daemon_down_backends_keep_serving(run, tmp_path):
    """While the daemon is down: VNC keeps serving; a backend killed then is restarted
    by the next daemon, and a guest that died then is cleaned up by it."""
    run.start()
    run.cli("create", DEMO)
    run.cli("create", victimConfig(tmp_path, "other"))
    run.cli("create", victimConfig(tmp_path, "doomed"))
    waitUntil(lambda: all(allConnected(run, n) for n in ("demo", "other", "doomed")),
              "every device to connect")
    port = devices(run, "demo", "vfb")[0]["vnc_port"]
    demoBackend, otherBackend = run.backend(1), run.backend(2)
    run.kill9()

    with VncClient(port) as client:
        shot = tmp_path / "outage.png"
        client.command("capture", str(shot))
        expected = Image.frombytes("RGB", (800, 600), patternBytes(800, 600, 1, 0), "raw", "BGRX")
        assert Image.open(shot).convert("RGB").tobytes() == expected.tobytes()
        client.command("key", "a")
        waitUntil(lambda: [e for e in run.inputEvents(1) if e.get("keycode") == 30],
                  "the key to reach the guest with the daemon down")

    otherBackend.kill(signal.SIGKILL)
    run.guest(3).kill(signal.SIGKILL)
    waitUntil(lambda: run.backend(2) is None and run.guest(3) is None, "the kills")
    run.start()

    assert [d["name"] for d in run.json("list")] == ["demo", "other"]
    assert run.backend(1) == demoBackend  # adopted, not restarted
    restarted = run.backend(2)
    assert restarted is not None and restarted != otherBackend
    waitUntil(lambda: allConnected(run, "other"), "other's devices to reconnect")
    assert not [p for p in run.xenstore() if p.startswith(("/local/domain/3", "/xend-vfb/3"))
                or "/backend/vfb/3" in p or "/backend/vkbd/3" in p]
    waitUntil(lambda: run.backend(3) is None, "the dead guest's backend to exit")
    shot = tmp_path / "other.png"
    run.cli("screenshot", "other", str(shot))
    assert Image.open(shot).size == (800, 600)


def test_backend_restart_is_rate_limited(run):
    run.start()
    run.createConnected(DEMO, "demo")
    seen = [run.backend(1)]
    for _ in range(3):
        seen[-1].kill(signal.SIGKILL)
        waitUntil(lambda: run.backend(1) not in (None, *seen), "a new backend")
        seen.append(run.backend(1))
        waitUntil(lambda: allConnected(run, "demo"), "the devices to reconnect")
    assert len(set(seen)) == 4
    seen[-1].kill(signal.SIGKILL)  # the fourth death within 60 s: not restarted

    def failed():
        rows = [*devices(run, "demo", "vfb").values(), *devices(run, "demo", "vkbd").values()]
        return all(r["hotplug_status"] == "error" and "not restarted" in (r["error"] or "")
                   for r in rows)

    waitUntil(failed, "the devices to show the error")
    assert run.backend(1) is None
    assert "4 times in 60 s; not restarted" in \
        devices(run, "demo", "vfb")[0]["error"]
