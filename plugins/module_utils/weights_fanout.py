"""Fan-out of a model snapshot inside a fleet: what a host still needs, who sends it, and over which SSH.

The model_weights role fetches a snapshot from the hub once (on the controller, or on one seed host per
group) and copies it to the other hosts with rsync. These pure functions make its decisions:

- :func:`snapshot_delta` compares the origin's manifest with the host's (``.llmfleet-manifest.json``, see
  ``snapshot.py``) and lists the files the host lacks, by path, size and sha256. No file is read.
- :func:`peer_seeds` picks the seed host of each group for peer distribution.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.snapshot import Manifest, ManifestError


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
