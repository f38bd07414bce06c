"""Parsers of nvidia-smi outputs; each capture becomes a :class:`Capture` of what it says.

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
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import Gpu, MigDevice
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import (
    NvidiaSmiError,
    error_from_output,
    make_error,
    warnings_in,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_values import (
    BUS_ID_RE,
    clean,
    fabric_attached,
    normalize_bus_id,
    normalize_compute_capability,
    parse_int,
    parse_memory_mib,
    parse_mig_mode,
    strip_ansi,
)

KIND_XML = "xml"
KIND_CSV = "csv"
KIND_TOPO = "topo"
KIND_LIST = "list"
KIND_TABLE = "table"
#: Not a parser's: the kind of a capture read through NVML (gpu_facts_live).
KIND_NVML = "nvml"

#: The --query-gpu field list gpu_facts asks for on a live host, and the fallback for drivers
#: that do not know ``compute_cap``.
QUERY_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "compute_cap")
QUERY_FIELDS_LEGACY = QUERY_FIELDS[:-1]


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
    return strip_ansi(text.replace("\ufeff", "")).splitlines()


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
        raise make_error("query-text")
    first = next((ln.strip() for ln in _lines(text) if ln.strip()), "")
    if not first:
        raise NvidiaSmiError("the nvidia-smi output is empty", reason="empty", output=text)
    raise NvidiaSmiError(
        "not a recognised nvidia-smi output (expected `nvidia-smi -q -x` XML, `--query-gpu` CSV with "
        f"a header, `topo -m`, `-L` or the default table); it starts with {first[:120]!r}",
        reason="unrecognised",
        output=text,
    )


# --------------------------------------------------------------------------------------------
# nvidia-smi -q -x
# --------------------------------------------------------------------------------------------


def _xml_text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    return clean(found.text) if found is not None else None


def _xml_root(text: str) -> tuple[ET.Element, int, int]:
    """The <nvidia_smi_log> element, and where it starts and ends in ``text``."""
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
        return ET.fromstring(body.encode("utf-8")), start, end
    except ET.ParseError as exc:
        raise NvidiaSmiError(
            f"the `nvidia-smi -q -x` output is not well-formed XML ({exc}); capture it again",
            reason="unrecognised",
            output=text,
        ) from exc


def _xml_gpu(node: ET.Element, index: int) -> Gpu:
    memory = _xml_text(node, "fb_memory_usage/total") or _xml_text(node, "memory_usage/total")
    return Gpu(
        index=index,
        name=_xml_text(node, "product_name"),
        uuid=_xml_text(node, "uuid"),
        pci_bus_id=normalize_bus_id(_xml_text(node, "pci/pci_bus_id") or node.get("id")),
        memory_total_mib=parse_memory_mib(memory),
        mig_mode=parse_mig_mode(_xml_text(node, "mig_mode/current_mig")),
    )


def _xml_mig_devices(node: ET.Element, gpu_index: int) -> list[MigDevice]:
    devices = []
    for position, mig in enumerate(node.findall("mig_devices/mig_device")):
        device_index = parse_int(_xml_text(mig, "index"))
        devices.append(
            MigDevice(
                gpu_index=gpu_index,
                device_index=position if device_index is None else device_index,
                gpu_instance_id=parse_int(_xml_text(mig, "gpu_instance_id")),
                compute_instance_id=parse_int(_xml_text(mig, "compute_instance_id")),
                uuid=_xml_text(mig, "uuid"),
                memory_total_mib=parse_memory_mib(_xml_text(mig, "fb_memory_usage/total")),
            )
        )
    return devices


def parse_xml(text: str) -> Capture:
    """Parse ``nvidia-smi -q -x`` output (any DTD version)."""
    root, start, end = _xml_root(text)
    capture = Capture(
        kind=KIND_XML,
        driver_version=_xml_text(root, "driver_version"),
        cuda_version=_xml_text(root, "cuda_version"),
        warnings=warnings_in(text[:start].splitlines() + text[end:].splitlines()[1:]),
    )
    fabric: list[bool | None] = []
    for index, node in enumerate(root.findall("gpu")):
        capture.gpus.append(_xml_gpu(node, index))
        fabric.append(fabric_attached(_xml_text(node, "fabric/state")))
        capture.mig_devices.extend(_xml_mig_devices(node, index))
    attached = parse_int(_xml_text(root, "attached_gpus"))
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
        and BUS_ID_RE.search(values.get("pci.bus_id", "")) is not None
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
        index = parse_int(values.get("index"))
        capture.gpus.append(
            Gpu(
                index=len(capture.gpus) if index is None else index,
                name=clean(values.get("name")),
                uuid=clean(values.get("uuid")),
                pci_bus_id=normalize_bus_id(values.get("pci.bus_id")),
                memory_total_mib=parse_memory_mib(values.get("memory.total")),
                compute_capability=normalize_compute_capability(values.get("compute_cap")),
                mig_mode=parse_mig_mode(values.get("mig.mode.current")),
            )
        )
        capture.driver_version = capture.driver_version or clean(values.get("driver_version"))
        fabric.append(fabric_attached(values.get("fabric.state")))
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
                name=clean(gpu_match.group(2)),
                uuid=clean(gpu_match.group(3)),
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
            capture.warnings.extend(warnings_in([line]))
    return capture


# --------------------------------------------------------------------------------------------
# nvidia-smi (default table)
# --------------------------------------------------------------------------------------------

_TABLE_MODE_TOKENS = ("On", "Off", "WDDM", "TCC", "MCDM", "N/A")
_TABLE_MEM_RE = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")


def _table_cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def _table_section(line: str) -> str | None:
    """The section a heading line of the table starts, else None."""
    if "MIG devices:" in line:
        return "mig"
    if "Processes:" in line:
        return "processes"
    if _TABLE_GPU_HEADER_RE.search(line):
        return "gpus"
    return None


def _table_mig_device(cells: list[str]) -> MigDevice | None:
    ids = re.match(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", cells[0])
    if not ids:
        return None
    gpu, gi, ci, dev = (int(x) for x in ids.groups())
    memory = _TABLE_MEM_RE.search(cells[1]) if len(cells) >= 2 else None
    return MigDevice(
        gpu_index=gpu,
        device_index=dev,
        gpu_instance_id=gi,
        compute_instance_id=ci,
        memory_total_mib=int(memory.group(2)) if memory else None,
    )


@dataclass
class _TableReader:
    """A walk through the default table, one stripped, non-empty line at a time."""

    capture: Capture = field(default_factory=lambda: Capture(kind=KIND_TABLE))
    section: str | None = "gpus"  # also when an excerpt starts below the column headers
    current: Gpu | None = None
    row_in_block: int = 0

    def read(self, line: str) -> None:
        header = re.search(r"Driver Version:\s*(\S+)", line)
        if header:
            self.capture.driver_version = clean(header.group(1))
            cuda = re.search(r"CUDA Version:\s*(\S+)", line)
            self.capture.cuda_version = clean(cuda.group(1)) if cuda else None
            return
        section = _table_section(line)
        if section:
            self.section = section
            return
        if not line.startswith("|"):
            if not line.startswith("+"):
                self.capture.warnings.extend(warnings_in([line]))
            return
        if re.fullmatch(r"[|+=\-\s]+", line):
            return
        cells = _table_cells(line)
        if self.section == "gpus":
            self.read_gpu_row(cells)
        elif self.section == "mig":
            device = _table_mig_device(cells)
            if device is not None:
                self.capture.mig_devices.append(device)

    def read_gpu_row(self, cells: list[str]) -> None:
        """A GPU's first row starts its block; its second and third give memory and MIG mode."""
        first = re.match(r"^\s*(\d+)\s+(\S.*?)\s*$", cells[0])
        if first and len(cells) >= 2 and BUS_ID_RE.search(cells[1]):
            name = first.group(2)
            mode = re.match(r"^(.*?)\s+(\S+)$", name)
            if mode and mode.group(2) in _TABLE_MODE_TOKENS:
                name = mode.group(1)
            self.current = Gpu(
                index=int(first.group(1)), name=clean(name), pci_bus_id=normalize_bus_id(cells[1])
            )
            self.capture.gpus.append(self.current)
            self.row_in_block = 0
            return
        if self.current is None:
            return
        self.row_in_block += 1
        if self.row_in_block == 1 and len(cells) >= 2:
            memory = _TABLE_MEM_RE.search(cells[1])
            self.current.memory_total_mib = int(memory.group(2)) if memory else None
        elif self.row_in_block == 2 and len(cells) >= 3:
            self.current.mig_mode = parse_mig_mode(cells[2])


def parse_table(text: str) -> Capture:
    """Parse the default ``nvidia-smi`` table, including its MIG devices table."""
    reader = _TableReader()
    for raw in _lines(text):
        line = raw.strip()
        if line:
            reader.read(line)
    capture = reader.capture
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
