"""A throwaway certificate authority for HTTPS fake providers no default trust store accepts: a
server certificate for 127.0.0.1, and a client certificate for providers that ask for one."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1)))


def _leaf(path: Path, ca: x509.Certificate, ca_key, subject: str, usage, san: x509.GeneralName | None = None) -> Path:
    """Writes key, certificate and CA in one file (what ssl's load_cert_chain and mitmproxy's client_certs read)."""
    key = ec.generate_private_key(ec.SECP256R1())
    b = (_builder(subject, ca.subject, key).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if san is not None:
        b = b.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                     + b.sign(ca_key, hashes.SHA256()).public_bytes(PEM) + ca.public_bytes(PEM))
    return path


def make(folder: Path, require_client: bool = False) -> tuple[Path, ssl.SSLContext]:
    """Writes `ca.pem` (the CA alone, what a user would trust) and `client.pem` in `folder`; returns the CA
    and a server context for 127.0.0.1 signed by it (asking for a client certificate of that CA if told)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (_builder("mimo2codex test CA", _name("mimo2codex test CA"), ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(PEM))
    server_pem = _leaf(folder / "server.pem", ca, ca_key, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    _leaf(folder / "client.pem", ca, ca_key, "mimo2codex test client", ExtendedKeyUsageOID.CLIENT_AUTH)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_pem)
    if require_client:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(ca_path)
    return ca_path, server
