"""Fixtures shared by the suite: a real xenstored per test, and a client on it."""

import pytest
import pytest_twisted

from xend_vfb.xenstore import EmbeddedXenstored, connect


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
