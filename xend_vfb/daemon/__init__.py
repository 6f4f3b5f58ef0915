"""The xend-vfb daemon: guests, their domains, devices and backend processes.

A tree of Twisted services (`service.XendVfbDaemon`): the process supervisor,
the backends (`backends`), the guests' lifecycle (`guests`) and the control
socket (`requests`).  Everything it knows lives in xenstore (device areas,
the private records under /xend-vfb) or on disk (process records), never only
in memory, so a restarted daemon rebuilds its state and adopts the backends
(and, in emulated mode, guests) that kept running while it was down.
"""

from xend_vfb.daemon.crash import crashPoint
from xend_vfb.daemon.service import XendVfbDaemon, runDaemon, socketPath

__all__ = ["XendVfbDaemon", "runDaemon", "socketPath", "crashPoint"]
