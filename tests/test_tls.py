"""The daemon's TLS settings and certificate checks (`xend_vfb.tls`), with certificates made
at test time: each bad setting or file is one line naming it and why."""

import datetime
import os

import pytest
from OpenSSL import SSL

from tests.helpers_tls import issue, makeCA, writeCertDir, writePEM
from xend_vfb.errors import ConfigError
from xend_vfb.tls import DEFAULT_CERT_DIR, TLSSettings


@pytest.fixture(scope="module")
def ca():
    return makeCA()


@pytest.fixture
def certDir(tmp_path, ca):
    return writeCertDir(str(tmp_path / "vnc"), ca, issue(ca, "localhost"))


def test_settings_from_the_environment():
    assert TLSSettings.fromEnvironment({}) is None
    assert TLSSettings.fromEnvironment({"XEND_VFB_VNC_TLS": "0"}) is None
    assert TLSSettings.fromEnvironment({"XEND_VFB_VNC_TLS": "1"}) == TLSSettings(
        DEFAULT_CERT_DIR, False)
    assert TLSSettings.fromEnvironment({
        "XEND_VFB_VNC_TLS": "1", "XEND_VFB_VNC_X509_CERT_DIR": "/srv/certs",
        "XEND_VFB_VNC_X509_VERIFY": "1"}) == TLSSettings("/srv/certs", True)
    assert TLSSettings("/srv/certs").path("ca-cert.pem") == "/srv/certs/ca-cert.pem"


@pytest.mark.parametrize("environ, message", [
    ({"XEND_VFB_VNC_TLS": "yes"}, "XEND_VFB_VNC_TLS: invalid value 'yes' (expected 0 or 1)"),
    ({"XEND_VFB_VNC_TLS": "1", "XEND_VFB_VNC_X509_VERIFY": "on"},
     "XEND_VFB_VNC_X509_VERIFY: invalid value 'on' (expected 0 or 1)"),
    ({"XEND_VFB_VNC_X509_VERIFY": "1"},
     "XEND_VFB_VNC_X509_VERIFY=1 needs XEND_VFB_VNC_TLS=1 (without TLS no client certificate "
     "is checked)"),
])
def test_bad_settings(environ, message):
    with pytest.raises(ConfigError) as caught:
        TLSSettings.fromEnvironment(environ)
    assert str(caught.value) == message


def test_good_files_make_a_server_context(certDir):
    options = TLSSettings(certDir).contextFactory()
    context = options.getContext()
    assert context.get_verify_mode() == SSL.VERIFY_NONE
    verifying = TLSSettings(certDir, verify=True).contextFactory().getContext()
    required = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert verifying.get_verify_mode() & required == required


def _broken(certDir, name, data=None, directory=False):
    path = os.path.join(certDir, name)
    os.unlink(path)
    if directory:
        os.mkdir(path)
    elif data is not None:
        writePEM(path, data)
    return path


def _message(certDir):
    with pytest.raises(ConfigError) as caught:
        TLSSettings(certDir).contextFactory()
    return str(caught.value)


@pytest.mark.parametrize("name", ["ca-cert.pem", "server-cert.pem", "server-key.pem"])
def test_a_missing_file(certDir, name):
    path = _broken(certDir, name)
    assert _message(certDir) == f"{path}: cannot read it: No such file or directory"


def test_an_unreadable_file(certDir):
    path = _broken(certDir, "server-key.pem", directory=True)
    assert _message(certDir) == f"{path}: cannot read it: Is a directory"


def test_not_a_certificate(certDir):
    path = _broken(certDir, "server-cert.pem", b"hello\n")
    assert _message(certDir) == f"{path}: not a PEM certificate"


def test_not_a_key(certDir):
    path = _broken(certDir, "server-key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                              b"-----END PRIVATE KEY-----\n")
    assert _message(certDir) == f"{path}: not a PEM private key of a known kind"


def test_an_encrypted_key(certDir):
    from cryptography.hazmat.primitives import serialization

    other = issue(makeCA(), "localhost")
    data = other.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"passphrase"))
    path = _broken(certDir, "server-key.pem", data)
    assert _message(certDir) == (f"{path}: the key is encrypted (a daemon cannot type its "
                                 "passphrase)")


def test_a_key_that_is_not_the_certificates(certDir, ca):
    path = _broken(certDir, "server-key.pem", issue(ca, "localhost").keyPEM())
    assert _message(certDir) == (f"{path}: does not match the certificate in "
                                 f"{certDir}/server-cert.pem")


def test_a_ca_that_did_not_sign_the_certificate(certDir):
    path = _broken(certDir, "ca-cert.pem", makeCA("someone else").certPEM())
    assert _message(certDir) == f"{certDir}/server-cert.pem: not signed by the CA in {path}"


def test_an_expired_certificate(tmp_path, ca):
    server = issue(ca, "localhost", notAfter=datetime.datetime(2025, 3, 1, 12, 0,
                                                                tzinfo=datetime.UTC))
    certDir = writeCertDir(str(tmp_path / "vnc"), ca, server)
    assert _message(certDir) == (f"{certDir}/server-cert.pem: the certificate expired on "
                                 "2025-03-01 12:00 UTC")


def test_a_chain_through_an_intermediate(tmp_path, ca):
    from tests.helpers_tls import Identity, issueCA

    intermediate: Identity = issueCA(ca, "intermediate")
    server = issue(intermediate, "localhost")
    certDir = writeCertDir(str(tmp_path / "vnc"), ca, server)
    path = os.path.join(certDir, "server-cert.pem")
    writePEM(path, server.certPEM() + intermediate.certPEM())
    TLSSettings(certDir).contextFactory()
    writePEM(path, server.certPEM())
    assert _message(certDir) == f"{path}: not signed by the CA in {certDir}/ca-cert.pem"
    writePEM(path, server.certPEM() + makeCA("stray").certPEM())
    assert _message(certDir) == (f"{path}: its certificates do not form a chain (each must be "
                                 "signed by the next)")
