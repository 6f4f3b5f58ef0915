"""A pre-imported backend image that forks one backend per domain.

A fresh `xend-vfb-backend` spends about 200 ms and 30 MB importing Twisted,
Pillow and the project before it serves anything.  The zygote pays that once:
it imports everything a backend needs (but installs no reactor, so each child
gets its own), freezes the imported objects out of the garbage collector's
reach (`gc.freeze()`, so collections in the children do not dirty the shared
pages), and forks a child per request.  The child starts its own session,
points its output at the domain's log, renames itself so `pgrep -f
xend-vfb-backend` shows one process per domain, and runs the backend's
`main`.  Children share the zygote's pages copy-on-write.

    python -m xend_vfb.backend.zygote --socket PATH [--title-space ...]

Requests are JSON lines on PATH (mode 0600):
`{"op": "spawn", "argv": [...backend arguments...], "log": PATH, "env": {...}}`,
answered with `{"ok": true, "pid": N}`, and `{"op": "ping"}`.  The zygote reaps its children; the
daemon watches them through pidfds like any process it did not start itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import signal
import socket
import sys

# What every backend loads once running, imported here so children share it;
# importing these modules installs no reactor.
import PIL.PngImagePlugin  # noqa: F401  (screenshots)
import twisted.internet.epollreactor  # noqa: F401
import twisted.internet.process  # noqa: F401  (hotplug scripts)
import twisted.internet.tcp  # noqa: F401  (VNC)
import twisted.internet.unix  # noqa: F401  (xenstore, control socket)

import xend_vfb.backend.main as backend
from xend_vfb.procid import setCommandLine
from xend_vfb.rfb.keymaps import loadKeymap

# The default layout, compiled once here for every child (seconds under emulation).
loadKeymap("en-us")

__all__ = ["main", "setCommandLine"]

TITLE_SPACE = 512


def _reap(signum: int = 0, frame: object = None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict, listener: socket.socket, connection: socket.socket) -> None:
    """In the forked child: become the domain's backend.  Never returns."""
    status = 1
    try:
        listener.close()
        connection.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.update(request.get("env", {}))
        argv = [str(a) for a in request["argv"]]
        setCommandLine(["xend-vfb-backend", *argv])
        sys.argv = ["xend-vfb-backend", *argv]
        backend.main(argv)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status)


def _serve(listener: socket.socket) -> None:
    while True:
        readable, _, _ = select.select([listener], [], [], 5.0)
        _reap()
        if not readable:
            continue
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5.0)
            try:
                data = bytearray()
                while not data.endswith(b"\n"):
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                if request.get("op") == "ping":
                    reply = {"ok": True, "pid": os.getpid()}
                elif request.get("op") == "spawn":
                    pid = os.fork()
                    if pid == 0:
                        _child(request, listener, connection)
                    reply = {"ok": True, "pid": pid}
                else:
                    raise ValueError(f"unknown request {request.get('op')!r}")
            except Exception as e:
                reply = {"ok": False, "error": f"zygote: {e}"}
            try:
                connection.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="xend_vfb.backend.zygote")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--title-space", default="", help="room for the children's names")
    arguments = parser.parse_args(argv)
    if "twisted.internet.reactor" in sys.modules:
        raise SystemExit("zygote: a reactor was installed before forking")
    signal.signal(signal.SIGCHLD, _reap)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(arguments.socket):
        os.unlink(arguments.socket)
    old = os.umask(0o177)
    try:
        listener.bind(arguments.socket)
    finally:
        os.umask(old)
    listener.listen(16)
    gc.collect()
    gc.freeze()
    print(f"zygote {os.getpid()} ready on {arguments.socket}", flush=True)
    _serve(listener)


if __name__ == "__main__":
    main()
