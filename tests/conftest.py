"""Fixtures shared by the suite.

A real xenstored per test and clients on it; for the backend's tests a short run
dir, real backend processes and guest programs, in-process simulated guests and a
xenstore proxy (their classes in `tests.helpers_backend`); the toolstack's host
(`tests.helpers_toolstack`); for the daemon's tests a `DaemonRun` (`run`, in
`tests.helpers_daemon`), and one serving the demo guest (`demo`).  Plain helper
functions stay in the helper modules and are imported from there.
"""

import os
import shutil
import subprocess

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from tests.helpers_backend import (
    GUEST_PROGRAM,
    MEMORY_SIZE,
    BackendProcess,
    HostileDomain,
    makeRunDir,
)
from tests.helpers_daemon import EXAMPLES, DaemonRun
from tests.helpers_toolstack import setUpHost
from tests.xenstore_proxy import XenstoreProxy
from xend_vfb.guest.domain import GuestOptions
from xend_vfb.guestmem.emulated import EmulatedGuestMemory, createGuestMemory
from xend_vfb.xenstore import EmbeddedXenstored, connect

# Property tests: the same examples on every run (CI must be deterministic), and no
# time limit per example (no timed assertions: these machines are noisy).
settings.register_profile("xend-vfb", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("xend-vfb")


@pytest.fixture
def xenstored(tmp_path):
    """A private, real C xenstored (with a request trace) in this test's directory."""
    daemon = EmbeddedXenstored(str(tmp_path / "run"), trace=True)
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def xs(xenstored):
    """A client connected to the test's xenstored."""
    client = pytest_twisted.blockon(connect(xenstored.socketPath, timeout=5.0))
    yield client
    client.close()


@pytest.fixture
def other(xenstored):
    """A second client on the same xenstored: a backend's connection, or a restarted
    daemon's."""
    client = pytest_twisted.blockon(connect(xenstored.socketPath, timeout=5.0))
    yield client
    client.close()


@pytest.fixture
def host(xs):
    """The host of the toolstack's tests: dom0 and domain 5 as libxl leaves them."""
    pytest_twisted.blockon(setUpHost(xs))


@pytest.fixture
def runDir():
    """A run dir for backends and guests, short enough for their control sockets;
    kept after the test if XVB_KEEP is set."""
    path = makeRunDir()
    yield path
    if not os.environ.get("XVB_KEEP"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backendProcess(xenstored, runDir):
    """Start the backend of a domain (connected to xenstored, or `via` a
    `XenstoreProxy`); killed and reaped after the test."""
    started = []

    def start(domid: int, via: XenstoreProxy | None = None) -> BackendProcess:
        backend = BackendProcess(via or xenstored, runDir, domid)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.reap()


@pytest.fixture
def xenstoreProxy(xenstored, runDir):
    """A `XenstoreProxy` to the test's xenstored, for one process to connect through."""
    proxy = XenstoreProxy(xenstored.socketPath, os.path.join(runDir, "xs-proxy.sock"))
    pytest_twisted.blockon(proxy.start())
    yield proxy
    pytest_twisted.blockon(proxy.stop())


@pytest.fixture
def guestFactory(xs, runDir):
    """Start an in-process guest for a domain (memory created here), with `frontends`
    of other classes for some of its devices (`HostileDomain`); stopped after."""
    started = []

    @inlineCallbacks
    def start(domid: int, frontends=None, **options):
        if not os.path.exists(os.path.join(runDir, "guests", str(domid), "memory")):
            createGuestMemory(runDir, domid, MEMORY_SIZE)
        memory = EmulatedGuestMemory(runDir, domid, reactor)
        domain = HostileDomain(reactor, xs, memory, domid,
                               GuestOptions(runDir=runDir, **options), frontends=frontends)
        started.append(domain)
        yield domain.start()
        return domain

    yield start
    for domain in started:
        if not domain._stopping:
            pytest_twisted.blockon(domain.stop(timeout=0.2))


@pytest.fixture
def guestProgram(xenstored, runDir):
    """Start the real ``xend-vfb-guest`` in the run dir with more arguments (its output
    in pipes, as text); killed after the test if still alive."""
    processes = []

    def start(*args: str) -> subprocess.Popen:
        env = dict(os.environ, XENSTORED_PATH=xenstored.socketPath)
        process = subprocess.Popen(
            [GUEST_PROGRAM, "--run-dir", str(runDir), *args], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.fixture
def run(tmp_path):
    """A `DaemonRun` in this test's directory; everything it started is stopped after."""
    daemonRun = DaemonRun(tmp_path / "run")
    yield daemonRun
    daemonRun.cleanup()


@pytest.fixture
def demo(run):
    """The daemon of `run` with the demo guest (examples/demo.cfg), its devices
    Connected; the run."""
    run.start()
    run.createConnected(os.path.join(EXAMPLES, "demo.cfg"), "demo")
    return run
