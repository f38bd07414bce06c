"""lab/fleet.py's host access without booting: the fleet's known_hosts (each host's generated key, checked
strictly by the driver's own ssh) and the apt setting that points a host at the controller's package proxy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))
import fleet  # noqa: E402 - lab/ is not a package


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "STATE_DIR", tmp_path / "state")
    return tmp_path / "state"


def host_with_key(name: str, address: str) -> tuple[fleet.Host, str]:
    """A host whose root holds a freshly generated ed25519 host key; returns the host and its public key."""
    host = fleet.Host(fleet="f", name=name, address=address, prefixlen=24, gateway="10.214.250.1", cpus="0",
                      netns=f"lf-x-{name}", veth=f"lfv{name}")  # fmt: skip
    key = host.merged / "etc/ssh/ssh_host_ed25519_key"
    key.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
                   check=True)  # fmt: skip
    return host, Path(f"{key}.pub").read_text()


def test_known_hosts_lists_each_hosts_address_and_key(state, tmp_path):
    (a, key_a), (b, key_b) = host_with_key("a", "10.214.250.11"), host_with_key("b", "10.214.250.12")
    copy = tmp_path / "ephemeral" / "known_hosts"
    copy.parent.mkdir()
    fleet.write_known_hosts("f", [a, b], [copy])
    lines = fleet.known_hosts_file("f").read_text().splitlines()
    assert lines == [
        f"10.214.250.11 {' '.join(key_a.split()[:2])}",
        f"10.214.250.12 {' '.join(key_b.split()[:2])}",
    ]
    assert copy.read_text() == fleet.known_hosts_file("f").read_text()
    # ssh itself finds each host's key under its address
    for host, key in ((a, key_a), (b, key_b)):
        found = subprocess.run(
            ["ssh-keygen", "-F", host.address, "-f", str(copy)], capture_output=True, text=True
        )
        assert key.split()[1] in found.stdout


def test_known_hosts_is_rewritten_not_appended(state):
    (a, _), (b, key_b) = host_with_key("a", "10.214.250.11"), host_with_key("b", "10.214.250.12")
    fleet.write_known_hosts("f", [a, b], [])
    fleet.write_known_hosts("f", [b], [])
    assert fleet.known_hosts_file("f").read_text() == f"10.214.250.12 {' '.join(key_b.split()[:2])}\n"


def test_the_drivers_ssh_checks_host_keys_against_the_fleets_known_hosts(state):
    host, _ = host_with_key("a", "10.214.250.11")
    argv = fleet.ssh_argv(host, "true")
    options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    assert "StrictHostKeyChecking=yes" in options
    assert f"UserKnownHostsFile={state / 'f' / 'known_hosts'}" in options
    assert not any(o.startswith("StrictHostKeyChecking=no") or o.endswith("/dev/null") for o in options)


def test_a_host_uses_the_package_proxy_on_its_gateway_and_reaches_the_bridge_directly():
    conf = fleet.apt_proxy_conf("10.214.7.1")
    assert 'Acquire::http::Proxy "http://10.214.7.1:3142/";' in conf.splitlines()
    assert 'Acquire::http::Proxy::10.214.7.1 "DIRECT";' in conf.splitlines()


def test_a_missing_package_proxy_is_named_with_how_to_install_it(monkeypatch):
    monkeypatch.setattr(fleet, "listening", lambda address, port: False)
    monkeypatch.setattr(fleet, "APT_PROXY", "/nonexistent/apt-cacher-ng")
    with pytest.raises(SystemExit, match="install apt-cacher-ng"):
        fleet.ensure_apt_proxy("10.214.7.1")


def test_a_running_package_proxy_is_left_alone(monkeypatch):
    monkeypatch.setattr(fleet, "listening", lambda address, port: (address, port) == ("10.214.7.1", 3142))
    monkeypatch.setattr(fleet, "start_apt_proxy", lambda log_path: pytest.fail("started a second proxy"))
    fleet.ensure_apt_proxy("10.214.7.1")
