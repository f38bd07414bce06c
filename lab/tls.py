#!/usr/bin/env python3
"""A private certificate authority for the lab and the test fleet, and server certificates it signs.

    tls.py ca DIR                                   make DIR/ca.pem and DIR/ca.key unless they exist
    tls.py issue DIR NAME --san 10.0.0.5 [--san host.lab] [--days N] [--other-key]
                                                    write DIR/NAME.pem (certificate, then the CA) and
                                                    DIR/NAME.key, signed by DIR's CA; a certificate
                                                    there already with the same names and 30 days
                                                    left is kept (a second `make lab` changes nothing)

    tls.py inventory DIR HOSTS.yml                  issue DIR/HOST.pem for every host of an inventory
                                                    (its ansible_host and its name)

`--days` may be negative (an expired certificate) and `--other-key` writes a key that does not
belong to the certificate: the front door's tests use both to prove they are refused. Clients trust
the lab's endpoints through the standard variables: SSL_CERT_FILE=DIR/ca.pem (Python, the OpenAI
client), CURL_CA_BUNDLE=DIR/ca.pem (curl).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "llmfleet lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def make_ca(directory: Path) -> None:
    if (directory / "ca.pem").exists() and (directory / "ca.key").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("llmfleet lab CA"))
        .issuer_name(_name("llmfleet lab CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca.key", _pem_key(key), 0o600)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def still_good(directory: Path, name: str, sans: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    names = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return names == set(sans) and left > datetime.timedelta(days=30) and (directory / f"{name}.key").exists()


def issue(directory: Path, name: str, sans: list[str], days: int = 825, other_key: bool = False) -> None:
    if days > 30 and not other_key and still_good(directory, name, sans):
        return
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ends = now + datetime.timedelta(days=days)
    alt_names: list[x509.GeneralName] = []
    for san in sans:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            alt_names.append(x509.DNSName(san))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(sans[0] if sans else name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, ends) - datetime.timedelta(days=1))
        .not_valid_after(ends)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    written_key = ec.generate_private_key(ec.SECP256R1()) if other_key else key
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(directory / f"{name}.pem", chain, 0o644)
    _write(directory / f"{name}.key", _pem_key(written_key), 0o600)


def inventory_hosts(path: Path) -> dict[str, str]:
    """Host name -> ansible_host of every host in a YAML inventory (groups nested under children)."""
    found: dict[str, str] = {}

    def walk(group: dict) -> None:
        for name, host_vars in (group.get("hosts") or {}).items():
            found[name] = (host_vars or {}).get("ansible_host", name)
        for child in (group.get("children") or {}).values():
            walk(child or {})

    for group in (yaml.safe_load(path.read_text()) or {}).values():
        walk(group or {})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("ca")
    ca.add_argument("directory", type=Path)
    leaf = commands.add_parser("issue")
    leaf.add_argument("directory", type=Path)
    leaf.add_argument("name")
    leaf.add_argument("--san", action="append", default=[])
    leaf.add_argument("--days", type=int, default=825)
    leaf.add_argument("--other-key", action="store_true")
    fleet = commands.add_parser("inventory")
    fleet.add_argument("directory", type=Path)
    fleet.add_argument("inventory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "ca":
        make_ca(args.directory)
    elif args.command == "inventory":
        make_ca(args.directory)
        for name, address in inventory_hosts(args.inventory).items():
            issue(args.directory, name, [address, name])
    else:
        make_ca(args.directory)
        issue(args.directory, args.name, args.san, args.days, args.other_key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
