"""Every default place, and the environment variable that moves it.

The daemon's settings are its environment (`examples/xend-vfb-daemon.conf`);
the CLI, the backends and the simulated guest read the same variables.  Standard
library only: the CLI imports this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["DEFAULT_RUN_DIR", "DEFAULT_VNC_CERT_DIR", "runDir", "vncCertDir", "hotplugDir",
           "buildDir", "sshCommand"]

#: Control socket, logs, backend records and, in emulated mode, xenstored and the
#: guests' memory.  The daemon and the CLI must agree on it.
DEFAULT_RUN_DIR = "/run/xend-vfb"

#: The VNC displays' certificates with TLS on (`xend_vfb.tls`): xend's vnc-x509-cert-dir.
DEFAULT_VNC_CERT_DIR = "/etc/xend-vfb/vnc"

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def runDir(environ: Mapping[str, str] = os.environ) -> str:
    """`XEND_VFB_RUN_DIR`, or `DEFAULT_RUN_DIR`."""
    return environ.get("XEND_VFB_RUN_DIR") or DEFAULT_RUN_DIR


def vncCertDir(environ: Mapping[str, str] = os.environ) -> str:
    """`XEND_VFB_VNC_X509_CERT_DIR`, or `DEFAULT_VNC_CERT_DIR`."""
    return environ.get("XEND_VFB_VNC_X509_CERT_DIR") or DEFAULT_VNC_CERT_DIR


def sshCommand(environ: Mapping[str, str] = os.environ) -> str:
    """How `migrate` reaches another host: `XEND_VFB_SSH` (a shell command, given
    HOST and the command to run there, as xl's `migrate -s`), or `ssh`."""
    return environ.get("XEND_VFB_SSH") or "ssh"


def hotplugDir(environ: Mapping[str, str] = os.environ) -> str:
    """Where a device's hotplug script is looked up by name: `XEND_VFB_HOTPLUG_DIR`,
    or the default scripts `vfb` and `vkbd` shipped inside the package."""
    return environ.get("XEND_VFB_HOTPLUG_DIR") or os.path.join(_PACKAGE, "hotplug")


def buildDir() -> str:
    """The set-up's `.build/` beside the package in a checkout (tools/bootstrap.sh):
    the embedded xenstored and its shim."""
    return os.path.join(os.path.dirname(_PACKAGE), ".build")
