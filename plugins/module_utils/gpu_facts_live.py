"""Collecting GPU facts on a live host: through NVML, or by running nvidia-smi.

Standard library only: this code runs on target hosts. NVML is nvidia-ml-py's ``pynvml`` module,
passed in so that tests can hand in a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import merge_captures
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import Gpu, GpuFacts, MigDevice
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import (
    NvidiaSmiError,
    error_from_output,
    make_error,
    warnings_in,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_parsers import (
    KIND_NVML,
    QUERY_FIELDS,
    QUERY_FIELDS_LEGACY,
    Capture,
    parse_query_csv,
    parse_topo,
    parse_xml,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_values import clean, normalize_bus_id

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
            return make_error(reason, "", detail="")
    return make_error("nvml-init", "", detail=str(exc) or f"NVML error {code}")


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
                uuid=clean(_call(nvml, "nvmlDeviceGetUUID", mig)),
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
            driver_version=clean(_call(nvml, "nvmlSystemGetDriverVersion")),
            cuda_version=_cuda_from_int(_call(nvml, "nvmlSystemGetCudaDriverVersion")),
        )
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nvml.NVMLError as exc:
            raise nvml_error(nvml, exc) from exc
        if count == 0:
            raise make_error("no-devices")
        fabric = []
        for index, handle in enumerate(handles):
            pci = _call(nvml, "nvmlDeviceGetPciInfo", handle)
            memory = _call(nvml, "nvmlDeviceGetMemoryInfo", handle)
            cc = _call(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
            mig = _call(nvml, "nvmlDeviceGetMigMode", handle)
            gpu = Gpu(
                index=index,
                name=clean(_call(nvml, "nvmlDeviceGetName", handle)),
                uuid=clean(_call(nvml, "nvmlDeviceGetUUID", handle)),
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
    capture.warnings.extend(warnings_in(err.splitlines()))
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
