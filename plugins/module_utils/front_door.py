"""What the front door (the TLS proxy on each host and the fleet gateway) refuses before it changes.

Pure checks of user-written inventory values: the TLS certificate and its key, the API key set and
the scrape allowlist. Each returns a list of problems (empty when the value is good), worded so
that the playbook can prefix the host and stop before anything restarts.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from typing import Any

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - ansible-core depends on cryptography
    HAS_CRYPTOGRAPHY = False

CERT_HINT = "give llmfleet_tls_cert (PEM, the server certificate first, then its chain) and llmfleet_tls_key"


def _public_numbers(key: Any) -> Any:
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return public.public_numbers()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_problems(
    cert_pem: str, key_pem: str, now: datetime.datetime | None = None, names: Iterable[str] = ()
) -> list[str]:
    """Problems with a server certificate and its private key: unreadable, not a pair, expired, or not
    valid for a name clients use (an IP address or DNS name in `names`)."""
    if not cert_pem.strip() or not key_pem.strip():
        return [f"no TLS certificate or key: {CERT_HINT}"]
    try:
        certs = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError as exc:
        return [f"llmfleet_tls_cert is not a PEM certificate ({exc})"]
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        return [f"llmfleet_tls_key is not an unencrypted PEM private key ({exc})"]
    cert = certs[0]
    problems = []
    if _public_numbers(cert.public_key()) != _public_numbers(key):
        problems.append(
            f"llmfleet_tls_key does not belong to the certificate {cert.subject.rfc4514_string()}: "
            "give the key the certificate was issued for"
        )
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        problems.append(
            f"the certificate {cert.subject.rfc4514_string()} expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
            "renew it and give the new one"
        )
    elif cert.not_valid_before_utc > now:
        problems.append(
            f"the certificate {cert.subject.rfc4514_string()} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the host's clock or the certificate)"
        )
    missing = [name for name in names if name and not _covers(cert, name)]
    if missing:
        problems.append(
            f"the certificate {cert.subject.rfc4514_string()} is not valid for {', '.join(missing)}, the "
            f"address clients use; it names {', '.join(_san_names(cert)) or 'nothing'}: issue one with "
            "these names in its subjectAltName"
        )
    return problems


def _san_names(cert: Any) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName)


def _covers(cert: Any, name: str) -> bool:
    for pattern in _san_names(cert):
        if pattern == name or (
            pattern.startswith("*.") and name.count(".") == pattern.count(".") and name.endswith(pattern[1:])
        ):
            return True
    return False


def api_key_problems(keys: Any) -> list[str]:
    """The API key set must be a non-empty list of distinct, non-blank strings without spaces."""
    if not isinstance(keys, list) or not keys:
        return [
            "llmfleet_api_keys is empty: the front door refuses every request without a valid key, so give "
            "at least one (keep keys in Ansible Vault)"
        ]
    problems = []
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key):
            problems.append(f"llmfleet_api_keys[{index}] is blank or holds white space")
    if len(set(map(str, keys))) != len(keys):
        problems.append("llmfleet_api_keys lists a key twice")
    return problems


def network_problems(value: Any, name: str) -> list[str]:
    """A list of IP addresses or networks (CIDR); anything else is named with its position."""
    if not isinstance(value, list):
        return [
            f"{name} must be a list of IP addresses or networks (e.g. [10.0.0.5, 10.1.0.0/24]), got {value!r}"
        ]
    problems = []
    for index, item in enumerate(value):
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            problems.append(f"{name}[{index}] = {item!r} is not an IP address or network (e.g. 10.1.0.0/24)")
    return problems


def key_digest(key: str) -> str:
    """What the proxy compares: the SHA-256 of the whole Authorization header a client sends."""
    return hashlib.sha256(f"Bearer {key}".encode()).hexdigest()
