"""Errors that nvidia-smi and NVML report, told apart by their output, with advice a person can act on.

Standard library only: this code runs on target hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_values import BUS_ID_RE, strip_ansi


class NvidiaSmiError(Exception):
    """nvidia-smi (or NVML) reported a problem, or its output cannot be used.

    ``reason`` is a stable keyword (for example ``driver-not-loaded``), ``msg`` the message a
    person can act on, ``output`` the text that caused it (may be empty).
    """

    def __init__(self, msg: str, reason: str = "unrecognised", output: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.reason = reason
        self.output = output


_ADVICE = {
    "driver-not-loaded": (
        "NVIDIA-SMI couldn't communicate with the driver: the NVIDIA driver is not loaded. "
        "Install the driver or load its kernel module (`modprobe nvidia`; `dmesg` tells why it "
        "failed, for example Secure Boot refusing an unsigned module), then run again."
    ),
    "version-mismatch": (
        "driver/library version mismatch: reboot or reload the kernel module. The user-space "
        "NVML library{detail} does not match the loaded nvidia kernel module, which happens after "
        "a driver upgrade without a reboot; reboot the host, or stop all GPU processes and reload "
        "the nvidia kernel modules."
    ),
    "nvml-library-missing": (
        "libnvidia-ml.so not found: nvidia-smi cannot load NVML, the driver's user-space library. "
        "Install the NVIDIA driver completely (in a container, start it through the NVIDIA "
        "container toolkit so that the driver libraries are mounted)."
    ),
    "no-devices": (
        "no devices found: the NVIDIA driver answered but found no usable GPU. Check that the GPU "
        "is visible (`lspci -d 10de:`), read `dmesg` for NVRM/RmInitAdapter errors, and check that "
        "this driver branch supports the GPU (recent GPUs need the open kernel modules)."
    ),
    "device-handle": (
        "device handle error: nvidia-smi could not get a device handle for GPU {bus} ({detail}). "
        "The GPU is in a bad state: look for Xid errors in `dmesg`, reset the GPU "
        "(`nvidia-smi -r`) or reboot the host; if it persists, reseat or replace the GPU."
    ),
    "gpu-lost": (
        "GPU is lost: GPU {bus} has fallen off the bus. Reboot the host, then check power, "
        "cooling and `dmesg` (Xid 79); if it happens again, reseat or replace the GPU."
    ),
    "permission": (
        "insufficient permissions: nvidia-smi could not open the GPU devices. Run it as root "
        "(become: true) or give this user access to /dev/nvidia*."
    ),
    "nvml-init": (
        "NVML could not be initialised ({detail}). In a container this usually means it lost "
        "access to /dev/nvidia* (restart the container); on a host, check the driver with "
        "`dmesg` and reinstall it if needed."
    ),
    "usage": (
        "nvidia-smi rejected the command line ({detail}): this nvidia-smi does not support that "
        "option or query field (for example `topo -m` on Windows drivers, or `compute_cap` on "
        "older drivers)."
    ),
    "inforom": (
        "infoROM is corrupted on GPU {bus}: nvidia-smi reports the GPU but its infoROM needs "
        "repair by the vendor (ECC and other settings may be unreliable)."
    ),
    "query-text": (
        "this is the text form of `nvidia-smi -q`, which changes between drivers; capture the XML "
        "form with `nvidia-smi -q -x` instead."
    ),
    "not-installed": (
        "nvidia-smi is not installed on this host (the shell could not run it); install the "
        "NVIDIA driver utilities or leave the host without GPUs."
    ),
}


def make_error(reason: str, output: str = "", **fmt: str) -> NvidiaSmiError:
    defaults = {"detail": "", "bus": "unknown"}
    defaults.update(fmt)
    msg = _ADVICE[reason].format(**defaults)
    said = " ".join(line.strip() for line in output.strip().splitlines()[:3] if line.strip())
    if said:
        msg = f"{msg} nvidia-smi said: {said!r}"
    return NvidiaSmiError(msg, reason=reason, output=output)


_ERROR_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"couldn't communicate with the NVIDIA driver|Driver Not Loaded", re.I), "driver-not-loaded"),
    (re.compile(r"Driver/library version mismatch|NVML/RM version mismatch", re.I), "version-mismatch"),
    (
        re.compile(
            r"couldn't find libnvidia-ml|libnvidia-ml\.so[.\d]*: cannot open|Shared Library Not Found", re.I
        ),
        "nvml-library-missing",
    ),
    (re.compile(r"No devices were found|No supported devices were found", re.I), "no-devices"),
    (re.compile(r"Unable to determine the device handle for GPU", re.I), "device-handle"),
    (re.compile(r"GPU is lost|fallen off the bus", re.I), "gpu-lost"),
    (re.compile(r"Insufficient Permissions|No permission", re.I), "permission"),
    (re.compile(r"Failed to initialize NVML", re.I), "nvml-init"),
    (
        re.compile(
            r"is not a valid field to query|Invalid combination of input arguments|"
            r"^ERROR: Option|Please run 'nvidia-smi -h'|Unknown option",
            re.I | re.M,
        ),
        "usage",
    ),
    (re.compile(r"infoROM is corrupted", re.I), "inforom"),
    (re.compile(r"nvidia-smi: (command )?not found|nvidia-smi: No such file", re.I), "not-installed"),
)


def error_from_output(text: str) -> NvidiaSmiError | None:
    """Return the error that ``text`` reports, or None when it does not look like an error."""
    clean = strip_ansi(text)
    for pattern, reason in _ERROR_PATTERNS:
        match = pattern.search(clean)
        if not match:
            continue
        fmt: dict[str, str] = {}
        bus = BUS_ID_RE.search(clean)
        if bus:
            fmt["bus"] = bus.group(0)
        if reason == "version-mismatch":
            lib = re.search(r"NVML library version:\s*(\S+)", clean)
            fmt["detail"] = f" (version {lib.group(1)})" if lib else ""
        elif reason == "device-handle":
            detail = re.search(r"device handle for GPU\s*[0-9A-Fa-f:.]+:\s*(.+)", clean)
            fmt["detail"] = detail.group(1).strip() if detail else "unknown error"
            if "lost" in fmt["detail"].lower():
                reason = "gpu-lost"
        elif reason == "nvml-init":
            detail = re.search(r"Failed to initialize NVML:\s*(.+)", clean)
            fmt["detail"] = detail.group(1).strip() if detail else "unknown error"
        elif reason == "usage":
            line = next((ln.strip() for ln in clean.splitlines() if pattern.search(ln)), clean.strip())
            fmt["detail"] = line
        return make_error(reason, text, **fmt)
    return None


def warnings_in(lines: Iterable[str]) -> list[str]:
    """The lines that warn or report an error (nvidia-smi prints them among its output)."""
    found = []
    for line in lines:
        text = line.strip()
        if text.upper().startswith("WARNING") or error_from_output(text) is not None:
            found.append(text)
    return found
