"""The browser console's parts on their own: tokens on a fake clock, the settings, where
a display is found, and the service in this process with a stand-in display (an echo
server), so that time can be moved past a token's life."""

import os
import socket
import ssl
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

from tests.helpers_tls import issue, makeCA, writeCertDir, writePEM
from tests.helpers_web import TOKEN_PROTOCOL
from xend_vfb.backend.control import displaySocketPath
from xend_vfb.errors import ConfigError, DeviceError
from xend_vfb.tls import CA_CERT
from xend_vfb.web import Grant, WebConsole, displaySocket
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
def test_where_a_display_is(xs, tmp_path):
    runDir = str(tmp_path)
    area = backendPath(3, "vfb", 1)
    yield xs.write(f"{area}/state", "4")
    with pytest.raises(DeviceError, match="^vfb 1 of domain 3 has no VNC display$"):
        yield displaySocket(xs, runDir, Grant(3, 1))
    with pytest.raises(DeviceError, match="^domain 3 has no vfb 0$"):
        yield displaySocket(xs, runDir, Grant(3, 0))
    yield xs.write(f"{area}/vnc-port", "5901")
    path = displaySocketPath(runDir, 5901)
    with pytest.raises(DeviceError, match="^vfb 1 of domain 3 has no socket for the browser "
                       "console"):
        yield displaySocket(xs, runDir, Grant(3, 1))
    os.makedirs(os.path.dirname(path))
    open(path, "w").close()
    assert (yield displaySocket(xs, runDir, Grant(3, 1))) == path


class _Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


@pytest.fixture(params=["127.0.0.1", "[::1]", "127.0.0.1 with TLS"])
def console(request, tmp_path):
    """The console on a free port of IPv4's or IPv6's loopback, or with TLS on the
    displays' certificates (made here); its tokens on a `Clock`; every display an echo
    server."""
    echo = reactor.listenUNIX(str(tmp_path / "echo.sock"), Factory.forProtocol(_Echo))
    clock = Clock()
    listen, _, tls = request.param.partition(" with ")
    environ = {"XEND_VFB_WEB_LISTEN": f"{listen}:0"}
    if tls:
        ca = makeCA()
        environ.update(XEND_VFB_VNC_TLS="1", XEND_VFB_VNC_X509_CERT_DIR=writeCertDir(
            str(tmp_path / "vnc"), ca, issue(ca, "localhost")))
    service = WebConsole(reactor, lambda grant: str(tmp_path / "echo.sock"), environ, clock)
    service.startService()
    yield service, clock
    pytest_twisted.blockon(service.stopService())
    pytest_twisted.blockon(echo.stopListening())


def _caFile(service):
    """The CA that signed the console's certificate, if it has TLS."""
    certDir = service.environ.get("XEND_VFB_VNC_X509_CERT_DIR")
    return os.path.join(certDir, CA_CERT) if certDir else None


def _exchange(service, url, message, **sslopt):
    """Open the console's WebSocket as its page does, send `message`, return the reply."""
    origin, _, token = url.replace("/console#", "#").partition("#")
    ws = websocket.create_connection(origin.replace("http", "ws", 1) + "/websockify",
                                     origin=origin, timeout=10,
                                     subprotocols=["binary", TOKEN_PROTOCOL + token],
                                     sslopt={"ca_certs": _caFile(service), **sslopt})
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
    assert service.origin.startswith("https://" if _caFile(service) else "http://")
    assert (yield threads.deferToThread(_exchange, service, url, b"RFB")) == b"RFB"

    url = yield service.consoleURL(1, 0)
    clock.advance(TOKEN_SECONDS)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        yield threads.deferToThread(_exchange, service, url, b"RFB")
    assert refused.value.status_code == 403


def _get(service, path):
    """(status, headers) of a GET, as urllib sees it."""
    context = ssl.create_default_context(cafile=_caFile(service)) if _caFile(service) else None
    try:
        with urllib.request.urlopen(service.origin + path, timeout=10,
                                    context=context) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest_twisted.inlineCallbacks
def test_what_the_console_serves(console):
    service, _ = console
    status, headers = yield threads.deferToThread(_get, service, "/console")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    status, headers = yield threads.deferToThread(_get, service, "/novnc/core/rfb.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript"
    for path in ("/novnc/core/", "/novnc/../setup.py", "/nothing", "/console.js/x"):
        assert (yield threads.deferToThread(_get, service, path))[0] == 404, path



@pytest_twisted.inlineCallbacks
def test_with_verify_a_browser_shows_a_certificate(tmp_path):
    ca = makeCA()
    environ = {"XEND_VFB_WEB_LISTEN": "127.0.0.1:0", "XEND_VFB_VNC_TLS": "1",
               "XEND_VFB_VNC_X509_VERIFY": "1", "XEND_VFB_VNC_X509_CERT_DIR": writeCertDir(
                   str(tmp_path / "vnc"), ca, issue(ca, "localhost"))}
    admin = issue(ca, "admin", client=True)
    certfile = writePEM(str(tmp_path / "admin.pem"), admin.certPEM())
    keyfile = writePEM(str(tmp_path / "admin-key.pem"), admin.keyPEM())
    echo = reactor.listenUNIX(str(tmp_path / "echo.sock"), Factory.forProtocol(_Echo))
    service = WebConsole(reactor, lambda grant: str(tmp_path / "echo.sock"), environ)
    service.startService()
    try:
        url = yield service.consoleURL(1, 0)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            yield threads.deferToThread(_exchange, service, url, b"RFB")
        assert (yield threads.deferToThread(_exchange, service, url, b"RFB",
                                            certfile=certfile, keyfile=keyfile)) == b"RFB"
    finally:
        yield service.stopService()
        yield echo.stopListening()
