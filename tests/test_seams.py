"""The architecture's rules, checked: one registry of device classes, declared
seams, and dependencies that point one way (README "How it fits together")."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from xend_vfb.backend.device import DeviceOps
from xend_vfb.backend.interfaces import IBackendContext
from xend_vfb.backend.service import DomainBackend
from xend_vfb.controller import DevController
from xend_vfb.devices import DEVICE_CLASSES, classNamed
from xend_vfb.guest.domain import GuestDomain, GuestOptions
from xend_vfb.guest.frontend import Frontend
from xend_vfb.guest.interfaces import IGuestContext

PACKAGE = Path(__file__).resolve().parent.parent / "xend_vfb"
#: The toolstack side, which the backend and the guest never import.
TOOLSTACK = ("xend_vfb.controller", "xend_vfb.vfbif", "xend_vfb.domain", "xend_vfb.daemon",
             "xend_vfb.cli", "xend_vfb.host")


@pytest.mark.parametrize("cls", DEVICE_CLASSES, ids=lambda cls: cls.name)
def test_every_class_has_its_four_parts(cls):
    assert cls.config.deviceClass == cls.name
    controller = cls.controllerClass()
    assert issubclass(controller, DevController)
    assert controller.deviceClass == cls.name and controller.configClass is cls.config
    assert isinstance(cls.makeOps(), DeviceOps)
    frontend = cls.frontendClass()
    assert issubclass(frontend, Frontend) and frontend.devClass == cls.name
    assert cls.companion is None or classNamed(cls.companion).companion is None
    if cls.companion is not None:
        order = [c.name for c in DEVICE_CLASSES]
        assert order.index(cls.companion) < order.index(cls.name)  # created first


def test_class_names_appear_only_in_their_own_modules():
    """A new device class is its own modules plus an entry in `devices`: nothing else
    in the package spells a class's name (the CLI's command table aside)."""
    own = {"model.py", "backend/vfb.py", "backend/vkbd.py", "guest/fb.py", "guest/kbd.py",
           "cli.py"}
    names = {cls.name for cls in DEVICE_CLASSES}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        if where in own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert found == []


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


@pytest.mark.parametrize("side", ["backend", "guest", "guestmem", "protocol", "rfb"])
def test_the_device_side_imports_nothing_from_the_toolstack(side):
    found = sorted(f"{path.name}: {module}" for path in (PACKAGE / side).glob("*.py")
                   for module in _imports(path) if module.startswith(TOOLSTACK))
    assert found == []


@pytest.mark.parametrize("program", ["xend_vfb.backend.main", "xend_vfb.guest.main"])
def test_a_device_side_program_never_loads_the_toolstack(program):
    """Not even indirectly, through the registry."""
    code = (f"import sys, json, {program}, xend_vfb.devices as d\n"
            "[(c.makeOps(), c.frontendClass()) for c in d.DEVICE_CLASSES]\n"
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert [m for m in loaded if m.startswith(TOOLSTACK)] == []


def test_the_backend_context_is_declared():
    backend = DomainBackend(None, 3, foreignMemory=object(), eventChannels=object(),
                            reactor=Clock())
    assert verifyObject(IBackendContext, backend)


def test_the_guest_context_is_declared(tmp_path):
    guest = GuestDomain(Clock(), None, object(), 3, GuestOptions(runDir=str(tmp_path)))
    assert verifyObject(IGuestContext, guest)
