"""What the daemon refuses to do on a real Xen host."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from xend_vfb.daemon import XendVfbDaemon
from xend_vfb.errors import DaemonError


@pytest_twisted.inlineCallbacks
def test_stop_all_is_refused_on_a_xen_host(tmp_path):
    # In emulated mode --all stops the stand-in host; on Xen it would destroy real guests.
    daemon = XendVfbDaemon(str(tmp_path), emulated=False, reactor=reactor)
    with pytest.raises(DaemonError) as info:
        yield daemon.requests.op_stop({"op": "stop", "all": True})
    assert str(info.value) == ("stop --all is for emulated mode only: on a Xen host it "
                               "would destroy real guests (use destroy for each)")
