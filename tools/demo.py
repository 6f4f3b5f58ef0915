"""The README's main job: a demo guest with a live VNC display, on the emulated host.

    ./demo.sh [--once] [--screenshot FILE]

Starts the daemon in emulated mode (embedded xenstored, simulated guests),
creates the guest of `examples/demo.cfg`, prints the VNC address to connect to
and a browser console link, and writes a screenshot.  It then keeps the guest
running until Ctrl-C (or returns at once with `--once`), destroys the domain and
stops what it started.  The daemon and its children run in their own sessions,
so Ctrl-C reaches only this process: stopping them is done here, explicitly.
"""

import argparse
import json
import os
import signal
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

from xend_vfb import cli
from xend_vfb.settings import DEFAULT_RUN_DIR

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "demo.cfg")


def xendVfb(*argv: str) -> str:
    """Run one `xend-vfb` command in this process; its output, or SystemExit on failure."""
    out = StringIO()
    with redirect_stdout(out):
        status = cli.main(list(argv))
    if status != 0:
        raise SystemExit(status)
    return out.getvalue()


def daemonRunning() -> bool:
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
        return cli.main(["list"]) == 0


def waitConnected(domain: str, timeout: float = 30.0) -> dict:
    """The domain's first display once the guest has connected to it."""
    deadline = time.monotonic() + timeout
    while True:
        displays = json.loads(xendVfb("vfb-list", domain, "--json"))
        if displays and displays[0]["frontend_state"] == 4:
            return displays[0]
        if time.monotonic() > deadline:
            raise SystemExit(f"Error: the demo guest did not connect within {timeout:g} s")
        time.sleep(0.1)


def waitForInterrupt() -> None:
    """Sleep until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="do not wait for Ctrl-C")
    parser.add_argument("--screenshot", default="demo-screenshot.png", metavar="FILE")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("XEND_VFB_RUN_DIR", DEFAULT_RUN_DIR)

    startedDaemon = not daemonRunning()
    if startedDaemon:
        print(xendVfb("daemon", "--emulated").strip())
    else:
        print("using the xend-vfb daemon already running")
    if any(d["name"] == "demo" for d in json.loads(xendVfb("list", "--json"))):
        xendVfb("destroy", "demo")
    try:
        print(xendVfb("create", EXAMPLE).strip())
        domid = next(d["domid"] for d in json.loads(xendVfb("list", "--json"))
                     if d["name"] == "demo")
        display = waitConnected("demo")
        xendVfb("screenshot", "demo", arguments.screenshot)
        print(f"\nThe demo guest's display: vncviewer {display['vnc_listen']}::"
              f"{display['vnc_port']}")
        try:
            print("In a browser (the link works once, within a few minutes): "
                  + xendVfb("console-url", "demo").strip())
        except SystemExit:
            pass  # a daemon already running without its web console: its error said so
        print(f"Screenshot written to {os.path.abspath(arguments.screenshot)}")
        print(f"Keys typed in the viewer arrive in "
              f"{os.environ['XEND_VFB_RUN_DIR']}/guests/{domid}/input.jsonl")
        if not arguments.once:
            print("Press Ctrl-C to stop.")
            waitForInterrupt()
    finally:
        print("\nstopping: destroying the demo domain")
        xendVfb("destroy", "demo")
        if startedDaemon:
            xendVfb("stop", "--all")
            print("stopped the daemon and the embedded xenstored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
