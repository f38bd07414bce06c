#!/usr/bin/env python3
"""GPU capture sets: what one board's nvidia-smi answers, and the PCI devices its bus shows.

A set is a directory (tests/fixtures/gpu-sets/<board>/ holds the ready ones):

  q-x.xml        nvidia-smi -q -x                                   required
  query-gpu.csv  nvidia-smi --query-gpu=... --format=csv (header)    e.g. index,name,uuid,pci.bus_id,
                                                                     memory.total,compute_cap,driver_version,...
  topo.txt       nvidia-smi topo -m
  L.txt          nvidia-smi -L
  table.txt      nvidia-smi
  pci.json       {"devices": [{"address", "vendor", "device", "class", "name"}, ...]}: the PCI devices
                 nvidia-smi does not list (NVSwitches, bridges, NICs); the GPUs come from q-x.xml
  SOURCES.md     which real capture the set comes from, and what was derived

The tests/fakes/nvidia-smi replays the capture files. This file is standard library only: the driver
stand-in packages (build_apt_repo.py) ship it, and their "module load" binds a set to the driver version
being loaded.

    gpu_set.py bind SET DEST --driver 580.95.05 --cuda 13.0   # the captures as that driver reports them
    gpu_set.py sysfs SET OUT.tar                               # the board's sysfs PCI tree, as a tar
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

CAPTURE_FILES = ("q-x.xml", "query-gpu.csv", "topo.txt", "L.txt", "table.txt")
PCI_FILE = "pci.json"
NVIDIA_VENDOR = "0x10de"
VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?")


class SetError(ValueError):
    """A capture set that cannot be used; the message names the set and what is wrong."""


def read_set(directory: Path) -> dict[str, str]:
    """The capture files of a set, by name; q-x.xml must be among them."""
    if not directory.is_dir():
        raise SetError(f"{directory}: no such capture set directory")
    files = {name: (directory / name).read_text() for name in CAPTURE_FILES if (directory / name).is_file()}
    if "q-x.xml" not in files:
        raise SetError(f"{directory}: no q-x.xml (nvidia-smi -q -x); every capture set needs one")
    return files


def parse_xml(text: str, where: str) -> ET.Element:
    start = text.find("<nvidia_smi_log")
    if start < 0:
        raise SetError(f"{where}/q-x.xml: no <nvidia_smi_log> element; is it the output of nvidia-smi -q -x?")
    try:
        return ET.fromstring(text[start:].encode())
    except ET.ParseError as exc:
        raise SetError(f"{where}/q-x.xml: not well-formed XML ({exc})") from None


def versions(files: dict[str, str], where: str) -> tuple[str, str]:
    """(driver version, CUDA version) of the set, from q-x.xml."""
    root = parse_xml(files["q-x.xml"], where)
    driver = (root.findtext("driver_version") or "").strip()
    cuda = (root.findtext("cuda_version") or "").strip()
    if not VERSION_RE.fullmatch(driver) or not VERSION_RE.fullmatch(cuda):
        raise SetError(
            f"{where}/q-x.xml: driver_version {driver!r} and cuda_version {cuda!r} must both be versions"
        )
    return driver, cuda


def replace_keeping_width(text: str, old: str, new: str) -> str:
    """Every ``old`` becomes ``new``; spaces that follow take up the difference (table columns stay put)."""

    def swap(match: re.Match) -> str:
        spaces = match.group(1)
        if not spaces:
            return new
        return new + " " * max(1, len(old) + len(spaces) - len(new))

    return re.sub(re.escape(old) + r"(?![\d.])( *)", swap, text)


def bind(files: dict[str, str], driver: str, cuda: str, where: str = "set") -> dict[str, str]:
    """The captures as driver ``driver`` (CUDA ``cuda``) reports them: every file gets the new versions."""
    for what, value in (("driver", driver), ("CUDA", cuda)):
        if not VERSION_RE.fullmatch(value):
            raise SetError(f"{what} version {value!r} is not a version like 580.95.05")
    old_driver, old_cuda = versions(files, where)
    bound = {}
    for name, text in files.items():
        text = replace_keeping_width(text, old_driver, driver)
        text = re.sub(r"(<cuda_version>)\s*[^<]*(</cuda_version>)", rf"\g<1>{cuda}\g<2>", text)
        text = re.sub(
            r"(CUDA Version: )" + re.escape(old_cuda) + r"( *)",
            lambda m: m.group(1) + replace_keeping_width(old_cuda + m.group(2), old_cuda, cuda),
            text,
        )
        bound[name] = text
    return bound


def _hex(value: str, width: int, where: str) -> str:
    try:
        return f"0x{int(value, 16):0{width}x}"
    except ValueError:
        raise SetError(f"{where}: {value!r} is not a hexadecimal number") from None


def gpu_devices(files: dict[str, str], where: str) -> dict[str, tuple[str, str, str]]:
    """PCI address -> (vendor, device, class) of every GPU in q-x.xml."""
    devices = {}
    for gpu in parse_xml(files["q-x.xml"], where).findall("gpu"):
        bus = (gpu.findtext("pci/pci_bus_id") or gpu.get("id") or "").strip()
        match = re.fullmatch(r"[0-9A-Fa-f]{4}([0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])", bus)
        ids = (gpu.findtext("pci/pci_device_id") or "").strip()
        if match is None or not re.fullmatch(r"[0-9A-Fa-f]{8}", ids):
            raise SetError(
                f"{where}/q-x.xml: a <gpu> needs <pci><pci_bus_id> and <pci_device_id> (device and vendor id, "
                f"as 2BB410DE) for its PCI device; found bus {bus!r}, ids {ids!r}"
            )
        if _hex(ids[4:], 4, where) != NVIDIA_VENDOR:
            raise SetError(
                f"{where}/q-x.xml: GPU {bus}: vendor {ids[4:]} of pci_device_id {ids} is not NVIDIA's 10DE"
            )
        base = (gpu.findtext("pci/pci_base_class") or "3").strip()
        sub = (gpu.findtext("pci/pci_sub_class") or "2").strip()
        pci_class = f"0x{int(base, 16):02x}{int(sub, 16):02x}00"
        devices[match.group(1).lower()] = (NVIDIA_VENDOR, _hex(ids[:4], 4, where), pci_class)
    if not devices:
        raise SetError(f"{where}/q-x.xml: no <gpu> element")
    return devices


def other_devices(text: str | None, where: str) -> dict[str, tuple[str, str, str]]:
    """PCI address -> (vendor, device, class) of the devices pci.json lists."""
    if text is None:
        return {}
    try:
        entries = json.loads(text)["devices"]
        return {
            str(e["address"]).lower(): (
                _hex(e["vendor"], 4, where),
                _hex(e["device"], 4, where),
                _hex(e["class"], 6, where),
            )
            for e in entries
        }
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, SetError):
            raise
        raise SetError(
            f'{where}/{PCI_FILE}: expected {{"devices": [{{"address", "vendor", "device", "class"}}]}} '
            f"({type(exc).__name__}: {exc})"
        ) from None


def pci_devices(directory: Path) -> dict[str, tuple[str, str, str]]:
    """Every PCI device of the board: the GPUs of q-x.xml and the devices of pci.json."""
    files = read_set(directory)
    pci = directory / PCI_FILE
    others = other_devices(pci.read_text() if pci.is_file() else None, str(directory))
    gpus = gpu_devices(files, str(directory))
    clash = sorted(set(gpus) & set(others))
    if clash:
        raise SetError(f"{directory}/{PCI_FILE}: {', '.join(clash)} is a GPU of q-x.xml already")
    return {**others, **gpus}


def sysfs_tar(devices: dict[str, tuple[str, str, str]]) -> bytes:
    """A tar of bus/pci/devices/<address>/{vendor,device,class}, as the kernel shows them."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        directories = {"bus", "bus/pci", "bus/pci/devices"}
        for address in sorted(devices):
            directories.add(f"bus/pci/devices/{address}")
        for name in sorted(directories):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for address, values in sorted(devices.items()):
            for name, value in zip(("vendor", "device", "class"), values, strict=True):
                data = f"{value}\n".encode()
                info = tarfile.TarInfo(f"bus/pci/devices/{address}/{name}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bind_cmd = commands.add_parser("bind", help="write the set's captures as a given driver reports them")
    bind_cmd.add_argument("set", type=Path)
    bind_cmd.add_argument("dest", type=Path)
    bind_cmd.add_argument("--driver", required=True)
    bind_cmd.add_argument("--cuda", required=True)
    sysfs_cmd = commands.add_parser("sysfs", help="write the board's sysfs PCI tree as a tar")
    sysfs_cmd.add_argument("set", type=Path)
    sysfs_cmd.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "bind":
            bound = bind(read_set(args.set), args.driver, args.cuda, str(args.set))
            args.dest.mkdir(parents=True, exist_ok=True)
            for name, text in bound.items():
                (args.dest / name).write_text(text)
        else:
            args.out.write_bytes(sysfs_tar(pci_devices(args.set)))
    except SetError as exc:
        print(f"gpu_set: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
