"""The ``xend-vfb`` command line, in the style of xm: ``xend-vfb create -n demo.cfg``.

Each subcommand is one ``_add...`` function that declares its arguments and its handler;
a handler takes the parsed arguments and the output streams and returns the exit status.
Every failure reaches the user as one line ``Error: <what and why>`` on stderr and a
non-zero exit (2 for a command-line mistake); ``--verbose`` adds the traceback.
"""

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from xend_vfb import __version__, sxp
from xend_vfb.errors import DaemonError, XendVfbError
from xend_vfb.model import DomainConfig, VfbConfig, VkbdConfig

__all__ = ["main", "buildParser"]

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """The command line itself is wrong (unknown command, missing argument)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one ``Error:`` line instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see: {self.prog} --help)")


def _requireDaemon() -> NoReturn:
    """Reach the daemon; until it exists there is none to reach."""
    raise DaemonError("the xend-vfb daemon is not running (start it with: xend-vfb daemon)")


def _readDomainConfig(path: str, isSXP: bool) -> DomainConfig:
    if isSXP:
        return DomainConfig.fromSXPFile(path)
    return DomainConfig.fromXmConfig(path, environ=os.environ)


def _create(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Check the config before anything else, so a mistake is reported even without a daemon.
    config = _readDomainConfig(args.config, args.sxp)
    if args.dry_run:
        out.write(sxp.pretty(config.toSXP()) + "\n")
        return 0
    _requireDaemon()


def _attach(deviceClass: type[VfbConfig] | type[VkbdConfig]) -> Handler:
    def attach(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        deviceClass.parse(args.spec, deviceClass.deviceClass, environ=os.environ)
        _requireDaemon()

    return attach


def _needsDaemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _requireDaemon()


def _addCommand(
    commands: "argparse._SubParsersAction[_Parser]", name: str, summary: str, handler: Handler
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=summary, description=summary)
    # SUPPRESS keeps a --verbose given before the command from being reset here.
    command.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="more detail"
    )
    command.set_defaults(handler=handler)
    return command


def _addCreate(commands: "argparse._SubParsersAction[_Parser]") -> None:
    create = _addCommand(commands, "create", "create a domain from a config file", _create)
    create.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="print the domain's SXP and create nothing",
    )
    create.add_argument(
        "-C", dest="sxp", action="store_true", help="CONFIG is SXP (as printed by create -n)"
    )
    create.add_argument("config", metavar="CONFIG", help="xm config file (or SXP file with -C)")


def _addDomainCommands(commands: "argparse._SubParsersAction[_Parser]") -> None:
    destroy = _addCommand(commands, "destroy", "destroy a domain", _needsDaemon)
    destroy.add_argument("domain", metavar="DOM", help="domain name or id")
    listing = _addCommand(commands, "list", "list domains", _needsDaemon)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    screenshot = _addCommand(
        commands, "screenshot", "write a display's screen to a PNG file", _needsDaemon
    )
    screenshot.add_argument("domain", metavar="DOM", help="domain name or id")
    screenshot.add_argument("file", metavar="FILE.png")
    screenshot.add_argument("--devid", type=int, default=0, help="vfb device id (default 0)")
    shutdown = _addCommand(commands, "shutdown", "stop the daemon", _needsDaemon)
    shutdown.add_argument(
        "--all", action="store_true", help="in emulated mode, also stop every guest and xenstored"
    )


def _addDeviceCommands(
    commands: "argparse._SubParsersAction[_Parser]", deviceClass: type[VfbConfig] | type[VkbdConfig]
) -> None:
    name = deviceClass.deviceClass
    attach = _addCommand(
        commands, f"{name}-attach", f"add a {name} device to a running domain", _attach(deviceClass)
    )
    attach.add_argument("domain", metavar="DOM", help="domain name or id")
    attach.add_argument("spec", metavar="SPEC", help="device string, e.g. 'vnc=1,vncunused=1'")
    detach = _addCommand(
        commands, f"{name}-detach", f"remove a {name} device from a domain", _needsDaemon
    )
    detach.add_argument("domain", metavar="DOM", help="domain name or id")
    detach.add_argument("devid", metavar="DEVID", type=int)
    detach.add_argument("--force", action="store_true", help="do not wait for the guest")
    listing = _addCommand(commands, f"{name}-list", f"list a domain's {name} devices", _needsDaemon)
    listing.add_argument("domain", metavar="DOM", help="domain name or id")
    listing.add_argument("--json", action="store_true", help="print a JSON array")


def buildParser() -> argparse.ArgumentParser:
    """The whole command line; a new subcommand is one more ``_add...`` call here."""
    parser = _Parser(
        prog="xend-vfb", description="Paravirtual display and keyboard devices for Xen guests."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", dest="command", required=True)
    _addCreate(commands)
    _addDomainCommands(commands)
    _addDeviceCommands(commands, VfbConfig)
    _addDeviceCommands(commands, VkbdConfig)
    return parser


def _fail(err: TextIO, message: str, error: BaseException | None, verbose: bool) -> None:
    err.write(f"Error: {message}\n")
    if verbose and error is not None:
        err.write("".join(traceback.format_exception(error)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``xend-vfb`` command; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    try:
        args = buildParser().parse_args(argv)
    except _UsageError as e:
        _fail(err, str(e), None, False)
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return args.handler(args, out, err)
    except XendVfbError as e:
        _fail(err, str(e), e, args.verbose)
    except KeyboardInterrupt:
        _fail(err, "interrupted", None, False)
    except Exception as e:  # a bug: still one line, with the traceback on request
        hint = "" if args.verbose else " (run with --verbose for the traceback)"
        _fail(err, f"internal error: {type(e).__name__}: {e}{hint}", e, args.verbose)
    return EXIT_FAILURE
