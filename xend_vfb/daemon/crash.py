"""A test hook: the daemon dies like `kill -9` at a named step of an operation."""

import os
import signal

from twisted.logger import Logger

__all__ = ["crashPoint"]

log = Logger()


def crashPoint(name: str) -> None:
    """Die like `kill -9` here if XEND_VFB_CRASH_AT names this step."""
    if os.environ.get("XEND_VFB_CRASH_AT") == name:
        log.warn("crash point {name} reached: killing myself", name=name)
        os.kill(os.getpid(), signal.SIGKILL)
