"""A guest's life in emulated mode: how long until its display is back.

    .venv/bin/python bench/lifecycle.py [--rounds 9]

An emulated daemon in a fresh run dir and one guest with a display.  Each round,
through the daemon's control socket (no CLI start-up in the figures):
`create` -> both devices Connected on both ends (the floor the others are
compared with), then `reboot`, `save` + `restore` and a local `migrate`, each
-> Connected again on the new domain, then `destroy`.  Connected is read
from the daemon's `list`, polled every millisecond.  Medians over the rounds,
each as a ratio to create -> Connected.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from support import XEND_VFB

CONFIG = "(vm (name bench) (memory 32) (device (vkbd)) (device (vfb (vnc 1) (vncunused 1))))"

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from xend_vfb import jsonline  # noqa: E402


def connected(socket: str, name: str) -> int | None:
    """The guest's domid once all its devices are Connected on both ends, else None."""
    try:
        domains = jsonline.requestBlocking(socket, {"op": "list"}, 30)["domains"]
    except jsonline.ChannelError:
        return None
    for domain in domains:
        rows = [*domain["devices"]["vfb"], *domain["devices"]["vkbd"]]
        if domain["name"] == name and rows and all(
                r["backend_state"] == 4 and r["frontend_state"] == 4 for r in rows):
            return domain["domid"]
    return None


def untilConnected(socket: str, started: float, old: int | None = None) -> tuple[float, int]:
    while True:
        domid = connected(socket, "bench")
        if domid is not None and domid != old:
            return time.monotonic() - started, domid
        if time.monotonic() - started > 120:
            raise SystemExit("the guest did not connect within 120 s")
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    runDir = tempfile.mkdtemp(prefix="xend-vfb-bench-life-")
    env = dict(os.environ, XEND_VFB_RUN_DIR=runDir)
    socket = os.path.join(runDir, "xend-vfb.sock")
    subprocess.run([XEND_VFB, "daemon", "--emulated"], env=env, check=True,
                   capture_output=True)
    figures: dict[str, list[float]] = {"create": [], "reboot": [], "save + restore": [],
                                       "migrate (local)": []}
    try:
        for _ in range(args.rounds):
            started = time.monotonic()
            jsonline.requestBlocking(socket, {"op": "create", "sxp": CONFIG}, 120)
            seconds, domid = untilConnected(socket, started)
            figures["create"].append(seconds)
            started = time.monotonic()
            jsonline.requestBlocking(socket, {"op": "reboot", "domain": "bench", "wait": 60}, 90)
            seconds, domid = untilConnected(socket, started, domid)
            figures["reboot"].append(seconds)
            saved = os.path.join(runDir, "bench.save")
            started = time.monotonic()
            jsonline.requestBlocking(socket, {"op": "save", "domain": "bench", "file": saved}, 90)
            jsonline.requestBlocking(socket, {"op": "restore", "file": saved}, 90)
            seconds, domid = untilConnected(socket, started, domid)
            figures["save + restore"].append(seconds)
            os.unlink(saved)
            started = time.monotonic()
            jsonline.requestBlocking(socket, {"op": "migrate", "domain": "bench",
                                              "host": "localhost"}, 90)
            seconds, domid = untilConnected(socket, started, domid)
            figures["migrate (local)"].append(seconds)
            jsonline.requestBlocking(socket, {"op": "destroy", "domain": "bench"}, 90)
    finally:
        subprocess.run([XEND_VFB, "stop", "--all"], env=env, capture_output=True)
        shutil.rmtree(runDir, ignore_errors=True)
    floor = statistics.median(figures["create"])
    print(f"{'-> both devices Connected':<28}{'median ms':>10}{'vs create':>11}")
    for what, values in figures.items():
        median = statistics.median(values)
        print(f"{what:<28}{median * 1000:>10.0f}{median / floor:>10.2f}x")
    print(f"({args.rounds} rounds, 32 MiB guest, one 800x600 display)")


if __name__ == "__main__":
    main()
