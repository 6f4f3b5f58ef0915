"""The xvp extension (power control from a viewer), with the reference client.

Only viewers that authenticated are offered it, and only on a display given a
`powerControl` callback; everything else is answered XVP_FAIL.  The whole path to
the daemon is tested in test_daemon_power.py.  Synchronisation: server messages
come in order, so an update round trip after a request means it was handled.
"""

import pytest
import pytest_twisted
from twisted.internet.defer import fail

from tests.helpers_rfb import startDisplay
from tests.rfb_reference import FORMATS, RAW, XVP, close, referenceConnect
from xend_vfb.display.screen import Screen
from xend_vfb.rfb.server import PowerAction

pytestmark = [pytest.mark.timeout(30)]

PF = FORMATS["xrgb32"]
XVP_FAIL, XVP_INIT, SHUTDOWN, REBOOT, RESET = 0, 1, 2, 3, 4


async def powerDisplay(password="", powerControl=None):
    """A small display with `password`, offering power control if given `powerControl`."""
    return await startDisplay(Screen(16, 8), password=password, powerControl=powerControl)


@pytest_twisted.ensureDeferred
async def test_an_authenticated_viewer_is_offered_power_control_and_uses_it():
    asked = []
    display, port = await powerDisplay("pw", asked.append)
    client = await referenceConnect(port, PF, [RAW, XVP], password="pw")
    await client.request()
    assert client.xvp == [(1, XVP_INIT)]
    for code in (SHUTDOWN, REBOOT, RESET):
        client.xvpRequest(code)
    await client.request()
    assert asked == [PowerAction.shutdown, PowerAction.reboot, PowerAction.reset]
    assert client.xvp == [(1, XVP_INIT)]  # success is silent, as in QEMU
    # A viewer that does not list xvp is not told, but may still ask.
    quiet = await referenceConnect(port, PF, [RAW], password="pw")
    await quiet.request()
    assert quiet.xvp == []
    await close(client)
    await close(quiet)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_refusals_are_xvp_fail():
    asked = []
    display, port = await powerDisplay("pw", asked.append)
    client = await referenceConnect(port, PF, [RAW, XVP], password="pw")
    client.xvpRequest(REBOOT, version=2)  # a version we do not speak
    client.xvpRequest(9)  # no such action
    await client.request()
    assert client.xvp == [(1, XVP_INIT), (1, XVP_FAIL), (1, XVP_FAIL)]
    assert asked == []
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_a_request_that_cannot_be_passed_on_is_xvp_fail():
    display, port = await powerDisplay("pw", lambda action: fail(OSError("xenstore gone")))
    client = await referenceConnect(port, PF, [RAW, XVP], password="pw")
    client.xvpRequest(RESET)
    await client.request()
    assert client.xvp == [(1, XVP_INIT), (1, XVP_FAIL)]
    await close(client)
    await display.stop()


@pytest.mark.parametrize(("password", "allowed"), [("", True), ("pw", False)])
@pytest_twisted.ensureDeferred
async def test_no_power_control_without_authentication_or_the_setting(password, allowed):
    asked = []
    display, port = await powerDisplay(password, asked.append if allowed else None)
    client = await referenceConnect(port, PF, [RAW, XVP], password=password or None)
    client.xvpRequest(REBOOT)
    await client.request()
    assert client.xvp == [(1, XVP_FAIL)]  # never offered, refused when asked
    assert asked == []
    await close(client)
    await display.stop()
