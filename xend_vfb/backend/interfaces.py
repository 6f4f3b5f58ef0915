"""What a device's ops may ask of the backend that runs them.

`BackendDevice.context` provides `IBackendContext`: the one way ops reach guest
memory, event channels, their configuration and the other devices of their
domain.  `service.DomainBackend` is the real one; tests pass small fakes, checked
with `zope.interface.verify.verifyObject`.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IBackendContext"]


class IBackendContext(Interface):
    """A domain's backend, as its devices' ops see it."""

    name = Attribute("The domain's name, for window titles and log lines.")
    reactor = Attribute("The reactor: timers and listening ports.")
    foreignMemory = Attribute("`IForeignMemory`: maps the guest's pages.")
    eventChannels = Attribute("`IEventChannels`: binds the guest's event channels.")
    runDir = Attribute("The daemon's run directory (its `backends/` holds our sockets).")

    def deviceConfig(device):
        """Deferred firing with `device`'s config, read from its backend area and
        private record."""

    def secret(device, key):
        """Deferred firing with the secret `key` of `device` (e.g. ``vncpasswd``) or
        None."""

    def keyboardFor(vfbId):
        """The `IInputSink` where display `vfbId`'s input goes: its companion keyboard."""

    def requestPower(action):
        """A viewer of one of the domain's displays asks for a shutdown, reboot or reset
        (a `PowerAction`): pass it to the daemon.  Deferred firing once it is passed on
        (not when the daemon has acted), failing if it could not be."""

    def keep(devid, held):
        """Display `devid`'s device is going: keep `held` for the guest's next domain
        and return True, or return False (then the ops stop it)."""

    def takeHeld(devid):
        """The display kept for display `devid` by an earlier domain, or None."""
