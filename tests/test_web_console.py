"""The browser console's WebSocket and links against a real emulated daemon, guest and
backend, with websocket-client as the viewer (the browser itself: test_web_browser.py).

Every refusal, and every misbehaving viewer, is checked next to a steady viewer of the
same display that must carry on.
"""

import os
import signal
import socket
import ssl
import struct

import pytest
import websocket

from tests.helpers_daemon import EXAMPLES, allConnected
from tests.helpers_tls import issue, makeCA, writeCertDir, writePEM
from tests.helpers_wait import WAIT, waitUntil
from tests.helpers_web import Link, WsViewer, refusal, viewers
from xend_vfb.tls import CA_CERT
from xend_vfb.web.proxy import CLOSE_NOT_BINARY, MAX_MESSAGE, STALL_SECONDS

pytestmark = pytest.mark.timeout(180)

FRAME = 800 * 600 * 4


def steadyViewer(run):
    viewer = WsViewer(Link.of(run, "demo").open())
    assert viewer.frame() == FRAME
    return viewer


def test_a_link_opens_its_display_once(demo):
    link = Link.of(demo, "demo")
    assert link.origin.startswith("http://127.0.0.1:")
    viewer = WsViewer(link.open())
    assert viewer.ws.getsubprotocol() == "binary"
    assert (viewer.width, viewer.height) == (800, 600)
    assert viewer.frame() == FRAME
    assert viewers(demo, 1) == 1
    # Used: refused, while its viewer carries on.
    assert refusal(link) == 403
    assert refusal(link, token="not-a-token-at-all") == 403
    assert viewer.frame() == FRAME
    viewer.close()
    waitUntil(lambda: viewers(demo, 1) == 0, "the viewer to leave")
    assert link.token not in demo.log()


def test_a_page_from_elsewhere_is_refused(demo):
    link = Link.of(demo, "demo")
    port = link.origin.rsplit(":", 1)[1]
    for origin in (f"http://evil.example:{port}", f"http://localhost:{port}",
                   "http://127.0.0.1:1", f"https://127.0.0.1:{port}", "null"):
        assert refusal(link, origin=origin) == 400, origin
    # The Origin is checked before the token is used: the link still works.
    viewer = WsViewer(link.open())
    assert viewer.frame() == FRAME
    viewer.close()


def test_console_url_errors(demo):
    assert demo.fails("console-url", "demo", "--devid", "3") == \
        "Error: domain 1 has no vfb 3"
    assert demo.fails("console-url", "nosuch") == "Error: domain 'nosuch' does not exist"


def test_without_a_web_console(run):
    run.env["XEND_VFB_WEB_LISTEN"] = ""
    run.start()
    run.cli("create", os.path.join(EXAMPLES, "demo.cfg"))
    assert run.fails("console-url", "demo") == \
        "Error: the web console is off (the daemon's XEND_VFB_WEB_LISTEN is empty)"


@pytest.mark.parametrize(("setting", "error"), [
    ("XEND_VFB_WEB_LISTEN=6080", "Error: XEND_VFB_WEB_LISTEN='6080': expected an IP address "
     "and a port, like 127.0.0.1:6080 or [::1]:6080 (empty: no web console)"),
    ("XEND_VFB_NOVNC_DIR=/nonexistent", "Error: XEND_VFB_NOVNC_DIR: noVNC was not found in "
     "/nonexistent (no core/rfb.js): install @novnc/novnc 1.7.0 there (./test.sh or "
     "./demo.sh does), or set XEND_VFB_WEB_LISTEN= to turn the web console off"),
])
def test_bad_settings_stop_the_daemon_at_start(run, setting, error):
    key, _, value = setting.partition("=")
    run.env[key] = value
    assert run.fails("daemon", "--emulated") == error


def test_a_busy_port_stops_the_daemon_at_start(run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run.env["XEND_VFB_WEB_LISTEN"] = f"127.0.0.1:{taken.getsockname()[1]}"
        error = run.fails("daemon", "--emulated")
    assert error.startswith("Error: Couldn't listen on 127.0.0.1:"), error


def closeCode(ws):
    """The close code of the frame that ended `ws` (None: dropped without one)."""
    try:
        while True:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return struct.unpack("!H", frame.data[:2])[0] if frame.data else None
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return None


def test_bad_input_ends_that_viewer_only(demo):
    steady = steadyViewer(demo)

    # Garbage instead of WebSocket framing (an unmasked frame with a reserved opcode).
    ws = Link.of(demo, "demo").open()
    ws.sock.sendall(b"\x83\x05hello" + os.urandom(64))
    assert closeCode(ws) == 1002  # protocol error

    # A frame announcing 1 TiB: refused on its header, nothing buffered.
    ws = Link.of(demo, "demo").open()
    ws.sock.sendall(b"\x82\xff" + struct.pack("!Q", 1 << 40) + os.urandom(4))
    assert closeCode(ws) == 1009  # too big

    # A message one byte over the limit, in small frames.
    ws = Link.of(demo, "demo").open()
    opcode = websocket.ABNF.OPCODE_BINARY
    for _ in range(MAX_MESSAGE // 4096):
        ws.send_frame(websocket.ABNF(0, 0, 0, 0, opcode, 1, b"\0" * 4096))
        opcode = websocket.ABNF.OPCODE_CONT
    ws.send_frame(websocket.ABNF(1, 0, 0, 0, opcode, 1, b"\0" * 4096))
    assert closeCode(ws) == 1009

    # Text instead of binary.
    ws = Link.of(demo, "demo").open()
    ws.send("RFB 003.008\n")
    assert closeCode(ws) == CLOSE_NOT_BINARY

    # Garbage RFB in good frames: the display's server hangs up, and so does the console.
    ws = Link.of(demo, "demo").open()
    ws.send_binary(b"RFB 999.999\n" + os.urandom(100))
    assert closeCode(ws) == 1000

    waitUntil(lambda: viewers(demo, 1) == 1, "only the steady viewer to remain")
    assert steady.frame() == FRAME
    steady.close()


def rss(pid):
    """A process's resident memory, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmRSS:"))
    return int(kib) << 10


def test_a_viewer_that_stops_reading_is_dropped(demo):
    steady = steadyViewer(demo)
    stalled = WsViewer(Link.of(demo, "demo").open(rcvbuf=4096))

    def dropped():
        """Ask for another full frame (1.9 MB), reading none; True once the console
        has dropped the viewer."""
        try:
            stalled.requestFrame()
        except (ConnectionError, websocket.WebSocketException):
            return True
        return viewers(demo, 1) == 1

    before = rss(demo.daemonPid())
    waitUntil(dropped, "the stalled viewer to be dropped", timeout=STALL_SECONDS + 60)
    assert "it left 10 s of output unread" in demo.log()
    # Hundreds of frames were asked for; the console held back instead of buffering them.
    assert rss(demo.daemonPid()) - before < 32 << 20
    assert steady.frame() == FRAME
    steady.close()


def test_with_tls_the_console_is_https_and_wss(run, tmp_path):
    ca = makeCA()
    certDir = writeCertDir(str(tmp_path / "vnc"), ca, issue(ca, "localhost"))
    run.env.update(XEND_VFB_VNC_TLS="1", XEND_VFB_VNC_X509_CERT_DIR=certDir)
    run.start()
    run.createConnected(os.path.join(EXAMPLES, "demo.cfg"), "demo")
    link = Link.of(run, "demo")
    assert link.origin.startswith("https://127.0.0.1:")
    # The browser's side is TLS; the display lets the console in without VeNCrypt then,
    # while its own port still offers nothing but VeNCrypt.
    viewer = WsViewer(link.open(ca=os.path.join(certDir, CA_CERT)))
    assert viewer.frame() == FRAME
    viewer.close()
    port = run.json("vfb-list", "demo")[0]["vnc_port"]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
        assert plain.recv(12) == b"RFB 003.008\n"
        plain.sendall(b"RFB 003.008\n")
        assert plain.recv(2) == bytes((1, 19))  # VeNCrypt only
    stranger = writePEM(str(tmp_path / "other-ca.pem"), makeCA("another CA").certPEM())
    with pytest.raises(ssl.SSLCertVerificationError):
        Link.of(run, "demo").open(ca=stranger)


def test_a_backend_that_died_is_back_on_the_console(demo):
    # Its successor takes the same port, and the socket named after it, left behind.
    dead = demo.backend(1)
    dead.kill(signal.SIGKILL)
    waitUntil(lambda: demo.backend(1) not in (None, dead), "a new backend")
    waitUntil(lambda: allConnected(demo, "demo"), "the devices to reconnect")
    viewer = WsViewer(Link.of(demo, "demo").open())
    assert viewer.frame() == FRAME
    viewer.close()
