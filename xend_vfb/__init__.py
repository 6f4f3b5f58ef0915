"""xend-vfb: paravirtual display (vfb) and keyboard (vkbd) devices for Xen guests."""

__version__ = "0.1.0"
