"""What the bench scripts share: the installed CLI, run and checked.

Imported by the scripts as ``from support import ...`` (a script's own folder is
first on its path).
"""

from __future__ import annotations

import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
XEND_VFB = os.path.join(BIN, "xend-vfb")


def cli(env: dict, *args: str) -> str:
    """Run ``xend-vfb ARGS`` in `env`; its stdout, or exit naming the command and its error."""
    result = subprocess.run([XEND_VFB, *args], env=env, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"xend-vfb {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout
