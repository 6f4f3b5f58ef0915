"""One-time tokens for the browser console: a short-lived, single-use key to one display.

`xend-vfb console-url` asks the daemon for one; the URL carries it in its fragment
(never sent in an HTTP request, so in no access log); the console page hands it back
when it opens its WebSocket, and that is the token's one use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

__all__ = ["TOKEN_SECONDS", "Grant", "Tokens"]

#: How long a token stays valid if unused.
TOKEN_SECONDS = 300.0


@dataclass(frozen=True)
class Grant:
    """What a token opens: display `devid` (vfb) of domain `domid`."""

    domid: int
    devid: int


class Tokens:
    """The tokens issued and not yet used or expired, timed by `clock`."""

    def __init__(self, clock: IReactorTime, lifetime: float = TOKEN_SECONDS) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._issued: dict[str, tuple[Grant, float]] = {}

    def issue(self, grant: Grant) -> str:
        """A new token for `grant` (URL-safe: letters, digits, `-` and `_`)."""
        self._forgetExpired()
        token = secrets.token_urlsafe(32)
        self._issued[token] = (grant, self.clock.seconds() + self.lifetime)
        return token

    def redeem(self, token: str) -> Grant | None:
        """What `token` opens, using it up; None if it was never issued, is used or has
        expired."""
        self._forgetExpired()
        grant, _ = self._issued.pop(token, (None, None))
        return grant

    def _forgetExpired(self) -> None:
        now = self.clock.seconds()
        for token in [t for t, (_, expires) in self._issued.items() if expires <= now]:
            del self._issued[token]
