"""The console commands against the real daemon: VeNCrypt set in the daemon's settings,
`xend-vfb vncviewer --autopass` running TigerVNC (on Xvfb), `xend-vfb vnc-passwd`
applied live and expiring, and bad certificates reported at start and at create.

Processes are real (daemon, backends, simulated guests, xenstored, TigerVNC); that a
viewer got in is what the backend reports (its `viewers`), and what TigerVNC's log
says when it did not.
"""

import os
import signal
import subprocess

import pytest

from tests.helpers_daemon import XEND_VFB, DaemonRun, connectedAs, domainOf
from tests.helpers_tigervnc import VIEWER, Xvfb
from tests.helpers_tls import issue, makeCA, writeCertDir
from tests.helpers_wait import waitUntil
from xend_vfb import jsonline
from xend_vfb.backend.control import controlSocketPath
from xend_vfb.rfb.vncauth import obfuscatedPassword

pytestmark = pytest.mark.timeout(300)

PASSWORD, NEW = "pw-0ld", "n3w-pw"


@pytest.fixture(scope="module")
def xdisplay():
    server = Xvfb()
    yield server.display
    server.stop()


@pytest.fixture
def certDir(tmp_path):
    ca = makeCA()
    return writeCertDir(str(tmp_path / "vnc"), ca, issue(ca, "localhost"))


@pytest.fixture
def run(tmp_path, certDir, xdisplay):
    """A daemon run with TLS on, whose `vncviewer` is TigerVNC on Xvfb, logging to a file."""
    daemonRun = DaemonRun(tmp_path / "run")
    home = tmp_path / "home"
    home.mkdir()
    wrapper = tmp_path / "viewer.sh"
    wrapper.write_text("#!/bin/sh\n"
                       f"exec {VIEWER} -Log '*:stderr:100' -AlertOnFatalError=0 "
                       f"-ReconnectOnError=0 \"$@\" 2>>\"$VIEWER_LOG\"\n")
    wrapper.chmod(0o755)
    daemonRun.env.update(XEND_VFB_VNC_TLS="1", XEND_VFB_VNC_X509_CERT_DIR=certDir,
                         VNCVIEWER=str(wrapper), DISPLAY=xdisplay, HOME=str(home))
    daemonRun.viewers = []
    yield daemonRun
    for viewer in daemonRun.viewers:
        _endViewer(viewer)
    daemonRun.cleanup()


def createGuest(run: DaemonRun, tmp_path) -> int:
    config = tmp_path / "console.cfg"
    config.write_text("name = 'console'\nmemory = 32\n"
                      f"vfb = [ 'vnc=1,vncunused=1,vncpasswd={PASSWORD}' ]\n")
    run.createConnected(str(config), "console")
    return domainOf(run, "console")["domid"]


def viewers(run: DaemonRun, domid: int) -> int:
    """How many VNC viewers display vfb 0 has, as its backend says."""
    status = jsonline.requestBlocking(controlSocketPath(run.runDir, domid), {"op": "status"}, 10)
    return next(d["viewers"] for d in status["devices"] if d["class"] == "vfb")


def startViewer(run: DaemonRun, tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """`xend-vfb vncviewer console ARGS` in its own process group; the viewer's log file."""
    log = str(tmp_path / f"viewer{len(run.viewers)}.log")
    child = subprocess.Popen([XEND_VFB, "vncviewer", "console", *args],
                             env=dict(run.env, VIEWER_LOG=log), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run.viewers.append(child)
    return child, log


def _endViewer(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(30)


def logOf(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def vncPasswd(run: DaemonRun, password: str, *args: str) -> subprocess.CompletedProcess:
    """`xend-vfb vnc-passwd console ARGS` with `password` on its standard input."""
    return subprocess.run([XEND_VFB, "vnc-passwd", "console", *args], input=password + "\n",
                          env=run.env, capture_output=True, text=True, timeout=60)


def tigervnc(run: DaemonRun, tmp_path, port: int, password: str) -> str:
    """TigerVNC given `password` in a file, until it ends (refused); its log."""
    passwd = tmp_path / "passwd"
    passwd.write_bytes(obfuscatedPassword(password))
    result = subprocess.run(
        [VIEWER, "-Log", "*:stderr:100", "-AlertOnFatalError=0", "-ReconnectOnError=0",
         "-X509CA", os.path.join(run.env["XEND_VFB_VNC_X509_CERT_DIR"], "ca-cert.pem"),
         "-passwd", str(passwd), f"127.0.0.1::{port}"],
        env=run.env, capture_output=True, text=True, timeout=120)
    return result.stderr


def test_vncviewer_autopass_over_tls_and_live_passwords(run, tmp_path):
    run.start()
    domid = createGuest(run, tmp_path)
    port = run.json("vfb-list", "console")[0]["vnc_port"]
    first, firstLog = startViewer(run, tmp_path, "--autopass")
    waitUntil(lambda: viewers(run, domid) == 1, "TigerVNC to get in")
    assert "Choosing security type X509Vnc (261)" in logOf(firstLog)

    # A new password from standard input: the viewer in stays, the old password is
    # refused, the new one (handed over by --autopass) lets a second viewer in.
    result = vncPasswd(run, NEW)
    assert (result.returncode, result.stderr) == (0, "")
    assert "Authentication failure: authentication failed" in tigervnc(run, tmp_path, port,
                                                                       PASSWORD)
    startViewer(run, tmp_path, "--autopass")
    waitUntil(lambda: viewers(run, domid) == 2, "TigerVNC with the new password to get in")
    assert first.poll() is None

    # Expired: nobody new gets in, and is told why; `never` lets them in again.
    assert vncPasswd(run, NEW, "--expire", "0").returncode == 0
    assert "Authentication failure: password expired" in tigervnc(run, tmp_path, port, NEW)
    assert viewers(run, domid) == 2
    assert vncPasswd(run, NEW, "--expire", "never").returncode == 0
    startViewer(run, tmp_path, "--autopass")
    waitUntil(lambda: viewers(run, domid) == 3, "TigerVNC to get in after --expire never")

    # Kept with the display's secrets (for the guest's next domains), shown nowhere.
    tree = run.xenstore()
    assert tree[f"/xend-vfb/{domid}/device/vfb/0/vncpasswd"] == NEW
    assert f"/xend-vfb/{domid}/device/vfb/0/vncpasswd-expires" not in tree
    for text in (run.cli("list", "--json").stdout, run.cli("vfb-list", "console").stdout,
                 run.log(), logOf(os.path.join(run.runDir, "backends", f"{domid}.log"))):
        assert NEW not in text and PASSWORD not in text


def test_vnc_passwd_bad_input(run, tmp_path):
    run.start()
    createGuest(run, tmp_path)
    assert vncPasswd(run, "").stderr == "Error: no password on standard input\n"
    result = vncPasswd(run, "123456789")
    assert result.stderr == ("Error: vfb[0]: vncpasswd: longer than 8 characters (VNC "
                             "authentication uses only the first 8: give at most 8)\n")
    assert "123456789" not in run.log()
    assert vncPasswd(run, "pw", "--devid", "3").stderr == (
        "Error: Device 3 (vfb) does not exist in domain 1\n")


def test_bad_certificates_stop_the_daemon_at_start(run, certDir):
    os.unlink(os.path.join(certDir, "server-key.pem"))
    result = run.cli("daemon", "--emulated", check=False)
    assert result.returncode == 1
    assert result.stderr == (f"Error: {certDir}/server-key.pem: cannot read it: No such file "
                             "or directory\n")
    assert run.daemonPid() is None


def test_bad_certificates_at_create_start_no_display(run, tmp_path, certDir):
    run.start()
    os.unlink(os.path.join(certDir, "ca-cert.pem"))
    config = tmp_path / "console.cfg"
    config.write_text("name = 'console'\nmemory = 32\nvfb = [ 'vnc=1,vncunused=1' ]\n")
    error = run.fails("create", str(config))
    assert error == (f"Error: Device 0 (vfb) could not be connected: {certDir}/ca-cert.pem: "
                     "cannot read it: No such file or directory")
    assert run.json("list") == []


def test_a_new_password_and_its_expiry_outlive_a_reboot(run, tmp_path):
    run.start()
    old = createGuest(run, tmp_path)
    assert vncPasswd(run, NEW, "--expire", "3600").returncode == 0
    expires = run.xenstore()[f"/xend-vfb/{old}/device/vfb/0/vncpasswd-expires"]
    run.cli("reboot", "console", "--wait")
    new = connectedAs(run, "console", old)
    tree = run.xenstore()
    assert tree[f"/xend-vfb/{new}/device/vfb/0/vncpasswd"] == NEW
    assert tree[f"/xend-vfb/{new}/device/vfb/0/vncpasswd-expires"] == expires
    # The display (kept through the reboot) asks the new password.
    port = run.json("vfb-list", "console")[0]["vnc_port"]
    assert "Authentication failure: authentication failed" in tigervnc(run, tmp_path, port,
                                                                       PASSWORD)
    startViewer(run, tmp_path, "--autopass")
    waitUntil(lambda: viewers(run, new) == 1, "TigerVNC to get in after the reboot")
