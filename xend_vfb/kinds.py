"""The kinds of config values: how a key's string becomes a typed value, and what
the error says it expected.  `model` gives each config key one of these."""

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Kind", "KEYMAPS", "VNC_SHARE_POLICIES", "ACTIONS"]

#: Keyboard layouts the VNC server can translate keysyms for (`keymap=`): the names xm and
#: QEMU users know -> the XKB layout and variant the VNC server compiles (`xend_vfb.rfb.keymaps`).
KEYMAPS: Mapping[str, tuple[str, str]] = {
    "ar": ("ara", ""),
    "bepo": ("fr", "bepo"),
    "cz": ("cz", ""),
    "da": ("dk", ""),
    "de": ("de", ""),
    "de-ch": ("ch", ""),
    "en-gb": ("gb", ""),
    "en-us": ("us", ""),
    "es": ("es", ""),
    "et": ("ee", ""),
    "fi": ("fi", ""),
    "fo": ("fo", ""),
    "fr": ("fr", ""),
    "fr-be": ("be", ""),
    "fr-ca": ("ca", ""),
    "fr-ch": ("ch", "fr"),
    "hr": ("hr", ""),
    "hu": ("hu", ""),
    "is": ("is", ""),
    "it": ("it", ""),
    "ja": ("jp", ""),
    "lt": ("lt", ""),
    "lv": ("lv", ""),
    "mk": ("mk", ""),
    "nl": ("nl", ""),
    "nl-be": ("be", ""),
    "no": ("no", ""),
    "pl": ("pl", ""),
    "pt": ("pt", ""),
    "pt-br": ("br", ""),
    "ru": ("ru", ""),
    "sk": ("sk", ""),
    "sl": ("si", ""),
    "sv": ("se", ""),
    "th": ("th", ""),
    "tr": ("tr", ""),
}

#: What a VNC display does with a viewer's ClientInit shared flag (`vncshare=`), as QEMU's
#: ``share=``: a viewer asking for exclusive access disconnects the others (and a shared one
#: is refused while it is there), exclusive requests are refused, or the flag is ignored.
VNC_SHARE_POLICIES = ("allow-exclusive", "force-shared", "ignore")

_VNC_BASE_PORT = 5900
_MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1
_MAX_VIDEORAM = 246  # MiB: what pd[] addresses on x86_64 (see REFERENCE.md section 5)


@dataclass(frozen=True)
class Kind:
    """How a config value's string becomes a typed value: `convert` raises ValueError."""

    convert: Callable[[str], Any]
    expected: str


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(text)


def _integerKind(low: int, high: int) -> Kind:
    def convert(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
            raise ValueError(text)
        return int(text)

    return Kind(convert, f"an integer from {low} to {high}")


def _depth(text: str) -> int:
    if text not in ("8", "16", "24", "32"):
        raise ValueError(text)
    return int(text)


def _keymap(text: str) -> str:
    if text not in KEYMAPS:
        raise ValueError(text)
    return text


def _share(text: str) -> str:
    if text not in VNC_SHARE_POLICIES:
        raise ValueError(text)
    return text


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(text) > 253 or not re.fullmatch(rf"{label}(\.{label})*", text):
        raise ValueError(text)
    if text.rsplit(".", 1)[-1].isdigit():  # 300.1.1.1 is a bad address, not a host name
        raise ValueError(text)
    return text


def _matching(pattern: str) -> Callable[[str], str]:
    """A converter taking a text that matches `pattern` as it is."""

    def convert(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError(text)
        return text

    return convert


_xDisplay = _matching(r"[A-Za-z0-9._/-]*:[0-9]+(\.[0-9]+)?")
# Values end up in xenstore, which takes printable ASCII only.
_absolutePath = _matching(r"/[\x21-\x7e]*")
_password = _matching(r"[\x20-\x7e]*")
_uniqueId = _matching(r"[A-Za-z0-9._:-]{1,64}")


def _script(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._+-]+", text):
        return text
    return _absolutePath(text)


def _uuid(text: str) -> str:
    hexes = "[0-9a-fA-F]"
    if not re.fullmatch(
        rf"{hexes}{{8}}-{hexes}{{4}}-{hexes}{{4}}-{hexes}{{4}}-{hexes}{{12}}", text
    ):
        raise ValueError(text)
    return text.lower()


def _domainName(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text) or text.isdigit():
        raise ValueError(text)
    return text


def _pathText(text: str) -> str:
    if not text or not text.isprintable():
        raise ValueError(text)
    return text


#: What to do when a guest powers off, reboots or crashes (xm's and xl's `on_*` keys).
ACTIONS = ("destroy", "restart", "preserve")


def _action(text: str) -> str:
    if text not in ACTIONS:
        raise ValueError(text)
    return text


def _commandLine(text: str) -> str:
    if not text.isprintable():
        raise ValueError(text)
    return text


BOOLEAN = Kind(_boolean, "a boolean: 1 or 0")
VNC_DISPLAY = _integerKind(0, 65535 - _VNC_BASE_PORT)
DOMID = _integerKind(0, _MAX_DOMID)
SIZE = _integerKind(1, 16384)
DEPTH = Kind(_depth, "one of 8, 16, 24, 32")
VIDEORAM = _integerKind(1, _MAX_VIDEORAM)
KEYMAP = Kind(_keymap, "a keyboard layout such as en-us, en-gb, de, fr, es, it or ja")
VNC_SHARE = Kind(_share, "one of " + ", ".join(VNC_SHARE_POLICIES))
HOST = Kind(_host, "an IP address or a host name")
X_DISPLAY = Kind(_xDisplay, "an X display such as ':0' or 'host:0.0'")
ABSOLUTE_PATH = Kind(_absolutePath, "an absolute path")
SCRIPT = Kind(_script, "a script name or an absolute path")
UUID = Kind(_uuid, "a UUID such as 01234567-89ab-cdef-0123-456789abcdef")
PASSWORD = Kind(_password, "printable ASCII characters")
DOMAIN_NAME = Kind(
    _domainName, "up to 64 letters, digits, '.', '-' or '_', not all digits, starting with neither"
)
MEMORY = _integerKind(1, 1024 * 1024)
VCPUS = _integerKind(1, 512)
PATH_TEXT = Kind(_pathText, "a non-empty path of printable characters")
COMMAND_LINE = Kind(_commandLine, "printable characters")
ACTION = Kind(_action, "one of " + ", ".join(ACTIONS))
POINTER_EXTENT = _integerKind(1, 65535)
UNIQUE_ID = Kind(_uniqueId, "up to 64 letters, digits, '.', ':', '-' or '_'")
