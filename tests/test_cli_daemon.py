"""The `xend-vfb` CLI end to end against a real emulated daemon, guests and backends.

Every command runs as a subprocess of `.venv/bin/xend-vfb` with the test's own
XEND_VFB_RUN_DIR; each test cleans up its run whatever happens.
"""

import io
import os
import re
import stat
import subprocess

from PIL import Image

from tests.helpers_daemon import (
    EXAMPLES,
    XEND_VFB,
    allConnected,
    devices,
)
from tests.helpers_wait import waitUntil
from xend_vfb.guest.pattern import patternBytes

NO_DAEMON = "Error: the xend-vfb daemon is not running (start it with: xend-vfb daemon)"


def example(tmp_path, name, **replace):
    """An example config, with fixed VNC ports made `vncunused` so parallel runs
    cannot collide (xend: vncunused=1 searches upward from vncdisplay)."""
    with open(os.path.join(EXAMPLES, f"{name}.cfg")) as f:
        text = f.read()
    text = text.replace("vncunused=0", "vncunused=1")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / f"{name}.cfg"
    path.write_text(text)
    return str(path)


def pattern(width, height, domid, devid):
    return Image.frombytes("RGB", (width, height), patternBytes(width, height, domid, devid),
                           "raw", "BGRX")


def test_end_to_end(run, tmp_path):
    assert run.fails("list") == NO_DAEMON
    out = run.cli("daemon", "--emulated").stdout
    assert out.startswith("xend-vfb daemon started (pid ")
    assert run.fails("daemon", "--emulated").startswith(
        "Error: the xend-vfb daemon is already running (pid ")

    out = run.cli("create", os.path.join(EXAMPLES, "demo.cfg")).stdout
    assert out.startswith("Started domain demo (id=1)\n  vfb 0: VNC on 127.0.0.1:")
    out = run.cli("create", example(tmp_path, "two-framebuffers")).stdout
    assert out.startswith("Started domain twoheads (id=2)\n")
    assert out.count("VNC on 127.0.0.1:") == 2

    domains = run.json("list")
    assert [(d["domid"], d["name"]) for d in domains] == [(1, "demo"), (2, "twoheads")]
    for domain in domains:
        assert set(domain["devices"]) == {"vfb", "vkbd"}
    text = run.cli("list").stdout.splitlines()
    assert text[0].split() == ["Name", "ID", "Displays"]
    assert text[1].split()[:2] == ["demo", "1"] and text[2].split()[:2] == ["twoheads", "2"]

    # create returns once the backends are up; the guests connect on their own time.
    waitUntil(lambda: allConnected(run, "twoheads"), "twoheads' devices to connect")
    vfbs = run.json("vfb-list", "twoheads")
    assert [v["devid"] for v in vfbs] == [0, 1]
    ports = set()
    for vfb in vfbs:
        assert {"devid", "backend_state", "frontend_state", "vnc_port", "vnc_listen"} <= set(vfb)
        assert (vfb["backend_state"], vfb["frontend_state"]) == (4, 4)
        assert vfb["vnc_listen"] == "127.0.0.1" and vfb["vnc_port"] >= 5911
        ports.add(vfb["vnc_port"])
    assert len(ports) == 2 and vfbs[0]["vnc_port"] < vfbs[1]["vnc_port"]
    vkbds = run.json("vkbd-list", "2")
    assert [(k["devid"], k["backend_state"], k["frontend_state"]) for k in vkbds] == \
        [(0, 4, 4), (1, 4, 4)]
    table = run.cli("vkbd-list", "twoheads").stdout.splitlines()
    assert table[1].split() == ["0", "Connected", "Connected", "-"]

    # Screenshots: the guest's pattern, byte for byte (the simulator, like Linux's
    # xen-fbfront, picks its own mode: 800x600 unless told otherwise).
    for domain, domid, devid, size in (("demo", 1, 0, (800, 600)),
                                       ("twoheads", 2, 1, (800, 600))):
        shot = tmp_path / f"{domain}-{devid}.png"
        out = run.cli("screenshot", domain, str(shot), "--devid", str(devid)).stdout
        assert out == f"wrote {shot}\n"
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(data))
        assert image.size == size
        assert image.convert("RGB").tobytes() == pattern(*size, domid, devid).tobytes()

    run.cli("destroy", "demo")
    assert [d["name"] for d in run.json("list")] == ["twoheads"]
    assert run.guest(1) is None and run.backend(1) is None
    assert not os.path.exists(os.path.join(run.runDir, "guests", "1", "memory"))

    # shutdown: the daemon goes, the guest and its backend stay (and keep their pids).
    guest, backend = run.guest(2), run.backend(2)
    daemon = run.daemonPid()
    run.cli("stop")
    run.waitDaemonGone(daemon)
    assert not os.path.exists(os.path.join(run.runDir, "xend-vfb.sock"))
    assert run.fails("list") == NO_DAEMON
    assert (run.guest(2), run.backend(2)) == (guest, backend)
    run.start()
    assert [d["name"] for d in run.json("list")] == ["twoheads"]
    assert (run.guest(2), run.backend(2)) == (guest, backend)

    # stop --all: nothing of this run is left.
    daemon = run.daemonPid()
    run.cli("stop", "--all")
    run.waitDaemonGone(daemon)
    waitUntil(lambda: not run.processes(), "every process of the run to exit")
    assert not os.path.exists(os.path.join(run.runDir, "xenstored", "socket"))
    left = [os.path.join(d, f) for d in ("1", "2")
            for f in os.listdir(os.path.join(run.runDir, "guests", d))]
    assert sorted(left) == ["1/guest.log", "2/guest.log"]  # only the logs stay


def test_control_socket_is_root_only(run):
    run.start()
    mode = os.stat(os.path.join(run.runDir, "xend-vfb.sock")).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(run.runDir).st_mode) == 0o700


def test_errors_are_one_line(run, tmp_path):
    run.start()
    demo = os.path.join(EXAMPLES, "demo.cfg")
    run.createConnected(demo, "demo")
    baseline = run.xenstore()
    assert run.fails("destroy", "nosuch") == "Error: domain 'nosuch' does not exist"
    assert run.fails("vfb-list", "7") == "Error: domain '7' does not exist"
    assert run.fails("screenshot", "nosuch", str(tmp_path / "x.png")) == \
        "Error: domain 'nosuch' does not exist"
    assert "bogus" in run.fails("vfb-attach", "demo", "vnc=1,bogus=2")
    assert "vncdisplay" in run.fails("vfb-attach", "demo", "vnc=1,vncdisplay=abc")
    assert run.fails("vfb-detach", "demo", "7") == \
        "Error: Device 7 (vfb) does not exist in domain 1"
    assert run.fails("vkbd-detach", "demo", "3") == \
        "Error: Device 3 (vkbd) does not exist in domain 1"
    assert run.fails("create", demo) == "Error: domain 'demo' already exists (domain 1)"
    assert run.fails("vfb-attach", "nosuch", "vnc=1") == "Error: domain 'nosuch' does not exist"
    # None of it changed anything.
    assert run.xenstore() == baseline
    assert [d["name"] for d in run.json("list")] == ["demo"]


def scripted(tmp_path, name, script):
    """A hotplug script (shell text) and a config `name` with one display it sets up:
    (script path, config path)."""
    path = tmp_path / f"{name}-script"
    path.write_text(script)
    path.chmod(0o755)
    config = tmp_path / f"{name}.cfg"
    config.write_text(f"name = '{name}'\nmemory = 32\n"
                      f"vfb = [ 'vnc=1,vncunused=1,script={path}' ]\n")
    return str(path), str(config)


def test_failing_hotplug_script_leaves_nothing(run, demo, tmp_path):
    script, config = scripted(
        tmp_path, "broken", "#!/bin/sh\necho 'preparing the display' >&2\n"
                            "echo 'no VNC port for you: firewall says no' >&2\nexit 3\n")
    baseline = run.xenstore()
    before = set(run.processes())

    assert run.fails("create", config) == \
        "Error: Device 0 (vfb) could not be connected: no VNC port for you: firewall says no"
    assert run.xenstore() == baseline
    assert [d["name"] for d in run.json("list")] == ["demo"]
    waitUntil(lambda: set(run.processes()) == before, "the failed domain's processes to go")
    assert run.backend(2) is None and run.guest(2) is None
    assert not os.path.exists(os.path.join(run.runDir, "guests", "2", "memory"))

    # The same through vfb-attach on a running guest: an error, and the guest unchanged.
    assert run.fails("vfb-attach", "demo", f"vnc=1,vncunused=1,script={script}") == \
        "Error: Device 1 (vfb) could not be connected: no VNC port for you: firewall says no"
    assert run.xenstore() == baseline
    assert list(devices(run, "demo", "vfb")) == [0]


def test_backend_dying_during_create_fails_it_at_once(run, demo, tmp_path):
    # The hotplug script kills the backend that runs it: the death, not a timeout,
    # must reach the user, and the failed create must leave nothing behind.
    _, config = scripted(tmp_path, "doomed", "#!/bin/sh\nkill -9 $PPID\nsleep 5\n")
    baseline = run.xenstore()
    # The death itself, not the 30 s device wait running out, is what the user hears.
    error = run.fails("create", config)
    assert re.fullmatch(r"Error: Device 0 \(vfb\) could not be connected: backend process "
                        r"of domain 2 ended \((exited|killed by signal 9)\)", error), error
    assert run.xenstore() == baseline
    waitUntil(lambda: run.backend(2) is None and run.guest(2) is None,
              "the failed domain's processes to go")
    assert allConnected(run, "demo")  # the other domain did not notice


def test_emulated_mode_warns_once_about_keys_it_ignores(run, tmp_path):
    config = tmp_path / "builder.cfg"
    config.write_text("name = 'builder'\nmemory = 32\ndisk = [ 'phy:/dev/vg/x,xvda,w' ]\n"
                      "vif = [ 'bridge=xenbr0' ]\non_crash = 'restart'\n"
                      "vfb = [ 'vnc=1,vncunused=1' ]\n")
    run.start()
    out = run.cli("create", str(config))
    assert out.stderr == (
        "Warning: emulated mode ignores these top-level keys of domain 'builder': disk, vif "
        "(only a real Xen host's domain builder uses them)\n")
    assert out.stdout.startswith("Started domain builder (id=1)\n")


def test_concurrent_creates_of_one_name_make_one_domain(run):
    run.start()
    demo = os.path.join(EXAMPLES, "demo.cfg")
    creates = [subprocess.Popen([XEND_VFB, "create", demo], env=run.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(3)]
    results = sorted((c.wait(timeout=120), c.stderr.read().strip()) for c in creates)
    assert results == [(0, ""), (1, "Error: domain 'demo' already exists (domain 1)"),
                       (1, "Error: domain 'demo' already exists (domain 1)")]
    assert [(d["domid"], d["name"]) for d in run.json("list")] == [(1, "demo")]


def test_vnc_password_never_shown(run, tmp_path):
    config = example(tmp_path, "vnc-password", **{"vncdisplay=1,": "vncunused=1,",
                                                  "vnclisten=0.0.0.0": "vnclisten=127.0.0.1"})
    run.start()
    out = run.cli("create", config)
    assert "s3cret" not in out.stdout + out.stderr
    for args in (("list",), ("list", "--json"), ("vfb-list", "webserver"),
                 ("vfb-list", "webserver", "--json"), ("vkbd-list", "webserver", "--json")):
        assert "s3cret" not in run.cli(*args).stdout
    assert run.json("vfb-list", "webserver")[0]["vnc_port"] is not None
    # Guests can read /local/domain: the secret is only in the private record.
    holders = [path for path, value in run.xenstore().items() if "s3cret" in value]
    assert holders and all(path.startswith("/xend-vfb/") for path in holders)
    run.cli("destroy", "webserver")
    assert "s3cret" not in run.log()
    backendLog = open(os.path.join(run.runDir, "backends", "1.log")).read()
    assert "s3cret" not in backendLog
