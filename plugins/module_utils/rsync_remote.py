"""How rsync reaches a host: over the play's own SSH settings for it.

Roles that copy large trees to hosts (the runtime's wheelhouse, the model's snapshot) run rsync from the
controller, or from a seed host, so that the copy travels exactly the way Ansible reaches the host: the same
user, address, port, key, jump host and options.

- :func:`rsync_rsh` builds rsync's ``--rsh`` command from connection settings.
- :func:`ssh_remote` reads those settings from a host's variables, as the ssh connection plugin does, and
  returns the user, ``user@host`` destination and ``--rsh`` for it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

#: what Ansible does with host_key_checking = false: neither check nor record host keys
NO_HOST_KEY_CHECKING = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


class RemoteError(ValueError):
    """An SSH setting rsync cannot use; the message names the value."""


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
        raise RemoteError(f"rsync_rsh: unknown connection setting(s): {', '.join(sorted(unknown))}")
    port = conn.get("port") or 22
    try:
        port = int(port)
    except (TypeError, ValueError) as exc:
        raise RemoteError(f"rsync_rsh: port must be a number, got {conn.get('port')!r}") from exc
    if not 0 < port < 65536:
        raise RemoteError(f"rsync_rsh: port {port} is out of range")
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


def ssh_dest(user: str, host: str) -> str:
    """rsync's ``user@host``, with an IPv6 address in brackets."""
    return f"{user}@[{host}]" if ":" in host else f"{user}@{host}"


def ssh_remote(
    host_vars: Mapping[str, Any],
    *,
    default_key: str = "",
    host_key_checking: Any = True,
    local_user: str = "",
) -> dict[str, str]:
    """How rsync reaches a host, from its variables: ``user``, ``dest`` (``user@host``), ``rsh`` (for
    ``--rsh``) and ``rsync_path`` (for ``--rsync-path``: the receiving rsync runs as root, through sudo unless
    the login user is root).

    Reads what the ssh connection plugin reads: ``ansible_user``, ``ansible_host`` (else the inventory
    name), ``ansible_port``, ``ansible_ssh_private_key_file`` / ``ansible_private_key_file``,
    ``ansible_ssh_common_args``, ``ansible_ssh_extra_args`` and ``ansible_host_key_checking`` /
    ``ansible_ssh_host_key_checking``; the keyword arguments are Ansible's configured defaults.
    """
    user = str(host_vars.get("ansible_user") or local_user)
    host = str(host_vars.get("ansible_host") or host_vars.get("inventory_hostname") or "")
    if not user or not host:
        raise RemoteError(f"ssh_remote: no user ({user!r}) or address ({host!r}) for the host")
    checking = next(
        (
            host_vars[name]
            for name in ("ansible_ssh_host_key_checking", "ansible_host_key_checking")
            if name in host_vars
        ),
        host_key_checking,
    )
    rsh = rsync_rsh(
        {
            "port": host_vars.get("ansible_port"),
            "private_key_file": host_vars.get("ansible_ssh_private_key_file")
            or host_vars.get("ansible_private_key_file")
            or default_key,
            "ssh_common_args": host_vars.get("ansible_ssh_common_args"),
            "ssh_extra_args": host_vars.get("ansible_ssh_extra_args"),
            "host_key_checking": checking,
        }
    )
    rsync_path = "rsync" if user == "root" else "sudo rsync"
    return {"user": user, "dest": ssh_dest(user, host), "rsh": rsh, "rsync_path": rsync_path}
