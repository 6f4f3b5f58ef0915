"""ssh's stand-in for migrations between two emulated hosts on one machine.

`fake_ssh.py HOST COMMAND...` runs COMMAND here as ssh would run it on HOST:
with HOST's run directory, from `$XEND_VFB_TEST_HOSTS` (JSON, {host: run
dir}), and this checkout's `xend-vfb` first on the PATH.  A host it does not
know fails as ssh does (exit 255).  `$XEND_VFB_TEST_REFUSE`: a word that makes a
command containing it fail on the other side (a destination that breaks).
"""

import json
import os
import sys


def main() -> None:
    host, command = sys.argv[1], sys.argv[2:]
    hosts = json.loads(os.environ.get("XEND_VFB_TEST_HOSTS", "{}"))
    if host not in hosts:
        sys.stderr.write(f"ssh: Could not resolve hostname {host}: Name or service not known\n")
        sys.exit(255)
    if os.environ.get("XEND_VFB_TEST_REFUSE") in command:
        sys.stderr.write("Error: the destination broke down\n")
        sys.exit(1)
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.execvpe(command[0], command, dict(os.environ, XEND_VFB_RUN_DIR=hosts[host], PATH=path))


if __name__ == "__main__":
    main()
