"""Round trips per second through the xenstore layer against the embedded xenstored.

    .venv/bin/python bench/xenstore_rtt.py [--seconds 2]

Prints one row per operation: reads, writes, and 10-key transactions per
second, with the time of one round trip; the floor they compare with is a
bare request/reply on a raw socket in the same run (pyxs packet, no layer).
"""

import argparse
import os
import socket
import sys
import tempfile
import time

from pyxs._internal import Op, Packet
from twisted.internet import task
from twisted.internet.defer import inlineCallbacks

from xend_vfb.xenstore import EmbeddedXenstored, connect


def rawFloor(path: str, seconds: float) -> float:
    """Reads per second on a blocking socket with no layer at all: the floor."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    request = Packet._struct.pack(Op.READ, 1, 0, 3) + b"/k\0"
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        sock.sendall(request)
        header = sock.recv(16)
        sock.recv(Packet._struct.unpack(header)[3])
        count += 1
    sock.close()
    return count / seconds


@inlineCallbacks
def measure(xs, operation, seconds):
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        yield operation()
        count += 1
    return count / seconds


def tenKeys(xs):
    @inlineCallbacks
    def body(tx):
        for i in range(10):
            yield tx.write(f"/bench/tx/{i}", str(i))

    return xs.transaction(body)


@inlineCallbacks
def main(reactor, seconds):
    with tempfile.TemporaryDirectory() as run:
        daemon = EmbeddedXenstored(run)
        daemon.start()
        try:
            xs = yield connect(daemon.socketPath)
            yield xs.write("/k", "value")
            floor = rawFloor(daemon.socketPath, seconds)
            rows = [
                ("raw socket read (floor)", floor),
                ("read", (yield measure(xs, lambda: xs.read("/k"), seconds))),
                ("write", (yield measure(xs, lambda: xs.write("/k", "v"), seconds))),
                ("10-key transaction", (yield measure(xs, lambda: tenKeys(xs), seconds))),
            ]
            xs.close()
        finally:
            daemon.stop()
    print(f"{'operation':<26}{'per second':>12}{'us each':>10}{'vs floor':>10}")
    for name, rate in rows:
        print(f"{name:<26}{rate:>12.0f}{1e6 / rate:>10.1f}{floor / rate:>9.1f}x")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, {seconds:g} s each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    arguments = parser.parse_args()
    task.react(main, [arguments.seconds])
