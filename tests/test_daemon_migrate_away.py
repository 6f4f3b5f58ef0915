"""`xend-vfb migrate DOM HOST` to another host (issue 12): the display goes with the guest.

Two emulated hosts on one machine, each with its own daemon, xenstored and run
directory; ssh's stand-in (tests/fake_ssh.py) runs `xend-vfb migrate-receive`
"on" the other host.  The guest's record travels first, then the guest; the
destination's daemon gives it the same display configuration (password, keymap,
keyboard) and lets it run; the source keeps nothing.  When the destination
refuses or breaks, the guest keeps running at the source with its display.
"""

import json

import pytest

from tests.helpers_daemon import (
    DaemonRun,
    VncClient,
    allConnected,
    assertNothingLeftOf,
    connectedAs,
    createGuest,
    devices,
    domainOf,
)
from tests.helpers_wait import waitUntil

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def hosts(tmp_path):
    """Hosts `origin` and `peer`, each a `DaemonRun` that reaches the other by name."""
    origin, peer = DaemonRun(tmp_path / "origin"), DaemonRun(tmp_path / "peer")
    names = json.dumps({"origin": origin.runDir, "peer": peer.runDir,
                        "loop": origin.runDir})
    for run in (origin, peer):
        run.env["XEND_VFB_TEST_HOSTS"] = names
    yield origin, peer
    for run in (origin, peer):
        run.cleanup()


def arrivedAt(run: DaemonRun, name: str) -> int:
    """Wait until `name` runs at `run` with every device Connected; its domid."""
    def arrived():
        domain = domainOf(run, name)
        return domain is not None and allConnected(run, name) and domain["domid"]
    return waitUntil(arrived, f"{name} to arrive with its display")


def display(run: DaemonRun, name: str) -> dict:
    """What must travel with the guest (the VNC port is the same only when free)."""
    tree = run.xenstore()
    domid = domainOf(run, name)["domid"]
    vfb = devices(run, name, "vfb")[0]
    return {"uuid": tree[f"/xend-vfb/{domid}/uuid"],
            "keymap": tree[f"/local/domain/0/backend/vfb/{domid}/0/keymap"],
            "password": tree[f"/xend-vfb/{domid}/device/vfb/0/vncpasswd"],
            "keyboard": vfb["vkbd"]}


def guestRecords(run: DaemonRun) -> list[str]:
    return [path for path in run.xenstore() if path.startswith("/xend-vfb/guest")]


def test_the_display_goes_with_the_guest_and_comes_back(hosts, tmp_path):
    origin, peer = hosts
    origin.start()
    peer.start()
    domid = createGuest(origin, tmp_path)
    before = display(origin, "life")

    out = origin.cli("migrate", "life", "peer").stdout
    assert out == "Migrated domain life to peer\n"
    assert domainOf(origin, "life") is None
    assertNothingLeftOf(origin, domid)
    assert guestRecords(origin) == []
    there = arrivedAt(peer, "life")
    assert display(peer, "life") == before
    port = devices(peer, "life", "vfb")[0]["vnc_port"]
    with VncClient(port, "pw") as vnc:  # the same password opens the display there
        def typed() -> bool:
            if any(e.get("keycode") == 48 for e in peer.inputEvents(there)):
                return True
            vnc.command("key", "b")
            return False

        waitUntil(typed, "a key typed at the peer's display to reach the guest")

    # And back: the same record travels again, whatever the domain id became.
    assert peer.cli("migrate", "life", "origin").stdout == "Migrated domain life to origin\n"
    arrivedAt(origin, "life")
    assert display(origin, "life") == before
    assert domainOf(peer, "life") is None and guestRecords(peer) == []
    assertNothingLeftOf(peer, there)


def test_a_destination_that_cannot_take_the_guest_leaves_it_running(hosts, tmp_path):
    origin, peer = hosts
    origin.start()
    domid = createGuest(origin, tmp_path)
    tree = origin.xenstore()
    # No daemon at the peer.
    assert origin.fails("migrate", "life", "peer") == (
        f"Error: cannot migrate domain {domid} to peer: the xend-vfb daemon is not "
        "running (start it with: xend-vfb daemon)")
    # A host that already runs the guest (here: the origin itself, by another name).
    uuid = display(origin, "life")["uuid"]
    assert origin.fails("migrate", "life", "loop") == (
        f"Error: cannot migrate domain {domid} to loop: guest life ({uuid}) already has "
        f"a domain here (domain {domid})")
    assert origin.xenstore() == tree and allConnected(origin, "life")
    assert domainOf(origin, "life")["domid"] == domid


def test_a_destination_that_breaks_mid_way_leaves_the_guest_at_the_source(hosts, tmp_path):
    origin, peer = hosts
    origin.env["XEND_VFB_TEST_REFUSE"] = "image"  # the peer fails to take the guest's memory
    origin.start()
    peer.start()
    domid = createGuest(origin, tmp_path)
    before = display(origin, "life")
    assert origin.fails("migrate", "life", "peer") == (
        f"Error: cannot migrate domain {domid} to peer: the destination broke down")
    # Suspended for the move, the guest is built again here from what was sent.
    connectedAs(origin, "life", domid)
    assert display(origin, "life") == before
    assertNothingLeftOf(origin, domid)
    assert guestRecords(peer) == [] and domainOf(peer, "life") is None


def test_a_source_daemon_killed_after_the_move_finishes_it_when_restarted(hosts, tmp_path):
    origin, peer = hosts
    origin.start("leave:moved")
    peer.start()
    pid = origin.daemonPid()
    domid = createGuest(origin, tmp_path)
    before = display(origin, "life")
    origin.cli("migrate", "life", "peer", check=False)
    origin.waitDaemonGone(pid)
    origin.start()
    waitUntil(lambda: guestRecords(origin) == [], "the origin to forget the guest")
    assertNothingLeftOf(origin, domid)
    arrivedAt(peer, "life")
    assert display(peer, "life") == before


CONFIG = ('(vm (name life) (uuid 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0) (memory 32) '
          '(device (vkbd)) (device (vfb (vnc 1))))')


@pytest.mark.parametrize(("sent", "why"), [
    ("not json", "Expecting value: line 1 column 1 (char 0)"),
    ("[1, 2]", "not a JSON object"),
    ('{"uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}', "no name, config, devices"),
    (json.dumps({"uuid": "../../local/domain/0", "name": "life", "config": CONFIG,
                 "devices": []}),
     "uuid '../../local/domain/0' and name 'life' are not its config's "
     "('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', 'life')"),
    (json.dumps({"uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "name": "life",
                 "config": CONFIG.replace("(memory 32)", "(memory lots)"), "devices": []}),
     None),
    (json.dumps({"uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "name": "life",
                 "config": CONFIG, "devices": "all"}), "devices is not a list of objects"),
])
def test_a_record_that_is_not_one_is_refused_and_nothing_written(run, sent, why):
    run.start()
    tree = run.xenstore()
    error = run.fails("migrate-receive", "record", stdin=sent)
    assert error.startswith("Error: not the record of a migrating guest: ")
    if why is not None:
        assert error == f"Error: not the record of a migrating guest: {why}"
    else:  # the config's own error names the key and the value
        assert "memory" in error and "lots" in error
    assert run.xenstore() == tree


def test_migrate_receive_steps_need_a_uuid(run):
    result = run.cli("migrate-receive", "arrived", check=False)
    assert (result.returncode, result.stderr) == (
        2, "Error: migrate-receive arrived: the guest's UUID is missing\n")
