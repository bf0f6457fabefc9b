"""Mutual TLS for every connection, and who may do what.

``make_certificates`` creates a development CA, one certificate for members
(replicas and the name server: it serves and it dials peers) and one for
clients. Every connection needs a certificate signed by that CA; the
certificate's organizational unit says the role. Only members may call the
participant operations or change the name server's registrations.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Iterable, Optional

from Pyro5 import config as pyro_config
from Pyro5.api import current_context

from rmi_kv.errors import InvalidRequest, PermissionDenied

MEMBER, CLIENT = "member", "client"
ORGANIZATION = "rmi_kv"
CA_FILE = "ca.pem"


def certificate_files(directory: str | Path, role: str) -> tuple[Path, Path, Path]:
    """(certificate, key, CA) of ``role`` in a --tls-dir, checked to exist."""
    directory = Path(directory)
    files = (directory / f"{role}.pem", directory / f"{role}.key", directory / CA_FILE)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise InvalidRequest(f"--tls-dir {directory}: missing {', '.join(missing)}; create them with "
                             f"'python run_nameserver.py --make-certs {directory}'")
    return files


def configure_tls(directory: str | Path, role: str) -> None:
    """Turn on mutual TLS in this process's Pyro5 settings, as ``role``.

    A member serves with its certificate and presents the same one when it
    dials the name server or a peer; a client presents the client one.
    """
    certificate, key, authority = certificate_files(directory, role)
    pyro_config.SSL = True
    pyro_config.SSL_CACERTS = str(authority)
    pyro_config.SSL_REQUIRECLIENTCERT = True
    pyro_config.SSL_CLIENTCERT = str(certificate)
    pyro_config.SSL_CLIENTKEY = str(key)
    if role == MEMBER:
        pyro_config.SSL_SERVERCERT = str(certificate)
        pyro_config.SSL_SERVERKEY = str(key)


def role_of(certificate: Optional[dict]) -> Optional[str]:
    """The role a verified peer certificate (``getpeercert()``) grants, or None."""
    if not certificate:
        return None
    fields = {name: value for entry in certificate.get("subject", ()) for name, value in entry}
    if fields.get("organizationName") != ORGANIZATION:
        return None
    unit = fields.get("organizationalUnitName")
    return unit if unit in (MEMBER, CLIENT) else None


def require_member(operation: str) -> None:
    """Refuse ``operation`` unless the caller's connection carries a member certificate
    (a no-op without TLS: then the loopback binding is the boundary)."""
    if not pyro_config.SSL:
        return
    connection = getattr(current_context, "client", None)
    role = getattr(connection, "rmi_kv_role", None)
    if role != MEMBER:
        raise PermissionDenied(f"only cluster members may call {operation} (this connection's certificate "
                               f"is for: {role or 'nobody'})")


def make_certificates(directory: str | Path, *, hosts: Iterable[str] = ("127.0.0.1", "localhost"),
                      days: int = 365) -> list[Path]:
    """Create a development CA plus member and client certificates in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(unit: str, common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                          x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, key, certificate) -> list[Path]:
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return [cert_path, key_path]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("authority", "rmi_kv development CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(valid_from).not_valid_after(valid_to)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    written = [directory / CA_FILE]
    written[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "ca.key").chmod(0o600)

    alternative_names = []
    for host in hosts:
        try:
            alternative_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternative_names.append(x509.DNSName(host))
    for role, usages in ((MEMBER, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                         (CLIENT, [ExtendedKeyUsageOID.CLIENT_AUTH])):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(role, f"rmi_kv {role}")).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(valid_from).not_valid_after(valid_to)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if role == MEMBER:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        written += write(role, key, builder.sign(ca_key, hashes.SHA256()))
    return written
