"""VeNCrypt with x509 (`XEND_VFB_VNC_TLS=1`) against real clients, and live passwords.

TigerVNC's viewer (on Xvfb) is the client admins use: right and wrong CA, password
right and wrong, X509None, and a server asking for client certificates (TigerVNC has
none to give).  Client certificates themselves are shown by the reference client
(`tests.rfb_reference`) over Twisted's client TLS.  Clients that cannot do VeNCrypt
are refused with the reason.  That a viewer got in is seen on the server: the screen
gains an observer.  Certificates are made at test time (`tests.helpers_tls`).
"""

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock

from tests.helpers_rfb import (
    VNCDOTOOL_WARNINGS,
    FakeSink,
    connect,
    fill,
    hangUp,
    loggedProblems,
    roundTrip,
    startDisplay,
)
from tests.helpers_tigervnc import Xvfb, runViewer
from tests.helpers_tls import issue, makeCA, writeCertDir, writePEM
from tests.rfb_reference import FORMATS, RAW, Refused, close, referenceConnect
from xend_vfb.display.screen import Screen
from xend_vfb.rfb.vncdisplay import VNCDisplay
from xend_vfb.tls import TLSSettings

pytestmark = [
    pytest.mark.timeout(60),
    *VNCDOTOOL_WARNINGS,
    # Twisted's client certificates (the test's side) are pyOpenSSL objects.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL"),
]

REQUIRED = "this display requires VeNCrypt (TLS with x509 certificates)"


@pytest.fixture(scope="module")
def xdisplay():
    server = Xvfb()
    yield server.display
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, the display's certificates signed by it, a stranger CA, and a client
    certificate from each."""
    root = tmp_path_factory.mktemp("pki")
    ca, stranger = makeCA(), makeCA("a stranger")
    certDir = writeCertDir(str(root / "vnc"), ca, issue(ca, "localhost"))
    return {
        "ca": ca, "certDir": certDir, "caFile": f"{certDir}/ca-cert.pem",
        "strangerFile": writePEM(str(root / "stranger.pem"), stranger.certPEM()),
        "client": issue(ca, "admin", client=True),
        "strangerClient": issue(stranger, "intruder", client=True),
    }


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return str(path)


def viewerJoined(screen: Screen) -> Deferred:
    """Fires once a viewer watches `screen` (past authentication and ClientInit)."""
    d = Deferred()

    def changed(count: int) -> None:
        if count and not d.called:
            d.callback(count)

    screen.onViewersChanged = changed
    return d


async def tlsDisplay(pki, password="", verify=False, **kwargs):
    screen = Screen(64, 48)
    fill(screen)
    tls = TLSSettings(pki["certDir"], verify).contextFactory()
    return await startDisplay(screen, password=password, tls=tls, **kwargs)


def clientTLS(pki, identity=None):
    """Twisted's client TLS options trusting the CA, presenting `identity` if given."""
    client = None
    if identity is not None:
        client = PrivateCertificate.loadPEM(identity.keyPEM() + identity.certPEM())
    return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(pki["ca"].certPEM()),
                               clientCertificate=client)


def onlyConnection(display):
    (connection,) = display._connections
    return connection


# -- TigerVNC -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tigervnc_x509vnc_with_the_right_ca_and_password(pki, xdisplay, home):
    display, port = await tlsDisplay(pki, password="s3cret")
    joined = viewerJoined(display.screen)
    viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "X509Vnc", "-X509CA",
                       pki["caFile"], password="s3cret")
    await joined
    connection = onlyConnection(display)
    assert ISSLTransport.providedBy(connection.transport)
    assert connection._subtype == 261  # X509Vnc
    assert "Choosing security type X509Vnc (261)" in viewer.stderr
    assert "TLS handshake completed with" in viewer.stderr
    await viewer.stop()
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tigervnc_x509none_without_a_password(pki, xdisplay, home):
    display, port = await tlsDisplay(pki)
    joined = viewerJoined(display.screen)
    viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "X509None", "-X509CA",
                       pki["caFile"])
    await joined
    assert onlyConnection(display)._subtype == 260  # X509None
    await viewer.stop()
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tigervnc_wrong_password_gets_the_reason(pki, xdisplay, home):
    display, port = await tlsDisplay(pki, password="s3cret")
    with loggedProblems() as problems:
        viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "X509Vnc", "-X509CA",
                           pki["caFile"], password="wrong")
        log = await viewer.ended
    assert "Authentication failure: authentication failed" in log
    assert "TLS handshake completed with" in log
    assert display.viewers == 0
    assert any("failed authentication" in e.get("log_format", "") for e in problems)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tigervnc_does_not_trust_a_certificate_of_another_ca(pki, xdisplay, home):
    display, port = await tlsDisplay(pki, password="s3cret")
    viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "X509Vnc", "-X509CA",
                       pki["strangerFile"], password="s3cret")
    # It would ask its user whether to trust it: the log says why before the question.
    await viewer.waitFor("server cert signer not found")
    assert display.viewers == 0
    await viewer.stop()
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tigervnc_without_a_client_certificate_when_verify_is_on(pki, xdisplay, home):
    display, port = await tlsDisplay(pki, password="s3cret", verify=True)
    with loggedProblems():
        viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "X509Vnc", "-X509CA",
                           pki["caFile"], password="s3cret")
        log = await viewer.ended
    assert "TLS handshake completed" not in log
    assert display.viewers == 0
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tigervnc_without_tls_ends_at_once(pki, xdisplay, home):
    display, port = await tlsDisplay(pki, password="s3cret")
    viewer = runViewer(xdisplay, home, port, "-SecurityTypes", "VncAuth", password="s3cret")
    log = await viewer.ended
    assert "Server offers security type VeNCrypt(19)" in log
    assert display.viewers == 0
    await display.stop()


# -- client certificates (the reference client over Twisted's client TLS) ---------------


@pytest_twisted.ensureDeferred
async def test_verify_takes_a_client_certificate_signed_by_the_ca(pki):
    display, port = await tlsDisplay(pki, password="s3cret", verify=True)
    client = await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="s3cret",
                                    tls=clientTLS(pki, pki["client"]))
    assert client.subtypes == (261,)
    update = await client.request()
    assert update.rects and display.viewers == 1
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("who", [None, "strangerClient"])
async def test_verify_refuses_no_certificate_or_a_strangers(pki, who):
    display, port = await tlsDisplay(pki, password="s3cret", verify=True)
    with loggedProblems(), pytest.raises(Exception) as caught:
        await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="s3cret",
                               tls=clientTLS(pki, pki[who] if who else None))
    assert not isinstance(caught.value, Refused)  # the TLS handshake, not RFB, failed
    assert display.viewers == 0
    await display.stop()


# -- clients that cannot do VeNCrypt --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_client_choosing_another_type_anyway_gets_the_reason(pki):
    display, port = await tlsDisplay(pki, password="s3cret")
    with pytest.raises(Refused) as caught:
        await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="s3cret")
    assert str(caught.value) == REQUIRED
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_an_rfb_3_3_client_gets_the_reason(pki):
    from vncdotool.client import VNCDoException

    display, port = await tlsDisplay(pki, password="s3cret")
    with pytest.raises(VNCDoException) as caught:
        await connect(port, password="s3cret", version=(3, 3))
    assert REQUIRED in str(caught.value)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_without_vencrypt_does_not_hang(pki):
    from vncdotool.client import VNCDoException

    display, port = await tlsDisplay(pki, password="s3cret")
    with pytest.raises(VNCDoException) as caught:
        await connect(port, password="s3cret")
    assert "unknown security types: (19,)" in str(caught.value)
    await display.stop()


# -- passwords changed and expired while the display runs ----------------------------------


@pytest_twisted.ensureDeferred
async def test_a_new_password_counts_at_once_and_viewers_stay(pki):
    display, port = await tlsDisplay(pki, password="old")
    tls = clientTLS(pki)
    first = await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="old", tls=tls)
    display.setPassword("n3w")
    with pytest.raises(Refused) as caught:
        await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="old", tls=tls)
    assert str(caught.value) == "authentication failed"
    second = await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="n3w", tls=tls)
    assert (await first.request()).rects  # still in, still served
    assert display.viewers == 2
    await close(first)
    await close(second)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_an_expired_password_lets_nobody_new_in():
    clock = Clock()
    clock.advance(1000)
    display = VNCDisplay(Screen(20, 10), FakeSink(), password="pw", clock=clock)
    display.setPassword("pw", expires=1010)
    host, port = await display.start()
    client = await connect(port, password="pw")
    clock.advance(10)
    assert display.passwordExpired
    with pytest.raises(Refused) as caught:
        await referenceConnect(port, FORMATS["xrgb32"], [RAW], password="pw")
    assert str(caught.value) == "password expired"
    await roundTrip(client)  # the viewer already in stays
    assert display.viewers == 1
    display.setPassword("pw", expires=None)  # `--expire never`
    again = await connect(port, password="pw")
    await hangUp(again)
    await hangUp(client)
    await display.stop()
