"""DES and the VNC authentication response built on it."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xend_vfb.rfb.des import desEncryptBlock, vncAuthResponse


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
def test_known_answers(key, plain, cipher):
    assert desEncryptBlock(bytes.fromhex(key), bytes.fromhex(plain)) == bytes.fromhex(cipher)


def test_block_and_key_sizes_are_checked():
    with pytest.raises(ValueError):
        desEncryptBlock(b"short", bytes(8))


def test_vnc_response_known_answer():
    # As computed by vncdotool (through the cryptography package) for the same input.
    assert vncAuthResponse("secret", b"0123456789abcdef").hex() == (
        "752440ee2bfcc2a0d9013fd20371e23b"
    )


def test_only_eight_password_bytes_count():
    challenge = bytes(range(16))
    assert vncAuthResponse("12345678", challenge) == vncAuthResponse("123456789", challenge)
    assert vncAuthResponse("1234567", challenge) != vncAuthResponse("12345678", challenge)


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
def test_agrees_with_cryptography(key, block):
    """Cross-check against OpenSSL's DES where the (optional) cryptography package has it."""
    decrepit = pytest.importorskip("cryptography.hazmat.decrepit.ciphers.algorithms")
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(decrepit.TripleDES(key * 3), modes.ECB()).encryptor()
    assert desEncryptBlock(key, block) == encryptor.update(block) + encryptor.finalize()
