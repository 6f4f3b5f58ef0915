"""The vkbd frontend: takes key and pointer events off its ring and logs them.

Behaves as Linux's xen-kbdfront: at probe it reads the backend's static
``feature-abs-pointer``, ``width`` and ``height`` (the toolstack wrote them
with the backend area), asks for absolute pointing (``request-abs-pointer``)
only if the backend offers it (and, with the domain's ``rawPointer`` option,
raw coordinates, ``request-raw-pointer``, if offered), and publishes its page as ``page-ref`` (or,
with the domain's ``vkbdGrant`` option, as a grant in ``page-gref``).

Every event received is appended to the domain's `InputLog`, one JSON object a
line, in the format SURFACE.md fixes.
"""

from __future__ import annotations

import json
import os
from typing import IO

from twisted.internet.defer import inlineCallbacks

from xend_vfb.errors import GuestError
from xend_vfb.guest.frontend import Frontend
from xend_vfb.guestmem.interfaces import IGuestPages
from xend_vfb.protocol.kbdif import IN_RING, KeyEvent, MotionEvent, PositionEvent, decodeInEvent

__all__ = ["InputLog", "VkbdFrontend", "inputRecord"]


def inputRecord(dev: str, event: KeyEvent | MotionEvent | PositionEvent) -> dict[str, object]:
    """The JSON object logged for `event` received by device `dev` (``vkbd/0``)."""
    if isinstance(event, KeyEvent):
        return {"dev": dev, "type": "key", "keycode": event.keycode, "pressed": event.pressed}
    if isinstance(event, MotionEvent):
        return {
            "dev": dev,
            "type": "motion",
            "rel_x": event.rel_x,
            "rel_y": event.rel_y,
            "rel_z": event.rel_z,
        }
    return {
        "dev": dev,
        "type": "pos",
        "abs_x": event.abs_x,
        "abs_y": event.abs_y,
        "rel_z": event.rel_z,
    }


class InputLog:
    """``input.jsonl`` of one domain: appended and flushed per event, opened on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def append(self, record: dict[str, object]) -> None:
        """Write one line; a reader sees it complete as soon as this returns."""
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # kept open: one line per event
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; called when the guest stops."""
        if self._file is not None:
            self._file.close()
            self._file = None


class VkbdFrontend(Frontend):
    """One vkbd device."""

    devClass = "vkbd"

    page: IGuestPages | None = None
    gref: int | None = None
    absPointer = False

    @inlineCallbacks
    def allocate(self):
        """Read the backend's static features, allocate and (maybe) grant the page."""
        xs = self.domain.xs
        features = {}
        for key in ("feature-abs-pointer", "feature-raw-pointer", "width", "height"):
            features[key] = yield xs.readOrNone(f"{self.backendPath}/{key}")
        self.absPointer = features["feature-abs-pointer"] == "1"
        self.log(
            "info",
            "backend feature-abs-pointer={abs} width={width} height={height}",
            abs=features["feature-abs-pointer"],
            width=features["width"],
            height=features["height"],
        )
        self.page = self.domain.memory.allocPages(1)
        frame = self.page.frames[0]
        keys = {}
        if self.domain.options.vkbdGrant:
            self.gref = self.domain.memory.grantAccess(frame)
            keys["page-gref"] = str(self.gref)
        else:
            keys["page-ref"] = str(frame)
        if self.absPointer:
            keys["request-abs-pointer"] = "1"
            if self.domain.options.rawPointer and features["feature-raw-pointer"] == "1":
                keys["request-raw-pointer"] = "1"
        return keys

    def eventReceived(self) -> None:
        """Log each event from the in ring, then tell the backend the slots are free."""
        try:
            events = IN_RING.consume(self.page.view)
        except GuestError as e:
            self.log("error", "in ring: {error}", error=e)
            return
        for raw in events:
            event = decodeInEvent(raw)
            if event is None:
                self.log("warn", "unknown in event type {type}", type=raw[0])
                continue
            self.log("info", "received {event}", event=event)
            self.domain.inputLog.append(inputRecord(self.name, event))
        if events:
            self.notify()

    def release(self) -> None:
        """Revoke the grant and give the page back."""
        memory = self.domain.memory
        if self.gref is not None:
            memory.endAccess(self.gref)
            self.gref = None
        if self.page is not None:
            memory.freePages(self.page)
            self.page = None
