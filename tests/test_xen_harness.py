"""The real-Xen harness (`xentest/run.sh`, docs/xen-harness.md) as one opt-in test.

It boots Xen 4.17, a Linux dom0 and a PV guest under QEMU's software emulation
and checks the project's vfb/vkbd against the guest's own xen-fbfront and
xen-kbdfront, through the guest's whole life (reboot, save/restore, local
migration, shutdown).  `./test.sh` runs the harness itself after pytest (not
through this test), so here it runs only when XEND_VFB_XEN=1 is set:
`XEND_VFB_XEN=1 pytest -m xen`.
"""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.xen,
    pytest.mark.skipif(os.environ.get("XEND_VFB_XEN") != "1",
                       reason="boots Xen under QEMU for minutes: set XEND_VFB_XEN=1"),
]


@pytest.mark.timeout(3000)
def test_real_xen_guest_display_and_keyboard():
    result = subprocess.run([str(REPO / "xentest" / "run.sh")], capture_output=True, text=True,
                            timeout=2950)
    assert result.returncode == 0, (
        f"xentest/run.sh failed ({result.returncode}):\n{result.stdout[-6000:]}"
        f"\n{result.stderr[-2000:]}")
