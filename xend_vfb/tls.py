"""The daemon's TLS settings and certificates: VeNCrypt for VNC displays (and HTTPS).

The settings are the daemon's environment (`examples/xend-vfb-daemon.conf`),
xend's ``vnc-tls``, ``vnc-x509-cert-dir`` and ``vnc-x509-verify``:

- ``XEND_VFB_VNC_TLS=1``: displays offer VeNCrypt with x509 and nothing else.
- ``XEND_VFB_VNC_X509_CERT_DIR`` (default `DEFAULT_CERT_DIR`): `CA_CERT`,
  `SERVER_CERT` and `SERVER_KEY`, the names QEMU and libvirt use.
- ``XEND_VFB_VNC_X509_VERIFY=1``: clients must present a certificate signed by
  that CA.

`TLSSettings.contextFactory` reads and checks the files (each problem one line
naming the file and why, as a `ConfigError`) and builds what Twisted's
``startTLS`` and ``listenSSL`` take.  The daemon checks at start; each backend
loads the files again when it starts a display, so a display never starts
unencrypted when TLS was asked for.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from OpenSSL.crypto import X509
from twisted.internet.ssl import CertificateOptions, TLSVersion

from xend_vfb.errors import ConfigError
from xend_vfb.settings import DEFAULT_VNC_CERT_DIR, vncCertDir

__all__ = ["TLSSettings", "DEFAULT_CERT_DIR", "CA_CERT", "SERVER_CERT", "SERVER_KEY"]

DEFAULT_CERT_DIR = DEFAULT_VNC_CERT_DIR
CA_CERT, SERVER_CERT, SERVER_KEY = "ca-cert.pem", "server-cert.pem", "server-key.pem"

_TLS = "XEND_VFB_VNC_TLS"
_VERIFY = "XEND_VFB_VNC_X509_VERIFY"


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "")
    if value not in ("", "0", "1"):
        raise ConfigError(f"{name}: invalid value {value!r} (expected 0 or 1)")
    return value == "1"


@dataclass(frozen=True)
class TLSSettings:
    """Where the certificates are and whether clients must show one of their own."""

    certDir: str = DEFAULT_CERT_DIR
    verify: bool = False

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str] | None = None) -> TLSSettings | None:
        """The settings in `environ` (the process's environment by default), or None
        when TLS is off.  A bad value, or verify asked without TLS, is a ConfigError."""
        environ = os.environ if environ is None else environ
        tls, verify = _flag(environ, _TLS), _flag(environ, _VERIFY)
        if not tls:
            if verify:
                raise ConfigError(f"{_VERIFY}=1 needs {_TLS}=1 (without TLS no client "
                                  "certificate is checked)")
            return None
        return cls(vncCertDir(environ), verify)

    def path(self, name: str) -> str:
        """The file `name` (`CA_CERT`, ...) in the certificate directory."""
        return os.path.join(self.certDir, name)

    def contextFactory(self) -> CertificateOptions:
        """Read and check the files; the server side of TLS for Twisted.  A missing or
        unreadable file, a key that does not match the certificate, or a certificate the
        CA did not sign is a ConfigError naming the file."""
        caPath, certPath, keyPath = (self.path(n) for n in (CA_CERT, SERVER_CERT, SERVER_KEY))
        authorities = _certificates(caPath)
        chain = _certificates(certPath)
        key = _privateKey(keyPath)
        if _publicKey(key.public_key()) != _publicKey(chain[0].public_key()):
            raise ConfigError(f"{keyPath}: does not match the certificate in {certPath}")
        for certificate in (chain[0], *authorities):
            _checkDates(certificate, certPath if certificate is chain[0] else caPath)
        _checkIssued(chain, authorities, certPath, caPath)
        return CertificateOptions(
            privateKey=key,
            certificate=chain[0],
            extraCertChain=list(chain[1:]),
            verify=self.verify,
            caCerts=[X509.from_cryptography(c) for c in authorities] if self.verify else None,
            requireCertificate=self.verify,
            raiseMinimumTo=TLSVersion.TLSv1_2,
            # TLS 1.3 servers send session tickets right after the handshake, which
            # OpenSSL cannot be told not to through pyOpenSSL; Debian's TigerVNC 1.12
            # stalls on them before the VNC challenge.  TLS 1.2 without tickets.
            lowerMaximumSecurityTo=TLSVersion.TLSv1_2,
            enableSessionTickets=False,
        )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from None


def _certificates(path: str) -> list[x509.Certificate]:
    data = _read(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate") from None


def _privateKey(path: str) -> PrivateKeyTypes:
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{path}: the key is encrypted (a daemon cannot type its "
                          "passphrase)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{path}: not a PEM private key of a known kind") from None


def _publicKey(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _checkDates(certificate: x509.Certificate, path: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    if now > certificate.not_valid_after_utc:
        raise ConfigError(f"{path}: the certificate expired on "
                          f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < certificate.not_valid_before_utc:
        raise ConfigError(f"{path}: the certificate is valid only from "
                          f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _checkIssued(chain: list[x509.Certificate], authorities: list[x509.Certificate],
                 certPath: str, caPath: str) -> None:
    """The server certificate (followed by any intermediates in its file) leads to a
    certificate of the CA file."""
    for certificate, issuer in zip(chain, chain[1:], strict=False):
        if not _issued(certificate, issuer):
            raise ConfigError(f"{certPath}: its certificates do not form a chain (each "
                              "must be signed by the next)")
    if not any(_issued(chain[-1], authority) for authority in authorities):
        raise ConfigError(f"{certPath}: not signed by the CA in {caPath}")
