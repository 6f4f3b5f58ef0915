"""Reattach after a daemon restart: how long until every domain is adopted again.

    .venv/bin/python bench/reattach.py [--guests 8,64,256] [--keep]

For each count N: an emulated daemon in a fresh run dir, N guests created from a
one-display config and all Connected; then the daemon is killed with SIGKILL and
started again.  Measured: the time from starting the new daemon process until it
answers on its control socket (it listens only once `recover()` has rebuilt every
domain from xenstore and adopted or started each backend), and the number of
backends respawned (backend pids before and after, by their `pid:starttime`
records; must be 0).  Afterwards every device must still be Connected.

Each N also reports the memory the run's processes use (RSS sum), so a larger N can
be judged before it is tried.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from support import XEND_VFB, cli

TARGET_SECONDS = 2.0

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from xend_vfb import jsonline  # noqa: E402
from xend_vfb.procid import ProcessId  # noqa: E402


def record(path: str) -> ProcessId | None:
    try:
        with open(path) as f:
            process = ProcessId.parse(f.read())
    except OSError:
        return None
    return process if process is not None and process.alive() else None


def backends(runDir: str) -> dict[str, ProcessId | None]:
    paths = glob.glob(os.path.join(runDir, "backends", "[0-9]*.pid"))
    return {os.path.basename(p): record(p) for p in sorted(paths)}


def rssMiB(runDir: str) -> float:
    """Resident memory of the run's processes (guests, backends, zygote, xenstored)."""
    total = 0
    paths = [*glob.glob(os.path.join(runDir, "backends", "*.pid")),
             *glob.glob(os.path.join(runDir, "guests", "*", "guest.pid")),
             os.path.join(runDir, "xenstored", "pid")]
    for path in paths:
        process = record(path)
        if process is None:
            continue
        try:
            with open(f"/proc/{process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def ping(runDir: str) -> dict | None:
    try:
        return jsonline.requestBlocking(os.path.join(runDir, "xend-vfb.sock"), {"op": "ping"}, 5)
    except (OSError, jsonline.ChannelError):
        return None


def allConnected(env: dict) -> bool:
    for domain in json.loads(cli(env, "list", "--json")):
        for rows in domain["devices"].values():
            if any((r["backend_state"], r["frontend_state"]) != (4, 4) for r in rows):
                return False
    return True


def waitFor(check, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(count: int, keep: bool) -> dict:
    runDir = tempfile.mkdtemp(prefix=f"xvb-reattach-{count}-")
    env = dict(os.environ, XEND_VFB_RUN_DIR=runDir)
    env.pop("XEND_VFB_CRASH_AT", None)
    config = os.path.join(runDir, "guest.cfg")
    try:
        cli(env, "daemon", "--emulated")
        started = time.monotonic()
        for i in range(count):
            with open(config, "w") as f:
                f.write(f"name = 'g{i}'\nmemory = 16\nvfb = [ 'vnc=1,vncunused=1' ]\n")
            cli(env, "create", config)
        createSeconds = time.monotonic() - started
        waitFor(lambda: allConnected(env), "every device to connect")
        before = backends(runDir)
        assert len(before) == count and all(before.values()), "a backend is missing"
        memory = rssMiB(runDir)

        pid = ping(runDir)["pid"]
        os.kill(pid, 9)
        waitFor(lambda: ProcessId.of(pid) is None, "the daemon to die")
        logPath = os.path.join(runDir, "restart.log")
        with open(logPath, "wb") as log:
            t0 = time.monotonic()
            child = subprocess.Popen([XEND_VFB, "daemon", "--emulated", "--foreground"],
                                     env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            waitFor(lambda: child.poll() is None and ping(runDir) is not None,
                    "the new daemon to answer", 120)
            reattach = time.monotonic() - t0
        after = backends(runDir)
        respawned = sum(1 for key, process in before.items() if after.get(key) != process)
        with open(logPath, errors="replace") as f:
            text = f.read()
        adopted = text.count("adopted") - text.count("zygote adopted")
        waitFor(lambda: allConnected(env), "every device to stay connected", 60)
        return {"guests": count, "create_s": createSeconds, "reattach_s": reattach,
                "adopted": adopted, "respawned": respawned, "rss_mib": memory}
    finally:
        subprocess.run([XEND_VFB, "stop", "--all"], env=env, capture_output=True,
                       timeout=600)
        if not keep:
            shutil.rmtree(runDir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", default="8,64", help="comma-separated counts (8,64)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    rows = []
    for count in (int(n) for n in args.guests.split(",")):
        rows.append(measure(count, args.keep))
        row = rows[-1]
        print(f"  {count} guests: reattached in {row['reattach_s']:.2f} s", file=sys.stderr)
    print("| guests | create all (s) | daemon start → all reattached (s) | adopted (guests + "
          "backends) | backends respawned | RSS of the run (MiB) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['guests']} | {row['create_s']:.1f} | {row['reattach_s']:.2f} | "
              f"{row['adopted']} | {row['respawned']} | {row['rss_mib']:.0f} |")
    if rows[-1]["guests"] < 256 and len(rows) >= 2:
        # Fixed start-up cost plus a cost per domain: the slope of the two largest runs.
        small, large = rows[-2], rows[-1]
        slope = (large["reattach_s"] - small["reattach_s"]) / (large["guests"] - small["guests"])
        estimate = large["reattach_s"] + slope * (256 - large["guests"])
        print(f"\n256 guests did not run; extrapolated from {small['guests']} and "
              f"{large['guests']}: {estimate:.2f} s ({slope * 1000:.1f} ms per domain; "
              f"target {TARGET_SECONDS:g} s)")
    if any(row["respawned"] for row in rows):
        raise SystemExit("FAIL: backends were respawned")


if __name__ == "__main__":
    main()
