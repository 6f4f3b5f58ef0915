"""The xend-vfb CLI's config commands: create -n, create -n -C, and the one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from xend_vfb import cli, sxp
from xend_vfb.model import DomainConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NO_DAEMON = "Error: the xend-vfb daemon is not running (start it with: xend-vfb daemon)\n"


@pytest.fixture(autouse=True)
def noDisplay(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("XAUTHORITY", raising=False)


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", ["demo", "vnc-password", "sdl", "two-framebuffers"])
def test_create_dry_run_prints_the_example_sxp(capsys, name):
    status, out, err = run(capsys, "create", "-n", str(EXAMPLES / f"{name}.cfg"))
    assert (status, err) == (0, "")
    assert sxp.parse(out) == sxp.parseFile(EXAMPLES / f"{name}.sxp")
    # The printed SXP is the normalised form: reading it back prints it again unchanged.
    status, again, err = run(capsys, "create", "-C", "-n", str(EXAMPLES / f"{name}.sxp"))
    assert (status, again, err) == (0, out, "")


def test_create_dry_run_prints_the_password(capsys, tmp_path):
    # Its output is a config for create -C: the secret must be in it.
    status, out, _ = run(capsys, "create", "-n", str(EXAMPLES / "vnc-password.cfg"))
    assert status == 0
    assert "(vncpasswd s3cret)" in out
    path = tmp_path / "copy.sxp"
    path.write_text(out)
    assert DomainConfig.fromSXPFile(path) == DomainConfig.fromXmConfig(
        EXAMPLES / "vnc-password.cfg"
    )


def test_sdl_takes_display_from_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":3")
    path = tmp_path / "sdl.cfg"
    path.write_text("name = 'x'\nvfb = ['sdl=1']\n")
    status, out, _ = run(capsys, "create", "-n", str(path))
    assert status == 0
    assert sxp.childValue(_vfb(out), "display") == ":3"


def _vfb(out):
    devices = sxp.children(sxp.parse(out), "device")
    return next(d[1] for d in devices if sxp.name(d[1]) == "vfb")


def test_bad_config_is_one_line(capsys, tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text("name = 'x'\nvfb = ['vnc=1,vncpasswd=hunter2,vncdisplay=abc']\n")
    status, out, err = run(capsys, "create", "-n", str(path))
    assert (status, out) == (1, "")
    assert err == (
        f"Error: {path}:2: vfb[0]: vncdisplay: invalid value 'abc' "
        "(expected an integer from 0 to 59635)\n"
    )


def test_dangerous_config_is_refused(capsys, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.cfg"
    path.write_text(f"name = 'x'\nimport os\nos.system('touch {marker}')\n")
    status, _, err = run(capsys, "create", "-n", str(path))
    assert status == 1
    assert err == (
        f"Error: {path}:2: import statement is not allowed (only 'name = value' assignments)\n"
    )
    assert not marker.exists()


def test_verbose_adds_the_traceback(capsys, tmp_path):
    path = tmp_path / "bad.sxp"
    path.write_text("(vm (name x)")
    for argv in (
        ["--verbose", "create", "-n", "-C", str(path)],
        ["create", "-n", "-C", str(path), "--verbose"],
    ):
        status, _, err = run(capsys, *argv)
        lines = err.splitlines()
        assert status == 1
        assert lines[0] == f"Error: {path}:1:1: '(' is never closed"
        assert "Traceback (most recent call last):" in lines
        assert lines[-1] == f"xend_vfb.errors.ConfigError: {path}:1:1: '(' is never closed"


def test_missing_file(capsys, tmp_path):
    status, _, err = run(capsys, "create", "-n", str(tmp_path / "nope.cfg"))
    assert (status, err) == (
        1,
        f"Error: {tmp_path / 'nope.cfg'}: cannot read: No such file or directory\n",
    )


def test_daemon_commands_need_the_daemon(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XEND_VFB_RUN_DIR", str(tmp_path))
    demo = str(EXAMPLES / "demo.cfg")
    for argv in (
        ["create", demo],
        ["create", "-C", str(EXAMPLES / "demo.sxp")],
        ["destroy", "demo"],
        ["list", "--json"],
        ["vfb-attach", "demo", "vnc=1,vncunused=1"],
        ["vfb-detach", "demo", "0", "--force"],
        ["vfb-list", "demo"],
        ["vkbd-attach", "demo", ""],
        ["vkbd-detach", "demo", "1"],
        ["vkbd-list", "demo", "--json"],
        ["screenshot", "demo", "out.png", "--devid", "1"],
        ["stop"],
        ["reboot", "demo"],
        ["shutdown", "demo", "--wait"],
        ["save", "demo", "demo.save"],
        ["restore", "demo.save"],
        ["migrate", "demo", "localhost"],
    ):
        assert run(capsys, *argv) == (1, "", NO_DAEMON), argv


def test_config_is_checked_before_the_daemon(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XEND_VFB_RUN_DIR", str(tmp_path))
    status, _, err = run(capsys, "vfb-attach", "demo", "vnc=1,vncdisplya=1")
    assert status == 1
    assert err.startswith("Error: vfb: unknown key 'vncdisplya' (accepted keys: backend, ")
    path = tmp_path / "bad.cfg"
    path.write_text("memory = 64\n")
    status, _, err = run(capsys, "create", str(path))
    assert (status, err) == (1, f"Error: {path}: name: missing (every domain needs a name)\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND (see: xend-vfb --help)"),
        (
            ["frobnicate"],
            "argument COMMAND: invalid choice: 'frobnicate' (choose from 'daemon', 'create', "
            "'destroy', 'list', 'screenshot', 'console-url', 'stop', 'reboot', 'shutdown', "
            "'save', 'restore', 'migrate', 'migrate-receive', 'vncviewer', 'vnc-passwd', "
            "'vfb-attach', "
            "'vfb-detach', 'vfb-list', 'vkbd-attach', 'vkbd-detach', 'vkbd-list') "
            "(see: xend-vfb --help)",
        ),
        (["create"], "the following arguments are required: CONFIG (see: xend-vfb create --help)"),
        (
            ["vfb-detach", "demo", "x"],
            "argument DEVID: invalid int value: 'x' (see: xend-vfb vfb-detach --help)",
        ),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, message):
    assert run(capsys, *argv) == (2, "", f"Error: {message}\n")


def test_help_and_version(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "create" in out and "vfb-attach" in out
    status, out, _ = run(capsys, "create", "--help")
    assert status == 0 and "-n, --dry-run" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("xend-vfb ")


def test_internal_errors_are_one_line(capsys, monkeypatch):
    def broken(path, environ=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(DomainConfig, "fromXmConfig", broken)
    status, _, err = run(capsys, "create", "-n", "x.cfg")
    assert (status, err) == (
        1,
        "Error: internal error: RuntimeError: boom (run with --verbose for the traceback)\n",
    )


def test_console_script_entry_point(tmp_path):
    # The installed program behaves as main() does.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from xend_vfb.cli import main; sys.exit(main())",
            "create",
            "-n",
            str(EXAMPLES / "demo.cfg"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert sxp.parse(result.stdout) == sxp.parseFile(EXAMPLES / "demo.sxp")
