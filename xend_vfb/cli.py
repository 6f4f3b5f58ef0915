"""The ``xend-vfb`` command line, in the style of xm: ``xend-vfb create -n demo.cfg``.

Each subcommand is one ``commands.add(name, summary, handler, *arguments)`` in an
``_add...`` function; a handler takes the parsed arguments and the output streams and
returns the exit status.  Every failure reaches the user as one line
``Error: <what and why>`` on stderr and a non-zero exit (2 for a command-line mistake);
``--verbose`` adds the traceback.

A command is one request on the daemon's socket, so the client side imports only the
standard library and the pure modules it needs: no Twisted, no Pillow, nothing of the
daemon (`tests/test_cli_lean.py`).  What only some commands need (the config model,
the daemon itself) is imported by their handlers.  Longer than most modules on
purpose: every command, a few lines each, stands in this one table, as xm's did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from xend_vfb import __version__, jsonclient
from xend_vfb.errors import DaemonError, DaemonNotRunning, XendVfbError
from xend_vfb.settings import runDir
from xend_vfb.xenbus import XenbusState

#: Type checkers take this name as true; at run time the CLI does not import `typing`,
#: a tenth of a bare Python start (the idiom of PEP 781).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn, TextIO

    from xend_vfb.model import DeviceConfig, DomainConfig

    Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

__all__ = ["main", "buildParser"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """The command line itself is wrong (unknown command, missing argument)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one ``Error:`` line instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see: {self.prog} --help)")


NOT_RUNNING = "the xend-vfb daemon is not running (start it with: xend-vfb daemon)"
#: Seconds the CLI waits for the daemon (create waits for devices and backends).
REQUEST_TIMEOUT = 300.0
#: Seconds `reboot --wait` and `shutdown --wait` wait for the guest.
WAIT_TIMEOUT = 240.0
#: Seconds `xend-vfb daemon` waits for a daemon it started to answer.
START_TIMEOUT = 60.0


def _runDir() -> str:
    return runDir()


def _socketPath() -> str:
    return os.path.join(_runDir(), "xend-vfb.sock")


def _call(message: dict, timeout: float = REQUEST_TIMEOUT) -> dict:
    """One request to the daemon; `DaemonError` when it is not running."""
    try:
        return jsonclient.requestBlocking(_socketPath(), message, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(NOT_RUNNING) from None
    except TimeoutError:
        raise DaemonError(f"the daemon did not answer within {timeout:g} s") from None


#: The device classes with attach, detach and list commands.
DEVICE_CLASSES = ("vfb", "vkbd")


def _deviceConfigClass(name: str) -> type[DeviceConfig]:
    from xend_vfb.devices import classNamed

    return classNamed(name).config


def _readDomainConfig(path: str, isSXP: bool) -> DomainConfig:
    from xend_vfb.model import DomainConfig

    if isSXP:
        return DomainConfig.fromSXPFile(path)
    return DomainConfig.fromXmConfig(path, environ=os.environ)


def _describeDisplays(devices: dict) -> list[str]:
    lines = []
    for vfb in devices.get("vfb", []):
        where = (f"VNC on {vfb['vnc_listen']}:{vfb['vnc_port']}" if vfb["vnc_port"] is not None
                 else "no VNC display")
        lines.append(f"  vfb {vfb['devid']}: {where} (keyboard: vkbd {vfb['vkbd']})")
    return lines


def _create(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from xend_vfb import sxp

    # Check the config before anything else, so a mistake is reported even without a daemon.
    config = _readDomainConfig(args.config, args.sxp)
    if args.dry_run:
        out.write(sxp.pretty(config.toSXP()) + "\n")
        return 0
    if _call({"op": "ping"}).get("emulated") and config.emulationWarning():
        err.write(config.emulationWarning() + "\n")
    reply = _call({"op": "create", "sxp": sxp.show(config.toSXP())})
    out.write(f"Started domain {reply['name']} (id={reply['domid']})\n")
    out.write("".join(line + "\n" for line in _describeDisplays(reply["devices"])))
    return 0


def _destroy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _call({"op": "destroy", "domain": args.domain})
    return 0


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    domains = _call({"op": "list"})["domains"]
    if args.json:
        out.write(json.dumps(domains, indent=2) + "\n")
        return 0
    out.write(f"{'Name':<24}{'ID':>5}  Displays\n")
    for domain in domains:
        displays = ", ".join(
            f"vfb {v['devid']}: {v['vnc_listen']}:{v['vnc_port']}" if v["vnc_port"] is not None
            else f"vfb {v['devid']}" for v in domain["devices"]["vfb"]) or "-"
        out.write(f"{domain['name'] or '?':<24}{domain['domid']:>5}  {displays}\n")
    return 0


def _attach(deviceClass: str) -> Handler:
    def attach(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        _deviceConfigClass(deviceClass).parse(args.spec, deviceClass, environ=os.environ)
        environ = {k: os.environ[k] for k in ("DISPLAY", "XAUTHORITY") if k in os.environ}
        reply = _call({"op": "attach", "domain": args.domain, "class": deviceClass,
                       "spec": args.spec, "environ": environ})
        device = reply["device"]
        out.write(f"{deviceClass} {device['devid']} attached to domain {reply['domid']}\n")
        if deviceClass == "vfb":
            out.write("".join(line + "\n" for line in _describeDisplays({"vfb": [device]})))
        return 0

    return attach


def _detach(deviceClass: str) -> Handler:
    def detach(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        _call({"op": "detach", "domain": args.domain, "class": deviceClass,
               "devid": args.devid, "force": args.force})
        return 0

    return detach


def _deviceList(deviceClass: str) -> Handler:
    def listing(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        rows = _call({"op": "devices", "domain": args.domain, "class": deviceClass})["devices"]
        if args.json:
            out.write(json.dumps(rows, indent=2) + "\n")
            return 0
        out.write(f"{'Idx':>3}  {'BE-state':<13}{'FE-state':<13}Address\n")
        for row in rows:
            address = (f"{row['vnc_listen']}:{row['vnc_port']}" if row.get("vnc_port") else "-")
            out.write(f"{row['devid']:>3}  {XenbusState(row['backend_state']).name:<13}"
                      f"{XenbusState(row['frontend_state']).name:<13}{address}\n")
        return 0

    return listing


def _screenshot(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import base64

    reply = _call({"op": "screenshot", "domain": args.domain, "devid": args.devid})
    with open(args.file, "wb") as f:
        f.write(base64.b64decode(reply["png"]))
    out.write(f"wrote {args.file}\n")
    return 0


def _readPassword(err: TextIO) -> str:
    """The new password from standard input: typed twice at a terminal, else its
    first line.  Never from the command line, where `ps` would show it."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("New VNC password: ", stream=err)
        if getpass.getpass("Again: ", stream=err) != password:
            raise XendVfbError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _expiry(text: str) -> float | None:
    """--expire: seconds from now, or `never`."""
    if text == "never":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r} (expected seconds or never)")
    return seconds


def _vncPasswd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    password = _readPassword(err)
    if not password:
        raise XendVfbError("no password on standard input")
    _call({"op": "vnc_passwd", "domain": args.domain, "devid": args.devid,
           "password": password, "expire": args.expire})
    return 0


def _vncViewer(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """xl's `vncviewer`: $VNCVIEWER on the display's address; with --autopass the
    password goes to the viewer's standard input as a VNC password file (TigerVNC's
    and TightVNC's ``-passwd /dev/stdin``), never onto its command line."""
    import base64
    import subprocess

    reply = _call({"op": "vnc_viewer", "domain": args.domain, "devid": args.devid,
                   "autopass": args.autopass})
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(reply["listen"], reply["listen"])
    program = os.environ.get("VNCVIEWER") or "vncviewer"
    command = [program]
    if reply.get("ca"):
        command += ["-X509CA", reply["ca"]]  # TigerVNC's: the CA that signed the display's
    secret = None
    if reply.get("passwd_file"):
        command += ["-passwd", "/dev/stdin"]
        secret = base64.b64decode(reply["passwd_file"])
    command.append(f"{host}::{reply['port']}")
    try:
        return subprocess.run(command, input=secret).returncode
    except OSError as e:
        raise XendVfbError(f"cannot run {program}: {e.strerror} (set VNCVIEWER to the VNC "
                           "viewer to use)") from None


def _consoleURL(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    reply = _call({"op": "console_url", "domain": args.domain, "devid": args.devid})
    out.write(reply["url"] + "\n")
    return 0


def _stop(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        _call({"op": "stop", "all": args.all})
    except DaemonNotRunning:
        if not args.all:
            raise
        # Rare (the daemon was killed), so this path may import the emulated host.
        from xend_vfb.host.emulated import stopEmulatedHost

        for what in stopEmulatedHost(_runDir()):
            out.write(f"stopped {what}\n")
    return 0


def _lifecycle(op: str, done: str) -> Handler:
    """`reboot` and `shutdown`: ask the guest; with --wait, until the daemon has acted."""

    def handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        reply = _call({"op": op, "domain": args.domain,
                       "wait": WAIT_TIMEOUT if args.wait else None})
        if args.wait and reply.get("now") is not None:
            out.write(f"Domain {args.domain} {done} (id={reply['now']})\n")
        return 0

    return handler


def _save(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _call({"op": "save", "domain": args.domain, "file": os.path.abspath(args.file)})
    out.write(f"Saved domain {args.domain} to {args.file}\n")
    return 0


def _restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    reply = _call({"op": "restore", "file": os.path.abspath(args.file)})
    out.write(f"Restored domain {reply['name']} (id={reply['domid']})\n")
    out.write("".join(line + "\n" for line in _describeDisplays(reply["devices"])))
    return 0


def _migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    reply = _call({"op": "migrate", "domain": args.domain, "host": args.host})
    where = f" (id={reply['now']})" if reply.get("now") is not None else ""
    out.write(f"Migrated domain {args.domain} to {args.host}{where}\n")
    return 0


def _migrateReceive(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The destination's side of `migrate`, run there by the source's daemon over ssh."""
    if args.step in ("arrived", "cancel") and not args.uuid:
        raise _UsageError(f"migrate-receive {args.step}: the guest's UUID is missing")
    if args.step == "record":
        try:
            record = json.loads(sys.stdin.buffer.read())
        except ValueError as e:
            raise DaemonError(f"not the record of a migrating guest: {e}") from None
        _call({"op": "receive_guest", "record": record})
    elif args.step == "image":
        _receiveImage(out)
    elif args.step == "arrived":
        out.write(f"{_call({'op': 'guest_arrived', 'uuid': args.uuid})['domid']}\n")
    else:
        _call({"op": "cancel_guest", "uuid": args.uuid})
    return 0


def _receiveImage(out: TextIO) -> None:
    """Emulated mode: the saved guest on standard input becomes a domain here."""
    import shutil
    import tempfile

    fd, path = tempfile.mkstemp(prefix="migrating-", dir=_runDir())
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        out.write(f"{_call({'op': 'receive_image', 'file': path})['domid']}\n")
    finally:
        os.unlink(path)


def _daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        pid = _call({"op": "ping"}, timeout=5)["pid"]
    except DaemonNotRunning:
        pass
    else:
        raise DaemonError(f"the xend-vfb daemon is already running (pid {pid})")
    if args.foreground:
        from xend_vfb.daemon import runDaemon
        from xend_vfb.log import startLogging

        startLogging(sys.stderr)
        return runDaemon(_runDir(), args.emulated)
    return _startInBackground(args, out)


def _startInBackground(args: argparse.Namespace, out: TextIO) -> int:
    """Run `daemon --foreground` in its own session, logging to the run dir, and
    return once it answers."""
    import subprocess

    from xend_vfb.supervisor import programCommand

    os.makedirs(_runDir(), mode=0o700, exist_ok=True)
    logPath = os.path.join(_runDir(), "xend-vfb.log")
    command = [*programCommand("xend-vfb"), "daemon", "--foreground"]
    if args.emulated:
        command.append("--emulated")
    with open(logPath, "ab") as logFile:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=logFile,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            with open(logPath, errors="replace") as f:
                last = [line for line in f.read().splitlines() if line.startswith("Error:")]
            raise DaemonError(last[-1][len("Error: "):] if last else
                              f"the daemon exited at start (status {child.returncode}); "
                              f"see {logPath}")
        try:
            _call({"op": "ping"}, timeout=2)
        except DaemonError:
            time.sleep(0.05)
            continue
        out.write(f"xend-vfb daemon started (pid {child.pid}, log {logPath})\n")
        return 0
    raise DaemonError(f"the daemon did not answer within {START_TIMEOUT:g} s; see {logPath}")


#: One argument of a command: what `ArgumentParser.add_argument` takes.
_Argument = tuple[tuple[str, ...], dict]


def _arg(*names: str, **options: object) -> _Argument:
    return names, options


DOMAIN = _arg("domain", metavar="DOM", help="domain name or id")
JSON = _arg("--json", action="store_true", help="print a JSON array")


class _Commands:
    """The subcommands, declared one by one.  With `only`, just that command is built:
    argparse makes every declared command's parser at once, and all of them cost a
    client call more than its request to the daemon."""

    def __init__(self, parser: _Parser, only: str | None) -> None:
        self.subparsers = parser.add_subparsers(metavar="COMMAND", dest="command",
                                                required=True)
        self.only = only

    def add(self, name: str, summary: str, handler: Handler, *arguments: _Argument) -> None:
        if self.only is not None and name != self.only:
            return
        command = self.subparsers.add_parser(name, help=summary, description=summary)
        # SUPPRESS keeps a --verbose given before the command from being reset here.
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="more detail"
        )
        command.set_defaults(handler=handler)
        for names, options in arguments:
            command.add_argument(*names, **options)

    def built(self) -> bool:
        return bool(self.subparsers.choices)


def _addCreate(commands: _Commands) -> None:
    commands.add(
        "create", "create a domain from a config file", _create,
        _arg("-n", "--dry-run", action="store_true",
             help="print the domain's SXP and create nothing"),
        _arg("-C", dest="sxp", action="store_true", help="CONFIG is SXP (as printed by create -n)"),
        _arg("config", metavar="CONFIG", help="xm config file (or SXP file with -C)"),
    )


def _addDaemon(commands: _Commands) -> None:
    commands.add(
        "daemon", "run the xend-vfb daemon", _daemon,
        _arg("--emulated", action="store_true",
             help="no hypervisor: run the embedded xenstored and simulated guests"),
        _arg("--foreground", action="store_true", help="do not go to the background"),
    )


def _addDomainCommands(commands: _Commands) -> None:
    commands.add("destroy", "destroy a domain", _destroy, DOMAIN)
    commands.add("list", "list domains", _list, JSON)
    commands.add("screenshot", "write a display's screen to a PNG file", _screenshot,
                 DOMAIN, _arg("file", metavar="FILE.png"),
                 _arg("--devid", type=int, default=0, help="vfb device id (default 0)"))
    commands.add("console-url", "print a browser console URL for a display (one use, "
                 "valid a few minutes)", _consoleURL, DOMAIN,
                 _arg("--devid", type=int, default=0, help="vfb device id (default 0)"))
    commands.add("stop", "stop the daemon (guests keep running)", _stop,
                 _arg("--all", action="store_true",
                      help="in emulated mode, also stop every guest and xenstored"))


def _addConsoleCommands(commands: _Commands) -> None:
    devid = _arg("--devid", type=int, default=0, help="vfb device id (default 0)")
    commands.add("vncviewer", "run a VNC viewer ($VNCVIEWER, default vncviewer) on a "
                 "domain's display", _vncViewer, DOMAIN, devid,
                 _arg("-a", "--autopass", action="store_true",
                      help="hand the display's password to the viewer on its standard input"))
    commands.add("vnc-passwd", "set a display's VNC password, read from standard input "
                  "(applied at once: viewers already in stay)", _vncPasswd, DOMAIN, devid,
                  _arg("--expire", metavar="SECONDS|never", type=_expiry, default=None,
                       help="refuse new viewers this many seconds from now (default never)"))


def _addLifecycleCommands(commands: _Commands) -> None:
    for name, summary, done in (("reboot", "ask a guest to reboot", "rebooted"),
                                ("shutdown", "ask a guest to shut down", "shut down")):
        commands.add(name, summary, _lifecycle(name, done), DOMAIN,
                     _arg("-w", "--wait", action="store_true",
                          help="wait until the guest has done it"))
    commands.add("save", "save a guest to a file (it stops running)", _save,
                 DOMAIN, _arg("file", metavar="FILE"))
    commands.add("restore", "restore a guest from a saved file", _restore,
                 _arg("file", metavar="FILE"))
    commands.add("migrate", "move a running guest to another host", _migrate,
                 DOMAIN, _arg("host", metavar="HOST", help="destination (localhost: this host)"))
    commands.add("migrate-receive", "the destination's side of migrate (run there over "
                 "$XEND_VFB_SSH by the source's daemon)", _migrateReceive,
                 _arg("step", choices=("record", "image", "arrived", "cancel"),
                      help="record: keep the guest's record (standard input) until it "
                           "arrives; image: restore the saved guest on standard input "
                           "(emulated mode); arrived: give the arrived guest its display "
                           "and let it run; cancel: forget a guest that did not arrive"),
                 _arg("uuid", metavar="UUID", nargs="?", help="the guest (arrived, cancel)"))


def _addDeviceCommands(commands: _Commands, name: str) -> None:
    commands.add(f"{name}-attach", f"add a {name} device to a running domain", _attach(name),
                 DOMAIN, _arg("spec", metavar="SPEC",
                              help="device string, e.g. 'vnc=1,vncunused=1'"))
    commands.add(f"{name}-detach", f"remove a {name} device from a domain", _detach(name),
                 DOMAIN, _arg("devid", metavar="DEVID", type=int),
                 _arg("--force", action="store_true", help="do not wait for the guest"))
    commands.add(f"{name}-list", f"list a domain's {name} devices", _deviceList(name),
                 DOMAIN, JSON)


def buildParser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` the top level and that one command (the
    whole one if there is no such command); a new subcommand is one more ``_add...``
    call here."""
    parser = _Parser(
        prog="xend-vfb", description="Paravirtual display and keyboard devices for Xen guests."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = _Commands(parser, only)
    _addDaemon(commands)
    _addCreate(commands)
    _addDomainCommands(commands)
    _addLifecycleCommands(commands)
    _addConsoleCommands(commands)
    for deviceClass in DEVICE_CLASSES:
        _addDeviceCommands(commands, deviceClass)
    if not commands.built():
        return buildParser()
    return parser


def _commandNamed(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when nothing before it but --verbose could make the
    parse need the other commands (help, --version, an abbreviated option)."""
    for arg in argv:
        if arg not in ("-v", "--verbose"):
            return None if arg.startswith("-") else arg
    return None


def _fail(err: TextIO, message: str, error: BaseException | None, verbose: bool) -> None:
    err.write(f"Error: {message}\n")
    if verbose and error is not None:
        import traceback

        err.write("".join(traceback.format_exception(error)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``xend-vfb`` command; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = buildParser(_commandNamed(argv)).parse_args(argv)
    except _UsageError as e:
        _fail(err, str(e), None, False)
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return args.handler(args, out, err)
    except _UsageError as e:  # what argparse cannot say (one argument needs another)
        _fail(err, str(e), None, False)
        return EXIT_USAGE
    except XendVfbError as e:
        _fail(err, str(e), e, args.verbose)
    except KeyboardInterrupt:
        _fail(err, "interrupted", None, False)
    except Exception as e:  # a bug: still one line, with the traceback on request
        hint = "" if args.verbose else " (run with --verbose for the traceback)"
        _fail(err, f"internal error: {type(e).__name__}: {e}{hint}", e, args.verbose)
    return EXIT_FAILURE
