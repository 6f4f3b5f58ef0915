"""RFB's "VNC Authentication": DES of a challenge keyed by the password.

DES is long broken; it is here only because the protocol requires it, and the
`cryptography` package files it under "decrepit".  Single DES is triple DES
with one key three times over.  Only the first 8 password characters count
(the model refuses longer ones), and each key byte is used with its bit order
reversed: a quirk every VNC implementation shares.

`obfuscatedPassword` is the same DES, under a key every VNC program knows, as
the files ``vncpasswd`` writes and viewers read (``-passwd FILE``): a way to
hand a password to a viewer, not a protection.
"""

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = ["PASSWORD_LENGTH", "vncAuthResponse", "obfuscatedPassword"]

#: The password characters VNC authentication uses.
PASSWORD_LENGTH = 8

#: The fixed key of VNC password files (the same in every VNC implementation), taken with
#: its bits reversed like a password.
_PASSWORD_FILE_KEY = bytes((23, 82, 107, 6, 35, 78, 88, 7))


def _des(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _padded(password: str) -> bytes:
    """The first 8 password bytes, zero-padded."""
    return password.encode("latin-1")[:PASSWORD_LENGTH].ljust(PASSWORD_LENGTH, b"\0")


def _reversed(key: bytes) -> bytes:
    """`key` with each byte's bit order reversed."""
    return bytes(int(f"{byte:08b}"[::-1], 2) for byte in key)


def vncAuthResponse(password: str, challenge: bytes) -> bytes:
    """What a client that knows `password` answers to the 16-byte `challenge`."""
    if len(challenge) != 16:
        raise ValueError(f"a VNC challenge is 16 bytes, not {len(challenge)}")
    return _des(_reversed(_padded(password)), challenge)


def obfuscatedPassword(password: str) -> bytes:
    """`password` as a VNC password file holds it (8 bytes)."""
    return _des(_reversed(_PASSWORD_FILE_KEY), _padded(password))
