"""Filters for copying to hosts with rsync over the play's SSH settings: shells over
module_utils/rsync_remote.py that add Ansible's configured defaults."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils.rsync_remote import (
    RemoteError,
    rsync_rsh,
    ssh_dest,
    ssh_remote,
)


def rsync_rsh_filter(conn: Mapping[str, Any]) -> str:
    try:
        return rsync_rsh(conn)
    except RemoteError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def ssh_remote_filter(host_vars: Mapping[str, Any]) -> dict[str, str]:
    """``hostvars[inventory_hostname] | llmfleet.serve.ssh_remote`` -> {user, dest, rsh, rsync_path}."""
    try:
        return ssh_remote(
            host_vars,
            default_key=C.config.get_config_value("DEFAULT_PRIVATE_KEY_FILE") or "",
            host_key_checking=C.config.get_config_value("HOST_KEY_CHECKING"),
            local_user=getpass.getuser(),
        )
    except RemoteError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"rsync_rsh": rsync_rsh_filter, "ssh_remote": ssh_remote_filter, "ssh_dest": ssh_dest}
