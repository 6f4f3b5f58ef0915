"""Certificates made at test time with `cryptography`: a CA, server and client certificates,
and a certificate directory laid out as the daemon reads it (`xend_vfb.tls`)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xend_vfb.tls import CA_CERT, SERVER_CERT, SERVER_KEY

DAY = datetime.timedelta(days=1)


@dataclass
class Identity:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def certPEM(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def keyPEM(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def makeCA(common: str = "xend-vfb test CA") -> Identity:
    """A self-signed CA."""
    return issueCA(None, common)


def issueCA(issuer: Identity | None, common: str) -> Identity:
    """A CA certificate signed by `issuer` (an intermediate), or by itself (None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer is not None else key
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer.cert.subject if issuer is not None else _name(common))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(signer, hashes.SHA256())
    )
    return Identity(key, cert)


def issue(ca: Identity, common: str, client: bool = False,
          notAfter: datetime.datetime | None = None) -> Identity:
    """A certificate for `common` signed by `ca`: a server's (for localhost and
    127.0.0.1) or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(min(now, notAfter or now) - 2 * DAY)
        .not_valid_after(notAfter or now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
    )
    if not client:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return Identity(key, builder.sign(ca.key, hashes.SHA256()))


def writeCertDir(directory: str, ca: Identity, server: Identity) -> str:
    """`ca-cert.pem`, `server-cert.pem` and `server-key.pem` in `directory`."""
    os.makedirs(directory, exist_ok=True)
    for name, data in ((CA_CERT, ca.certPEM()), (SERVER_CERT, server.certPEM()),
                       (SERVER_KEY, server.keyPEM())):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    os.chmod(os.path.join(directory, SERVER_KEY), 0o600)
    return directory


def writePEM(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path
