"""xenstored's own request trace, read back: the oracle for what was (and was not) asked.

The `xenstored` fixture runs the daemon with ``-T``: every request it receives is a
line, in the order it received them.  A test that must show something did *not*
happen takes a `mark` first, brings about a later outcome that has to come after it,
and then reads the requests since the mark.
"""

from __future__ import annotations

import re

_TRACE = re.compile(r"^IN 0x[0-9a-f]+ \d{8} \d\d:\d\d:\d\d (\w+) \((.*)\)$")


def traced(xenstored, since: int = 0) -> list[tuple[str, list[str]]]:
    """Every request in xenstored's trace as (op, payload words), from request
    number `since` (a `mark`) on."""
    requests = []
    with open(xenstored.tracePath, errors="replace") as f:
        for line in f:
            match = _TRACE.match(line.rstrip("\n"))
            if match:
                requests.append((match.group(1), match.group(2).split(" ")))
    return requests[since:]


def mark(xenstored) -> int:
    """How many requests xenstored has received so far, for `traced(since=...)`."""
    return len(traced(xenstored))


def writes(xenstored, prefix: str = "", since: int = 0) -> list[tuple[str, str]]:
    """(path, value) of every WRITE under `prefix`, in the order xenstored got them."""
    return [
        (words[0], " ".join(words[1:]))
        for op, words in traced(xenstored, since)
        if op == "WRITE" and words[0].startswith(prefix)
    ]


def removes(xenstored) -> list[str]:
    """The path of every RM, in order."""
    return [words[0] for op, words in traced(xenstored) if op == "RM"]
