"""The browser console: a noVNC page and a WebSocket carrying RFB to a guest's display.

`service.WebConsole` is the daemon's service; `proxy` the WebSocket, `tokens` the
one-time tokens of `xend-vfb console-url`, `settings` its two settings.
"""

from xend_vfb.web.service import WebConsole, displaySocket
from xend_vfb.web.tokens import Grant

__all__ = ["WebConsole", "displaySocket", "Grant"]
