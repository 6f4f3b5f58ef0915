"""The blocking side of `xend_vfb.jsonline`, with the standard library only.

The CLI asks the daemon one thing per run; importing Twisted for that would cost
more than the request itself, so the client and the framing both ends share
(one JSON object per line, `{"ok": true, ...}` or
`{"ok": false, "error": MESSAGE, "code": CODE}`, CODE from `errors.errorCode`)
live here, and `xend_vfb.jsonline` builds its Twisted server and client on them.
Nothing here may import Twisted, Pillow or the daemon (`tests/test_cli_lean.py`).
"""

import json
import socket

from xend_vfb.errors import ChannelError

__all__ = ["MAX_LINE", "ChannelError", "encode", "checked", "requestBlocking"]

#: The longest line either end accepts (a screenshot's PNG travels in one).
MAX_LINE = 64 * 1024 * 1024


def encode(message: dict) -> bytes:
    """`message` as one line, without its newline."""
    return json.dumps(message).encode()


def checked(reply: dict) -> dict:
    """`reply` if it says `ok`; otherwise `ChannelError` with the server's message
    and error code."""
    if not reply.get("ok"):
        raise ChannelError(reply.get("error") or "request refused", reply.get("code", ""))
    return reply


def requestBlocking(path: str, message: dict, timeout: float | None = None) -> dict:
    """One request for programs without a reactor (the CLI).  Raises `ConnectionError`
    (OSError) when nobody listens, `TimeoutError` when no reply comes within `timeout`,
    `ChannelError` for an error reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode(message) + b"\n")
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ChannelError("the daemon closed the connection before replying")
            data += chunk
    return checked(json.loads(data))
