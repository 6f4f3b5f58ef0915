"""What a device class is: every class the project serves, declared here, once.

A device class has four parts, each living with the side that uses it:

- its **config class** (`model`): the keys, their kinds and defaults, the rules
  between them; pure, shared by the toolstack and the backend;
- its **controller** (`vfbif`): what the toolstack writes into the device's areas;
- its **backend ops** (`backend/`): the backend's steps through the XenbusState
  handshake;
- its **simulated frontend** (`guest/`): the test guest's side of the handshake.

The config class is imported here; the other three are named by their dotted
path and imported only by the side that asks for them (`controllerClass`,
`makeOps`, `frontendClass`), the way Twisted's `ServiceMaker` names a plugin's
module: so the backend process never loads the toolstack's controllers, nor the
daemon the backend's VNC server, nor the CLI anything but the config model; a new
class is one entry here plus its four parts.

Everything that walks "every device class" iterates `DEVICE_CLASSES`, in the
order devices are created (a display's keyboard before the display).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from xend_vfb.errors import DeviceError
from xend_vfb.model import DeviceConfig, VfbConfig, VkbdConfig

__all__ = ["DeviceClass", "DEVICE_CLASSES", "classNamed", "VFB", "VKBD"]


@dataclass(frozen=True)
class DeviceClass:
    """One device class: its config class and where its other three parts are."""

    config: type[DeviceConfig]
    #: Dotted name of its `DevController` subclass.
    controllerName: str
    #: Dotted name of the factory of its backend `DeviceOps`.
    opsName: str
    #: Dotted name of its simulated guest `Frontend`.
    frontendName: str
    #: The class of the device each device of this one is created with: written
    #: before it, removed after it, its id kept in this device's private record
    #: under the companion's class name, and the receiver of its input (a
    #: display's keyboard).
    companion: str | None = None

    @property
    def name(self) -> str:
        """The class's name in xenstore paths (``device/<name>/<devid>``)."""
        return self.config.deviceClass

    def controllerClass(self) -> type:
        """The toolstack's controller class (imports the toolstack side)."""
        return _load(self.controllerName)

    def makeOps(self) -> Any:
        """A new backend ops table for one device (imports the backend side)."""
        return _load(self.opsName)()

    def frontendClass(self) -> type:
        """The simulated guest's frontend class (imports the guest side)."""
        return _load(self.frontendName)


VKBD = DeviceClass(
    config=VkbdConfig,
    controllerName="xend_vfb.vfbif.VkbdifController",
    opsName="xend_vfb.backend.vkbd.VkbdOps",
    frontendName="xend_vfb.guest.kbd.VkbdFrontend",
)

VFB = DeviceClass(
    config=VfbConfig,
    controllerName="xend_vfb.vfbif.VfbifController",
    opsName="xend_vfb.backend.vfb.VfbOps",
    frontendName="xend_vfb.guest.fb.VfbFrontend",
    companion=VKBD.name,
)

#: Every class, companions before the classes that have them.
DEVICE_CLASSES: tuple[DeviceClass, ...] = (VKBD, VFB)


def classNamed(name: str) -> DeviceClass:
    """The class called `name`; a `DeviceError` naming the known ones otherwise."""
    for cls in DEVICE_CLASSES:
        if cls.name == name:
            return cls
    known = ", ".join(cls.name for cls in DEVICE_CLASSES)
    raise DeviceError(f"unknown device class {name!r} (known: {known})")


def _load(dottedName: str) -> Any:
    module, _, name = dottedName.rpartition(".")
    return getattr(importlib.import_module(module), name)
