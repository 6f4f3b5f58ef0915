"""What a simulated frontend may ask of the guest it runs in.

Frontends get an `IGuestContext` (the real one is `domain.GuestDomain`), not the
domain object itself: they depend on these six things only.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IGuestContext"]


class IGuestContext(Interface):
    """One simulated guest, as its drivers see it."""

    domid = Attribute("The guest's domain id.")
    reactor = Attribute("The reactor: timers for animation and timeouts.")
    xs = Attribute("`IXenstore`: the guest's connection to xenstore.")
    memory = Attribute("`IGuestMemory`: the guest's pages, grants and event channels.")
    options = Attribute("`GuestOptions`: how the drivers behave.")
    inputLog = Attribute("`InputLog`: where the keyboard driver records what arrives.")
