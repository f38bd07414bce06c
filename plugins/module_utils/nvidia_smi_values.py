"""Values as nvidia-smi and NVML print them, normalised: "nothing here" markers, memory sizes,
PCI bus ids, MIG modes, compute capabilities. Standard library only: this code runs on target hosts.
"""

from __future__ import annotations

import re
from typing import Any

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
BUS_ID_RE = re.compile(r"\b([0-9A-Fa-f]{4,8}):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})\.([0-7])\b")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|TiB|KB|MB|GB|TB|B)?$", re.IGNORECASE)
_CC_RE = re.compile(r"^\d{1,2}\.\d{1,2}$")
_FABRIC_STATES = {"completed", "in progress", "not started"}


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def clean(value: Any) -> str | None:
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
    text = clean(value)
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
    text = clean(value)
    if text is None:
        return None
    match = BUS_ID_RE.search(text)
    if not match:
        return None
    domain, bus, dev, fn = match.groups()
    return f"{int(domain, 16):08X}:{bus.upper()}:{dev.upper()}.{fn}"


def parse_int(value: Any) -> int | None:
    text = clean(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_mig_mode(value: Any) -> str | None:
    text = clean(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("enabled", "enable", "on"):
        return "Enabled"
    if lowered in ("disabled", "disable", "off"):
        return "Disabled"
    return None


def normalize_compute_capability(value: Any) -> str | None:
    text = clean(value)
    if text is None or not _CC_RE.match(text):
        return None
    major, minor = text.split(".")
    return f"{int(major)}.{int(minor)}"


def fabric_attached(state: Any) -> bool | None:
    text = clean(state)
    if text is None:
        return None
    return True if text.lower() in _FABRIC_STATES else None


def is_masked_uuid(uuid: str | None) -> bool:
    """Capture tools mask UUIDs as GPU-00000000-0000-...; such values identify nothing."""
    if not uuid:
        return True
    digits = re.sub(r"[^0-9a-fA-F]", "", uuid.split("-", 1)[-1])
    return set(digits) <= {"0"}
