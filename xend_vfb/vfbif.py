"""The two framebuffer device classes: only what differs from `DevController`."""

from typing import Any

from xend_vfb.controller import DevController, addControllerClass
from xend_vfb.model import VfbConfig, VkbdConfig

__all__ = ["VfbifController", "VkbdifController"]


@addControllerClass
class VfbifController(DevController):
    """A paravirtual framebuffer; its VNC password stays in the private record."""

    deviceClass = "vfb"
    configClass = VfbConfig


@addControllerClass
class VkbdifController(DevController):
    """A paravirtual keyboard and pointer."""

    deviceClass = "vkbd"
    configClass = VkbdConfig

    def getDeviceDetails(self, config: Any, extra: dict[str, str]) -> tuple[dict, dict]:
        # Linux's xen-kbdfront reads these when it probes, which happens as soon as
        # the frontend area appears, before any backend runs: write them now.
        back = dict(config.backendDetails())
        back["feature-abs-pointer"] = "1"
        back["width"] = extra.get("width", "800")
        back["height"] = extra.get("height", "600")
        return back, {}
