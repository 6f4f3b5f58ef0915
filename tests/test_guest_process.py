"""The real ``xend-vfb-guest`` program, run as a process against a real xenstored."""

import os
import signal

import pytest
import pytest_twisted

from tests.guest_support import MEMORY_SIZE, Backend, toolstackAdd, waitState
from tests.helpers_backend import GUEST_PROGRAM
from tests.helpers_wait import waitFor
from xend_vfb.guest.pattern import patternBytes
from xend_vfb.guestmem.emulated import createGuestMemory
from xend_vfb.protocol import fbif
from xend_vfb.xenbus import XenbusState
from xend_vfb.xenstore.paths import frontendPath

CLOSED = str(int(XenbusState.Closed))


@pytest.fixture
def runDir(tmp_path):
    return tmp_path / "guestrun"


def waitExit(process, timeout=10.0):
    return waitFor(lambda: process.poll() is not None, "the guest to exit", timeout)


def test_program_is_installed():
    assert os.access(GUEST_PROGRAM, os.X_OK), (
        "run .venv/bin/pip install -e . to get the console script")


@pytest_twisted.inlineCallbacks
def test_missing_guest_memory_fails_clearly(guestProgram, runDir):
    process = guestProgram("--domid", "7")
    yield waitExit(process)
    out, err = process.communicate()
    assert process.returncode == 1
    assert err == f"Error: domain 7 has no guest memory under {runDir}\n"


@pytest_twisted.inlineCallbacks
def test_probe_connect_resize_and_sigterm_teardown(xs, guestProgram, runDir, tmp_path):
    domid = 4
    createGuestMemory(runDir, domid, MEMORY_SIZE)
    logFile = tmp_path / "guest.log"
    process = guestProgram(
        "--domid", str(domid), "--log-file", str(logFile), "--resize-to", "640x480",
        "--close-timeout", "1",
    )  # fmt: skip
    vfb, vkbd = frontendPath(domid, "vfb", 0), frontendPath(domid, "vkbd", 0)
    yield toolstackAdd(xs, domid, "vkbd", 0, {"feature-abs-pointer": "1"})
    yield toolstackAdd(xs, domid, "vfb", 0)
    yield waitState(xs, vfb, XenbusState.Initialised)
    yield waitState(xs, vkbd, XenbusState.Initialised)
    assert (yield xs.read(vfb + "/feature-update")) == "1"
    assert (yield xs.read(vkbd + "/request-abs-pointer")) == "1"

    backend = Backend(xs, runDir, domid, "vfb")
    try:
        yield backend.connect({"request-update": "1", "feature-resize": "1"})
        yield waitState(xs, vfb, XenbusState.Connected)
        assert backend.screen(800, 600, 3200) == patternBytes(800, 600, domid, 0)
        yield waitFor(backend.pendingOut, "the first update")
        assert backend.outEvents() == [fbif.UpdateEvent(0, 0, 800, 600)]

        process.send_signal(signal.SIGUSR1)
        yield waitFor(lambda: backend.pendingOut() == 2, "resize and update")
        assert backend.outEvents() == [
            fbif.ResizeEvent(640, 480, 2560, 32, 0),
            fbif.UpdateEvent(0, 0, 640, 480),
        ]
        assert backend.screen(640, 480, 2560) == patternBytes(640, 480, domid, 0)

        # SIGTERM: both go Closing; the vfb backend answers, the vkbd one never does.
        process.send_signal(signal.SIGTERM)
        yield waitState(xs, vfb, XenbusState.Closing)
        yield waitState(xs, vkbd, XenbusState.Closing)
        assert process.poll() is None
        backend.close()
        yield backend.setState(XenbusState.Closing)
        yield waitState(xs, vfb, XenbusState.Closed)
        yield waitExit(process)
    finally:
        backend.close()
    assert process.returncode == 0
    assert (yield xs.read(vkbd + "/state")) == CLOSED
    log = logFile.read_text()
    for line in (
        "vfb/0: Unknown -> Initialising",
        "vfb/0: Initialising -> Initialised",
        "vfb/0: Initialised -> Connected",
        "vfb/0: resizing to 640x480",
        "vfb/0: Connected -> Closing",
        "vfb/0: Closing -> Closed",
        "vkbd/0: Closing -> Closed",
        "vkbd/0: backend did not close within 1",
    ):
        assert line in log
    assert "Traceback" not in log


@pytest_twisted.inlineCallbacks
def test_many_domains_in_one_process(xs, guestProgram, runDir):
    for domid in (1, 2, 3):
        createGuestMemory(runDir, domid, MEMORY_SIZE)
    process = guestProgram("--domid", "1-3", "--close-timeout", "0.2")
    for domid in (1, 2, 3):
        yield toolstackAdd(xs, domid, "vfb", 0)
    for domid in (1, 2, 3):
        yield waitState(xs, frontendPath(domid, "vfb", 0), XenbusState.Initialised)
    # A device hot-plugged later into one of them is probed too.
    yield toolstackAdd(xs, 2, "vkbd", 0)
    yield waitState(xs, frontendPath(2, "vkbd", 0), XenbusState.Initialised)
    process.send_signal(signal.SIGTERM)
    yield waitExit(process)
    assert process.returncode == 0
    for domid in (1, 2, 3):
        assert (yield xs.read(frontendPath(domid, "vfb", 0) + "/state")) == CLOSED
