"""The typed config model: device strings, SXP, xenstore details, examples, exact errors."""

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xend_vfb import sxp
from xend_vfb.errors import ConfigError
from xend_vfb.kinds import KEYMAPS
from xend_vfb.model import DomainConfig, VfbConfig, VkbdConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VFB_KEYS = (
    "backend, depth, display, height, keymap, opengl, script, sdl, type, uuid, videoram, vnc, "
    "vncdisplay, vnclisten, vncpasswd, vncpowercontrol, vncshare, vncunused, width, "
    "xauthority"
)
SECRET = "s3cr-Pa5"


def test_one_key_list_per_class():
    assert [k.name for k in VfbConfig.configKeys()] == [
        f.name for f in dataclasses.fields(VfbConfig)
    ]
    assert [k.name for k in VkbdConfig.configKeys()] == [
        "uuid", "backend", "script", "feature-disable-keyboard", "feature-disable-pointer",
        "width", "height", "unique-id"]
    assert [k.name for k in VfbConfig.configKeys() if k.secret] == ["vncpasswd"]
    assert ", ".join(VfbConfig.acceptedKeys()) == VFB_KEYS
    assert VfbConfig.deviceClass == "vfb"
    assert VkbdConfig.deviceClass == "vkbd"


def test_defaults():
    vfb = VfbConfig.parse("vnc=1", "vfb[0]")
    assert vfb == VfbConfig(vnc=True)
    assert (vfb.vnclisten, vfb.vncpasswd, vfb.keymap, vfb.backend, vfb.script) == (
        "127.0.0.1",
        "",
        "en-us",
        0,
        None,
    )
    assert (vfb.width, vfb.height, vfb.depth, vfb.videoram) == (800, 600, 32, 8)
    assert vfb.vncunused is True
    assert vfb.vncdisplay is None
    assert VkbdConfig.parse("", "vkbd[0]") == VkbdConfig()


def test_parse_typed_values():
    vfb = VfbConfig.parse(
        " vnc = yes , vncdisplay=07,vncunused=0,vnclisten=::1,vncpasswd=a b!,keymap=de,"
        "uuid=6B2C8A8E-4F1D-4C3B-9A57-2E0F7C1D9B44,backend=3,script=vfb-hotplug,"
        "width=1024,height=768,depth=16,videoram=2,,",
        "vfb[0]",
    )
    assert vfb.vnc is True and vfb.vncunused is False
    assert vfb.vncdisplay == 7
    assert vfb.vnclisten == "::1"
    assert vfb.vncpasswd == "a b!"
    assert vfb.uuid == "6b2c8a8e-4f1d-4c3b-9a57-2e0f7c1d9b44"
    assert (vfb.backend, vfb.script, vfb.width, vfb.height, vfb.depth) == (
        3,
        "vfb-hotplug",
        1024,
        768,
        16,
    )
    assert VfbConfig.parse("type=vnc", "vfb[0]") == VfbConfig(vnc=True)
    assert VfbConfig.parse("type=vnc,vnc=1", "vfb[0]") == VfbConfig(vnc=True)
    assert VfbConfig.parse("type=sdl,display=:0", "vfb[0]") == VfbConfig(sdl=True, display=":0")
    assert VfbConfig.parse("vnc=1,vnclisten=host-1.example.org", "v").vnclisten == (
        "host-1.example.org"
    )
    assert VfbConfig.parse("vnc=1,script=/etc/xen/scripts/vfb", "v").script == (
        "/etc/xen/scripts/vfb"
    )
    assert VfbConfig.parse("vnc=1,vncdisplay=59635", "v").vncdisplay == 59635


def test_sdl_display_from_environment():
    environ = {"DISPLAY": ":1", "XAUTHORITY": "/home/u/.Xauthority"}
    vfb = VfbConfig.parse("sdl=1", "vfb[0]", environ=environ)
    assert (vfb.display, vfb.xauthority) == (":1", "/home/u/.Xauthority")
    assert VfbConfig.parse("sdl=1,display=:2", "v", environ=environ).display == ":2"
    # A VNC display takes nothing from the environment.
    assert VfbConfig.parse("vnc=1", "v", environ=environ).display is None


BAD_DEVICES = [
    ("vnc=1,vncdisplya=1", f"vfb[0]: unknown key 'vncdisplya' (accepted keys: {VFB_KEYS})"),
    ("vnc=1,VNC=1", f"vfb[0]: unknown key 'VNC' (accepted keys: {VFB_KEYS})"),
    ("vnc=1,=1", f"vfb[0]: unknown key '' (accepted keys: {VFB_KEYS})"),
    (
        "vnc=1,vncdisplay=abc",
        "vfb[0]: vncdisplay: invalid value 'abc' (expected an integer from 0 to 59635)",
    ),
    (
        "vnc=1,vncdisplay=59636",
        "vfb[0]: vncdisplay: invalid value '59636' (expected an integer from 0 to 59635)",
    ),
    (
        "vnc=1,vncdisplay=-1",
        "vfb[0]: vncdisplay: invalid value '-1' (expected an integer from 0 to 59635)",
    ),
    (
        'vnc=1,vncdisplay=5900 + "1"',
        "vfb[0]: vncdisplay: invalid value '5900 + \"1\"' (expected an integer from 0 to 59635)",
    ),
    (
        "vnc=1,vncdisplay=",
        "vfb[0]: vncdisplay: invalid value '' (expected an integer from 0 to 59635)",
    ),
    ("vnc=2", "vfb[0]: vnc: invalid value '2' (expected a boolean: 1 or 0)"),
    ("vnc=1,sdl=maybe", "vfb[0]: sdl: invalid value 'maybe' (expected a boolean: 1 or 0)"),
    ("vnc=1,vncunused=", "vfb[0]: vncunused: invalid value '' (expected a boolean: 1 or 0)"),
    ("vnc=1,opengl=2", "vfb[0]: opengl: invalid value '2' (expected a boolean: 1 or 0)"),
    (
        "vnc=1,vnclisten=300.1.1.1",
        "vfb[0]: vnclisten: invalid value '300.1.1.1' (expected an IP address or a host name)",
    ),
    (
        "vnc=1,vnclisten=bad host",
        "vfb[0]: vnclisten: invalid value 'bad host' (expected an IP address or a host name)",
    ),
    (
        "vnc=1,vnclisten=-x.org",
        "vfb[0]: vnclisten: invalid value '-x.org' (expected an IP address or a host name)",
    ),
    (
        "vnc=1,vncpasswd=" + SECRET + "\u00e9",
        "vfb[0]: vncpasswd: invalid value '***' (expected printable ASCII characters)",
    ),
    (
        "vnc=1,vncpasswd=" + SECRET + "9",
        "vfb[0]: vncpasswd: longer than 8 characters (VNC authentication uses only the "
        "first 8: give at most 8)",
    ),
    (
        "vnc=1,keymap=klingon",
        "vfb[0]: keymap: invalid value 'klingon' (expected a keyboard layout such as en-us, "
        "en-gb, de, fr, es, it or ja)",
    ),
    (
        "vnc=1,keymap=EN-US",
        "vfb[0]: keymap: invalid value 'EN-US' (expected a keyboard layout such as en-us, "
        "en-gb, de, fr, es, it or ja)",
    ),
    (
        "sdl=1,display=localhost",
        "vfb[0]: display: invalid value 'localhost' "
        "(expected an X display such as ':0' or 'host:0.0')",
    ),
    (
        "sdl=1,display=:0,xauthority=.Xauthority",
        "vfb[0]: xauthority: invalid value '.Xauthority' (expected an absolute path)",
    ),
    (
        "vnc=1,uuid=1234",
        "vfb[0]: uuid: invalid value '1234' "
        "(expected a UUID such as 01234567-89ab-cdef-0123-456789abcdef)",
    ),
    (
        "vnc=1,backend=dom0",
        "vfb[0]: backend: invalid value 'dom0' (expected an integer from 0 to 32751)",
    ),
    (
        "vnc=1,backend=32752",
        "vfb[0]: backend: invalid value '32752' (expected an integer from 0 to 32751)",
    ),
    (
        "vnc=1,script=my script",
        "vfb[0]: script: invalid value 'my script' (expected a script name or an absolute path)",
    ),
    ("vnc=1,width=0", "vfb[0]: width: invalid value '0' (expected an integer from 1 to 16384)"),
    (
        "vnc=1,height=1e3",
        "vfb[0]: height: invalid value '1e3' (expected an integer from 1 to 16384)",
    ),
    ("vnc=1,depth=15", "vfb[0]: depth: invalid value '15' (expected one of 8, 16, 24, 32)"),
    ("vnc=1,videoram=0", "vfb[0]: videoram: invalid value '0' (expected an integer from 1 to 246)"),
    (
        "vnc=1,videoram=247",
        "vfb[0]: videoram: invalid value '247' (expected an integer from 1 to 246)",
    ),
    (
        "vnc=1,width=1920,height=1080,videoram=4",
        "vfb[0]: a 1920x1080 framebuffer at depth 32 needs 8 MiB, more than videoram=4",
    ),
    ("type=vga", "vfb[0]: type: invalid value 'vga' (expected one of vnc, sdl)"),
    ("type=vnc,vnc=0", "vfb[0]: type=vnc conflicts with vnc=0"),
    ("vnc", "vfb[0]: item 1 is not key=value"),
    ("vnc=1;sdl=1", "vfb[0]: vnc: invalid value '1;sdl=1' (expected a boolean: 1 or 0)"),
    ("vnc=1,vncpasswd:" + SECRET, "vfb[0]: item 2 is not key=value"),
    ("vnc=1,vnc=0", "vfb[0]: key 'vnc' given twice"),
    ("vnc=1,vncpasswd=a,vncpasswd=" + SECRET, "vfb[0]: key 'vncpasswd' given twice"),
    ("", "vfb[0]: no display enabled (give vnc=1 or sdl=1)"),
    ("vnc=0,sdl=0", "vfb[0]: no display enabled (give vnc=1 or sdl=1)"),
    ("sdl=1", "vfb[0]: sdl=1 needs display (give display=:0, or set DISPLAY)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DEVICES)
def test_bad_vfb_strings(text, message):
    with pytest.raises(ConfigError) as caught:
        VfbConfig.parse(text, "vfb[0]")
    assert str(caught.value) == message
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vnc=1", "vkbd[1]: unknown key 'vnc' (accepted keys: backend, "
            "feature-disable-keyboard, feature-disable-pointer, height, script, unique-id, uuid, "
            "width)"),
        ("backend=x", "vkbd[1]: backend: invalid value 'x' (expected an integer from 0 to 32751)"),
    ],
)
def test_bad_vkbd_strings(text, message):
    with pytest.raises(ConfigError) as caught:
        VkbdConfig.parse(text, "vkbd[1]")
    assert str(caught.value) == message


def test_secret_never_shown():
    vfb = VfbConfig.parse(f"vnc=1,vncpasswd={SECRET}", "vfb[0]")
    assert vfb.vncpasswd == SECRET
    for text in (repr(vfb), str(vfb), repr((vfb,)), repr(DomainConfig("d", vfbs=(vfb,)))):
        assert SECRET not in text
        assert "vncpasswd='***'" in text
    assert "vncpasswd=''" in repr(VfbConfig(vnc=True))
    other = DomainConfig("d", other=(("vncpasswd", SECRET), ("vnc", "1")))
    assert SECRET not in repr(other)
    assert vfb.secretDetails() == {"vncpasswd": SECRET}
    assert "vncpasswd" not in vfb.backendDetails()
    assert VfbConfig(vnc=True).secretDetails() == {}


def test_a_new_password_is_checked_like_any_value():
    vfb = VfbConfig.parse("vnc=1,vncdisplay=3,vncpasswd=old,keymap=de", "vfb[0]")
    new = vfb.withPassword(SECRET, "vfb[0]")
    assert new.vncpasswd == SECRET
    assert new.backendDetails() == vfb.backendDetails()
    with pytest.raises(ConfigError) as caught:
        vfb.withPassword(SECRET + "9", "vfb[0]")
    assert str(caught.value).startswith("vfb[0]: vncpasswd: longer than 8 characters")
    assert SECRET not in str(caught.value)


def test_details_are_xenstore_strings():
    vfb = VfbConfig.parse("vnc=1,vncdisplay=3,vncpasswd=pw", "vfb[0]")
    assert vfb.backendDetails() == {
        "vnc": "1",
        "sdl": "0",
        "vncdisplay": "3",
        "vncunused": "1",
        "vnclisten": "127.0.0.1",
        "keymap": "en-us",
        "opengl": "0",
        "backend": "0",
        "width": "800",
        "height": "600",
        "depth": "32",
        "videoram": "8",
    }
    # Keys the controller or the backend also keep in the area are ignored on the way back.
    details = {**vfb.backendDetails(), "state": "4", "vnc-port": "5903", "frontend": "/x"}
    assert VfbConfig.fromDetails(details, vfb.secretDetails()) == vfb
    assert VkbdConfig.fromDetails({"backend": "0", "feature-abs-pointer": "1"}, {}) == VkbdConfig()
    with pytest.raises(ConfigError) as caught:
        VfbConfig.fromDetails({"vnc": "1", "vncdisplay": "x"}, {}, "vfb/2")
    assert str(caught.value) == (
        "vfb/2: vncdisplay: invalid value 'x' (expected an integer from 0 to 59635)"
    )


passwords = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    max_size=8,
)


@st.composite
def vfbConfigs(draw):
    vnc, sdl = draw(st.booleans()), draw(st.booleans())
    width = draw(st.integers(1, 16384))
    height = draw(st.integers(1, 4096))
    depth = draw(st.sampled_from([8, 16, 24, 32]))
    needed = -(-width * height * depth // 8 // (1024 * 1024))
    return VfbConfig(
        vnc=vnc or not sdl,
        sdl=sdl,
        vncdisplay=draw(st.none() | st.integers(0, 59635)),
        vncunused=draw(st.booleans()),
        vnclisten=draw(st.sampled_from(["127.0.0.1", "0.0.0.0", "::", "fe80::1", "vnc.example"])),
        vncpasswd=draw(passwords),
        display=":0" if sdl else draw(st.none() | st.just("host:1.0")),
        xauthority=draw(st.none() | st.just("/root/.Xauthority")),
        keymap=draw(st.sampled_from(sorted(KEYMAPS))),
        opengl=draw(st.booleans()),
        uuid=draw(st.none() | st.uuids().map(str)),
        backend=draw(st.integers(0, 32751)),
        script=draw(st.none() | st.sampled_from(["vfb", "/etc/xen/scripts/vfb"])),
        width=width,
        height=height,
        depth=depth,
        videoram=draw(st.integers(max(1, needed), 246)) if needed <= 246 else 246,
    )


@given(vfbConfigs())
def test_vfb_round_trips(vfb):
    if vfb.width * vfb.height * vfb.depth // 8 > vfb.videoram * 1024 * 1024:
        return  # no valid videoram for this mode
    assert VfbConfig.fromDetails(vfb.backendDetails(), vfb.secretDetails()) == vfb
    assert VfbConfig.fromSXP(vfb.toSXP()) == vfb
    assert VfbConfig.fromSXP(sxp.parse(sxp.show(vfb.toSXP()))) == vfb
    deviceString = ",".join(f"{k}={v}" for k, v in vfb.toSXP()[1:])
    assert VfbConfig.parse(deviceString, "vfb[0]") == vfb


@given(st.none() | st.uuids().map(str), st.integers(0, 32751), st.none() | st.just("vkbd"))
def test_vkbd_round_trips(uuid, backend, script):
    vkbd = VkbdConfig(uuid=uuid, backend=backend, script=script)
    assert VkbdConfig.fromDetails(vkbd.backendDetails(), vkbd.secretDetails()) == vkbd
    assert VkbdConfig.fromSXP(vkbd.toSXP()) == vkbd
    assert vkbd.secretDetails() == {}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ("(vkbd)", "vfb[0]: expected (vfb ...), got (vkbd)"),
        ("vfb", "vfb[0]: expected (vfb ...), got vfb"),
        (
            "(vfb (vnc 1) (vncdisplay))",
            "vfb[0]: malformed item (vncdisplay) (expected (key value))",
        ),
        (
            "(vfb (vnc 1) (vncpasswd a b))",
            "vfb[0]: malformed item (vncpasswd ***) (expected (key value))",
        ),
        (
            "(vfb (vnc 1) (keymap (de)))",
            "vfb[0]: malformed item (keymap (de)) (expected (key value))",
        ),
        ("(vfb vnc)", "vfb[0]: malformed item vnc (expected (key value))"),
        ("(vfb (vnc 1) (vnc 1))", "vfb[0]: key 'vnc' given twice"),
        ("(vfb (vnc 1) (colour 1))", f"vfb[0]: unknown key 'colour' (accepted keys: {VFB_KEYS})"),
        (
            '(vfb (type vnc) (vncpasswd "\\u00e9"))',
            "vfb[0]: vncpasswd: invalid value '***' (expected printable ASCII characters)",
        ),
    ],
)
def test_bad_device_sxp(tree, message):
    with pytest.raises(ConfigError) as caught:
        VfbConfig.fromSXP(sxp.parse(tree), "vfb[0]")
    assert str(caught.value) == message


def test_domain_from_sxp_accepts_legacy_type_and_pairs_keyboards():
    domain = DomainConfig.fromSXP(
        sxp.parse(
            "(vm (name d) (device (vkbd)) (device (vfb (type vnc)))"
            " (device (vkbd (backend 2))) (disk (phy:/dev/x,xvda,w)) (on_crash restart))"
        )
    )
    assert domain.vfbs == (VfbConfig(vnc=True),)
    assert domain.vkbds == (VkbdConfig(), VkbdConfig(backend=2))
    assert domain.other == (("disk", ("phy:/dev/x,xvda,w",)),)
    assert (domain.on_poweroff, domain.on_reboot, domain.on_crash) == (
        "destroy", "restart", "restart")
    assert domain.memory == 128 and domain.vcpus == 1


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ("(domain (name d))", "t.sxp: expected (vm ...), got (domain (name d))"),
        ("(vm (memory 64))", "t.sxp: name: missing (every domain needs a name)"),
        (
            "(vm (name 42))",
            "t.sxp: name: invalid value '42' (expected up to 64 letters, digits, "
            "'.', '-' or '_', not all digits, starting with neither)",
        ),
        ("(vm (name d) (name e))", "t.sxp: name: given twice"),
        (
            "(vm (name d) (memory 0))",
            "t.sxp: memory: invalid value '0' (expected an integer from 1 to 1048576)",
        ),
        (
            "(vm (name d) (vcpus many))",
            "t.sxp: vcpus: invalid value 'many' (expected an integer from 1 to 512)",
        ),
        ("(vm (name d) (memory (64)))", "t.sxp: memory: expected a single value, got a list"),
        (
            '(vm (name d) (kernel ""))',
            "t.sxp: kernel: invalid value '' (expected a non-empty path of printable characters)",
        ),
        (
            "(vm (name d) (uuid x))",
            "t.sxp: uuid: invalid value 'x' "
            "(expected a UUID such as 01234567-89ab-cdef-0123-456789abcdef)",
        ),
        ("(vm (name d) memory)", "t.sxp: malformed item memory (expected (key value))"),
        ("(vm (name d) (disk a b))", "t.sxp: malformed item (disk a b) (expected (key value))"),
        (
            "(vm (name d) (device (vbd (uname phy:x))))",
            "t.sxp: device: unknown device (vbd (uname phy:x)) (expected vfb or vkbd)",
        ),
        (
            "(vm (name d) (device (vfb (vnc 1))))",
            "t.sxp: 1 vfb devices but 0 vkbd devices "
            "(each vfb needs its own (device (vkbd)) before it)",
        ),
        (
            "(vm (name d) (device (vkbd)) (device (vfb (vnc 1) (vnc 0))))",
            "t.sxp: vfb[0]: key 'vnc' given twice",
        ),
        (
            "(vm (name d) (device (vkbd)) (device (vkbd (bogus 1))))",
            "t.sxp: vkbd[1]: unknown key 'bogus' (accepted keys: backend, "
            "feature-disable-keyboard, feature-disable-pointer, height, script, unique-id, uuid, "
            "width)",
        ),
        (
            "(vm (name d) (device (vkbd)) (device (vfb (vncpasswd x) (vncpasswd " + SECRET + "))))",
            "t.sxp: vfb[0]: key 'vncpasswd' given twice",
        ),
    ],
)
def test_bad_domain_sxp(tree, message):
    with pytest.raises(ConfigError) as caught:
        DomainConfig.fromSXP(sxp.parse(tree), "t.sxp")
    assert str(caught.value) == message
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("memory = 64", "{path}: name: missing (every domain needs a name)"),
        (
            "name = 'd'\nmemory = 'lots'",
            "{path}:2: memory: invalid value 'lots' (expected an integer from 1 to 1048576)",
        ),
        (
            "name = 'd'\nmemory = 64.5",
            "{path}:2: memory: invalid value '64.5' (expected an integer from 1 to 1048576)",
        ),
        ("name = 'd'\nmemory = [64]", "{path}:2: memory: expected a single value, got a list"),
        (
            "name = 'two words'",
            "{path}:1: name: invalid value 'two words' (expected up to 64 "
            "letters, digits, '.', '-' or '_', not all digits, starting with neither)",
        ),
        (
            "name = 'd'\nvfb = 'vnc=1,vncpasswd=" + SECRET + "'",
            "{path}:2: vfb: expected a list of device strings such as ['vnc=1'], got a str",
        ),
        (
            "name = 'd'\nvfb = ['vnc=1', 1]",
            "{path}:2: vfb: expected a list of device strings "
            "such as ['vnc=1'], got a list with an item that is not a string",
        ),
        (
            "name = 'd'\nvfb = ['vnc=1', 'vnc=1,vncdisplya=1']",
            f"{{path}}:2: vfb[1]: unknown key 'vncdisplya' (accepted keys: {VFB_KEYS})",
        ),
        (
            "name = 'd'\n\nvkbd = ['backend=-1']",
            "{path}:3: vkbd[0]: backend: invalid value '-1' (expected an integer from 0 to 32751)",
        ),
        (
            "name = 'd'\ndevice = 1",
            "{path}:2: device: not an xm config key (use vfb = [...], vkbd = [...])",
        ),
        (
            "name = 'd'\nvfb = ['sdl=1']",
            "{path}:2: vfb[0]: sdl=1 needs display (give display=:0, or set DISPLAY)",
        ),
        (
            "name = 'd'\nvcpus = 0",
            "{path}:2: vcpus: invalid value '0' (expected an integer from 1 to 512)",
        ),
        (
            "name = 'd'\nextra = 'a\\x00b'",
            "{path}:2: extra: invalid value 'a\\x00b' (expected printable characters)",
        ),
    ],
)
def test_bad_xm_configs(tmp_path, source, message):
    path = tmp_path / "bad.cfg"
    path.write_text(source + "\n")
    with pytest.raises(ConfigError) as caught:
        DomainConfig.fromXmConfig(path, environ={})
    assert str(caught.value) == message.format(path=path)
    assert SECRET not in str(caught.value)


def test_xm_config_to_model(tmp_path):
    path = tmp_path / "d.cfg"
    path.write_text(
        "name = 'd'\nmemory = '96'\nacpi = True\nvif = ['bridge=xenbr0', ['x', 1]]\n"
        "vfb = ['vnc=1,backend=0', 'sdl=1']\nvkbd = ['backend=0']\n"
    )
    domain = DomainConfig.fromXmConfig(path, environ={"DISPLAY": ":5"})
    assert domain.memory == 96
    assert domain.other == (("acpi", "1"), ("vif", ("bridge=xenbr0", ("x", "1"))))
    assert domain.vfbs == (VfbConfig(vnc=True), VfbConfig(sdl=True, display=":5"))
    # One keyboard per display, then the extra one from the vkbd line.
    assert domain.vkbds == (VkbdConfig(), VkbdConfig(), VkbdConfig())
    tree = domain.toSXP()
    assert [sxp.name(item[1]) for item in sxp.children(tree, "device")] == [
        "vkbd",
        "vfb",
        "vkbd",
        "vfb",
        "vkbd",
    ]
    assert sxp.childValue(tree, "vif") == ["bridge=xenbr0", ["x", "1"]]
    assert DomainConfig.fromSXP(sxp.parse(sxp.pretty(tree))) == domain
    assert domain.ignoredKeys() == ("acpi", "vif")
    assert domain.emulationWarning() == (
        "Warning: emulated mode ignores these top-level keys of domain 'd': acpi, vif "
        "(only a real Xen host's domain builder uses them)"
    )
    assert DomainConfig("d").emulationWarning() is None


EXAMPLE_NAMES = ["demo", "vnc-password", "sdl", "two-framebuffers"]


def test_every_example_is_tested():
    names = {p.stem for p in EXAMPLES.glob("*.cfg")} | {p.stem for p in EXAMPLES.glob("*.sxp")}
    assert names >= set(EXAMPLE_NAMES)
    for name in names - set(EXAMPLE_NAMES):
        # Examples added later are at least readable.
        if (EXAMPLES / f"{name}.sxp").exists():
            DomainConfig.fromSXPFile(EXAMPLES / f"{name}.sxp")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_formats_agree(name):
    fromXm = DomainConfig.fromXmConfig(EXAMPLES / f"{name}.cfg", environ={})
    fromSxp = DomainConfig.fromSXPFile(EXAMPLES / f"{name}.sxp")
    assert fromXm == fromSxp
    assert sxp.parseFile(EXAMPLES / f"{name}.sxp") == fromXm.toSXP()
    assert len(fromXm.vkbds) >= len(fromXm.vfbs) >= 1


def test_examples_content():
    demo = DomainConfig.fromXmConfig(EXAMPLES / "demo.cfg", environ={})
    assert demo.name == "demo" and demo.memory == 64
    assert demo.vfbs == (VfbConfig(vnc=True, vncunused=True),)
    assert demo.other == ()
    password = DomainConfig.fromSXPFile(EXAMPLES / "vnc-password.sxp")
    assert password.vfbs[0].secretDetails() == {"vncpasswd": "s3cret"}
    assert [key for key, _ in password.other] == ["disk", "vif"]
    assert password.on_crash == "restart"
    sdl = DomainConfig.fromXmConfig(EXAMPLES / "sdl.cfg", environ={"DISPLAY": ":9"})
    assert sdl.vfbs[0].sdl and sdl.vfbs[0].display == ":0"
    two = DomainConfig.fromXmConfig(EXAMPLES / "two-framebuffers.cfg", environ={})
    assert [vfb.vncdisplay for vfb in two.vfbs] == [11, 12]
    assert two.vfbs[1].width == 1280 and two.vfbs[1].videoram == 16


def test_vkbd_keys_as_xl_takes_them():
    vkbd = VkbdConfig.parse(
        "feature-disable-pointer=1,width=1024,height=768,unique-id=kbd:1", "vkbd[0]")
    assert (vkbd.disablePointer, vkbd.disableKeyboard) == (True, None)
    assert (vkbd.width, vkbd.height, vkbd.uniqueId) == (1024, 768, "kbd:1")
    # The keys are kbdif.h's, under their own names, in the area and in SXP.
    assert vkbd.backendDetails() == {"backend": "0", "feature-disable-pointer": "1",
                                     "width": "1024", "height": "768", "unique-id": "kbd:1"}
    assert VkbdConfig.fromSXP(vkbd.toSXP()) == vkbd
    for text, message in [
        ("width=1024", "vkbd[0]: width and height go together (give both or neither)"),
        ("width=0,height=1", "vkbd[0]: width: invalid value '0' (expected an integer from 1 "
                             "to 65535)"),
        ("unique-id=a b", "vkbd[0]: unique-id: invalid value 'a b' (expected up to 64 "
                          "letters, digits, '.', ':', '-' or '_')"),
    ]:
        with pytest.raises(ConfigError) as caught:
            VkbdConfig.parse(text, "vkbd[0]")
        assert str(caught.value) == message


def test_vncpowercontrol_needs_a_password():
    assert VfbConfig.parse("vnc=1,vncpasswd=pw,vncpowercontrol=1", "vfb[0]").vncpowercontrol
    with pytest.raises(ConfigError) as caught:
        VfbConfig.parse("vnc=1,vncpowercontrol=1", "vfb[0]")
    assert str(caught.value) == (
        "vfb[0]: vncpowercontrol=1 needs vncpasswd (only viewers that authenticate may power "
        "the guest off, reboot or reset it)")
