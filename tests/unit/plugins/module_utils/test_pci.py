"""PCI devices from sysfs: NVIDIA GPUs and NVSwitches picked out of real-looking trees; the module too."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import pci
from ansible_collections.llmfleet.serve.plugins.modules import pci_devices

# An HGX H100 8-GPU box: 8 x H100 SXM5 (10de:2330, 3D controller), 4 x third-generation NVSwitch
# (10de:22a3, bridge 0x0680), a ConnectX-7 (15b3:1021), the host bridge and a BMC VGA (1a03:2000).
HGX = {
    "0000:00:00.0": ("0x8086", "0x09a2", "0x060000"),
    "0000:02:00.0": ("0x1a03", "0x2000", "0x030000"),
    "0000:05:00.0": ("0x10de", "0x22a3", "0x068000"),
    "0000:06:00.0": ("0x10de", "0x22a3", "0x068000"),
    "0000:07:00.0": ("0x10de", "0x22a3", "0x068000"),
    "0000:08:00.0": ("0x10de", "0x22a3", "0x068000"),
    "0000:0c:00.0": ("0x15b3", "0x1021", "0x020000"),
    **{
        f"0000:{bus}:00.0": ("0x10de", "0x2330", "0x030200")
        for bus in ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")
    },
}


def write_tree(root: Path, devices: dict[str, tuple[str, str, str]]) -> Path:
    for address, (vendor, device, pci_class) in devices.items():
        path = root / "bus" / "pci" / "devices" / address
        path.mkdir(parents=True)
        (path / "vendor").write_text(vendor + "\n")
        (path / "device").write_text(device + "\n")
        (path / "class").write_text(pci_class + "\n")
    return root


def test_hgx_box(tmp_path):
    summary = pci.summarize(pci.read_sysfs(str(write_tree(tmp_path, HGX))))
    assert summary["nvidia_gpu_count"] == 8
    assert summary["nvswitch_count"] == 4
    assert [g["address"] for g in summary["nvidia_gpus"]][:2] == ["0000:18:00.0", "0000:2a:00.0"]
    assert summary["nvidia_gpus"][0] == {
        "address": "0000:18:00.0",
        "vendor": "0x10de",
        "device": "0x2330",
        "class": "0x030200",
        "kind": "nvidia-gpu",
    }
    assert {d["kind"] for d in summary["devices"] if d["vendor"] != "0x10de"} == {"other"}
    assert len(summary["devices"]) == 15


def test_cpu_host_has_nothing_nvidia(tmp_path):
    tree = {
        "0000:00:00.0": ("0x8086", "0x1237", "0x060000"),
        "0000:00:01.0": ("0x1af4", "0x1000", "0x020000"),
        "0000:00:02.0": ("0x1234", "0x1111", "0x030000"),  # a VGA, but not NVIDIA
    }
    summary = pci.summarize(pci.read_sysfs(str(write_tree(tmp_path, tree))))
    assert summary["nvidia_gpu_count"] == 0
    assert summary["nvswitch_count"] == 0
    assert len(summary["devices"]) == 3


def test_nvidia_functions_that_are_not_gpus(tmp_path):
    tree = {
        "0000:01:00.0": ("0x10de", "0x2684", "0x030000"),  # RTX 4090, VGA
        "0000:01:00.1": ("0x10de", "0x22ba", "0x040300"),  # its HDMI audio function
        "0000:00:08.0": (
            "0x10de",
            "0x0373",
            "0x068000",
        ),  # nForce MCP55 bridge: class 0x0680, not an NVSwitch
    }
    summary = pci.summarize(pci.read_sysfs(str(write_tree(tmp_path, tree))))
    assert [g["address"] for g in summary["nvidia_gpus"]] == ["0000:01:00.0"]
    assert summary["nvswitch_count"] == 0


def test_no_pci_bus_is_no_devices(tmp_path):
    assert pci.read_sysfs(str(tmp_path)) == []


def test_bad_files_are_named(tmp_path):
    write_tree(tmp_path, {"0000:01:00.0": ("0x10de", "nonsense", "0x030200")})
    with pytest.raises(pci.PciError, match=r"0000:01:00\.0/device: 'nonsense' is not a hexadecimal number"):
        pci.read_sysfs(str(tmp_path))
    with pytest.raises(pci.PciError, match=r"0000:02:00\.0: no class file"):
        pci.parse_device("0000:02:00.0", {"vendor": "0x10de", "device": "0x2330"})


def test_module_reads_a_tree(tmp_path, run_module):
    result = run_module(pci_devices, {"sysfs_root": str(write_tree(tmp_path, HGX))})
    assert result["changed"] is False
    assert result["nvidia_gpu_count"] == 8
    assert [s["device"] for s in result["nvswitches"]] == ["0x22a3"] * 4


def test_module_fails_with_the_bad_file(tmp_path, run_module):
    write_tree(tmp_path, {"0000:01:00.0": ("0xnope", "0x2330", "0x030200")})
    result = run_module(pci_devices, {"sysfs_root": str(tmp_path)})
    assert result["failed"] is True
    assert "0000:01:00.0/vendor: '0xnope' is not a hexadecimal number" in result["msg"]
