"""The two framebuffer device classes: only what differs from `DevController`."""

from typing import Any

from twisted.internet.defer import Deferred

from xend_vfb.controller import DevController
from xend_vfb.model import OWN_SIZE, VfbConfig, VkbdConfig

__all__ = ["VfbifController", "VkbdifController"]


class VfbifController(DevController):
    """A paravirtual framebuffer; its VNC password stays in the private record."""

    deviceClass = VfbConfig.deviceClass
    configClass = VfbConfig


class VkbdifController(DevController):
    """A paravirtual keyboard and pointer."""

    deviceClass = VkbdConfig.deviceClass
    configClass = VkbdConfig
    #: Keys the guest reads once, when it probes: written with the device, never changed
    #: by `reconfigureDevice` (the guest would not see the change).
    probeKeys = frozenset({"width", "height", "feature-disable-keyboard",
                           "feature-disable-pointer"})

    def createDevice(self, config: Any, devid: int | None = None,
                     extra: dict[str, str] | None = None,
                     private: dict[str, str] | None = None) -> Deferred:
        if config.width is not None:
            private = dict(private or {}, **{OWN_SIZE: "1"})
        return super().createDevice(config, devid, extra, private)

    def getDeviceDetails(self, config: Any, extra: dict[str, str]) -> tuple[dict, dict]:
        # Linux's xen-kbdfront reads these when it probes, which happens as soon as
        # the frontend area appears, before any backend runs: write them now.  The
        # pointer's range is the keyboard's own, or its display's size (`extra`).
        back = dict(config.backendDetails())
        back["feature-abs-pointer"] = "1"
        back["feature-raw-pointer"] = "1"
        back.setdefault("width", extra.get("width", "800"))
        back.setdefault("height", extra.get("height", "600"))
        return back, {}

    def configKeys(self) -> frozenset[str]:
        return super().configKeys() - self.probeKeys
