"""The hosts after converge + idempotence: the driver of the pinned branch, held, and nothing on the CPU host."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))
import fleet  # noqa: E402 - lab/ is not a package; its suites (codename -> Debian release)

VERSIONS = {"570": "570.172.08", "580": "580.95.05"}
CUDA = {"570": "12.8", "580": "13.0"}
QUERY = "index,uuid,name,pci.bus_id,memory.total,compute_cap"
DRIVER = ["nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-persistenced"]
FABRICMANAGER = {"570": "nvidia-fabricmanager-570", "580": "nvidia-fabricmanager"}


def host_vars(host) -> dict:
    return host.ansible.get_variables()


def gpu_host(host) -> bool:
    return "standin_gpu_set" in host_vars(host)


@pytest.fixture()
def branch(host) -> str:
    if not gpu_host(host):
        pytest.skip("CPU host")
    return str(host_vars(host)["nvidia_driver_branch"])


def gpu_set_rows(host) -> list[dict[str, str]]:
    """The rows of the host's capture set's query-gpu.csv, by field name (units dropped)."""
    text = (REPO / host_vars(host)["standin_gpu_set"] / "query-gpu.csv").read_text()
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    names = [header.split(" [")[0] for header in rows[0]]
    return [dict(zip(names, (value.removesuffix(" MiB") for value in row), strict=True)) for row in rows[1:]]


def platform_suite(host) -> str:
    """The suite the scenario's platform asks for (fleet.py's default when it names none)."""
    platforms = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["platforms"]
    name = host_vars(host)["inventory_hostname"]
    return next(p.get("suite", fleet.DEFAULT_SUITE) for p in platforms if p["name"] == name)


def test_the_host_runs_the_debian_release_of_its_suite(host):
    """nvd-trixie is a Debian 13 host (Python 3.13), the others Debian 12: what the role ran on."""
    suite = platform_suite(host)
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == suite
    assert host.check_output("cut -d. -f1 /etc/debian_version") == fleet.SUITES[suite]
    python = host.check_output("python3 -c 'import sys; print(*sys.version_info[:2], sep=\".\")'")
    assert python == {"bookworm": "3.11", "trixie": "3.13"}[suite]


def nvswitch_host(host) -> bool:
    return Path(host_vars(host).get("standin_gpu_set", "")).name == "hgx-h100-8"


def test_driver_packages_of_the_branch(host, branch):
    for name in DRIVER:
        package = host.package(name)
        assert package.is_installed, name
        assert package.version == f"{VERSIONS[branch]}-1", name


def test_pin_keeps_the_branch_against_newer_ones(host, branch):
    """The mirror carries 570 and 580; apt's candidate is the pinned branch even where 580 is newer."""
    policy = host.check_output("apt-cache policy nvidia-driver-cuda")
    assert f"Candidate: {VERSIONS[branch]}-1" in policy
    assert "580.95.05-1" in policy and "570.172.08-1" in policy
    preferences = host.file("/etc/apt/preferences.d/llmfleet-nvidia-driver").content_string
    assert f"Pin: version {branch}.*" in preferences
    assert "Package: src:*nvidia*:any src:cuda-drivers:any src:cuda-compat:any" in preferences


def test_packages_are_held(host, branch):
    held = set(host.check_output("apt-mark showhold").split())
    expected = set(DRIVER) | ({FABRICMANAGER[branch]} if nvswitch_host(host) else set())
    assert held == expected


def test_repository_signed_by_the_pinned_key(host, branch):
    source = host.file("/etc/apt/sources.list.d/llmfleet-nvidia-cuda.list").content_string
    url = host_vars(host)["nvidia_driver_repo_url"]
    assert f"deb [signed-by=/etc/apt/keyrings/llmfleet-nvidia-cuda.asc] {url} /" in source
    key = host.file("/etc/apt/keyrings/llmfleet-nvidia-cuda.asc")
    assert key.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert key.mode == 0o644


def test_headers_of_the_running_kernel(host, branch):
    assert host.package(f"linux-headers-{host.check_output('uname -r')}").is_installed


def test_nouveau_blacklisted_and_initramfs_rebuilt_once(host, branch):
    blacklist = host.file("/etc/modprobe.d/llmfleet-blacklist-nouveau.conf").content_string
    assert "blacklist nouveau" in blacklist.splitlines()
    assert "options nouveau modeset=0" in blacklist.splitlines()
    calls = host.file("/var/log/llmfleet-standin/update-initramfs.log").content_string.splitlines()
    assert len(calls) == 1  # converge changed the blacklist; the idempotence run did not rebuild
    assert calls[0].endswith("update-initramfs -u -k all")


def test_persistenced_enabled_and_running(host, branch):
    service = host.service("nvidia-persistenced")
    assert service.is_enabled
    assert service.is_running


def test_fabricmanager_only_on_the_nvswitch_host(host, branch):
    service = host.service("nvidia-fabricmanager")
    if nvswitch_host(host):
        assert host.package(FABRICMANAGER[branch]).is_installed
        assert service.is_enabled
        assert service.is_running
    else:
        assert not host.package("nvidia-fabricmanager").is_installed
        assert not host.package("nvidia-fabricmanager-570").is_installed
        assert not host.file("/lib/systemd/system/nvidia-fabricmanager.service").exists


def test_nvidia_smi_answers_with_the_branch(host, branch):
    out = host.check_output("nvidia-smi --query-gpu=driver_version,name --format=csv,noheader")
    rows = out.splitlines()
    assert len(rows) == len(gpu_set_rows(host))
    assert {row.split(", ")[0] for row in rows} == {VERSIONS[branch]}
    xml = host.check_output("nvidia-smi -q -x")
    assert f"<driver_version>{VERSIONS[branch]}</driver_version>" in xml
    assert f"<cuda_version>{CUDA[branch]}</cuda_version>" in xml


def test_nvidia_smi_reports_the_boards_gpus(host, branch):
    """What gpu_facts asks a live host: the capture set's GPUs, with UUIDs and compute capabilities."""
    out = host.check_output(f"nvidia-smi --query-gpu={QUERY} --format=csv,noheader,nounits")
    expected = [", ".join(row[field] for field in QUERY.split(",")) for row in gpu_set_rows(host)]
    assert out.splitlines() == expected


def test_nothing_on_the_cpu_host(host):
    if gpu_host(host):
        pytest.skip("GPU host")
    installed = host.run("dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\\n' 'nvidia-*'")
    assert " ii" not in installed.stdout
    assert host.check_output("apt-mark showhold") == ""
    for path in (
        "/etc/apt/sources.list.d/llmfleet-nvidia-cuda.list",
        "/etc/apt/preferences.d/llmfleet-nvidia-driver",
        "/etc/apt/keyrings/llmfleet-nvidia-cuda.asc",
        "/etc/modprobe.d/llmfleet-blacklist-nouveau.conf",
        "/var/log/llmfleet-standin/update-initramfs.log",
        "/usr/bin/nvidia-smi",
    ):
        assert not host.file(path).exists, path
