#!/usr/bin/python
"""Ansible module: list the PCI devices of a host from sysfs, with its NVIDIA GPUs and NVSwitches."""
# Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pci_devices
short_description: List PCI devices from sysfs, with NVIDIA GPUs and NVSwitches picked out
version_added: 0.1.0
description:
  - Reads C(vendor), C(device) and C(class) of every entry under C(<sysfs_root>/bus/pci/devices) and
    returns them, plus the NVIDIA GPUs (vendor C(0x10de), base class C(0x03) - VGA C(0x0300) or 3D
    controller C(0x0302)) and the NVSwitches (vendor C(0x10de), bridge class C(0x0680)) among them.
  - Works before any NVIDIA driver or C(nvidia-smi) is installed, so a role can decide from real
    hardware whether there is anything to install, which kernel module flavour fits, and whether the
    host needs Fabric Manager.
  - A host without C(<sysfs_root>/bus/pci/devices) has no PCI devices; the module succeeds with empty
    lists. An entry whose files cannot be parsed makes the module fail, naming the file and its value.
  - The module changes nothing; C(changed) is always false.
author:
  - llmfleet developers
options:
  sysfs_root:
    description:
      - Where sysfs is mounted. Change it only to read a recorded copy of another machine's tree.
    type: path
    default: /sys
attributes:
  check_mode:
    details:
      - Only reads files, so check mode returns the same result.
  idempotent:
    details:
      - Nothing is changed; C(changed) is always false.
extends_documentation_fragment:
  - llmfleet.serve.attributes
notes:
  - NVSwitches of HGX B200/B300 baseboards sit behind the baseboard's own bridges and are not PCI
    devices of the host, so C(nvswitch_count) is 0 there.
seealso:
  - name: Linux sysfs PCI documentation
    description: The files of C(/sys/bus/pci/devices/*).
    link: https://www.kernel.org/doc/html/latest/PCI/sysfs-pci.html
"""

EXAMPLES = r"""
- name: Read the PCI devices
  llmfleet.serve.pci_devices:
  register: pci

- name: Say when there is nothing NVIDIA here
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} has no NVIDIA GPU"
  when: pci.nvidia_gpu_count == 0

- name: Read a recorded sysfs tree instead of the live one
  llmfleet.serve.pci_devices:
    sysfs_root: /srv/recorded-sysfs
"""

RETURN = r"""
devices:
  description: Every PCI device, ordered by address.
  returned: success
  type: list
  elements: dict
  contains:
    address:
      description: PCI address (domain:bus:device.function).
      type: str
    vendor:
      description: Vendor id, lower-case hexadecimal.
      type: str
    device:
      description: Device id, lower-case hexadecimal.
      type: str
    class:
      description: Class code (base class, subclass, programming interface).
      type: str
    kind:
      description: C(nvidia-gpu), C(nvswitch) or C(other).
      type: str
  sample:
    - {address: "0000:00:00.0", vendor: "0x8086", device: "0x1237", class: "0x060000", kind: other}
    - {address: "0000:18:00.0", vendor: "0x10de", device: "0x2330", class: "0x030200", kind: nvidia-gpu}
    - {address: "0000:05:00.0", vendor: "0x10de", device: "0x22a3", class: "0x068000", kind: nvswitch}
nvidia_gpus:
  description: The NVIDIA GPUs (same fields as RV(devices)).
  returned: success
  type: list
  elements: dict
  sample:
    - {address: "0000:18:00.0", vendor: "0x10de", device: "0x2330", class: "0x030200", kind: nvidia-gpu}
nvswitches:
  description: The NVIDIA NVSwitches (same fields as RV(devices)).
  returned: success
  type: list
  elements: dict
  sample:
    - {address: "0000:05:00.0", vendor: "0x10de", device: "0x22a3", class: "0x068000", kind: nvswitch}
nvidia_gpu_count:
  description: Number of NVIDIA GPUs.
  returned: success
  type: int
  sample: 8
nvswitch_count:
  description: Number of NVIDIA NVSwitches.
  returned: success
  type: int
  sample: 4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils import pci


def main() -> None:
    module = AnsibleModule(
        argument_spec={"sysfs_root": {"type": "path", "default": "/sys"}},
        supports_check_mode=True,
    )
    try:
        devices = pci.read_sysfs(module.params["sysfs_root"])
    except (pci.PciError, OSError) as exc:
        module.fail_json(msg=f"cannot read the PCI devices: {exc}", changed=False)
    module.exit_json(changed=False, **pci.summarize(devices))


if __name__ == "__main__":
    main()
