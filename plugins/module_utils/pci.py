"""PCI devices as the kernel lists them under /sys/bus/pci/devices, and what they say about NVIDIA hardware.

Each device directory holds small text files the kernel fills from the device's configuration space:
``vendor`` (``0x10de``), ``device`` (``0x2330``) and ``class`` (``0x030200``: base class, subclass,
programming interface). NVIDIA GPUs are vendor 0x10de with base class 0x03 (0x0300 VGA, 0x0302 3D
controller); NVSwitches of HGX/DGX baseboards are vendor 0x10de bridges of class 0x0680. Both are
visible before any NVIDIA driver is installed, which is why the driver role decides from them.

Pure parsing lives in :func:`parse_device` and :func:`summarize`; :func:`read_sysfs` is the only I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

NVIDIA_VENDOR = 0x10DE
DISPLAY_BASE_CLASS = 0x03
BRIDGE_OTHER_CLASS = 0x0680
# NVIDIA chipset bridges of the nForce era (MCP55 and older) are class 0x0680 too; their device ids
# are below 0x1000, every NVSwitch generation (0x1ac0.., 0x1af1, 0x22a3, ...) is above.
NVSWITCH_MIN_DEVICE = 0x1000
# The first Turing chips (TU102, 0x1e02..) open the range in which every NVIDIA GPU is Turing or newer;
# Volta (GV100, 0x1db0..0x1df6) and older sit below it.
TURING_MIN_DEVICE = 0x1E00
# Blackwell (GB100 0x29xx, GB202 0x2bxx, GB203 0x2cxx, ...) only runs on the open kernel modules.
BLACKWELL_MIN_DEVICE = 0x2900
DEVICE_FILES = ("vendor", "device", "class")


class PciError(ValueError):
    """A sysfs entry that cannot be read as a PCI device; the message names the path and the value."""


@dataclass(frozen=True)
class PciDevice:
    address: str
    vendor: int
    device: int
    pci_class: int

    @property
    def base_class(self) -> int:
        return self.pci_class >> 16

    @property
    def class_code(self) -> int:
        """Base class and subclass, e.g. 0x0302 (without the programming interface byte)."""
        return self.pci_class >> 8

    @property
    def is_nvidia(self) -> bool:
        return self.vendor == NVIDIA_VENDOR

    @property
    def is_nvidia_gpu(self) -> bool:
        return self.is_nvidia and self.base_class == DISPLAY_BASE_CLASS

    @property
    def is_nvswitch(self) -> bool:
        return self.is_nvidia and self.class_code == BRIDGE_OTHER_CLASS and self.device >= NVSWITCH_MIN_DEVICE

    @property
    def kind(self) -> str:
        if self.is_nvidia_gpu:
            return "nvidia-gpu"
        if self.is_nvswitch:
            return "nvswitch"
        return "other"

    def as_dict(self) -> dict[str, str]:
        return {
            "address": self.address,
            "vendor": f"0x{self.vendor:04x}",
            "device": f"0x{self.device:04x}",
            "class": f"0x{self.pci_class:06x}",
            "kind": self.kind,
        }


def parse_hex(text: str, what: str, where: str) -> int:
    value = text.strip()
    try:
        return int(value, 16)
    except ValueError:
        raise PciError(f"{where}/{what}: {value!r} is not a hexadecimal number") from None


def parse_device(address: str, files: Mapping[str, str], where: str = "") -> PciDevice:
    """One device from the contents of its ``vendor``, ``device`` and ``class`` files."""
    where = where or address
    missing = [name for name in DEVICE_FILES if name not in files]
    if missing:
        raise PciError(f"{where}: no {', '.join(missing)} file")
    return PciDevice(
        address=address,
        vendor=parse_hex(files["vendor"], "vendor", where),
        device=parse_hex(files["device"], "device", where),
        pci_class=parse_hex(files["class"], "class", where),
    )


def summarize(devices: list[PciDevice]) -> dict:
    """What the driver role needs: every device, and the NVIDIA GPUs and NVSwitches among them."""
    ordered = sorted(devices, key=lambda d: d.address)
    gpus = [d for d in ordered if d.is_nvidia_gpu]
    switches = [d for d in ordered if d.is_nvswitch]
    return {
        "devices": [d.as_dict() for d in ordered],
        "nvidia_gpus": [d.as_dict() for d in gpus],
        "nvswitches": [d.as_dict() for d in switches],
        "nvidia_gpu_count": len(gpus),
        "nvswitch_count": len(switches),
    }


def read_sysfs(root: str, read: Callable[[str], str] | None = None) -> list[PciDevice]:
    """Every device under ``<root>/bus/pci/devices``; a missing directory means no PCI bus (no devices).

    ``read`` returns a file's text (injected by tests); entries without the three files (not a PCI
    function) raise :class:`PciError`.
    """
    reader = read or _read_text
    base = os.path.join(root, "bus", "pci", "devices")
    if not os.path.isdir(base):
        return []
    devices = []
    for address in sorted(os.listdir(base)):
        path = os.path.join(base, address)
        files = {}
        for name in DEVICE_FILES:
            file_path = os.path.join(path, name)
            if os.path.exists(file_path):
                files[name] = reader(file_path)
        devices.append(parse_device(address, files, where=path))
    return devices


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()
