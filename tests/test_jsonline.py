"""Control sockets: errors cross them typed, an error code beside the message."""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from xend_vfb import jsonline
from xend_vfb.errors import ChannelError, ConfigError, DeviceError, errorCode
from xend_vfb.jsonclient import requestBlocking


class Handler:
    def op_config(self, request):
        raise ConfigError("vfb[0]: vnc: invalid value 'x' (expected a boolean: 1 or 0)")

    def op_device(self, request):
        raise DeviceError("Device 3 (vfb) does not exist in domain 5")

    def op_bad(self, request):
        return {"value": int(request["value"])}

    def op_broken(self, request):
        return {}["missing"]


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "control.sock")
    port = pytest_twisted.blockon(jsonline.listen(reactor, path, Handler()))
    yield path
    pytest_twisted.blockon(port.stopListening())


@pytest.mark.parametrize(("op", "code", "message"), [
    ("config", "ConfigError", "vfb[0]: vnc: invalid value 'x' (expected a boolean: 1 or 0)"),
    ("device", "DeviceError", "Device 3 (vfb) does not exist in domain 5"),
    ("bad", "ValueError", "invalid literal for int() with base 10: 'x'"),
    ("broken", "internal", "internal error: 'missing'"),
    ("nosuch", "ValueError", "unknown request 'nosuch'"),
])
@pytest_twisted.inlineCallbacks
def test_an_error_reply_carries_its_code(server, op, code, message):
    with pytest.raises(ChannelError) as viaTwisted:
        yield jsonline.request(reactor, server, {"op": op, "value": "x"})
    with pytest.raises(ChannelError) as viaSocket:
        yield deferToThread(requestBlocking, server, {"op": op, "value": "x"}, 10)
    for info in (viaTwisted, viaSocket):
        assert (info.value.code, str(info.value)) == (code, message)


def test_error_codes_name_the_class_in_the_tree():
    assert errorCode(ConfigError("x")) == "ConfigError"
    assert errorCode(ChannelError("x")) == "ChannelError"
    assert errorCode(ValueError("x")) == "ValueError"
    assert errorCode(KeyError("x")) == "internal"
