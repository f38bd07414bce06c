"""The test fleet driver (lab/fleet.py) on this machine: boot, reach over SSH, destroy without a trace.

Needs root, debootstrap and systemd-nspawn (scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FLEET_PY = REPO / "lab" / "fleet.py"
BIN = Path(sys.executable).parent
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


def known_hosts(instance: dict) -> Path:
    """The fleet's known_hosts, next to its login key."""
    return Path(instance["identity_file"]).with_name("known_hosts")


def ssh(instance: dict, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts(instance)}",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-i", instance["identity_file"],
            "-l", instance["user"], instance["address"], command,
        ],
        text=True, capture_output=True, timeout=timeout, check=False,
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


# ---- the fleet as an air-gapped site: known host keys, packages through the controller's proxy only ----
@pytest.fixture(scope="module")
def site():
    name = "pytest-site"
    try:
        (instance,) = json.loads(fleet("create", "--spec", "-", stdin=json.dumps(
            {"fleet": name, "hosts": [{"name": "ps-a"}]})).stdout)  # fmt: skip
        yield instance
    finally:
        fleet("destroy", "--fleet", name)
    assert traces(name) == NOTHING


def ansible(
    instance: dict, known_hosts_file: Path, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess:
    """`ansible all ARGS` with the repository's ansible.cfg, checking host keys against known_hosts_file."""
    inventory = tmp_path / "hosts.yml"
    host = {
        "ansible_host": instance["address"],
        "ansible_user": instance["user"],
        "ansible_ssh_private_key_file": instance["identity_file"],
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts_file} -o StrictHostKeyChecking=yes",
    }
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {instance["instance"]: host}}}))
    control = tempfile.mkdtemp(prefix="lfcp-")  # no connection of an earlier run is reused
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip
    try:
        return subprocess.run(
            [str(BIN / "ansible"), "all", "-i", str(inventory), *args],
            cwd=REPO, env=env, text=True, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(control, ignore_errors=True)


def test_known_hosts_holds_the_key_the_host_presents(site):
    line = known_hosts(site).read_text().strip()
    scanned = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", site["address"]], text=True, capture_output=True
    )
    assert line.split() == scanned.stdout.strip().split()


def test_ansible_reaches_a_host_by_its_known_key_and_refuses_a_wrong_or_missing_one(site, tmp_path):
    known = ansible(site, known_hosts(site), tmp_path, "-m", "ansible.builtin.ping")
    assert known.returncode == 0 and '"ping": "pong"' in known.stdout, known.stdout + known.stderr

    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{site['address']} {' '.join(Path(f'{other_key}.pub').read_text().split()[:2])}\n")
    missing = tmp_path / "empty_known_hosts"
    missing.write_text("")
    for refused_by in (wrong, missing):
        result = ansible(site, refused_by, tmp_path, "-m", "ansible.builtin.ping")
        assert result.returncode != 0, result.stdout
        assert "UNREACHABLE" in result.stdout and "Host key verification failed" in result.stdout, (
            result.stdout
        )


def test_rsync_reaches_the_host_over_the_inventorys_ssh_settings(site, tmp_path):
    """The roles' rsync (the ssh_remote filter: the host's ssh options, Ansible's host key checking) checks
    the host's key as Ansible does: it copies with the fleet's known_hosts and is refused without it."""
    source = tmp_path / "tree"
    source.mkdir()
    (source / "weights.bin").write_text("weights\n")
    expression = "hostvars[inventory_hostname] | llmfleet.serve.ssh_remote | to_json"
    shown = ansible(
        site, known_hosts(site), tmp_path, "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {expression} }}}}"
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    remote = json.loads(json.loads(shown.stdout.split(" => ", 1)[1])["msg"])

    def rsync(rsh: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["rsync", "-a", "--rsh", rsh, f"--rsync-path={remote['rsync_path']}", f"{source}/",
             f"{remote['dest']}:/srv/rsync-probe/"],
            text=True, capture_output=True, timeout=60, check=False,
        )  # fmt: skip

    copied = rsync(remote["rsh"])
    assert copied.returncode == 0, copied.stderr
    assert ssh(site, "cat /srv/rsync-probe/weights.bin").stdout == "weights\n"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    refused = rsync(remote["rsh"].replace(str(known_hosts(site)), str(empty)))
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr, refused.stderr


def test_apt_installs_packages_through_the_controllers_proxy(site):
    result = ssh(site, "sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                       "haproxy && /usr/sbin/haproxy -v", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "HAProxy version" in result.stdout


def test_the_host_has_no_way_out_but_the_package_proxy(site):
    assert "default" not in ssh(site, "ip route; ip -6 route").stdout
    # no name service and no route: neither a name nor an address outside answers
    for url in ("https://pypi.org/simple/", "https://1.1.1.1/"):
        result = ssh(site, f"curl -sS --max-time 5 -o /dev/null {url}")
        assert result.returncode != 0, f"{url} answered: {result.stdout}"
    # the proxy serves package repositories only: no tunnel, no other site
    proxy = f"http://{site['address'].rsplit('.', 1)[0]}.1:3142"
    assert (
        ssh(site, f"curl -sS --max-time 10 -o /dev/null -x {proxy} https://pypi.org/simple/").returncode != 0
    )
    other = ssh(
        site, f"curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' -x {proxy} http://pypi.org/simple/"
    )
    assert other.stdout != "200"
