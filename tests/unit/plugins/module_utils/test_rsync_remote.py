"""Unit tests for module_utils/rsync_remote.py and its filter shells (plugins/filter/rsync_remote.py)."""

from __future__ import annotations

import shlex

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.filter import rsync_remote as plugin
from ansible_collections.llmfleet.serve.plugins.module_utils import rsync_remote as rr

FILTERS = plugin.FilterModule().filters()
MOLECULE_HOST = {
    "inventory_hostname": "mw-a",
    "ansible_host": "10.214.7.11",
    "ansible_user": "llmfleet",
    "ansible_port": 22,
    "ansible_ssh_private_key_file": "/var/lib/llmfleet-lab/mol-x/id_ed25519",
    "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
}
MOLECULE_RSH_ARGV = [
    "ssh", "-p", "22", "-o", "BatchMode=yes", "-i", "/var/lib/llmfleet-lab/mol-x/id_ed25519",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
]  # fmt: skip


# ---- rsync_rsh ------------------------------------------------------------------------------------------------
def test_rsh_from_molecule_like_settings():
    rsh = rr.rsync_rsh(
        {
            "port": 22,
            "private_key_file": "/var/lib/llmfleet-lab/mol-x/id_ed25519",
            "ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
            "ssh_extra_args": "",
            "host_key_checking": False,
        }
    )
    assert shlex.split(rsh) == MOLECULE_RSH_ARGV


def test_rsh_keeps_quoted_options_and_quotes_the_key():
    rsh = rr.rsync_rsh(
        {
            "port": "2222",
            "private_key_file": "/keys/my key",
            "ssh_common_args": "-o ProxyCommand='ssh -W %h:%p bastion'",
            "host_key_checking": "true",
        }
    )
    assert shlex.split(rsh) == [
        "ssh", "-p", "2222", "-o", "BatchMode=yes", "-i", "/keys/my key",
        "-o", "ProxyCommand=ssh -W %h:%p bastion",
    ]  # fmt: skip


def test_rsh_defaults():
    assert rr.rsync_rsh({}) == "ssh -p 22 -o BatchMode=yes"


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"port": "ssh"}, "port must be a number"),
        ({"port": 70000}, "out of range"),
        ({"user": "root"}, "unknown connection setting"),
    ],
)
def test_rsh_refuses(conn, message):
    with pytest.raises(rr.RemoteError, match=message):
        rr.rsync_rsh(conn)
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["rsync_rsh"](conn)


# ---- ssh_remote -----------------------------------------------------------------------------------------------
def test_remote_from_molecule_like_host_vars():
    remote = rr.ssh_remote(MOLECULE_HOST, host_key_checking=False, local_user="root")
    assert remote["user"] == "llmfleet"
    assert remote["dest"] == "llmfleet@10.214.7.11"
    assert remote["rsync_path"] == "sudo rsync"
    assert shlex.split(remote["rsh"]) == MOLECULE_RSH_ARGV


def test_remote_falls_back_like_the_ssh_plugin():
    remote = rr.ssh_remote(
        {"inventory_hostname": "gpu-1", "ansible_private_key_file": "/k"},
        default_key="/default",
        local_user="ops",
    )
    assert remote == {
        "user": "ops",
        "dest": "ops@gpu-1",
        "rsh": "ssh -p 22 -o BatchMode=yes -i /k",
        "rsync_path": "sudo rsync",
    }
    assert rr.ssh_remote({"inventory_hostname": "gpu-1"}, default_key="/default", local_user="ops")[
        "rsh"
    ] == ("ssh -p 22 -o BatchMode=yes -i /default")


def test_remote_brackets_an_ipv6_address():
    remote = rr.ssh_remote({"ansible_host": "fd00::11", "ansible_user": "root"})
    assert remote["dest"] == "root@[fd00::11]"
    assert remote["rsync_path"] == "rsync"


def test_host_key_checking_set_on_the_host_wins_over_the_default():
    host = {**MOLECULE_HOST, "ansible_ssh_common_args": "", "ansible_host_key_checking": "false"}
    assert rr.NO_HOST_KEY_CHECKING in rr.ssh_remote(host, host_key_checking=True)["rsh"]
    host = {**host, "ansible_ssh_host_key_checking": True}
    assert rr.NO_HOST_KEY_CHECKING not in rr.ssh_remote(host, host_key_checking=False)["rsh"]


def test_remote_refuses_a_host_without_user_or_address():
    with pytest.raises(rr.RemoteError, match="no user"):
        rr.ssh_remote({"ansible_host": "10.0.0.1"}, local_user="")
    with pytest.raises(AnsibleFilterError, match="port must be a number"):
        FILTERS["ssh_remote"]({**MOLECULE_HOST, "ansible_port": "ssh"})


def test_filter_adds_the_local_user():
    remote = FILTERS["ssh_remote"]({"ansible_host": "10.0.0.1"})
    assert remote["dest"].endswith("@10.0.0.1") and not remote["dest"].startswith("@")
