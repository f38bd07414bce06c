#!/usr/bin/python
"""Ansible module: discover the NVIDIA GPUs of a host (or of captured nvidia-smi outputs) as facts."""
# Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts (count, memory, compute capability, MIG, interconnect)
version_added: 0.1.0
description:
  - Sets the fact C(llmfleet_gpu) - the GPUs of the host with name, UUID, PCI bus id, total memory,
    compute capability and MIG mode; MIG devices; driver and CUDA versions; the interconnect class
    (C(nvlink), C(nvlink-partial), C(pcie), C(none), C(unknown)) and whether the GPUs sit on an
    NVSwitch fabric.
  - On a live host it runs C(nvidia-smi -q -x), then
    C(nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,compute_cap --format=csv,noheader,nounits)
    (again without C(compute_cap) when the driver does not know that field), then
    C(nvidia-smi topo -m). Only C(-q -x) is required. When the query fails the module warns and takes
    compute capabilities from a table of well-known GPU names; when C(topo -m) fails (it does not
    exist on Windows drivers) it warns and reports the interconnect of several GPUs as C(unknown).
  - A host without C(nvidia-smi) is a CPU host - the module succeeds with C(count=0).
  - When nvidia-smi reports a problem (driver not loaded, driver/library version mismatch, no devices,
    NVML library missing, a GPU that cannot be reached), the module fails with a message that says
    what is wrong and what to do.
  - With O(src) it reads captured outputs instead of running anything; each file's kind is told from
    its content, so any mix of C(-q -x) XML, C(--query-gpu) CSV (with a header, or headerless with the
    field list above), C(topo -m), C(-L) and the default C(nvidia-smi) table works. Files of one host
    are merged by GPU index; files that contradict each other (GPU count, UUID, PCI bus id, driver
    version) make the module fail.
  - With O(use_nvml=true) it reads the same facts through NVML (the C(pynvml) module of nvidia-ml-py)
    when that is importable on the target, and falls back to nvidia-smi otherwise.
  - The module changes nothing; C(changed) is always false.
author:
  - llmfleet developers
requirements:
  - The NVIDIA driver's C(nvidia-smi) on the target for live discovery (none for O(src)).
  - For O(use_nvml) the Python package nvidia-ml-py (module C(pynvml)) on the target's Python;
    without it the module warns and uses nvidia-smi.
options:
  src:
    description:
      - Paths on the target of captured nvidia-smi outputs of one host. When given, nothing is run.
      - Each file's kind is detected from its content, never from its name.
      - A file that only holds an "unsupported option" error (for example C(topo -m) on Windows) is
        reported as a warning when other files describe the GPUs; any other error output fails.
    type: list
    elements: path
  nvidia_smi_path:
    description:
      - The nvidia-smi executable to run.
      - When not set it is looked up on the PATH (and in C(/usr/bin), C(/usr/local/bin), C(/sbin));
        not finding it means a host without GPUs. When set, the file must exist.
    type: path
  use_nvml:
    description:
      - Read the facts through NVML (C(pynvml)) instead of running nvidia-smi.
      - Falls back to nvidia-smi, with a warning, when C(pynvml) is not importable or cannot load
        C(libnvidia-ml.so).
    type: bool
    default: false
attributes:
  check_mode:
    details:
      - Only read-only commands run, so check mode returns the same facts.
  idempotent:
    details:
      - Nothing is changed; C(changed) is always false.
extends_documentation_fragment:
  - llmfleet.serve.attributes
  - llmfleet.serve.attributes.facts
notes:
  - The C(interconnect) is C(nvlink) when C(topo -m) (or NVML) shows an C(NV#) link between every
    pair of GPUs, C(nvlink-partial) when only some pairs have one, C(pcie) when none has, C(none) with
    0 or 1 GPU, and C(unknown) with several GPUs but no link information.
  - C(nvswitch) is true when the GPUs report an NVSwitch fabric state (C(fabric.state) Completed, In
    Progress or Not Started, from XML, CSV or NVML), or when every GPU has more NVLinks in total to
    its peers than a GPU can have directly (18), for example NV18 between all 8 GPUs of an HGX H100.
    It is false for PCIe-only GPUs and for a direct full mesh (NV12 pair, 4 GPUs with NV6), and null
    when nothing tells (one GPU, partial mesh, no topology).
  - C(compute_capability_source) is C(nvidia-smi) (the C(compute_cap) query field), C(nvml), or
    C(name-table) when it comes from the module's documented table of well-known GPU names; it is
    null, with a null capability, when no source gives it and the name is not in the table.
  - The index of a GPU is the nvidia-smi index (enumeration order), the same in every output.
seealso:
  - name: nvidia-smi documentation
    description: Options and output fields of nvidia-smi.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Discover the GPUs of the host
  llmfleet.serve.gpu_facts:

- name: Refuse hosts without enough GPU memory
  ansible.builtin.assert:
    that:
      - ansible_facts.llmfleet_gpu.count >= 4
      - ansible_facts.llmfleet_gpu.gpus | map(attribute='memory_total_mib') | min >= 80000
    fail_msg: "{{ inventory_hostname }} has {{ ansible_facts.llmfleet_gpu.count }} GPUs"

- name: Read captured outputs of a host (kinds are told from the content)
  llmfleet.serve.gpu_facts:
    src:
      - /var/tmp/gpu-capture/q-x.xml
      - /var/tmp/gpu-capture/query-gpu.csv
      - /var/tmp/gpu-capture/topo.txt

- name: Use NVML through nvidia-ml-py where it is installed
  llmfleet.serve.gpu_facts:
    use_nvml: true

- name: Use an nvidia-smi outside the PATH
  llmfleet.serve.gpu_facts:
    nvidia_smi_path: /opt/nvidia/bin/nvidia-smi
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: success
  type: dict
  contains:
    llmfleet_gpu:
      description: The GPUs of the host.
      returned: success
      type: dict
      contains:
        count:
          description: Number of physical GPUs (0 on a host without nvidia-smi).
          type: int
          sample: 8
        gpus:
          description: One entry per GPU, in nvidia-smi index order.
          type: list
          elements: dict
          contains:
            index:
              description: The nvidia-smi index.
              type: int
            name:
              description: Product name as nvidia-smi prints it (the default table truncates long names with C(...)).
              type: str
            uuid:
              description: GPU UUID, null when only the table was read.
              type: str
            pci_bus_id:
              description: PCI bus id, normalised to C(DDDDDDDD:BB:DD.F) in upper case.
              type: str
            memory_total_mib:
              description: Total framebuffer memory in MiB; null when unknown (for example MIG-enabled GPUs in the table of R535).
              type: int
            compute_capability:
              description: CUDA compute capability as C(major.minor), or null.
              type: str
            compute_capability_source:
              description: Where the capability comes from.
              type: str
              choices: [nvidia-smi, nvml, name-table]
            mig_mode:
              description: Current MIG mode; null when the GPU does not support MIG or no source tells.
              type: str
              choices: [Enabled, Disabled]
          sample:
            - index: 0
              name: NVIDIA H100 80GB HBM3
              uuid: GPU-00000000-0000-0000-0000-000000000000
              pci_bus_id: "00000000:00:09.0"
              memory_total_mib: 81559
              compute_capability: "9.0"
              compute_capability_source: nvidia-smi
              mig_mode: Disabled
        mig_devices:
          description: MIG devices of all GPUs; fields a source does not give are null.
          type: list
          elements: dict
          contains:
            gpu_index:
              description: Index of the parent GPU.
              type: int
            device_index:
              description: The MIG device index on that GPU (C(Device N) in C(-L), C(MIG Dev) in the table).
              type: int
            gpu_instance_id:
              description: GPU instance id (GI).
              type: int
            compute_instance_id:
              description: Compute instance id (CI).
              type: int
            profile:
              description: Profile name from C(-L), for example C(3g.40gb) or C(1c.3g.71gb).
              type: str
            uuid:
              description: MIG device UUID (C(MIG-...)), from C(-L) or NVML.
              type: str
            memory_total_mib:
              description: Memory of the MIG device in MiB.
              type: int
          sample:
            - gpu_index: 0
              device_index: 1
              gpu_instance_id: 2
              compute_instance_id: 1
              profile: 2c.3g.71gb
              uuid: MIG-00000001-0000-0000-0000-000000000001
              memory_total_mib: 71424
        driver_version:
          description: NVIDIA driver version.
          type: str
          sample: 590.48.01
        cuda_version:
          description: Highest CUDA version the driver supports; null when no source prints it (C(-L), CSV, K80-era XML).
          type: str
          sample: "13.1"
        interconnect:
          description: How the GPUs are connected (see the notes).
          type: str
          choices: [nvlink, nvlink-partial, pcie, none, unknown]
          sample: nvlink
        nvswitch:
          description: Whether the GPUs sit on an NVSwitch fabric; null when nothing tells (see the notes).
          type: bool
          sample: true
        source:
          description: The kinds of output read, in the order read.
          type: list
          elements: str
          sample: [xml, csv, topo]
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_live import (
    collect_live,
    facts_from_nvml,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import GpuFacts, empty_facts
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import NvidiaSmiError


def argument_spec() -> dict[str, Any]:
    return {
        "src": {"type": "list", "elements": "path"},
        "nvidia_smi_path": {"type": "path"},
        "use_nvml": {"type": "bool", "default": False},
    }


def read_sources(module: AnsibleModule, paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read())
        except OSError as exc:
            module.fail_json(msg=f"src: cannot read {path}: {exc.strerror}", changed=False)
    return texts


def from_nvml(module: AnsibleModule) -> GpuFacts | None:
    """Facts through pynvml, or None (with a warning) when NVML is not usable here."""
    try:
        import pynvml
    except ImportError:
        module.warn(
            "use_nvml: pynvml (nvidia-ml-py) is not importable on the target; used nvidia-smi instead"
        )
        return None
    try:
        return facts_from_nvml(pynvml)
    except NvidiaSmiError as exc:
        if exc.reason == "nvml-library-missing":
            module.warn(f"use_nvml: {exc.msg} Used nvidia-smi instead.")
            return None
        raise


def nvidia_smi_binary(module: AnsibleModule) -> str | None:
    path = module.params["nvidia_smi_path"]
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            module.fail_json(msg=f"nvidia_smi_path: {path} is not an executable file", changed=False)
        return path
    return module.get_bin_path("nvidia-smi", opt_dirs=["/usr/bin", "/usr/local/bin", "/sbin"])


def gather(module: AnsibleModule) -> GpuFacts:
    if module.params["src"]:
        return facts_from_texts(read_sources(module, module.params["src"]))
    if module.params["use_nvml"]:
        facts = from_nvml(module)
        if facts is not None:
            return facts
    binary = nvidia_smi_binary(module)
    if binary is None:
        return empty_facts()

    def run(argv: list[str]) -> tuple[int, str, str]:
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    return collect_live(run, binary)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        facts = gather(module)
    except NvidiaSmiError as exc:
        module.fail_json(msg=exc.msg, reason=exc.reason, changed=False)
    for warning in facts.warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"llmfleet_gpu": facts.as_dict()})


if __name__ == "__main__":
    main()
