"""One CLI call against a running daemon, next to a bare Python start.

    .venv/bin/python bench/cli.py [--rounds 40] [--guests 1] [-- list --json]

An emulated daemon in a fresh run dir under /tmp (with `--guests` guests from
examples/demo.cfg, so `list` has rows to print); then `--rounds` alternating runs of
`python -c pass` (the floor: the same interpreter and site start the console script
has) and `xend-vfb list` (or the command after `--`).  Printed: the median wall time
of each, the ratio (target: ≤ 2x), and each one's peak RSS (the largest of a few more
runs under GNU time: a process's rusage counts the memory of the process it was forked
from, this one's, so the figure needs a small parent).  `xend-vfb stop --all` ends
the run.  Not part of the test suite.

Every process of the run writes and reads its bytecode under the run dir
(PYTHONPYCACHEPREFIX), as an installed system has it cached, whether or not the
caller's environment sets PYTHONDONTWRITEBYTECODE; the first runs, untimed, fill it.
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

from support import XEND_VFB, cli

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")
TARGET_RATIO = 2.0
#: Reports the peak RSS of the command it runs (Debian package `time`).
GNU_TIME = "/usr/bin/time"
RSS_RUNS = 5


def timed(command: list[str], env: dict) -> float:
    """Wall seconds from spawn to exit."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {result.returncode}: "
                         f"{result.stderr.decode(errors='replace').strip()}")
    return elapsed


def peakRss(command: list[str], env: dict) -> float | None:
    """The command's peak RSS in MB, the largest of `RSS_RUNS` runs; None without GNU time."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    peak = 0
    for _ in range(RSS_RUNS):
        result = subprocess.run([GNU_TIME, "-f", "%M", *command], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, check=True)
        peak = max(peak, int(result.stderr.strip().splitlines()[-1]))
    return peak / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="runs of each (default 40)")
    parser.add_argument("--guests", type=int, default=1, help="guests to create (default 1)")
    parser.add_argument("command", nargs="*", default=["list"],
                        help="the xend-vfb command to time (default: list)")
    args = parser.parse_args()

    runDir = tempfile.mkdtemp(prefix="xend-vfb-bench-cli-")
    env = dict(os.environ, XEND_VFB_RUN_DIR=runDir,
               PYTHONPYCACHEPREFIX=os.path.join(runDir, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    floor = [sys.executable, "-c", "pass"]
    command = [XEND_VFB, *args.command]
    try:
        cli(env, "daemon", "--emulated")
        with open(os.path.join(EXAMPLES, "demo.cfg")) as f:
            config = f.read()
        for i in range(args.guests):
            path = os.path.join(runDir, f"bench{i}.cfg")
            with open(path, "w") as f:
                f.write(config.replace('name = "demo"', f'name = "bench{i}"'))
            cli(env, "create", path)
        for _ in range(2):  # untimed: the page cache and the bytecode are warm
            timed(floor, env)
            timed(command, env)
        times: dict[str, list[float]] = {"floor": [], "cli": []}
        for _ in range(args.rounds):
            times["floor"].append(timed(floor, env))
            times["cli"].append(timed(command, env))
        peaks = {"floor": peakRss(floor, env), "cli": peakRss(command, env)}
    finally:
        subprocess.run([XEND_VFB, "stop", "--all"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(runDir, ignore_errors=True)

    floorMs = statistics.median(times["floor"]) * 1000
    cliMs = statistics.median(times["cli"]) * 1000
    ratio = cliMs / floorMs
    label = "xend-vfb " + " ".join(args.command)
    def rss(name: str) -> str:
        peak = peaks[name]
        return f"{peak:5.1f} MB" if peak is not None else f"n/a (no {GNU_TIME})"

    print(f"{args.rounds} alternating rounds, {args.guests} guest(s), medians:")
    print(f"  {'python -c pass (floor)':<28}{floorMs:8.1f} ms   peak RSS {rss('floor')}")
    print(f"  {label:<28}{cliMs:8.1f} ms   peak RSS {rss('cli')}")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
