"""lab/fleet.py without root: host specs (suite, keys, names), the base roots' cache keys, and which
base root each host of a fleet boots from. No host is booted and no root is built."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import fleet  # lab/, on the path through tests/conftest.py
import pytest
import yaml


# ---- host specs ---------------------------------------------------------------------------------
def test_a_host_without_a_suite_boots_bookworm():
    (spec,) = fleet.host_specs("f", [{"name": "h1"}])
    assert spec.suite == "bookworm"


def test_a_host_names_its_suite():
    specs = fleet.host_specs("f", [{"name": "h1"}, {"name": "h2", "suite": "trixie"}])
    assert [s.suite for s in specs] == ["bookworm", "trixie"]


def test_an_unknown_suite_is_refused_naming_fleet_host_and_value():
    with pytest.raises(SystemExit) as error:
        fleet.host_specs("f", [{"name": "h1"}, {"name": "h2", "suite": "buster"}])
    message = str(error.value)
    assert "fleet f, host h2: suite 'buster'" in message
    assert "bookworm (Debian 12), trixie (Debian 13)" in message


def test_an_unknown_host_key_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit) as error:
        fleet.host_specs("f", [{"name": "h1", "distro": "trixie"}])
    assert "fleet f, host h1: unknown key(s) distro; known: address, cpus, files, name, suite" in str(
        error.value
    )


def test_duplicate_host_names_are_refused():
    with pytest.raises(SystemExit, match=r"fleet f: duplicate host names in \['h1', 'h1'\]"):
        fleet.host_specs("f", [{"name": "h1"}, {"name": "h1", "suite": "trixie"}])


def test_planned_hosts_carry_their_suite():
    specs = fleet.host_specs("f", [{"name": "h1"}, {"name": "h2", "suite": "trixie"}])
    hosts = fleet.plan_hosts("f", ipaddress.IPv4Network("10.214.250.0/24"), specs)
    assert [(h.name, h.address, h.suite) for h in hosts] == [
        ("h1", "10.214.250.11", "bookworm"),
        ("h2", "10.214.250.12", "trixie"),
    ]


def test_host_state_written_before_suites_existed_loads_as_bookworm(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "STATE_DIR", tmp_path)
    state = tmp_path / "f" / "hosts" / "h1"
    state.mkdir(parents=True)
    old = {"fleet": "f", "name": "h1", "address": "10.214.250.11", "prefixlen": 24, "gateway": "10.214.250.1",
           "cpus": "0", "netns": "lf-x-h1", "veth": "lfvx", "pid": 0}  # fmt: skip
    (state / "host.json").write_text(json.dumps(old))
    (host,) = fleet.load_hosts("f")
    assert host.suite == "bookworm"


def test_an_inventory_host_names_its_suite_with_lab_suite(tmp_path):
    inventory = {
        "all": {
            "children": {
                "llmfleet_lab": {
                    "vars": {"lab_fleet": {"name": "lab", "subnet": "10.214.251.0/24"}},
                    "hosts": {
                        "a": {"ansible_host": "10.214.251.11"},
                        "b": {"ansible_host": "10.214.251.12", "lab_cpus": 1, "lab_suite": "trixie"},
                    },
                }
            }
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    spec = fleet.spec_from_inventory(path)
    assert spec["hosts"] == [
        {"name": "a", "address": "10.214.251.11"},
        {"name": "b", "address": "10.214.251.12", "cpus": "1", "suite": "trixie"},
    ]


# ---- base roots ---------------------------------------------------------------------------------
def test_each_suite_has_its_own_root():
    assert fleet.root_key("bookworm") != fleet.root_key("trixie")


def test_the_root_key_follows_mirror_and_packages(monkeypatch):
    before = fleet.root_key("trixie")
    assert fleet.root_key("trixie", mirror="http://mirror.example/debian") != before
    monkeypatch.setattr(fleet, "PACKAGES", [*fleet.PACKAGES, "strace"])
    assert fleet.root_key("trixie") != before


def test_the_default_root_is_bookworms():
    assert fleet.root_key() == fleet.root_key("bookworm")


def test_a_fleet_builds_one_root_per_suite_and_each_host_boots_its_own(monkeypatch):
    """create() asks for each suite's root once and hands every host the root of its own suite."""
    asked, prepared = [], {}
    monkeypatch.setattr(fleet, "destroy", lambda *a, **k: None)
    monkeypatch.setattr(fleet, "base_root", lambda suite: asked.append(suite) or Path(f"/roots/{suite}"))
    monkeypatch.setattr(fleet, "choose_subnet", lambda *a: ipaddress.IPv4Network("10.214.252.0/24"))
    monkeypatch.setattr(fleet, "ensure_bridge", lambda *a: None)
    monkeypatch.setattr(fleet, "ensure_key", lambda *a: "ssh-ed25519 AAAA test")
    monkeypatch.setattr(fleet, "fleet_dir", lambda name: Path("/nonexistent") / name)
    monkeypatch.setattr(fleet, "ensure_apt_proxy", lambda gateway: None)
    monkeypatch.setattr(fleet, "write_known_hosts", lambda *a: None)
    monkeypatch.setattr(
        fleet, "install_host", lambda host, spec, lower, key: prepared.update({host.name: lower})
    )
    monkeypatch.setattr(fleet, "start_host", lambda host: {"instance": host.name})
    fleet.create(
        {
            "fleet": "f",
            "hosts": [{"name": "a"}, {"name": "b", "suite": "trixie"}, {"name": "c", "suite": "trixie"}],
        }
    )
    assert sorted(asked) == ["bookworm", "trixie"]
    assert prepared == {"a": Path("/roots/bookworm"), "b": Path("/roots/trixie"), "c": Path("/roots/trixie")}


def test_a_cached_root_is_found_under_its_suites_key(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "CACHE_DIR", tmp_path)
    built = []
    monkeypatch.setattr(fleet, "build_base_root", lambda root, suite: built.append(suite))
    done = tmp_path / "roots" / fleet.root_key("trixie")
    done.mkdir(parents=True)
    (done / "complete").write_text("{}")
    assert fleet.base_root("trixie") == done / "rootfs"
    assert built == []
    fleet.base_root("bookworm")
    assert built == ["bookworm"]


def test_build_root_refuses_an_unknown_suite(capsys):
    with pytest.raises(SystemExit):
        fleet.main(["build-root", "--suite", "sid"])
    assert "invalid choice: 'sid'" in capsys.readouterr().err


def test_a_fixed_subnet_another_fleet_holds_is_refused_with_its_holder(monkeypatch):
    monkeypatch.setattr(fleet, "subnet_in_use", lambda: {"10.214.249.0/24": "lfb0badf1e"})
    with pytest.raises(SystemExit, match=r"10\.214\.249\.0/24, which lfb0badf1e holds already"):
        fleet.choose_subnet("mol-gpu-new", "10.214.249.0/24")


def test_a_fixed_subnet_the_fleet_holds_itself_is_taken(monkeypatch):
    monkeypatch.setattr(fleet, "subnet_in_use", lambda: {"10.214.249.0/24": fleet.bridge_name("mol-gpu")})
    assert fleet.choose_subnet("mol-gpu", "10.214.249.0/24") == ipaddress.IPv4Network("10.214.249.0/24")
