"""HTTPS for the receiver: a fresh self-signed certificate for 127.0.0.1, ::1 and localhost, and its SSLContext.

A sender trusts exactly this certificate (cert.pem); the key never leaves tls_dir (key.pem, mode 0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["write_self_signed", "server_context", "CERT_FILE", "KEY_FILE", "VALID_FOR"]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_FOR = datetime.timedelta(days=1)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew between processes


def write_self_signed(tls_dir: str | Path, hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Generate an EC P-256 key and a self-signed certificate valid for one day; write them; return their paths.

    SANs: IP 127.0.0.1, IP ::1, DNS localhost, and the IP addresses in `hosts` (a --bind address). key.pem is
    created 0600 before any byte is written.
    """
    d = Path(tls_dir)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookbench receiver (localhost)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(ipaddress.IPv6Address("::1")),
            x509.DNSName("localhost"),
            *(x509.IPAddress(ip) for ip in _extra_ips(hosts)),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = d / CERT_FILE, d / KEY_FILE
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _extra_ips(hosts: tuple[str, ...]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if str(ip) not in ("127.0.0.1", "::1"):
            out.append(ip)
    return out


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`, the file having `mode` from its creation (never briefly readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def server_context(tls_dir: str | Path, hosts: tuple[str, ...] = ()) -> ssl.SSLContext:
    """Write a fresh certificate into `tls_dir` (also naming `hosts`) and return a server SSLContext (TLS 1.2+)."""
    cert_path, key_path = write_self_signed(tls_dir, hosts)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
