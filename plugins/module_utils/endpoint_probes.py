"""Probes of an endpoint's front door: every route vLLM registers, without a key and with a wrong
one, and the TLS certificate clients are shown.

The routes come from the installed vLLM (its OpenAPI document, read on the host), never from a
hand-kept list, so a route a new vLLM release adds is probed the day it ships.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

# Every refusal the front door gives a request it will not serve: no key or a bad one (401), a
# forbidden caller (403), a path outside the allowlist (404), a method the route has not (405).
REFUSED = frozenset({401, 403, 404, 405})
PATH_PARAMETER = re.compile(r"\{[^}]*\}")
HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def probe_targets(routes: Mapping[str, Iterable[str]], public_paths: Iterable[str]) -> list[tuple[str, str]]:
    """(method, path) pairs to probe: each registered route but the public ones, path parameters
    filled with a placeholder. ``routes`` may be an OpenAPI ``paths`` object: keys of a path item
    that are not methods (``parameters``, ``summary``) are skipped."""
    public = set(public_paths)
    targets = []
    for path in sorted(routes):
        if path in public:
            continue
        for method in sorted({m.upper() for m in routes[path]} & HTTP_METHODS):
            targets.append((method, PATH_PARAMETER.sub("probe", path)))
    return targets


def judge_probes(statuses: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The probes that got anything but a refusal: "METHOD path: no_key 200", one per answer."""
    leaks = []
    for target, by_probe in statuses.items():
        for probe, status in by_probe.items():
            if status not in REFUSED:
                leaks.append(f"{target}: {probe} {status}")
    return leaks


def probe_routes(
    send: Callable[[str, str, dict[str, str]], int],
    targets: Iterable[tuple[str, str]],
    wrong_key: str,
) -> dict[str, dict[str, int]]:
    """Send each target without a key and with a wrong key; `send(method, path, headers)` returns the
    HTTP status."""
    statuses = {}
    for method, path in targets:
        statuses[f"{method} {path}"] = {
            "no_key": send(method, path, {}),
            "wrong_key": send(method, path, {"Authorization": f"Bearer {wrong_key}"}),
        }
    return statuses


def certificate_days_left(not_after: str, now: datetime.datetime | None = None) -> int:
    """Whole days until a certificate's notAfter, as `ssl` reports it ("Jun  1 12:00:00 2027 GMT")."""
    ends = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return (ends - now).days


def fetch_certificate(base_url: str, ca_file: str | None, timeout: float) -> dict[str, Any]:
    """Connect as a client that trusts `ca_file` (else the system store) and return the verified
    certificate's fields; raises ssl.SSLError when the chain or the name does not verify."""
    parts = urlsplit(base_url)
    context = ssl.create_default_context(cafile=ca_file or None)
    with (
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        cert = tls.getpeercert()
        return {"version": tls.version(), "cert": cert}


def judge_certificate(cert: Mapping[str, Any], warn_days: int, now: datetime.datetime | None = None) -> dict:
    """Details of a verified certificate, with a warning when it has fewer than `warn_days` left."""
    days = certificate_days_left(cert["notAfter"], now)
    issuer = dict(pair for rdn in cert.get("issuer", ()) for pair in rdn)
    details: dict[str, Any] = {
        "verified": True,
        "not_after": cert["notAfter"],
        "days_left": days,
        "issuer": issuer.get("commonName") or issuer.get("organizationName"),
    }
    if days < warn_days:
        details["warning"] = f"the certificate expires in {days} days (on {cert['notAfter']}): renew it"
    return details
