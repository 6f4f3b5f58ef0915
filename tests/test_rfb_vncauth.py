"""VNC authentication's DES (through `cryptography`) and the VNC password file format."""

import pytest

from xend_vfb.rfb.vncauth import obfuscatedPassword, vncAuthResponse


def _reversedBits(key: str) -> str:
    """The password whose bytes, bit-reversed as VNC does, are the DES key `key`."""
    return "".join(chr(int(f"{b:08b}"[::-1], 2)) for b in bytes.fromhex(key))


@pytest.mark.parametrize(
    "key, plain, cipher",
    [
        # The worked example of the DES literature (key 133457799BBCDFF1).
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        # NIST SP 800-17 variable-plaintext known-answer test, first entry.
        ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),
        ("0E329232EA6D0D73", "8787878787878787", "0000000000000000"),
    ],
)
def test_des_known_answers_with_the_bit_reversed_key(key, plain, cipher):
    challenge = bytes.fromhex(plain) * 2
    assert vncAuthResponse(_reversedBits(key), challenge) == bytes.fromhex(cipher) * 2


def test_vnc_response_known_answer():
    # As computed by vncdotool (its own DES code path) for the same input.
    assert vncAuthResponse("secret", b"0123456789abcdef").hex() == (
        "752440ee2bfcc2a0d9013fd20371e23b"
    )


def test_only_eight_password_bytes_count():
    challenge = bytes(range(16))
    assert vncAuthResponse("12345678", challenge) == vncAuthResponse("123456789", challenge)
    assert vncAuthResponse("1234567", challenge) != vncAuthResponse("12345678", challenge)


def test_the_challenge_is_16_bytes():
    with pytest.raises(ValueError, match="16 bytes, not 5"):
        vncAuthResponse("secret", b"short")


def test_password_file_known_answer():
    # What `vncpasswd -f` writes for "password" (a fixed key, the same everywhere).
    assert obfuscatedPassword("password").hex() == "dbd83cfd727a1458"
