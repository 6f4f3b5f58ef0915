"""The browser console's settings: where it listens, and where noVNC is.

Both come from the daemon's environment (`examples/xend-vfb-daemon.conf`) and are read
when the console starts, so a mistake is the daemon's one-line error at start.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from xend_vfb.errors import ConfigError
from xend_vfb.settings import buildDir

__all__ = ["DEFAULT_LISTEN", "WebSettings", "findNoVNC", "parseListen", "publicHost"]

DEFAULT_LISTEN = "127.0.0.1:6080"
_NOVNC_VERSION = "1.7.0"


@dataclass(frozen=True)
class WebSettings:
    """Where the console listens (`host`, `port`; port 0: any free one) and noVNC's
    directory (`novnc`: the package as npm installs it, `core/rfb.js` inside)."""

    host: str
    port: int
    novnc: str

    @classmethod
    def fromEnvironment(cls, environ: dict[str, str]) -> WebSettings | None:
        """The settings in `environ`, or None when `XEND_VFB_WEB_LISTEN` is empty (the
        console is off).  Raises `ConfigError` naming the setting that is wrong."""
        listen = parseListen(environ.get("XEND_VFB_WEB_LISTEN", DEFAULT_LISTEN))
        if listen is None:
            return None
        return cls(*listen, findNoVNC(environ))


def parseListen(value: str) -> tuple[str, int] | None:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) as (host, port); None for an empty value."""
    value = value.strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    try:
        if not sep or not port.isdigit() or int(port) > 65535 or (":" in host) != bracketed:
            raise ValueError("expected IPv4:PORT or [IPv6]:PORT")
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"XEND_VFB_WEB_LISTEN={value!r}: expected an IP address and a port, like "
            f"{DEFAULT_LISTEN} or [::1]:6080 (empty: no web console)") from None
    return host, int(port)


def findNoVNC(environ: dict[str, str]) -> str:
    """noVNC's package directory: `XEND_VFB_NOVNC_DIR`, or the set-up's in .build/."""
    directory = (environ.get("XEND_VFB_NOVNC_DIR")
                 or os.path.join(buildDir(), "novnc/node_modules/@novnc/novnc"))
    if not os.path.isfile(os.path.join(directory, "core", "rfb.js")):
        raise ConfigError(
            f"XEND_VFB_NOVNC_DIR: noVNC was not found in {directory} (no core/rfb.js): "
            f"install @novnc/novnc {_NOVNC_VERSION} there (./test.sh or ./demo.sh does), "
            f"or set XEND_VFB_WEB_LISTEN= to turn the web console off")
    return directory


def publicHost(host: str) -> str:
    """The host name URLs give for a console listening on `host`: the address itself,
    or this machine's name for a wildcard address (browsers cannot open 0.0.0.0)."""
    if ipaddress.ip_address(host).is_unspecified:
        return socket.getfqdn()
    return f"[{host}]" if ":" in host else host
