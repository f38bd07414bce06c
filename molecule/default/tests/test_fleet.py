"""Each test host is a real systemd host with sshd, its own address and its own filesystem."""

import ipaddress


def test_systemd_is_running_as_pid_1(host):
    assert host.run("cat /proc/1/comm").stdout.strip() == "systemd"
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state == "running"


def test_sshd_is_up(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_login_user_has_sudo_and_is_not_root(host):
    assert host.user().name != "root"
    assert host.run("sudo -n id -u").stdout.strip() == "0"


def test_own_address(host):
    address = host.ansible.get_variables()["ansible_host"]
    addresses = host.interface("eth0").addresses
    assert address in addresses
    assert ipaddress.ip_address(address).is_private


def test_own_filesystem(host):
    name = host.ansible.get_variables()["inventory_hostname"]
    assert host.file("/etc/llmfleet-fleet-mark").content_string == f"{name}\n"
    assert host.run("hostname").stdout.strip() == name


def test_offline(host):
    routes = host.run("ip -4 route show default").stdout.strip()
    assert routes == ""
    result = host.run("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)\"")
    assert result.rc != 0
