"""Fan-out of a model snapshot inside a fleet: what a host still needs, who sends it, and over which SSH.

The model_weights role fetches a snapshot from the hub once (on the controller, or on one seed host per
group) and copies it to the other hosts with rsync. These pure functions make its decisions:

- :func:`snapshot_delta` compares the origin's manifest with the host's (``.llmfleet-manifest.json``, see
  ``snapshot.py``) and lists the files the host lacks, by path, size and sha256. No file is read.
- :func:`rsync_rsh` builds rsync's ``--rsh`` command from the play's own SSH settings for a host, so the
  copy travels exactly the way Ansible reaches the host (port, key, jump host, options).
- :func:`peer_seeds` picks the seed host of each group for peer distribution.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.snapshot import Manifest, ManifestError

#: what Ansible does with host_key_checking = false: neither check nor record host keys
NO_HOST_KEY_CHECKING = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


class FanoutError(ValueError):
    """Invalid input to a fan-out decision; the message names the value."""


def _manifest(data: Any, where: str) -> Manifest:
    try:
        return Manifest.from_dict(data, where)
    except ManifestError as exc:
        raise FanoutError(exc.message) from exc


def _host_manifest(host: Mapping[str, Any] | str | None) -> Manifest | None:
    """The host's manifest, or None when it is absent; raises ManifestError when it cannot be read."""
    if not host:
        return None
    data = host
    if isinstance(host, (str, bytes)):
        try:
            data = json.loads(host)
        except ValueError as exc:
            raise ManifestError(f"host manifest is not valid JSON ({exc})") from exc
    return Manifest.from_dict(dict(data) if isinstance(data, Mapping) else data, "host manifest")


def snapshot_delta(origin: Mapping[str, Any], host: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
    """What a host needs to hold the origin's snapshot.

    ``origin`` is the manifest of the snapshot that is sent (a dict as read from its JSON); ``host`` the
    manifest of the host's snapshot of the same revision (a dict, or its JSON text), or None/empty when it
    has none. A host manifest that cannot be read counts as none (the host gets every file, and
    ``model_snapshot`` reports the bad manifest when it lands them).

    Returns ``same`` (the host's snapshot lists exactly the origin's files: only a check on the host is
    left), ``send`` (paths whose path, size and sha256 the host's manifest lacks, in the origin's order),
    ``send_bytes``, ``files_total``, ``total_bytes`` and ``host_manifest`` (``valid``, ``missing`` or
    ``unreadable``).
    """
    wanted = _manifest(dict(origin), "origin manifest")
    state = "missing"
    have: set[tuple[str, int, str]] = set()
    same = False
    try:
        held = _host_manifest(host)
    except ManifestError:
        state = "unreadable"
    else:
        if held is not None:
            state = "valid"
            have = {(f.path, f.size, f.sha256) for f in held.files}
            same = (
                held.model == wanted.model
                and held.revision == wanted.revision
                and have == {(f.path, f.size, f.sha256) for f in wanted.files}
            )
    send = [f for f in wanted.files if (f.path, f.size, f.sha256) not in have]
    return {
        "same": same,
        "send": [f.path for f in send],
        "send_bytes": sum(f.size for f in send),
        "files_total": len(wanted.files),
        "total_bytes": wanted.total_bytes,
        "host_manifest": state,
    }


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def rsync_rsh(conn: Mapping[str, Any]) -> str:
    """rsync's ``--rsh`` for one host, from the play's SSH settings for it.

    ``conn`` keys (all optional): ``port``, ``private_key_file``, ``ssh_common_args``, ``ssh_extra_args``
    (strings as in the inventory, passed through as written: rsync splits them on spaces and honours
    quotes, like the ssh connection plugin), ``host_key_checking`` (Ansible's setting; when false, host keys
    are neither checked nor recorded, as Ansible does), ``ssh_executable`` (default ``ssh``).
    ``BatchMode=yes`` is always set, so a missing key fails at once instead of prompting.
    """
    unknown = set(conn) - {
        "port",
        "private_key_file",
        "ssh_common_args",
        "ssh_extra_args",
        "host_key_checking",
        "ssh_executable",
    }
    if unknown:
        raise FanoutError(f"rsync_rsh: unknown connection setting(s): {', '.join(sorted(unknown))}")
    port = conn.get("port") or 22
    try:
        port = int(port)
    except (TypeError, ValueError) as exc:
        raise FanoutError(f"rsync_rsh: port must be a number, got {conn.get('port')!r}") from exc
    if not 0 < port < 65536:
        raise FanoutError(f"rsync_rsh: port {port} is out of range")
    parts = [shlex.quote(str(conn.get("ssh_executable") or "ssh")), "-p", str(port), "-o", "BatchMode=yes"]
    key = conn.get("private_key_file")
    if key:
        parts += ["-i", shlex.quote(str(key))]
    for name in ("ssh_common_args", "ssh_extra_args"):
        value = str(conn.get(name) or "").strip()
        if value:
            parts.append(value)
    if not _flag(conn.get("host_key_checking", True)):
        parts.append(NO_HOST_KEY_CHECKING)
    return " ".join(parts)


def peer_seeds(hosts: Sequence[str], groups: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The seed of each host: the first host, in play order, of its group.

    ``groups`` maps a host to its group key (hosts not in it, or with an empty key, form one group), so
    each group fetches from the hub once and fans out among itself.
    """
    groups = groups or {}
    first: dict[str, str] = {}
    seeds: dict[str, str] = {}
    for host in hosts:
        key = str(groups.get(host) or "")
        seeds[host] = first.setdefault(key, host)
    return seeds
