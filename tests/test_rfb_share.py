"""The ClientInit shared flag under each policy of `vncshare=` (QEMU's ``share=``).

Reference clients (`tests.rfb_reference`) ask for shared or exclusive access; who stays
connected is seen through the display's viewer count and the clients' lost connections.
"""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone

from tests.helpers_rfb import FakeSink, startDisplay
from tests.rfb_reference import FORMATS, RAW, ReferenceClient, close, referenceConnect
from xend_vfb.display.screen import Screen
from xend_vfb.errors import ConfigError
from xend_vfb.rfb.vncdisplay import VNCDisplay

pytestmark = [pytest.mark.timeout(30)]

PF = FORMATS["xrgb32"]


async def viewer(port, shared):
    client = await referenceConnect(port, PF, [RAW], shared=shared)
    await client.request()
    return client


async def refused(port, shared) -> None:
    """A client whose ClientInit is answered by closing the connection, no ServerInit."""
    client = ReferenceClient(PF, [RAW], shared)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    with pytest.raises(ConnectionDone):
        await client.ready


@pytest_twisted.ensureDeferred
async def test_allow_exclusive_is_the_default():
    display, port = await startDisplay(Screen(16, 16))
    first = await viewer(port, shared=True)
    second = await viewer(port, shared=True)
    assert display.viewers == 2
    exclusive = await viewer(port, shared=False)  # the others are disconnected
    await first.lost
    await second.lost
    assert display.viewers == 1
    await refused(port, shared=True)  # refused while exclusive is there
    assert display.viewers == 1
    gone = Deferred()
    display.screen.onViewersChanged = lambda count: count == 0 and gone.callback(None)
    await close(exclusive)
    await gone  # the server saw it leave
    display.screen.onViewersChanged = lambda count: None
    again = await viewer(port, shared=True)  # exclusive gone: shared viewers welcome
    assert display.viewers == 1
    await close(again)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_force_shared_refuses_exclusive_requests():
    display, port = await startDisplay(Screen(16, 16), share="force-shared")
    first = await viewer(port, shared=True)
    await refused(port, shared=False)
    second = await viewer(port, shared=True)
    assert display.viewers == 2
    await close(first)
    await close(second)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_ignore_lets_everybody_in():
    display, port = await startDisplay(Screen(16, 16), share="ignore")
    clients = [await viewer(port, shared=flag) for flag in (False, True, False)]
    assert display.viewers == 3
    for client in clients:
        await close(client)
    await display.stop()


def test_unknown_policy():
    with pytest.raises(ConfigError, match="unknown VNC share policy 'sometimes'"):
        VNCDisplay(Screen(8, 8), FakeSink(), share="sometimes")
