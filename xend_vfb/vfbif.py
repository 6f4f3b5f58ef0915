"""The two framebuffer device classes: only what differs from `DevController`."""

from typing import Any

from xend_vfb.controller import DevController
from xend_vfb.model import VfbConfig, VkbdConfig

__all__ = ["VfbifController", "VkbdifController"]


class VfbifController(DevController):
    """A paravirtual framebuffer; its VNC password stays in the private record."""

    deviceClass = VfbConfig.deviceClass
    configClass = VfbConfig


class VkbdifController(DevController):
    """A paravirtual keyboard and pointer."""

    deviceClass = VkbdConfig.deviceClass
    configClass = VkbdConfig

    def getDeviceDetails(self, config: Any, extra: dict[str, str]) -> tuple[dict, dict]:
        # Linux's xen-kbdfront reads these when it probes, which happens as soon as
        # the frontend area appears, before any backend runs: write them now.
        back = dict(config.backendDetails())
        back["feature-abs-pointer"] = "1"
        back["width"] = extra.get("width", "800")
        back["height"] = extra.get("height", "600")
        return back, {}
