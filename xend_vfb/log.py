"""The one place logging is configured: Twisted's logger everywhere.

Modules create ``log = Logger()`` and call ``log.info(...)``; programs call
`startLogging` once at start with a file (or stderr) and a level.
"""

import sys
from typing import TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

__all__ = ["startLogging"]


def startLogging(out: TextIO | None = None, level: LogLevel = LogLevel.info) -> None:
    """Send Twisted's log events at `level` and above to `out` (stderr by default)."""
    observer = FilteringLogObserver(
        textFileLogObserver(out or sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
