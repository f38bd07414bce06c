"""Pure parsers for nvidia-smi output and NVML, producing the ``llmfleet_gpu`` facts.

Standard library only: this code runs on target hosts.

Supported captures, recognised by their content (never by file name):

* ``xml``   -- ``nvidia-smi -q -x`` (DTD v9 .. v13, with or without the XML declaration/DOCTYPE,
  Linux and Windows, bare metal, pass-through and vGPU guests);
* ``csv``   -- ``nvidia-smi --query-gpu=... --format=csv`` with a header line (units in the header
  and/or the values, or ``nounits``); without a header only the field list this collection itself
  queries (:data:`QUERY_FIELDS` or :data:`QUERY_FIELDS_LEGACY`) is recognised;
* ``topo``  -- ``nvidia-smi topo -m`` (TAB or space separated, with or without ANSI escapes);
* ``list``  -- ``nvidia-smi -L`` (including MIG lines, old ``MIG-GPU-<uuid>/gi/ci`` UUIDs);
* ``table`` -- plain ``nvidia-smi`` (R384..R595 layouts, MIG tables, Windows WDDM/TCC).

Outputs that report a failure (driver not loaded, version mismatch, no devices, ...) raise
:class:`NvidiaSmiError` with a message that says what is wrong and what to do.

Several captures of one host are merged by GPU index (the nvidia-smi enumeration order, which
every output shares) into one :class:`GpuFacts`.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

KIND_XML = "xml"
KIND_CSV = "csv"
KIND_TOPO = "topo"
KIND_LIST = "list"
KIND_TABLE = "table"
KIND_NVML = "nvml"

#: Field precedence when sources disagree or complement each other (first non-empty value wins).
SOURCE_PRIORITY = (KIND_NVML, KIND_XML, KIND_CSV, KIND_LIST, KIND_TABLE, KIND_TOPO)

#: The --query-gpu field list gpu_facts asks for on a live host, and the fallback for drivers
#: that do not know ``compute_cap``.
QUERY_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "compute_cap")
QUERY_FIELDS_LEGACY = QUERY_FIELDS[:-1]

#: A GPU has at most 18 NVLink links (H100, B200; A100 has 12, V100 6). When a topo matrix shows
#: every GPU with more links in total to its peers than that, the links cannot be direct
#: GPU-to-GPU cables/bridges: the GPUs sit on an NVSwitch fabric.
MAX_DIRECT_NVLINKS_PER_GPU = 18

INTERCONNECTS = ("nvlink", "nvlink-partial", "pcie", "none", "unknown")

_NA_VALUES = {
    "",
    "n/a",
    "na",
    "none",
    "not found",
    "not supported",
    "not available",
    "unknown",
    "unknown error",
    "insufficient permissions",
}
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BUS_ID_RE = re.compile(r"\b([0-9A-Fa-f]{4,8}):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})\.([0-7])\b")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|TiB|KB|MB|GB|TB|B)?$", re.IGNORECASE)
_CC_RE = re.compile(r"^\d{1,2}\.\d{1,2}$")
_FABRIC_STATES = {"completed", "in progress", "not started"}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


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


def _make_error(reason: str, output: str = "", **fmt: str) -> NvidiaSmiError:
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
    clean = _strip_ansi(text)
    for pattern, reason in _ERROR_PATTERNS:
        match = pattern.search(clean)
        if not match:
            continue
        fmt: dict[str, str] = {}
        bus = _BUS_ID_RE.search(clean)
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
        return _make_error(reason, text, **fmt)
    return None


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Gpu:
    """One physical GPU as nvidia-smi enumerates it."""

    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    compute_capability: str | None = None
    compute_capability_source: str | None = None
    mig_mode: str | None = None


@dataclass
class MigDevice:
    """One MIG device (a GPU instance / compute instance pair) of a physical GPU."""

    gpu_index: int
    device_index: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    profile: str | None = None
    uuid: str | None = None
    memory_total_mib: int | None = None


@dataclass
class Capture:
    """What one source (one file or one command) says about a host."""

    kind: str
    gpus: list[Gpu] = field(default_factory=list)
    mig_devices: list[MigDevice] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    #: topo/NVML only: link type between GPU indexes, e.g. {(0, 1): "NV18", (0, 2): "SYS"}
    links: dict[tuple[int, int], str] | None = None
    #: True when the source says the GPUs are attached to an NVSwitch fabric
    nvswitch: bool | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class GpuFacts:
    """The merged result; :meth:`as_dict` is ``ansible_facts.llmfleet_gpu``."""

    count: int = 0
    gpus: list[Gpu] = field(default_factory=list)
    mig_devices: list[MigDevice] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    interconnect: str = "none"
    nvswitch: bool | None = None
    source: list[str] = field(default_factory=list)
    #: Not part of the facts; the module reports them as Ansible warnings.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "gpus": [asdict(gpu) for gpu in self.gpus],
            "mig_devices": [asdict(dev) for dev in self.mig_devices],
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "interconnect": self.interconnect,
            "nvswitch": self.nvswitch,
            "source": list(self.source),
        }


def empty_facts() -> GpuFacts:
    """Facts of a host without NVIDIA GPUs (or without nvidia-smi)."""
    return GpuFacts()


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------


def _strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def _clean(value: Any) -> str | None:
    """A value as text, or None for the many ways nvidia-smi says "nothing here"."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        return None  # [N/A], [Not Supported], [Requested functionality has been deprecated], ...
    if text.lower() in _NA_VALUES:
        return None
    return text


def parse_memory_mib(value: Any) -> int | None:
    """``"81559 MiB"``, ``"81559"`` (nounits) or ``"N/A"`` -> 81559 / None."""
    text = _clean(value)
    if text is None:
        return None
    match = _MEMORY_RE.match(text)
    if not match:
        return None
    number = float(match.group(1))
    unit = (match.group(2) or "MiB").lower()
    scale = {
        "b": 1 / 1048576,
        "kib": 1 / 1024,
        "kb": 1 / 1024,
        "mib": 1,
        "mb": 1,
        "gib": 1024,
        "gb": 1024,
        "tib": 1048576,
        "tb": 1048576,
    }[unit]
    return round(number * scale)


def normalize_bus_id(value: Any) -> str | None:
    """PCI bus id in nvidia-smi's canonical form ``00000000:1B:00.0`` (8-digit domain, upper case)."""
    text = _clean(value)
    if text is None:
        return None
    match = _BUS_ID_RE.search(text)
    if not match:
        return None
    domain, bus, dev, fn = match.groups()
    return f"{int(domain, 16):08X}:{bus.upper()}:{dev.upper()}.{fn}"


def _int(value: Any) -> int | None:
    text = _clean(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _mig_mode(value: Any) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("enabled", "enable", "on"):
        return "Enabled"
    if lowered in ("disabled", "disable", "off"):
        return "Disabled"
    return None


def _compute_cap(value: Any) -> str | None:
    text = _clean(value)
    if text is None or not _CC_RE.match(text):
        return None
    major, minor = text.split(".")
    return f"{int(major)}.{int(minor)}"


def _fabric_attached(state: Any) -> bool | None:
    text = _clean(state)
    if text is None:
        return None
    return True if text.lower() in _FABRIC_STATES else None


def _is_masked_uuid(uuid: str | None) -> bool:
    """Capture tools mask UUIDs as GPU-00000000-0000-...; such values identify nothing."""
    if not uuid:
        return True
    digits = re.sub(r"[^0-9a-fA-F]", "", uuid.split("-", 1)[-1])
    return set(digits) <= {"0"}


# --------------------------------------------------------------------------------------------
# Compute capability from well-known names
# --------------------------------------------------------------------------------------------

#: Documented fallback for GPUs whose source does not report the compute capability
#: (XML, -L, table and older drivers). Searched in order, case-insensitively, on the product
#: name without a trailing "..." (the table truncates long names). Values from NVIDIA's CUDA GPU
#: list. A name that matches nothing gives None: the facts never guess beyond this table.
COMPUTE_CAPABILITY_BY_NAME: tuple[tuple[str, str, str], ...] = (
    ("Blackwell Ultra: B300, GB300", r"\b(?:GB|B)300\b", "10.3"),
    ("Blackwell: B100, B200, GB200", r"\b(?:GB|B)(?:100|200)\b", "10.0"),
    ("Blackwell GB10 (DGX Spark)", r"\bGB10\b", "12.1"),
    ("Blackwell: RTX PRO xxxx (Blackwell), GeForce RTX 50xx", r"\bRTX PRO \d{4}\b|\bRTX 50\d0\b", "12.0"),
    ("Hopper: H100, H200, H800, H20, GH200", r"\b(?:GH|H)(?:100|200|800)\b|\bH20\b", "9.0"),
    (
        "Ada: L4, L20, L40, L40S, RTX 40xx, RTX xxxx Ada",
        r"\bL(?:4|20|40S?)\b|\bRTX 40\d0\b|\bRTX \d{4} Ada\b|\bAda Generation\b",
        "8.9",
    ),
    ("Ampere GA100: A100, A800, A30", r"\bA(?:100|800|30)\b", "8.0"),
    (
        "Ampere GA10x: A2, A10, A10G, A16, A40, RTX Axxxx, RTX 30xx",
        r"\bA(?:2|10G?|16|40)\b|\bRTX A\d{4}\b|\bRTX 30\d0\b",
        "8.6",
    ),
    (
        "Turing: T4, Txxx/Txxxx workstation, RTX 20xx, GTX 16xx, Quadro RTX, TITAN RTX",
        r"\bT(?:4|400|600|1000|1200|2000)\b|\bRTX 20\d0\b|\bGTX 16\d0\b|\bQuadro RTX\b|\bTITAN RTX\b",
        "7.5",
    ),
    ("Volta: V100, V100S, TITAN V, Quadro GV100", r"\bG?V100S?\b|\bTITAN V\b", "7.0"),
    ("Pascal GP100: P100", r"\bP100\b", "6.0"),
    (
        "Pascal GP10x: P4, P6, P40, GTX 10xx, Quadro Pxxxx, TITAN Xp",
        r"\bP(?:4|6|40)\b|\bGTX 10\d0\b|\bQuadro P\d{3,4}\b|\bTITAN Xp\b",
        "6.1",
    ),
    ("Maxwell GM20x: M4, M6, M40, M60", r"\bM(?:4|6|40|60)\b", "5.2"),
    ("Kepler GK210: K80", r"\bK80\b", "3.7"),
)


def compute_capability_from_name(name: str | None) -> str | None:
    """Compute capability of a well-known GPU name (see :data:`COMPUTE_CAPABILITY_BY_NAME`)."""
    if not name:
        return None
    stem = name.strip()
    if stem.endswith("..."):
        stem = stem[:-3].rstrip()
    for _label, pattern, capability in COMPUTE_CAPABILITY_BY_NAME:
        if re.search(pattern, stem, re.IGNORECASE):
            return capability
    return None


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------

_TABLE_HEADER_RE = re.compile(r"Driver Version:\s*\S+")
_TABLE_GPU_HEADER_RE = re.compile(r"\|\s*GPU\s+Name\b")
_LIST_GPU_RE = re.compile(r"^\s*GPU\s+(\d+):\s*(.*?)\s*\(UUID:\s*([^)\s]+)\s*\)\s*$")
_LIST_MIG_RE = re.compile(r"^\s*MIG\s+(?:(\S+)\s+)?Device\s+(\d+):\s*\(UUID:\s*([^)\s]+)\s*\)\s*$")
_CSV_FIELD_RE = re.compile(r"^[A-Za-z][\w.]*(\s*\[[^\]]*\])?$")
_KNOWN_CSV_FIELDS = {
    "index",
    "name",
    "uuid",
    "serial",
    "count",
    "timestamp",
    "driver_version",
    "pci.bus_id",
    "memory.total",
    "memory.used",
    "memory.free",
    "memory.reserved",
    "compute_cap",
    "pstate",
    "temperature.gpu",
    "utilization.gpu",
    "power.draw",
    "fan.speed",
    "mig.mode.current",
}


def _lines(text: str) -> list[str]:
    return _strip_ansi(text.replace("\ufeff", "")).splitlines()


def _topo_header(tokens: list[str]) -> bool:
    return len(tokens) >= 2 and tokens[0] == "GPU0" and tokens[1] != "X"


def _csv_header_fields(line: str) -> list[str] | None:
    cells = [c.strip() for c in next(csv.reader([line], skipinitialspace=True), [])]
    if not cells or not all(_CSV_FIELD_RE.match(c) for c in cells):
        return None
    names = [_csv_base_name(c) for c in cells]
    if not any(n in _KNOWN_CSV_FIELDS for n in names):
        return None
    return names


def _csv_base_name(header: str) -> str:
    return re.sub(r"\s*\[[^\]]*\]\s*$", "", header.strip()).lower()


def detect_kind(text: str) -> str | None:
    """The kind of capture ``text`` is (``xml``, ``table``, ``topo``, ``list``, ``csv``), else None."""
    lines = [ln for ln in _lines(text) if ln.strip()]
    if not lines:
        return None
    joined = "\n".join(lines)
    if "<nvidia_smi_log" in joined:
        return KIND_XML
    if _TABLE_HEADER_RE.search(joined) or any(_TABLE_GPU_HEADER_RE.search(ln) for ln in lines):
        return KIND_TABLE
    header_seen = False
    for ln in lines:
        tokens = ln.split()
        if _topo_header(tokens):
            header_seen = True
        elif header_seen and tokens and re.fullmatch(r"GPU\d+", tokens[0]):
            return KIND_TOPO
    if any(_LIST_GPU_RE.match(ln) for ln in lines):
        return KIND_LIST
    if _csv_header_fields(lines[0]) is not None or _headerless_fields(lines) is not None:
        return KIND_CSV
    return None


def parse_capture(text: str, kind: str | None = None) -> Capture:
    """Parse one capture; the kind is detected from the content unless given.

    Raises :class:`NvidiaSmiError` when the text is an error report or nothing known.
    """
    kind = kind or detect_kind(text)
    parsers = {
        KIND_XML: parse_xml,
        KIND_TABLE: parse_table,
        KIND_TOPO: parse_topo,
        KIND_LIST: parse_list,
        KIND_CSV: parse_query_csv,
    }
    if kind in parsers:
        return parsers[kind](text)
    error = error_from_output(text)
    if error is not None:
        raise error
    if "NVSMI LOG" in text:
        raise _make_error("query-text")
    first = next((ln.strip() for ln in _lines(text) if ln.strip()), "")
    if not first:
        raise NvidiaSmiError("the nvidia-smi output is empty", reason="empty", output=text)
    raise NvidiaSmiError(
        "not a recognised nvidia-smi output (expected `nvidia-smi -q -x` XML, `--query-gpu` CSV with "
        f"a header, `topo -m`, `-L` or the default table); it starts with {first[:120]!r}",
        reason="unrecognised",
        output=text,
    )


def _warnings_in(lines: Iterable[str]) -> list[str]:
    found = []
    for line in lines:
        text = line.strip()
        if text.upper().startswith("WARNING") or error_from_output(text) is not None:
            found.append(text)
    return found


# --------------------------------------------------------------------------------------------
# nvidia-smi -q -x
# --------------------------------------------------------------------------------------------


def _xml_text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    return _clean(found.text) if found is not None else None


def parse_xml(text: str) -> Capture:
    """Parse ``nvidia-smi -q -x`` output (any DTD version)."""
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<nvidia_smi_log")
    end = text.rfind("</nvidia_smi_log>")
    if start < 0 or end < 0:
        raise NvidiaSmiError(
            "the `nvidia-smi -q -x` output is incomplete (no <nvidia_smi_log> element from start to end)",
            reason="unrecognised",
            output=text,
        )
    body = text[start : end + len("</nvidia_smi_log>")]
    try:
        root = ET.fromstring(body.encode("utf-8"))
    except ET.ParseError as exc:
        raise NvidiaSmiError(
            f"the `nvidia-smi -q -x` output is not well-formed XML ({exc}); capture it again",
            reason="unrecognised",
            output=text,
        ) from exc
    capture = Capture(
        kind=KIND_XML,
        driver_version=_xml_text(root, "driver_version"),
        cuda_version=_xml_text(root, "cuda_version"),
        warnings=_warnings_in(text[:start].splitlines() + text[end:].splitlines()[1:]),
    )
    fabric: list[bool | None] = []
    for index, node in enumerate(root.findall("gpu")):
        memory = _xml_text(node, "fb_memory_usage/total") or _xml_text(node, "memory_usage/total")
        capture.gpus.append(
            Gpu(
                index=index,
                name=_xml_text(node, "product_name"),
                uuid=_xml_text(node, "uuid"),
                pci_bus_id=normalize_bus_id(_xml_text(node, "pci/pci_bus_id") or node.get("id")),
                memory_total_mib=parse_memory_mib(memory),
                mig_mode=_mig_mode(_xml_text(node, "mig_mode/current_mig")),
            )
        )
        fabric.append(_fabric_attached(_xml_text(node, "fabric/state")))
        for position, mig in enumerate(node.findall("mig_devices/mig_device")):
            device_index = _int(_xml_text(mig, "index"))
            capture.mig_devices.append(
                MigDevice(
                    gpu_index=index,
                    device_index=position if device_index is None else device_index,
                    gpu_instance_id=_int(_xml_text(mig, "gpu_instance_id")),
                    compute_instance_id=_int(_xml_text(mig, "compute_instance_id")),
                    uuid=_xml_text(mig, "uuid"),
                    memory_total_mib=parse_memory_mib(_xml_text(mig, "fb_memory_usage/total")),
                )
            )
    attached = _int(_xml_text(root, "attached_gpus"))
    if attached is not None and attached != len(capture.gpus):
        capture.warnings.append(
            f"nvidia-smi -q -x says attached_gpus={attached} but lists {len(capture.gpus)} <gpu> "
            "elements; the facts count the listed GPUs"
        )
    if any(fabric):
        capture.nvswitch = True
    return capture


# --------------------------------------------------------------------------------------------
# nvidia-smi --query-gpu=... --format=csv
# --------------------------------------------------------------------------------------------


def _looks_like_query_row(row: Sequence[str], fields: Sequence[str]) -> bool:
    values = dict(zip(fields, (c.strip() for c in row), strict=False))
    return (
        len(row) == len(fields)
        and re.fullmatch(r"\d+", values.get("index", "")) is not None
        and values.get("uuid", "").startswith("GPU-")
        and _BUS_ID_RE.search(values.get("pci.bus_id", "")) is not None
    )


def _headerless_fields(lines: Sequence[str]) -> tuple[str, ...] | None:
    rows = list(csv.reader(lines[:1], skipinitialspace=True))
    if not rows:
        return None
    for fields in (QUERY_FIELDS, QUERY_FIELDS_LEGACY):
        if _looks_like_query_row(rows[0], fields):
            return fields
    return None


def parse_query_csv(text: str, fields: Sequence[str] | None = None) -> Capture:
    """Parse ``--query-gpu`` CSV; ``fields`` names the columns of a ``noheader`` capture."""
    lines = [ln for ln in _lines(text) if ln.strip()]
    capture = Capture(kind=KIND_CSV)
    if not lines:
        raise NvidiaSmiError("the --query-gpu CSV output is empty", reason="empty", output=text)
    if fields is not None:
        names = [_csv_base_name(f) for f in fields]
        body = lines
    else:
        header = _csv_header_fields(lines[0])
        if header is not None:
            names, body = header, lines[1:]
        else:
            guessed = _headerless_fields(lines)
            if guessed is None:
                raise NvidiaSmiError(
                    "the --query-gpu CSV has no header line, so its columns cannot be named; capture "
                    "it with `--format=csv` (header kept) or with the field list "
                    f"{','.join(QUERY_FIELDS)}",
                    reason="unrecognised",
                    output=text,
                )
            names, body = list(guessed), lines
    fabric: list[bool | None] = []
    for line in body:
        row = [c.strip() for c in next(csv.reader([line], skipinitialspace=True), [])]
        if len(row) != len(names):
            capture.warnings.append(
                f"ignored a --query-gpu line that does not match the header: {line.strip()!r}"
            )
            continue
        values = dict(zip(names, row, strict=True))
        index = _int(values.get("index"))
        capture.gpus.append(
            Gpu(
                index=len(capture.gpus) if index is None else index,
                name=_clean(values.get("name")),
                uuid=_clean(values.get("uuid")),
                pci_bus_id=normalize_bus_id(values.get("pci.bus_id")),
                memory_total_mib=parse_memory_mib(values.get("memory.total")),
                compute_capability=_compute_cap(values.get("compute_cap")),
                mig_mode=_mig_mode(values.get("mig.mode.current")),
            )
        )
        capture.driver_version = capture.driver_version or _clean(values.get("driver_version"))
        fabric.append(_fabric_attached(values.get("fabric.state")))
    if not capture.gpus:
        raise NvidiaSmiError("the --query-gpu CSV lists no GPU rows", reason="no-devices", output=text)
    if any(fabric):
        capture.nvswitch = True
    capture.gpus.sort(key=lambda g: g.index)
    return capture


# --------------------------------------------------------------------------------------------
# nvidia-smi -L
# --------------------------------------------------------------------------------------------


def parse_list(text: str) -> Capture:
    """Parse ``nvidia-smi -L`` (GPU lines and indented MIG device lines)."""
    capture = Capture(kind=KIND_LIST)
    current: Gpu | None = None
    for line in _lines(text):
        gpu_match = _LIST_GPU_RE.match(line)
        if gpu_match:
            current = Gpu(
                index=int(gpu_match.group(1)),
                name=_clean(gpu_match.group(2)),
                uuid=_clean(gpu_match.group(3)),
            )
            capture.gpus.append(current)
            continue
        mig_match = _LIST_MIG_RE.match(line)
        if mig_match and current is not None:
            profile, device, uuid = mig_match.groups()
            current.mig_mode = "Enabled"
            gi = ci = None
            legacy = re.match(r"^MIG-GPU-[0-9a-fA-F-]+/(\d+)/(\d+)$", uuid)
            if legacy:  # R450-era form MIG-GPU-<gpu uuid>/<gi>/<ci>
                gi, ci = int(legacy.group(1)), int(legacy.group(2))
            capture.mig_devices.append(
                MigDevice(
                    gpu_index=current.index,
                    device_index=int(device),
                    gpu_instance_id=gi,
                    compute_instance_id=ci,
                    profile=profile,
                    uuid=uuid,
                )
            )
            continue
        if line.strip():
            capture.warnings.extend(_warnings_in([line]))
    return capture


# --------------------------------------------------------------------------------------------
# nvidia-smi (default table)
# --------------------------------------------------------------------------------------------

_TABLE_MODE_TOKENS = ("On", "Off", "WDDM", "TCC", "MCDM", "N/A")
_TABLE_MEM_RE = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")


def _table_cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def parse_table(text: str) -> Capture:
    """Parse the default ``nvidia-smi`` table, including its MIG devices table."""
    capture = Capture(kind=KIND_TABLE)
    section: str | None = "gpus"  # also when an excerpt starts below the column headers
    current: Gpu | None = None
    row_in_block = 0
    for raw in _lines(text):
        line = raw.strip()
        if not line:
            continue
        header = re.search(r"Driver Version:\s*(\S+)", line)
        if header:
            capture.driver_version = _clean(header.group(1))
            cuda = re.search(r"CUDA Version:\s*(\S+)", line)
            capture.cuda_version = _clean(cuda.group(1)) if cuda else None
            continue
        if "MIG devices:" in line:
            section = "mig"
            continue
        if "Processes:" in line:
            section = "processes"
            continue
        if _TABLE_GPU_HEADER_RE.search(line):
            section = "gpus"
            continue
        if not line.startswith("|"):
            if not line.startswith("+"):
                capture.warnings.extend(_warnings_in([line]))
            continue
        if re.fullmatch(r"[|+=\-\s]+", line):
            continue
        cells = _table_cells(line)
        if section == "gpus":
            first = re.match(r"^\s*(\d+)\s+(\S.*?)\s*$", cells[0])
            if first and len(cells) >= 2 and _BUS_ID_RE.search(cells[1]):
                name = first.group(2)
                mode = re.match(r"^(.*?)\s+(\S+)$", name)
                if mode and mode.group(2) in _TABLE_MODE_TOKENS:
                    name = mode.group(1)
                current = Gpu(
                    index=int(first.group(1)),
                    name=_clean(name),
                    pci_bus_id=normalize_bus_id(cells[1]),
                )
                capture.gpus.append(current)
                row_in_block = 0
                continue
            if current is None:
                continue
            row_in_block += 1
            if row_in_block == 1 and len(cells) >= 2:
                memory = _TABLE_MEM_RE.search(cells[1])
                current.memory_total_mib = int(memory.group(2)) if memory else None
            elif row_in_block == 2 and len(cells) >= 3:
                current.mig_mode = _mig_mode(cells[2])
        elif section == "mig":
            ids = re.match(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", cells[0])
            if ids:
                gpu, gi, ci, dev = (int(x) for x in ids.groups())
                memory = _TABLE_MEM_RE.search(cells[1]) if len(cells) >= 2 else None
                capture.mig_devices.append(
                    MigDevice(
                        gpu_index=gpu,
                        device_index=dev,
                        gpu_instance_id=gi,
                        compute_instance_id=ci,
                        memory_total_mib=int(memory.group(2)) if memory else None,
                    )
                )
    if not capture.gpus and capture.driver_version is None:
        raise NvidiaSmiError("no GPU rows found in the nvidia-smi table", reason="unrecognised", output=text)
    return capture


# --------------------------------------------------------------------------------------------
# nvidia-smi topo -m
# --------------------------------------------------------------------------------------------


def parse_topo(text: str) -> Capture:
    """Parse the ``nvidia-smi topo -m`` matrix into GPU-to-GPU link types."""
    capture = Capture(kind=KIND_TOPO, links={})
    columns: list[str] | None = None
    rows: dict[int, list[str]] = {}
    for line in _lines(text):
        tokens = line.split()
        if columns is None:
            if _topo_header(tokens):
                columns = []
                for token in tokens:
                    if token in ("CPU", "NUMA", "GPU"):
                        break
                    columns.append(token)
            continue
        if tokens and re.fullmatch(r"GPU\d+", tokens[0]) and tokens[0] in columns:
            rows[int(tokens[0][3:])] = tokens[1 : 1 + len(columns)]
    if columns is None or not rows:
        raise NvidiaSmiError("no GPU rows found in the `topo -m` matrix", reason="unrecognised", output=text)
    links = capture.links if capture.links is not None else {}
    for index, cells in sorted(rows.items()):
        capture.gpus.append(Gpu(index=index))
        for column, cell in zip(columns, cells, strict=False):
            if re.fullmatch(r"GPU\d+", column) and int(column[3:]) != index:
                links[(index, int(column[3:]))] = cell
    capture.links = links
    return capture


# --------------------------------------------------------------------------------------------
# Interconnect
# --------------------------------------------------------------------------------------------


def _nvlink_count(link: str | None) -> int | None:
    match = re.fullmatch(r"NV(\d+)", link or "")
    return int(match.group(1)) if match else None


def classify_links(count: int, links: dict[tuple[int, int], str] | None) -> tuple[str, bool | None]:
    """(interconnect, nvswitch) from a GPU-to-GPU link matrix.

    * 0 or 1 GPU: ``none`` (nvswitch None: one GPU alone tells nothing about a fabric);
    * no matrix: ``unknown``;
    * every pair ``NV#``: ``nvlink``; some pairs: ``nvlink-partial``; no pair: ``pcie``;
    * nvswitch: True when every GPU has more NVLinks in total to its peers than a GPU has
      (:data:`MAX_DIRECT_NVLINKS_PER_GPU`), which only a switch can give (8x NV18 on HGX H100/
      H200/B200, 8x NV12 on HGX A100); False for a full mesh within that budget (2x NV12 bridge,
      4x NV6 board) and for PCIe only; None for a partial mesh.
    """
    if count <= 1:
        return "none", None
    if links is None:
        return "unknown", None
    indexes = range(count)
    per_gpu = dict.fromkeys(indexes, 0)
    pairs = 0
    nv_pairs = 0
    for i in indexes:
        for j in indexes:
            if j <= i:
                continue
            pairs += 1
            counts = [c for c in (_nvlink_count(links.get((i, j))), _nvlink_count(links.get((j, i)))) if c]
            if counts:
                nv_pairs += 1
                per_gpu[i] += max(counts)
                per_gpu[j] += max(counts)
    if nv_pairs == 0:
        return "pcie", False
    through_switch = all(total > MAX_DIRECT_NVLINKS_PER_GPU for total in per_gpu.values())
    if nv_pairs == pairs:
        return "nvlink", through_switch
    return "nvlink-partial", True if through_switch else None


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def _priority(capture: Capture) -> int:
    return SOURCE_PRIORITY.index(capture.kind) if capture.kind in SOURCE_PRIORITY else len(SOURCE_PRIORITY)


def _inconsistent(what: str) -> NvidiaSmiError:
    return NvidiaSmiError(
        f"the nvidia-smi sources disagree: {what}; were they captured on the same host at the same time?",
        reason="inconsistent",
    )


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def _merge_gpu(index: int, candidates: list[tuple[str, Gpu]]) -> Gpu:
    uuids = {(kind, g.uuid) for kind, g in candidates if g.uuid and not _is_masked_uuid(g.uuid)}
    if len({u for _k, u in uuids}) > 1:
        raise _inconsistent(f"GPU {index} has UUIDs {sorted(uuids)}")
    buses = {(kind, g.pci_bus_id) for kind, g in candidates if g.pci_bus_id}
    if len({b for _k, b in buses}) > 1:
        raise _inconsistent(f"GPU {index} has PCI bus ids {sorted(buses)}")
    gpus = [g for _k, g in candidates]
    names = [g.name for g in gpus if g.name]
    full_names = [n for n in names if not n.endswith("...")]
    uuid = _first(g.uuid for g in gpus if g.uuid and not _is_masked_uuid(g.uuid)) or _first(
        g.uuid for g in gpus
    )
    merged = Gpu(
        index=index,
        name=(full_names or names or [None])[0],
        uuid=uuid,
        pci_bus_id=_first(g.pci_bus_id for g in gpus),
        memory_total_mib=_first(g.memory_total_mib for g in gpus),
        mig_mode=_first(g.mig_mode for g in gpus),
    )
    for kind, gpu in candidates:
        if gpu.compute_capability:
            merged.compute_capability = gpu.compute_capability
            merged.compute_capability_source = "nvml" if kind == KIND_NVML else "nvidia-smi"
            break
    else:
        merged.compute_capability = compute_capability_from_name(merged.name)
        merged.compute_capability_source = "name-table" if merged.compute_capability else None
    return merged


def _merge_mig(captures: list[Capture]) -> list[MigDevice]:
    merged: dict[tuple[int, int], MigDevice] = {}
    for capture in captures:
        for position, dev in enumerate(capture.mig_devices):
            key = (dev.gpu_index, position if dev.device_index is None else dev.device_index)
            have = merged.get(key)
            if have is None:
                merged[key] = MigDevice(**asdict(dev))
                continue
            for name, value in asdict(dev).items():
                if getattr(have, name) is None and value is not None:
                    setattr(have, name, value)
    return [merged[key] for key in sorted(merged)]


def merge_captures(captures: Sequence[Capture]) -> GpuFacts:
    """Merge captures of one host (any kinds, any order) into one result.

    Raises :class:`NvidiaSmiError` (reason ``inconsistent``) when the sources contradict each
    other: a different GPU count, UUID, PCI bus id or driver version.
    """
    if not captures:
        return empty_facts()
    ordered = sorted(captures, key=_priority)
    facts = GpuFacts(source=list(dict.fromkeys(c.kind for c in captures)))
    for capture in captures:
        facts.warnings.extend(w for w in capture.warnings if w not in facts.warnings)

    counts = [(c.kind, len(c.gpus)) for c in ordered]
    if len({n for _k, n in counts}) > 1:
        raise _inconsistent("GPU counts " + ", ".join(f"{k}={n}" for k, n in counts))
    indexes = [(c.kind, sorted(g.index for g in c.gpus)) for c in ordered]
    if len({tuple(i) for _k, i in indexes}) > 1:
        raise _inconsistent("GPU indexes " + ", ".join(f"{k}={i}" for k, i in indexes))
    facts.count = counts[0][1]

    drivers = {c.driver_version for c in ordered if c.driver_version}
    if len(drivers) > 1:
        raise _inconsistent(f"driver versions {sorted(drivers)}")
    facts.driver_version = _first(c.driver_version for c in ordered)
    facts.cuda_version = _first(c.cuda_version for c in ordered)

    by_index: dict[int, list[tuple[str, Gpu]]] = {}
    for capture in ordered:
        for gpu in capture.gpus:
            by_index.setdefault(gpu.index, []).append((capture.kind, gpu))
    facts.gpus = [_merge_gpu(index, by_index[index]) for index in sorted(by_index)]

    facts.mig_devices = _merge_mig(ordered)
    for gpu in facts.gpus:
        if gpu.mig_mode is None and any(d.gpu_index == gpu.index for d in facts.mig_devices):
            gpu.mig_mode = "Enabled"

    links = _first(c.links for c in ordered)
    facts.interconnect, nvswitch = classify_links(facts.count, links)
    facts.nvswitch = True if any(c.nvswitch for c in ordered) else nvswitch
    return facts


def facts_from_texts(texts: Sequence[str]) -> GpuFacts:
    """Detect, parse and merge several captures of one host.

    An output that only says an option is unsupported (``usage``, e.g. ``topo -m`` on Windows)
    becomes a warning when other captures give the GPUs; every other error is raised.
    """
    captures: list[Capture] = []
    skipped: list[NvidiaSmiError] = []
    for text in texts:
        try:
            captures.append(parse_capture(text))
        except NvidiaSmiError as exc:
            if exc.reason != "usage":
                raise
            skipped.append(exc)
    if not captures:
        if skipped:
            raise skipped[0]
        return empty_facts()
    facts = merge_captures(captures)
    facts.warnings.extend(exc.msg for exc in skipped)
    return facts


# --------------------------------------------------------------------------------------------
# NVML (nvidia-ml-py's ``pynvml`` module, passed in so that tests can hand in a fake)
# --------------------------------------------------------------------------------------------

_NVML_REASONS = (
    ("NVML_ERROR_DRIVER_NOT_LOADED", "driver-not-loaded"),
    ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", "version-mismatch"),
    ("NVML_ERROR_LIBRARY_NOT_FOUND", "nvml-library-missing"),
    ("NVML_ERROR_NO_PERMISSION", "permission"),
    ("NVML_ERROR_GPU_IS_LOST", "gpu-lost"),
)


def nvml_error(nvml: Any, exc: Exception) -> NvidiaSmiError:
    """Translate an ``NVMLError`` into the same :class:`NvidiaSmiError` nvidia-smi would give."""
    code = getattr(exc, "value", None)
    for constant, reason in _NVML_REASONS:
        if code is not None and code == getattr(nvml, constant, object()):
            return _make_error(reason, "", detail="")
    return _make_error("nvml-init", "", detail=str(exc) or f"NVML error {code}")


def _call(nvml: Any, func: str, *args: Any) -> Any:
    """Call an optional NVML function; None when it is missing or unsupported."""
    fn = getattr(nvml, func, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except nvml.NVMLError:
        return None


def _cuda_from_int(version: int | None) -> str | None:
    if not version:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _nvml_mig_devices(nvml: Any, handle: Any, gpu_index: int) -> list[MigDevice]:
    devices = []
    for slot in range(_call(nvml, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
        mig = _call(nvml, "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
        if mig is None:
            continue
        memory = _call(nvml, "nvmlDeviceGetMemoryInfo", mig)
        devices.append(
            MigDevice(
                gpu_index=gpu_index,
                device_index=slot,
                gpu_instance_id=_call(nvml, "nvmlDeviceGetGpuInstanceId", mig),
                compute_instance_id=_call(nvml, "nvmlDeviceGetComputeInstanceId", mig),
                uuid=_clean(_call(nvml, "nvmlDeviceGetUUID", mig)),
                memory_total_mib=memory.total // 1048576 if memory is not None else None,
            )
        )
    return devices


def _nvml_fabric(nvml: Any, handle: Any) -> bool | None:
    struct = getattr(nvml, "c_nvmlGpuFabricInfo_t", None)
    if struct is None or not hasattr(nvml, "nvmlDeviceGetGpuFabricInfo"):
        return None
    info = struct()
    try:
        nvml.nvmlDeviceGetGpuFabricInfo(handle, info)
    except nvml.NVMLError:
        return None
    states = {
        getattr(nvml, f"NVML_GPU_FABRIC_STATE_{s}", None) for s in ("NOT_STARTED", "IN_PROGRESS", "COMPLETED")
    }
    return True if info.state in states - {None} else None


def _nvml_links(
    nvml: Any, handles: list[Any], buses: list[str | None]
) -> tuple[dict[tuple[int, int], str], bool]:
    """NV# link matrix between GPUs, and whether every GPU has links to an NVSwitch."""
    enabled = getattr(nvml, "NVML_FEATURE_ENABLED", 1)
    switch_type = getattr(nvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2)
    bus_to_index = {bus: i for i, bus in enumerate(buses) if bus}
    pair_links: dict[tuple[int, int], int] = {}
    switch_links = [0] * len(handles)
    for i, handle in enumerate(handles):
        for link in range(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18)):
            if _call(nvml, "nvmlDeviceGetNvLinkState", handle, link) != enabled:
                continue
            remote = _call(nvml, "nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            peer = bus_to_index.get(normalize_bus_id(getattr(remote, "busId", None)) or "")
            remote_type = _call(nvml, "nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
            if remote_type == switch_type or (remote_type is None and peer is None):
                switch_links[i] += 1
            elif peer is not None and peer != i:
                pair_links[(i, peer)] = pair_links.get((i, peer), 0) + 1
    links = {}
    for i in range(len(handles)):
        for j in range(len(handles)):
            if i != j:
                links[(i, j)] = f"NV{pair_links[(i, j)]}" if pair_links.get((i, j)) else "PCIE"
    return links, bool(handles) and all(switch_links)


def facts_from_nvml(nvml: Any) -> GpuFacts:
    """Build the facts through NVML (``import pynvml``); same shape as the nvidia-smi path."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise nvml_error(nvml, exc) from exc
    try:
        capture = Capture(
            kind=KIND_NVML,
            driver_version=_clean(_call(nvml, "nvmlSystemGetDriverVersion")),
            cuda_version=_cuda_from_int(_call(nvml, "nvmlSystemGetCudaDriverVersion")),
        )
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nvml.NVMLError as exc:
            raise nvml_error(nvml, exc) from exc
        if count == 0:
            raise _make_error("no-devices")
        fabric = []
        for index, handle in enumerate(handles):
            pci = _call(nvml, "nvmlDeviceGetPciInfo", handle)
            memory = _call(nvml, "nvmlDeviceGetMemoryInfo", handle)
            cc = _call(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
            mig = _call(nvml, "nvmlDeviceGetMigMode", handle)
            gpu = Gpu(
                index=index,
                name=_clean(_call(nvml, "nvmlDeviceGetName", handle)),
                uuid=_clean(_call(nvml, "nvmlDeviceGetUUID", handle)),
                pci_bus_id=normalize_bus_id(getattr(pci, "busId", None)),
                memory_total_mib=memory.total // 1048576 if memory is not None else None,
                compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                mig_mode=None if not mig else ("Enabled" if mig[0] == 1 else "Disabled"),
            )
            capture.gpus.append(gpu)
            if gpu.mig_mode == "Enabled":
                capture.mig_devices.extend(_nvml_mig_devices(nvml, handle, index))
            fabric.append(_nvml_fabric(nvml, handle))
        links, all_on_switch = _nvml_links(nvml, handles, [g.pci_bus_id for g in capture.gpus])
        capture.links = links
        capture.nvswitch = True if (any(fabric) or (count > 1 and all_on_switch)) else None
        facts = merge_captures([capture])
        if count > 1 and all_on_switch:
            facts.interconnect = "nvlink"
        return facts
    finally:
        _call(nvml, "nvmlShutdown")


# --------------------------------------------------------------------------------------------
# A live host: which commands to run, and what to do when one fails
# --------------------------------------------------------------------------------------------

#: ``run(argv) -> (rc, stdout, stderr)``, e.g. AnsibleModule.run_command.
Runner = Callable[[list[str]], tuple[int, str, str]]


def _command_failed(argv: Sequence[str], rc: int, out: str, err: str) -> NvidiaSmiError:
    text = "\n".join(part for part in (out.strip(), err.strip()) if part)
    known = error_from_output(text)
    if known is not None:
        return known
    shown = " ".join(argv[1:])
    return NvidiaSmiError(
        f"`nvidia-smi {shown}` failed with exit code {rc}: {text[:500] or '(no output)'}",
        reason="command-failed",
        output=text,
    )


def _run_and_parse(run: Runner, argv: list[str], parse: Callable[[str], Capture]) -> Capture:
    """Run one command; its output counts when it parses, whatever the exit code.

    (nvidia-smi prints a full report and exits 14 when an infoROM is corrupted, for example.)
    """
    rc, out, err = run(argv)
    try:
        capture = parse(out)
    except NvidiaSmiError:
        raise _command_failed(argv, rc, out, err) from None
    if rc != 0:
        capture.warnings.append(f"`{' '.join(argv)}` exited with {rc}: {(err or '').strip()[:200]}")
    capture.warnings.extend(_warnings_in(err.splitlines()))
    return capture


def collect_live(run: Runner, binary: str) -> GpuFacts:
    """Query a live host with nvidia-smi: ``-q -x`` (required), ``--query-gpu`` and ``topo -m``.

    ``--query-gpu`` asks for :data:`QUERY_FIELDS` and, when the driver refuses the field list
    (``compute_cap`` is unknown to older drivers), again with :data:`QUERY_FIELDS_LEGACY`. Failures
    of ``--query-gpu`` and ``topo -m`` only add warnings (interconnect is then ``unknown``); a
    failure of ``-q -x`` raises :class:`NvidiaSmiError`.
    """
    captures = [_run_and_parse(run, [binary, "-q", "-x"], parse_xml)]
    warnings: list[str] = []
    query_errors: list[str] = []
    for fields in (QUERY_FIELDS, QUERY_FIELDS_LEGACY):
        argv = [binary, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
        try:
            captures.append(_run_and_parse(run, argv, lambda out, f=fields: parse_query_csv(out, fields=f)))
            break
        except NvidiaSmiError as exc:
            query_errors.append(exc.msg)
    else:
        warnings.append(
            "`nvidia-smi --query-gpu` gave no data, so compute capabilities come from the name table: "
            + query_errors[-1]
        )
    try:
        captures.append(_run_and_parse(run, [binary, "topo", "-m"], parse_topo))
    except NvidiaSmiError as exc:
        warnings.append(f"`nvidia-smi topo -m` gave no matrix, so the interconnect is unknown: {exc.msg}")
    facts = merge_captures(captures)
    facts.warnings.extend(warnings)
    return facts
