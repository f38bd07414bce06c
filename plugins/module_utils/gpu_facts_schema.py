"""The ``llmfleet_gpu`` facts: one definition for the gpu_facts module that writes them and the
planner that reads them.

:meth:`GpuFacts.as_dict` is the facts dict; :func:`read_gpu_facts` reads such a dict back (saved,
or from another host) and raises :class:`GpuFactsError`, naming the key and the value, when it does
not fit this schema. Standard library only: this code runs on target hosts.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

#: The values of ``interconnect`` (docs/gpu_facts.md says what each means).
INTERCONNECTS = ("nvlink", "nvlink-partial", "pcie", "none", "unknown")
MIG_MODES = ("Enabled", "Disabled")
#: Where ``compute_capability`` comes from.
CAPABILITY_SOURCES = ("nvidia-smi", "nvml", "name-table")

_CAPABILITY_RE = re.compile(r"^\d{1,2}\.\d{1,2}$")
#: -L names a MIG device by its profile (3g.40gb) but gives no memory
_PROFILE_SIZE_RE = re.compile(r"(\d+)gb\b", re.IGNORECASE)


class GpuFactsError(ValueError):
    """A facts dict that does not fit the schema."""


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

    # The planner's views of the fields above.
    @property
    def memory_mib(self) -> int:
        """Total memory in MiB, 0 when unknown."""
        return self.memory_total_mib or 0

    @property
    def mig(self) -> bool:
        return self.mig_mode == "Enabled"

    @property
    def capability_source(self) -> str | None:
        return self.compute_capability_source


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

    @property
    def memory_mib(self) -> int:
        """Memory in MiB; without a figure, a little under the size the profile names; else 0."""
        if self.memory_total_mib:
            return self.memory_total_mib
        sized = _PROFILE_SIZE_RE.search(self.profile or "")
        return int(sized.group(1)) * 1000 if sized else 0


@dataclass
class GpuFacts:
    """The facts of one host; :meth:`as_dict` is ``ansible_facts.llmfleet_gpu``."""

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
# Reading a facts dict back
# --------------------------------------------------------------------------------------------

#: What a value may be, by field: a type, or the values it may take. None is always allowed
#: except for the fields in _REQUIRED.
_KINDS: dict[str, Any] = {
    "index": int,
    "gpu_index": int,
    "device_index": int,
    "gpu_instance_id": int,
    "compute_instance_id": int,
    "memory_total_mib": int,
    "compute_capability_source": CAPABILITY_SOURCES,
    "mig_mode": MIG_MODES,
    "interconnect": INTERCONNECTS,
}
_REQUIRED = {"index", "gpu_index"}


def _check(where: str, key: str, value: Any) -> Any:
    """``value`` when it fits field ``key``; ``where`` says whose field it is (e.g. ``gpus[2]``)."""
    kind = _KINDS.get(key, str)
    name = f"{where}.{key}" if where else key
    if value is None and key not in _REQUIRED:
        return None
    if isinstance(kind, tuple):
        if value in kind:
            return value
        expected = "one of " + ", ".join(kind)
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is not int and isinstance(value, kind):
        if key == "compute_capability" and not _CAPABILITY_RE.match(value):
            raise GpuFactsError(f"{name} is {value!r}, not a compute capability such as '9.0'")
        return value
    else:
        expected = "a whole number" if kind is int else "a string"
    raise GpuFactsError(f"{name} is {value!r}, expected {expected}")


def _read(cls: type, where: str, item: Any) -> Any:
    """``cls`` from a mapping of its fields; other keys are left out."""
    if not isinstance(item, dict):
        raise GpuFactsError(f"{where} is not a mapping: {item!r}")
    values = {}
    for spec in fields(cls):
        if spec.name in item:
            values[spec.name] = _check(where, spec.name, item[spec.name])
        elif spec.default is MISSING:
            raise GpuFactsError(f"{where}.{spec.name} is missing")
    return cls(**values)


def read_gpu_facts(facts: dict[str, Any]) -> tuple[list[Gpu], list[MigDevice]]:
    """The GPUs and MIG devices of a facts dict (:meth:`GpuFacts.as_dict`).

    Raises :class:`GpuFactsError` for a value of the wrong kind, naming its key and the value.
    """
    _check("", "interconnect", facts.get("interconnect"))
    listed = {key: facts.get(key) or [] for key in ("gpus", "mig_devices")}
    for key, items in listed.items():
        if not isinstance(items, list):
            raise GpuFactsError(f"{key} is {items!r}, expected a list")
    gpus = [_read(Gpu, f"gpus[{n}]", item) for n, item in enumerate(listed["gpus"])]
    devices = [_read(MigDevice, f"mig_devices[{n}]", x) for n, x in enumerate(listed["mig_devices"])]
    return gpus, devices
