"""XenHost's readings of what xl prints and writes (the real-Xen harness runs the rest).

The samples are xl 4.17's own output, seen in dom0 under the harness.
"""

import base64
import gzip
import json
import struct

import pytest

from xend_vfb.errors import DaemonError
from xend_vfb.host import ShutdownReason
from xend_vfb.host.xen import XL_SAVE_MAGIC, parseXlList, readXlSaveHeader, xlConfig
from xend_vfb.model import DomainConfig

HEADING = ("Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID"
           "                            Reason-Code\tSecurity Label")
DOM0 = ("Domain-0                                     0   768     2     r-----     111.2 "
        "00000000-0000-0000-0000-000000000000        -                -")


def row(domid: int, state: str, reason: str) -> str:
    return (f"xvfbx                                        {domid}   128     1     {state}      "
            f"78.3 0bb28071-4d53-4706-a243-becf742e9dbb        {reason}                -")


def test_xl_list_running_paused_and_preserved_domains():
    rows = parseXlList("\n".join([HEADING, DOM0, row(1, "--p---", "-"), row(2, "-b----", "-"),
                                  row(3, "---sr-", "1"), row(4, "---s--", "0"),
                                  row(5, "---sc-", "3"), row(6, "---ss-", "2")]))
    assert sorted(rows) == [0, 1, 2, 3, 4, 5, 6]
    assert rows[1].name == "xvfbx" and rows[1].uuid == "0bb28071-4d53-4706-a243-becf742e9dbb"
    assert [rows[d].shutdown for d in range(1, 7)] == [
        None, None, ShutdownReason.reboot, ShutdownReason.poweroff, ShutdownReason.crash,
        ShutdownReason.suspend]
    assert not rows[3].dying


def test_xl_list_dying_and_unknown_reason():
    rows = parseXlList("\n".join([HEADING, row(7, "---s-d", "0"), row(8, "---s--", "ffffffff")]))
    assert rows[7].dying
    assert rows[8].shutdown == ShutdownReason.crash


def test_xl_config_always_preserves():
    config = DomainConfig(name="g", uuid="0bb28071-4d53-4706-a243-becf742e9dbb", kernel="/k",
                          on_reboot="destroy", on_poweroff="restart",
                          other=(("type", "pv"), ("on_crash", "restart")))
    text = xlConfig(config)
    assert 'uuid = "0bb28071-4d53-4706-a243-becf742e9dbb"' in text
    assert 'type = "pv"' in text
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        assert [line for line in text.splitlines() if line.startswith(key)] == \
            [f'{key} = "preserve"']


def saveFile(tmp_path, config: bytes, order: str = "<", flags: int = 3):
    """The header `xl save` writes (xl_saverestore.c), then some of a stream."""
    optional = struct.pack(order + "I", len(config)) + config
    data = (XL_SAVE_MAGIC + struct.pack(order + "4I", 0x01020304, flags, 0, len(optional))
            + optional + b"\0" * 64)
    path = tmp_path / "guest.save"
    path.write_bytes(data)
    return str(path)


def test_save_header_names_the_domain(tmp_path):
    config = json.dumps({"c_info": {"type": "pv", "name": "xvfbx",
                                    "uuid": "0bb28071-4d53-4706-a243-becf742e9dbb"},
                         "b_info": {}}).encode() + b"\0"
    assert readXlSaveHeader(saveFile(tmp_path, config)) == (
        "xvfbx", "0bb28071-4d53-4706-a243-becf742e9dbb")
    assert readXlSaveHeader(saveFile(tmp_path, config, ">"))[0] == "xvfbx"


#: The first 980 bytes of a file `xl save` (4.17) wrote in the harness's dom0: header,
#: the domain's libxl configuration in JSON, then the start of libxc's stream.
REAL_SAVE_HEAD = gzip.decompress(base64.b64decode(
    "H4sIAAAAAAACA4WTy47TMBSGywyrSrxDlHXTpJ1OmyDNdlYsQUJCo8ixTxqrvsl2PAHUd2DBA2OnkHFgKiwlsv/v"
    "XOzj488gEoMckIRIjqhYJQNLWqk5sstkkbx7e3vz5nZxGT/95If/vi8TP1JcU9HK9H1yWY+a/arAK6ly6epFFYiP"
    "6uDaZohB31MSANztyrKsiqzdIZLtikOVNeUesk1bbAs4VFVV3sd+uhd1J61i/bE2WFNlTQjzUfeQjlbni3HavLJH"
    "jobaYdUHl00UFDlE2US+TCCMYlo9reaROPBTEyLdbYrDNoIW6SPY69xRAnLCRUQM7oDUCmnEzWzrLzScFmsg1G6j"
    "uoz8Geixs95ge7//C2GkQqpJPEdJMUOU11wSmCoZ0RNoASyQ3CGdW67yAQTJ/IVmfpI7zqjov8UumBOvjdGwFEYy"
    "eOgcLhJNqKD2IQ//2Z0iTqg5Xc/hG/TTGisq18dZotBza99woVKvHg1p3NVI8/9YDOX+32pzo2sNDA2Xmj8iZn63"
    "2Bhj1mxS1Eo+g5ZtO74BDQa0+1PHgDU0UtorEGtkuivMyNbWQR6do9XyvFx8oM3AHrn1T/QmvNNfmN8uitQDAAA="))


def test_real_xl_save_header(tmp_path):
    path = tmp_path / "real.save"
    path.write_bytes(REAL_SAVE_HEAD)
    assert readXlSaveHeader(str(path)) == ("xvfbx", "e3488890-f4ad-4079-b86e-1f020e799985")


@pytest.mark.parametrize("content", [b"", b"not a saved guest\n" * 10,
                                     XL_SAVE_MAGIC + b"\1\2"])
def test_not_a_save_file(tmp_path, content):
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(DaemonError, match="not a guest saved by xl save"):
        readXlSaveHeader(str(path))


def test_damaged_save_header(tmp_path):
    with pytest.raises(DaemonError, match="damaged"):
        readXlSaveHeader(saveFile(tmp_path, b"{nope"))
    with pytest.raises(DaemonError, match="No such file"):
        readXlSaveHeader(str(tmp_path / "missing"))
