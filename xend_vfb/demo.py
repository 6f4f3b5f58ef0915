"""The README's main job: start the embedded xenstored and show the layer working."""

import os
import sys

from twisted.internet import task
from twisted.internet.defer import inlineCallbacks

from xend_vfb.xenstore import EmbeddedXenstored, connect


@inlineCallbacks
def main(reactor):
    runDir = os.environ.get("XEND_VFB_RUN_DIR", "/run/xend-vfb")
    daemon = EmbeddedXenstored(runDir)
    process = daemon.start()
    print(f"embedded xenstored {process} listening on {daemon.socketPath}")
    xs = yield connect(daemon.socketPath)
    yield xs.write("/local/domain/1/name", "demo")
    print(f"wrote /local/domain/1/name = {(yield xs.read('/local/domain/1/name'))!r}")
    print(f"/local/domain lists {(yield xs.list('/local/domain'))}")
    xs.close()
    daemon.stop()
    print("stopped the embedded xenstored")


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
