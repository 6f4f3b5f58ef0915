"""The one typed description of a domain and its devices, shared by every config format.

xm config files (`xend_vfb.xmconfig`), SXP (`xend_vfb.sxp`) and the device keys kept in
xenstore all become these frozen dataclasses, so every format gives identical results.

Each device class has exactly one list of config keys: its dataclass fields, each carrying
its `Kind` (how a string becomes a typed value).  The xm parser, the SXP reader, the
controller writing the backend area and a restarted daemon rebuilding the config all use
that list (xend had two lists that drifted apart, so xm accepted keys the controller then
dropped).  Secrets (``vncpasswd``) never appear in a repr or an error message.
Longer than most modules on purpose: the key lists of every class and of the
domain are here together, so that one file is the whole configuration surface
(the kinds of values are in `kinds`).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from xend_vfb import sxp, xmconfig
from xend_vfb.errors import ConfigError
from xend_vfb.kinds import (
    ABSOLUTE_PATH,
    ACTION,
    BOOLEAN,
    COMMAND_LINE,
    DEPTH,
    DOMAIN_NAME,
    DOMID,
    HOST,
    KEYMAP,
    MEMORY,
    PASSWORD,
    PATH_TEXT,
    POINTER_EXTENT,
    SCRIPT,
    SIZE,
    UNIQUE_ID,
    UUID,
    VCPUS,
    VIDEORAM,
    VNC_DISPLAY,
    VNC_SHARE,
    X_DISPLAY,
    Kind,
)

__all__ = [
    "SECRET_KEYS",
    "OWN_SIZE",
    "Key",
    "DeviceConfig",
    "VfbConfig",
    "VkbdConfig",
    "DomainConfig",
    "OtherValue",
]

#: Keys whose values are secret wherever they appear, even among verbatim top-level keys.
SECRET_KEYS = frozenset({"vncpasswd"})

#: A top-level key kept verbatim: an atom, or a (nested) list of atoms.
OtherValue = str | tuple["OtherValue", ...]

_MASK = "'***'"
#: The password characters VNC authentication uses (RFB's DES key is 8 bytes).
VNC_PASSWORD_LENGTH = 8
#: Key in a display's private record (beside its secrets): when, in seconds since the
#: epoch, its VNC password stops letting anyone in (`xend-vfb vnc-passwd --expire`);
#: absent for never.  Not a config key: set at run time, kept for the guest's next domains.
PASSWORD_EXPIRES = "vncpasswd-expires"
#: Private-record key of a keyboard whose `width`/`height` are its own config keys, not
#: the size of the display it is paired with (both are written to the same two keys).
OWN_SIZE = "own-size"
_MIB = 1024 * 1024


def _key(kind: Kind, default: Any, *, secret: bool = False, name: str | None = None) -> Any:
    """A dataclass field that is a config key of kind `kind`, named `name` when the key
    is no Python name (``feature-disable-keyboard``)."""
    metadata = {"kind": kind, "secret": secret}
    if name is not None:
        metadata["name"] = name
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Key:
    """One config key of a class: its name, its kind, its default, whether it is secret."""

    name: str
    kind: Kind
    default: Any
    secret: bool
    #: The dataclass field holding its value (the name, unless that is no Python name).
    attr: str

    def convert(self, text: str, entry: str | None) -> Any:
        """The typed value of `text`, or a ConfigError naming `entry`, the key and the value."""
        try:
            return self.kind.convert(text)
        except ValueError:
            shown = _MASK if self.secret else repr(text)
            where = f"{entry}: " if entry else ""
            raise ConfigError(
                f"{where}{self.name}: invalid value {shown} (expected {self.kind.expected})"
            ) from None

    def toString(self, value: Any) -> str:
        """`value` as written in SXP, device strings and xenstore."""
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)


def _configKeys(cls: type) -> tuple[Key, ...]:
    return tuple(
        Key(f.metadata.get("name", f.name), f.metadata["kind"], f.default, f.metadata["secret"],
            f.name)
        for f in fields(cls)
        if "kind" in f.metadata
    )


def _masked(item: sxp.SExpr) -> str:
    """`item` printed on one short line for an error message, with secrets hidden."""

    def mask(item: sxp.SExpr) -> sxp.SExpr:
        if isinstance(item, str):
            return item
        if sxp.name(item) in SECRET_KEYS:
            return [item[0], "***"]
        return [mask(i) for i in item]

    text = sxp.show(mask(item))
    return text if len(text) <= 60 else text[:57] + "..."


class DeviceConfig:
    """What every device config class offers; subclasses are frozen dataclasses of keys."""

    #: The xenstore device class: ``vfb`` or ``vkbd``.
    deviceClass: ClassVar[str]
    #: Keys accepted on input and turned into other keys by `_prepare`; never stored.
    aliases: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def configKeys(cls) -> tuple[Key, ...]:
        """The class's one list of config keys, in field order."""
        return _configKeys(cls)

    @classmethod
    def acceptedKeys(cls) -> tuple[str, ...]:
        """Every key a user may write, sorted, as listed in an unknown-key error."""
        return tuple(sorted([key.name for key in cls.configKeys()] + list(cls.aliases)))

    @classmethod
    def parse(cls, text: str, entry: str, environ: Mapping[str, str] | None = None) -> Self:
        """Parse an xm device string like ``vnc=1,vncunused=1``.

        `entry` names the device in errors (``vfb[0]``); `environ`, when given, supplies
        what xm took from the caller's environment (``DISPLAY`` for SDL).
        """
        raw: dict[str, str] = {}
        for number, item in enumerate(text.split(","), start=1):
            if not item.strip():
                continue
            if "=" not in item:
                raise ConfigError(f"{entry}: item {number} is not key=value")
            key, value = (part.strip() for part in item.split("=", 1))
            cls._addRaw(raw, key, value, entry)
        return cls._fromRaw(raw, entry, environ)

    @classmethod
    def fromSXP(cls, sexpr: sxp.SExpr, entry: str | None = None) -> Self:
        """Build from ``(vfb (vnc 1) ...)``; `entry` names the device in errors."""
        entry = entry or cls.deviceClass
        if sxp.name(sexpr) != cls.deviceClass:
            raise ConfigError(f"{entry}: expected ({cls.deviceClass} ...), got {_masked(sexpr)}")
        raw: dict[str, str] = {}
        for item in sexpr[1:]:
            if not (
                isinstance(item, list) and len(item) == 2 and all(isinstance(i, str) for i in item)
            ):
                raise ConfigError(f"{entry}: malformed item {_masked(item)} (expected (key value))")
            cls._addRaw(raw, item[0], item[1], entry)
        return cls._fromRaw(raw, entry, None)

    @classmethod
    def fromDetails(
        cls, details: Mapping[str, str], secrets: Mapping[str, str], entry: str | None = None
    ) -> Self:
        """Rebuild from what `backendDetails` and `secretDetails` wrote; other keys are ignored."""
        raw = {}
        for key in cls.configKeys():
            source = secrets if key.secret else details
            if key.name in source:
                raw[key.name] = source[key.name]
        return cls._fromRaw(raw, entry or cls.deviceClass, None)

    def toSXP(self) -> list[sxp.SExpr]:
        """``[deviceClass, [key, value], ...]`` with every key that is set."""
        return [self.deviceClass, *([k, v] for k, v in self._strings(secrets=True).items())]

    def backendDetails(self) -> dict[str, str]:
        """Every set non-secret key as xenstore strings, for the backend area."""
        return self._strings(secrets=False)

    def secretDetails(self) -> dict[str, str]:
        """The secret keys that are set, for a place only domain 0 can read."""
        return {
            key.name: key.toString(getattr(self, key.attr))
            for key in self.configKeys()
            if key.secret and getattr(self, key.attr)
        }

    def __repr__(self) -> str:
        shown = []
        for key in self.configKeys():
            value = getattr(self, key.attr)
            shown.append(f"{key.name}={_MASK if key.secret and value else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _strings(self, secrets: bool) -> dict[str, str]:
        out = {}
        for key in self.configKeys():
            value = getattr(self, key.attr)
            # None and "" mean unset; xenstore (through pyxs) refuses empty values anyway.
            if value is not None and value != "" and (secrets or not key.secret):
                out[key.name] = key.toString(value)
        return out

    @classmethod
    def _addRaw(cls, raw: dict[str, str], key: str, value: str, entry: str) -> None:
        if key not in cls.acceptedKeys():
            raise ConfigError(
                f"{entry}: unknown key {key!r} (accepted keys: {', '.join(cls.acceptedKeys())})"
            )
        if key in raw:
            raise ConfigError(f"{entry}: key {key!r} given twice")
        raw[key] = value

    @classmethod
    def _fromRaw(cls, raw: dict[str, str], entry: str, environ: Mapping[str, str] | None) -> Self:
        raw = cls._prepare(raw, entry, environ)
        keys = {key.name: key for key in cls.configKeys()}
        config = cls(**{keys[name].attr: keys[name].convert(text, entry)
                        for name, text in raw.items()})
        config._check(entry)
        return config

    @classmethod
    def _prepare(
        cls, raw: dict[str, str], entry: str, environ: Mapping[str, str] | None
    ) -> dict[str, str]:
        """Turn aliases into keys and fill keys from `environ`; called before conversion."""
        return raw

    def _check(self, entry: str) -> None:
        """Check rules between keys; called once every key has its typed value."""

    def companionDetails(self) -> dict[str, str]:
        """Backend keys this device gives its companion (see `devices.DeviceClass`)."""
        return {}


@dataclass(frozen=True, repr=False)
class VfbConfig(DeviceConfig):
    """One paravirtual framebuffer: its display (VNC and/or SDL) and its video memory."""

    deviceClass: ClassVar[str] = "vfb"
    aliases: ClassVar[tuple[str, ...]] = ("type",)

    vnc: bool = _key(BOOLEAN, False)
    sdl: bool = _key(BOOLEAN, False)
    #: VNC port is 5900 + vncdisplay; with vncunused, the first free port from there up.
    vncdisplay: int | None = _key(VNC_DISPLAY, None)
    vncunused: bool = _key(BOOLEAN, True)
    vnclisten: str = _key(HOST, "127.0.0.1")
    #: Empty means no VNC authentication; at most `VNC_PASSWORD_LENGTH` characters.
    vncpasswd: str = _key(PASSWORD, "", secret=True)
    display: str | None = _key(X_DISPLAY, None)
    xauthority: str | None = _key(ABSOLUTE_PATH, None)
    keymap: str = _key(KEYMAP, "en-us")
    #: The shared-flag policy; None (not written to xenstore) means allow-exclusive.
    vncshare: str | None = _key(VNC_SHARE, None)
    #: Whether viewers that authenticated may shut down, reboot or reset the guest (xvp);
    #: None (not written to xenstore) means no.
    vncpowercontrol: bool | None = _key(BOOLEAN, None)
    opengl: bool = _key(BOOLEAN, False)
    uuid: str | None = _key(UUID, None)
    #: The domain running the backend.
    backend: int = _key(DOMID, 0)
    #: Hotplug script name or path; None for the default.
    script: str | None = _key(SCRIPT, None)
    #: The mode the display starts in; a guest may resize within videoram.
    width: int = _key(SIZE, 800)
    height: int = _key(SIZE, 600)
    depth: int = _key(DEPTH, 32)
    #: Framebuffer memory in MiB (xen-fbfront reads it from the backend area).
    videoram: int = _key(VIDEORAM, 8)

    def companionDetails(self) -> dict[str, str]:
        # Linux's xen-kbdfront scales absolute pointer events to these, read once at
        # probe, before any backend runs: the keyboard's area carries the display's size.
        return {"width": str(self.width), "height": str(self.height)}

    @classmethod
    def _prepare(
        cls, raw: dict[str, str], entry: str, environ: Mapping[str, str] | None
    ) -> dict[str, str]:
        raw = dict(raw)
        legacy = raw.pop("type", None)
        if legacy is not None:
            # type=vnc is the old spelling of vnc=1 (and type=sdl of sdl=1).
            if legacy not in ("vnc", "sdl"):
                raise ConfigError(
                    f"{entry}: type: invalid value {legacy!r} (expected one of vnc, sdl)"
                )
            if legacy in raw and not cls._keyNamed(legacy).convert(raw[legacy], entry):
                raise ConfigError(f"{entry}: type={legacy} conflicts with {legacy}={raw[legacy]}")
            raw[legacy] = "1"
        if environ is not None and "sdl" in raw and cls._keyNamed("sdl").convert(raw["sdl"], entry):
            # As xm did: SDL draws on the caller's X display unless told otherwise.
            for key, variable in (("display", "DISPLAY"), ("xauthority", "XAUTHORITY")):
                if key not in raw and environ.get(variable):
                    raw[key] = environ[variable]
        return raw

    @classmethod
    def _keyNamed(cls, name: str) -> Key:
        return next(key for key in cls.configKeys() if key.name == name)

    def withPassword(self, password: str, entry: str) -> Self:
        """This display with VNC password `password`, checked as any config value."""
        secrets = dict(self.secretDetails(), vncpasswd=password)
        return type(self).fromDetails(self.backendDetails(), secrets, entry)

    def _check(self, entry: str) -> None:
        if len(self.vncpasswd) > VNC_PASSWORD_LENGTH:
            # QEMU silently cuts it: a user would believe the rest counts.
            raise ConfigError(
                f"{entry}: vncpasswd: longer than {VNC_PASSWORD_LENGTH} characters (VNC "
                f"authentication uses only the first {VNC_PASSWORD_LENGTH}: give at most "
                f"{VNC_PASSWORD_LENGTH})"
            )
        if not (self.vnc or self.sdl):
            raise ConfigError(f"{entry}: no display enabled (give vnc=1 or sdl=1)")
        if self.sdl and self.display is None:
            raise ConfigError(f"{entry}: sdl=1 needs display (give display=:0, or set DISPLAY)")
        if self.vncpowercontrol and not self.vncpasswd:
            # Power control is for viewers that proved who they are; without a password
            # nobody does (QEMU would let anyone who reaches the port reset the guest).
            raise ConfigError(f"{entry}: vncpowercontrol=1 needs vncpasswd (only viewers "
                              "that authenticate may power the guest off, reboot or reset it)")
        needed = self.width * self.height * (self.depth // 8)
        if needed > self.videoram * _MIB:
            raise ConfigError(
                f"{entry}: a {self.width}x{self.height} framebuffer at depth {self.depth} "
                f"needs {-(-needed // _MIB)} MiB, more than videoram={self.videoram}"
            )


@dataclass(frozen=True, repr=False)
class VkbdConfig(DeviceConfig):
    """One paravirtual keyboard and pointer.

    The keys xl takes in ``vkb=`` are ``kbdif.h``'s backend keys, written to the backend
    area where the guest reads them when it probes: no keyboard device, no pointer device,
    the pointer's coordinate range (default: its display's size) and an id.
    """

    deviceClass: ClassVar[str] = "vkbd"

    uuid: str | None = _key(UUID, None)
    #: The domain running the backend.
    backend: int = _key(DOMID, 0)
    #: Hotplug script name or path; None for the default.
    script: str | None = _key(SCRIPT, None)
    #: The guest exposes no keyboard (key events are not sent); None means no.
    disableKeyboard: bool | None = _key(BOOLEAN, None, name="feature-disable-keyboard")
    #: The guest exposes no pointer (pointer events and buttons are not sent).
    disablePointer: bool | None = _key(BOOLEAN, None, name="feature-disable-pointer")
    #: The absolute pointer's range; None: the size of the display it is paired with.
    width: int | None = _key(POINTER_EXTENT, None)
    height: int | None = _key(POINTER_EXTENT, None)
    #: An id the guest can tell its keyboards apart by.
    uniqueId: str | None = _key(UNIQUE_ID, None, name="unique-id")

    @classmethod
    def fromDetails(
        cls, details: Mapping[str, str], secrets: Mapping[str, str], entry: str | None = None
    ) -> Self:
        """As `DeviceConfig.fromDetails`; `width` and `height` in the area are the
        keyboard's own only when its private record says so (`OWN_SIZE`), and
        otherwise the size of its display, written there for the guest."""
        if secrets.get(OWN_SIZE) != "1":
            details = {k: v for k, v in details.items() if k not in ("width", "height")}
        return super().fromDetails(details, secrets, entry)

    def _check(self, entry: str) -> None:
        if (self.width is None) != (self.height is None):
            raise ConfigError(f"{entry}: width and height go together (give both or neither)")


_DEVICE_CLASSES: dict[str, type[DeviceConfig]] = {
    VfbConfig.deviceClass: VfbConfig, VkbdConfig.deviceClass: VkbdConfig}


@dataclass(frozen=True, repr=False)
class DomainConfig:
    """A domain: its own keys, its devices and the top-level keys kept verbatim.

    Keyboards pair with displays by position: ``vkbds[i]`` is the keyboard of ``vfbs[i]``
    (input from that display goes to it); keyboards past ``len(vfbs)`` are extra ones.
    """

    name: str = field(metadata={"kind": DOMAIN_NAME, "secret": False})
    uuid: str | None = _key(UUID, None)
    #: MiB.
    memory: int = _key(MEMORY, 128)
    vcpus: int = _key(VCPUS, 1)
    kernel: str | None = _key(PATH_TEXT, None)
    ramdisk: str | None = _key(PATH_TEXT, None)
    #: The kernel command line.
    extra: str | None = _key(COMMAND_LINE, None)
    on_poweroff: str = _key(ACTION, "destroy")
    on_reboot: str = _key(ACTION, "restart")
    on_crash: str = _key(ACTION, "destroy")
    vfbs: tuple[VfbConfig, ...] = ()
    vkbds: tuple[VkbdConfig, ...] = ()
    #: Keys such as disk, vif, type, in file order: the domain builder's business.
    other: tuple[tuple[str, OtherValue], ...] = ()

    @classmethod
    def configKeys(cls) -> tuple[Key, ...]:
        """The domain's own scalar keys (name, uuid, memory, ...), in field order."""
        return _configKeys(cls)

    @classmethod
    def fromXmConfig(
        cls, path: str | Path, environ: Mapping[str, str] | None = None
    ) -> "DomainConfig":
        """Read an xm config file (never running it); each vfb gets its own vkbd, as in xm.

        The ``vkbd`` list adds extra keyboards.  `environ` supplies ``DISPLAY`` and
        ``XAUTHORITY`` for SDL displays, as xm took them from the caller's environment.
        """
        config = xmconfig.read(path)
        scalars: dict[str, Any] = {}
        devices: dict[str, list[Any]] = {name: [] for name in _DEVICE_CLASSES}
        other: list[tuple[str, OtherValue]] = []
        domainKeys = {key.name: key for key in cls.configKeys()}
        for key, value in config.values.items():
            where = f"{config.path}:{config.lines[key]}"
            try:
                if key in devices:
                    devices[key] = [
                        _DEVICE_CLASSES[key].parse(text, f"{key}[{i}]", environ)
                        for i, text in enumerate(_deviceStrings(key, value))
                    ]
                elif key in domainKeys:
                    scalars[key] = domainKeys[key].convert(_xmScalar(key, value), None)
                elif key == "device":
                    raise ConfigError(
                        "device: not an xm config key (use vfb = [...], vkbd = [...])"
                    )
                else:
                    other.append((key, _otherValue(value)))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        vfbs = tuple(devices[VfbConfig.deviceClass])
        paired = tuple(VkbdConfig(backend=vfb.backend) for vfb in vfbs)
        return cls._build(scalars, vfbs, paired + tuple(devices[VkbdConfig.deviceClass]), other,
                          config.path)

    @classmethod
    def fromSXP(cls, sexpr: sxp.SExpr, source: str = "<sxp>") -> "DomainConfig":
        """Build from ``(vm (name ...) ... (device (vkbd ...)) (device (vfb ...)))``.

        There must be at least as many vkbd devices as vfb devices: the i-th vkbd is the
        i-th vfb's keyboard.  `source` names the SXP in errors.
        """
        if sxp.name(sexpr) != "vm":
            raise ConfigError(f"{source}: expected (vm ...), got {_masked(sexpr)}")
        scalars: dict[str, Any] = {}
        devices: dict[str, list[Any]] = {name: [] for name in _DEVICE_CLASSES}
        other: list[tuple[str, OtherValue]] = []
        seen: set[str] = set()
        domainKeys = {key.name: key for key in cls.configKeys()}
        for item in sexpr[1:]:
            try:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise ConfigError(f"malformed item {_masked(item)} (expected (key value))")
                key, value = item
                if key == "device":
                    deviceClass = sxp.name(value)
                    if deviceClass not in _DEVICE_CLASSES:
                        raise ConfigError(
                            f"device: unknown device {_masked(value)} (expected vfb or vkbd)"
                        )
                    found = devices[deviceClass]
                    entry = f"{deviceClass}[{len(found)}]"
                    found.append(_DEVICE_CLASSES[deviceClass].fromSXP(value, entry))
                    continue
                if key in seen:
                    raise ConfigError(f"{key}: given twice")
                seen.add(key)
                if key in domainKeys:
                    if not isinstance(value, str):
                        raise ConfigError(f"{key}: expected a single value, got a list")
                    scalars[key] = domainKeys[key].convert(value, None)
                else:
                    other.append((key, _otherValue(value)))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
        vfbs = tuple(devices[VfbConfig.deviceClass])
        vkbds = tuple(devices[VkbdConfig.deviceClass])
        if len(vkbds) < len(vfbs):
            raise ConfigError(
                f"{source}: {len(vfbs)} vfb devices but {len(vkbds)} vkbd devices "
                "(each vfb needs its own (device (vkbd)) before it)"
            )
        return cls._build(scalars, vfbs, vkbds, other, source)

    @classmethod
    def fromSXPFile(cls, path: str | Path) -> "DomainConfig":
        """Read a file holding one ``(vm ...)`` expression."""
        return cls.fromSXP(sxp.parseFile(path), str(path))

    def toSXP(self) -> list[sxp.SExpr]:
        """``(vm ...)`` with every set key, each vkbd paired with a vfb just before it."""
        out: list[sxp.SExpr] = ["vm"]
        for key in self.configKeys():
            value = getattr(self, key.attr)
            if value is not None:
                out.append([key.name, key.toString(value)])
        out.extend([key, _otherToSXP(value)] for key, value in self.other)
        for vfb, vkbd in zip(self.vfbs, self.vkbds, strict=False):
            out.append(["device", vkbd.toSXP()])
            out.append(["device", vfb.toSXP()])
        out.extend(["device", vkbd.toSXP()] for vkbd in self.vkbds[len(self.vfbs) :])
        return out

    def ignoredKeys(self) -> tuple[str, ...]:
        """The verbatim top-level keys, which an emulated host has no use for."""
        return tuple(key for key, _ in self.other)

    def emulationWarning(self) -> str | None:
        """The one warning to give when creating this domain in emulated mode, if any."""
        ignored = self.ignoredKeys()
        if not ignored:
            return None
        return (
            f"Warning: emulated mode ignores these top-level keys of domain {self.name!r}: "
            f"{', '.join(ignored)} (only a real Xen host's domain builder uses them)"
        )

    def __repr__(self) -> str:
        other = tuple((key, "***" if key in SECRET_KEYS else value) for key, value in self.other)
        shown = [f"{key.name}={getattr(self, key.attr)!r}" for key in self.configKeys()]
        shown += [f"vfbs={self.vfbs!r}", f"vkbds={self.vkbds!r}", f"other={other!r}"]
        return f"DomainConfig({', '.join(shown)})"

    @classmethod
    def _build(
        cls,
        scalars: dict[str, Any],
        vfbs: tuple[VfbConfig, ...],
        vkbds: tuple[VkbdConfig, ...],
        other: list[tuple[str, OtherValue]],
        source: str,
    ) -> "DomainConfig":
        if "name" not in scalars:
            raise ConfigError(f"{source}: name: missing (every domain needs a name)")
        return cls(**scalars, vfbs=vfbs, vkbds=vkbds, other=tuple(other))


def _deviceStrings(key: str, value: xmconfig.XmValue) -> list[str]:
    # The value itself is not shown: a device string may hold a vncpasswd.
    if not isinstance(value, list):
        got = f"a {type(value).__name__}"
    elif not all(isinstance(item, str) for item in value):
        got = "a list with an item that is not a string"
    else:
        return value
    raise ConfigError(f"{key}: expected a list of device strings such as ['vnc=1'], got {got}")


def _xmScalar(key: str, value: xmconfig.XmValue) -> str:
    if isinstance(value, list):
        raise ConfigError(f"{key}: expected a single value, got a list")
    return _atom(value)


def _atom(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _otherValue(value: xmconfig.XmValue | sxp.SExpr) -> OtherValue:
    if isinstance(value, list):
        return tuple(_otherValue(item) for item in value)
    return _atom(value)


def _otherToSXP(value: OtherValue) -> sxp.SExpr:
    if isinstance(value, tuple):
        return [_otherToSXP(item) for item in value]
    return value
