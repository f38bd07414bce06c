"""The test fleet driver (lab/fleet.py) on this machine: boot, reach over SSH, destroy without a trace.

Needs root, debootstrap and systemd-nspawn (scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLEET_PY = REPO / "lab" / "fleet.py"
STATE = Path(os.environ.get("LLMFLEET_LAB_STATE", "/var/lib/llmfleet-lab"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test fleet needs root")


def fleet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(FLEET_PY), *args], input=stdin, text=True, capture_output=True
    )
    assert result.returncode == 0, (
        f"fleet.py {' '.join(args)} exited {result.returncode}: {result.stderr[-3000:]}"
    )
    return result


def ssh(instance: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-i", instance["identity_file"], "-l", instance["user"], instance["address"],
            command,
        ],
        text=True, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def traces(name: str) -> dict[str, list[str]]:
    """Everything of a fleet that can outlive it: processes, mounts, namespaces, links, files."""
    fleet_dir = str(STATE / name)
    processes = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                root = os.readlink(proc / "root")
            except OSError:
                continue
            if fleet_dir in cmdline or root.startswith(fleet_dir):
                processes.append(f"{proc.name} {cmdline}")
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines() if fleet_dir in line]
    sys.path.insert(0, str(FLEET_PY.parent))
    import fleet as driver

    netns = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
             if n.startswith(driver.netns_prefix(name))]  # fmt: skip
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    bridge = [driver.bridge_name(name)] if driver.bridge_name(name) in links else []
    files = [fleet_dir] if Path(fleet_dir).exists() else []
    return {"processes": processes, "mounts": mounts, "netns": netns, "links": bridge, "files": files}


NOTHING = {"processes": [], "mounts": [], "netns": [], "links": [], "files": []}


@pytest.fixture
def spec(tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("given at create time\n")
    return {
        "fleet": "pytest-fleet",
        "hosts": [
            {"name": "pf-a", "files": [{"src": str(marker), "dest": "/etc/llmfleet-marker", "mode": "0600"}]},
            {"name": "pf-b"},
        ],
    }


def test_create_reach_and_destroy_without_a_trace(spec):
    try:
        instances = json.loads(fleet("create", "--spec", "-", stdin=json.dumps(spec)).stdout)
        assert [i["instance"] for i in instances] == ["pf-a", "pf-b"]
        assert len({i["address"] for i in instances}) == 2
        first, second = instances
        result = ssh(first, "hostname; systemctl is-system-running --wait; sudo -n cat /etc/llmfleet-marker")
        assert result.stdout.split("\n")[:3] == ["pf-a", "running", "given at create time"], result.stderr
        assert ssh(second, "test -e /etc/llmfleet-marker").returncode == 1
        # Hosts reach each other over the fleet network, and nothing beyond it.
        probe = 'python3 -c "import socket,sys; socket.create_connection((sys.argv[1], 22), timeout=3)"'
        assert ssh(first, f"{probe} {second['address']}").returncode == 0
        assert ssh(first, f"{probe} 1.1.1.1").returncode != 0
    finally:
        fleet("destroy", "--fleet", spec["fleet"])
    assert traces(spec["fleet"]) == NOTHING


def test_create_again_after_a_killed_create(spec):
    process = subprocess.Popen(
        [sys.executable, str(FLEET_PY), "create", "--spec", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((STATE / spec["fleet"]).glob("hosts/*/host.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    try:
        instances = json.loads(fleet("create", "--spec", "-", stdin=json.dumps(spec)).stdout)
        assert all(ssh(i, "true").returncode == 0 for i in instances)
    finally:
        fleet("destroy", "--fleet", spec["fleet"])
    assert traces(spec["fleet"]) == NOTHING


def test_destroy_of_nothing_succeeds():
    fleet("destroy", "--fleet", "pytest-never-created")
    assert traces("pytest-never-created") == NOTHING
