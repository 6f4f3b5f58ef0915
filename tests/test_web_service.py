"""The browser console's parts on their own: tokens on a fake clock, the settings, where
a display is found, and the service in this process with a stand-in display (an echo
server), so that time can be moved past a token's life."""

import socket
import urllib.error
import urllib.request

import pytest
import pytest_twisted
import websocket
from twisted.internet import reactor, threads
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.helpers_web import TOKEN_PROTOCOL
from xend_vfb.errors import ConfigError, DaemonError, DeviceError
from xend_vfb.web import Grant, WebConsole, displayAddress
from xend_vfb.web.proxy import _Valve
from xend_vfb.web.settings import parseListen, publicHost
from xend_vfb.web.tokens import TOKEN_SECONDS, Tokens
from xend_vfb.xenstore.paths import backendPath


def test_a_token_opens_its_display_once():
    tokens = Tokens(Clock())
    first, second = tokens.issue(Grant(1, 0)), tokens.issue(Grant(2, 1))
    assert first != second and len(first) >= 40
    assert first.replace("-", "").replace("_", "").isalnum()
    assert tokens.redeem(second) == Grant(2, 1)
    assert tokens.redeem(second) is None
    assert tokens.redeem("") is None and tokens.redeem(first + "x") is None
    assert tokens.redeem(first) == Grant(1, 0)


def test_a_token_expires():
    clock = Clock()
    tokens = Tokens(clock)
    token, early = tokens.issue(Grant(1, 0)), tokens.issue(Grant(1, 0))
    clock.advance(TOKEN_SECONDS - 1)
    assert tokens.redeem(early) == Grant(1, 0)
    clock.advance(1)
    assert tokens.redeem(token) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:6080", ("127.0.0.1", 6080)), (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
    ("[::1]:6080", ("::1", 6080)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("", None), (" ", None),
])
def test_listen_addresses(value, expected):
    assert parseListen(value) == expected


@pytest.mark.parametrize("value", ["6080", "localhost:6080", "127.0.0.1:", ":6080",
                                   "127.0.0.1:70000", "127.0.0.1:-1", "::1:6080", "[::1]"])
def test_bad_listen_addresses(value):
    with pytest.raises(ConfigError) as error:
        parseListen(value)
    assert str(error.value).startswith(f"XEND_VFB_WEB_LISTEN={value.strip()!r}: expected an "
                                       "IP address and a port")


def test_the_host_urls_name():
    assert publicHost("127.0.0.1") == "127.0.0.1"
    assert publicHost("::1") == "[::1]"
    assert publicHost("0.0.0.0") == publicHost("::") == socket.getfqdn()


def test_the_valve_is_a_push_producer():
    assert verifyObject(IPushProducer, _Valve(None, lambda: None, Clock()))


@pytest_twisted.inlineCallbacks
def test_where_a_display_is(xs):
    area = backendPath(3, "vfb", 1)
    yield xs.write(f"{area}/state", "4")
    with pytest.raises(DeviceError, match="^vfb 1 of domain 3 has no VNC display$"):
        yield displayAddress(xs, Grant(3, 1))
    with pytest.raises(DeviceError, match="^domain 3 has no vfb 0$"):
        yield displayAddress(xs, Grant(3, 0))
    yield xs.write(f"{area}/vnc-port", "5901")
    for listen, host in ((None, "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "::1"),
                         ("192.0.2.7", "192.0.2.7")):
        if listen is not None:
            yield xs.write(f"{area}/vnc-listen", listen)
        assert (yield displayAddress(xs, Grant(3, 1))) == (host, 5901)


class _Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


@pytest.fixture(params=["127.0.0.1", "::1"])
def console(request):
    """The console on a free port of IPv4's or IPv6's loopback, its tokens on a `Clock`,
    every display an echo server."""
    echo = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
    clock = Clock()
    listen = request.param if request.param[0].isdigit() else f"[{request.param}]"
    service = WebConsole(reactor, lambda grant: ("127.0.0.1", echo.getHost().port),
                         {"XEND_VFB_WEB_LISTEN": f"{listen}:0"}, clock)
    service.startService()
    yield service, clock
    pytest_twisted.blockon(service.stopService())
    pytest_twisted.blockon(echo.stopListening())


def _exchange(url, message):
    """Open the console's WebSocket as its page does, send `message`, return the reply."""
    origin, _, token = url.replace("/console#", "#").partition("#")
    ws = websocket.create_connection(origin.replace("http:", "ws:") + "/websockify",
                                     origin=origin, timeout=10,
                                     subprotocols=["binary", TOKEN_PROTOCOL + token])
    try:
        ws.send_binary(message)
        return ws.recv()
    finally:
        ws.close()


@pytest_twisted.inlineCallbacks
def test_an_expired_link_is_refused(console):
    service, clock = console
    url = yield service.consoleURL(1, 0)
    assert url.startswith(service.origin + "/console#")
    assert (yield threads.deferToThread(_exchange, url, b"RFB")) == b"RFB"

    url = yield service.consoleURL(1, 0)
    clock.advance(TOKEN_SECONDS)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        yield threads.deferToThread(_exchange, url, b"RFB")
    assert refused.value.status_code == 403


def _get(url):
    """(status, headers) of a GET, as urllib sees it."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest_twisted.inlineCallbacks
def test_what_the_console_serves(console):
    service, _ = console
    status, headers = yield threads.deferToThread(_get, service.origin + "/console")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    status, headers = yield threads.deferToThread(_get, service.origin + "/novnc/core/rfb.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript"
    for path in ("/novnc/core/", "/novnc/../setup.py", "/nothing", "/console.js/x"):
        assert (yield threads.deferToThread(_get, service.origin + path))[0] == 404, path


@pytest_twisted.inlineCallbacks
def test_no_console_with_tls_yet():
    service = WebConsole(reactor, None, {"XEND_VFB_WEB_LISTEN": "127.0.0.1:0",
                                         "XEND_VFB_VNC_TLS": "1"})
    service.startService()
    assert service.origin is None  # not listening: no plain HTTP where TLS was asked for
    with pytest.raises(DaemonError) as error:
        yield service.consoleURL(1, 0)
    assert str(error.value) == ("the web console is off: with XEND_VFB_VNC_TLS=1 the "
                                "displays speak only VeNCrypt, which the browser console "
                                "cannot yet")
    yield service.stopService()
