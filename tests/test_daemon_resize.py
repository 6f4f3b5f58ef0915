"""The emulated demo shows a resize: the simulated guest took its vfb's `videoram` and
switches mode on SIGUSR1 (README, "Emulated mode"), seen through `xend-vfb screenshot`.

A viewer is connected meanwhile: like Linux's xen-fbfront, the simulated guest sends
nothing (its RESIZE included) while the backend says nobody watches."""

import signal

import pytest
from PIL import Image

from tests.helpers_daemon import VncClient, createGuest
from tests.helpers_wait import waitUntil

pytestmark = pytest.mark.timeout(300)


def shotSize(run, tmp_path):
    path = tmp_path / "shot.png"
    run.cli("screenshot", "life", str(path))
    with Image.open(path) as image:
        return image.size


def test_sigusr1_resizes_the_simulated_guest_and_back(run, tmp_path):
    run.start()
    domid = createGuest(run, tmp_path)
    assert shotSize(run, tmp_path) == (800, 600)
    port = run.json("vfb-list", "life")[0]["vnc_port"]
    with VncClient(port, "pw"):
        run.guest(domid).kill(signal.SIGUSR1)
        waitUntil(lambda: shotSize(run, tmp_path) == (1024, 768),
                  "the guest to switch to 1024x768")
        run.guest(domid).kill(signal.SIGUSR1)
        waitUntil(lambda: shotSize(run, tmp_path) == (800, 600), "the guest to switch back")
