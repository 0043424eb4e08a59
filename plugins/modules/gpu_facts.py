#!/usr/bin/python
#
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow DOCUMENTATION, EXAMPLES and RETURN, as ansible-test's validate-modules requires
# (import-before-documentation); E402 says the opposite.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts

short_description: Gather NVIDIA GPU and driver facts from C(nvidia-smi -q -x)

version_added: 0.1.0

description:
  - Runs C(nvidia-smi -q -x) on the target and sets C(ansible_facts.nvidia) with the driver version, the newest CUDA
    version the driver supports, and one entry per GPU (name, UUID, PCI bus id, memory, persistence, MIG, ECC, row
    remapping, fabric state, temperature).
  - A broken driver is a fact, not a task failure. When nvidia-smi is missing, cannot talk to the driver, reports a
    driver/library mismatch, finds no GPU, loses a GPU, hangs, or prints something that is not its XML,
    C(ansible_facts.nvidia.ok) is V(false) and C(ansible_facts.nvidia.error) says what happened and which command
    fixes it. The task itself fails only for invalid module arguments.
  - Reads the XML rather than the table because driver R610 renamed the table's C(Driver Version) and C(CUDA Version)
    lines.

options:
  nvidia_smi:
    description:
      - The nvidia-smi executable.
      - A name without a slash is looked up in C(/usr/bin) and C(/usr/local/nvidia/bin), then on E(PATH).
    type: path
    default: nvidia-smi
  timeout:
    description:
      - Seconds to wait for nvidia-smi before killing it and every process it started (it runs under coreutils'
        C(timeout -s KILL)).
      - nvidia-smi can hang for minutes when a GPU's GSP firmware stops answering (Xid 119); such a run is reported
        as C(ansible_facts.nvidia.error.kind=unknown).
    type: int
    default: 60

extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - ansible.builtin.action_common_attributes.actiongroups

attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so it gathers the same facts in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  idempotent:
    description: Running the module twice with the same arguments changes nothing and reports the same state.
    support: full
  action_group:
    membership:
      - kimi.vllm.vllm
  platform:
    support: full
    platforms: posix

requirements:
  - The NVIDIA driver's C(nvidia-smi) on the target, and coreutils' C(timeout) (on every Ubuntu). No Python library
    beyond the standard library.

notes:
  - C(ansible_facts.nvidia.gpus[].index) is the position of the GPU in nvidia-smi's output, which is nvidia-smi's
    own index (C(nvidia-smi -i)) and the default CUDA order with C(CUDA_DEVICE_ORDER=PCI_BUS_ID). It is not the
    C(/dev/nvidiaN) minor number, which can differ.

seealso:
  - name: nvidia-smi documentation
    description: Exit codes and fields of nvidia-smi.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html

author:
  - kimi.vllm developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Gather GPU facts
  kimi.vllm.gpu_facts:

- name: Stop when the driver is not usable, with the fix
  ansible.builtin.assert:
    that: ansible_facts.nvidia.ok
    fail_msg: >-
      {{ ansible_facts.nvidia.error.kind }}: {{ ansible_facts.nvidia.error.message }}
      Fix: {{ ansible_facts.nvidia.error.remedy }}

- name: Expect eight GPUs with the fabric ready
  ansible.builtin.assert:
    that:
      - ansible_facts.nvidia.gpu_count == 8
      - ansible_facts.nvidia.gpus | rejectattr('fabric_state', 'equalto', 'Completed') | list | length == 0
    fail_msg: >-
      Found {{ ansible_facts.nvidia.gpu_count }} GPUs, fabric states
      {{ ansible_facts.nvidia.gpus | map(attribute='fabric_state') | list }}

- name: Use a driver container's nvidia-smi and give up after 20 seconds
  kimi.vllm.gpu_facts:
    nvidia_smi: /run/nvidia/driver/usr/bin/nvidia-smi
    timeout: 20
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    nvidia:
      description: What nvidia-smi reported. Every key is always present.
      returned: always
      type: dict
      contains:
        ok:
          description:
            - V(true) when nvidia-smi exited 0 with a complete XML document and no error text.
            - When V(false), RV(ansible_facts.nvidia.error) says why and the other keys hold whatever could be read.
          type: bool
          returned: always
          sample: true
        error:
          description: Why the facts cannot be trusted; V(null) when RV(ansible_facts.nvidia.ok) is V(true).
          type: dict
          returned: always
          sample:
            kind: driver_mismatch
            message: >-
              nvidia-smi exited with rc 18: Failed to initialize NVML: Driver/library version mismatch;
              NVML library version: 570.124
            remedy: >-
              The loaded kernel module and the NVML library differ, usually after a driver upgrade without a
              reboot. Confirm with `cat /proc/driver/nvidia/version`, then `sudo reboot` (or unload and reload the
              nvidia kernel modules when no process uses the GPUs).
          contains:
            kind:
              description: The class of failure.
              type: str
              returned: when not ok
              choices:
                - not_installed
                - driver_not_loaded
                - driver_mismatch
                - no_devices
                - gpu_lost
                - permission
                - unknown
              sample: driver_mismatch
            message:
              description: What failed, quoting the first lines nvidia-smi printed.
              type: str
              returned: when not ok
              sample: "nvidia-smi exited with rc 18: Failed to initialize NVML: Driver/library version mismatch"
            remedy:
              description: The command an operator runs next.
              type: str
              returned: when not ok
              sample: Confirm with `cat /proc/driver/nvidia/version`, then `sudo reboot`.
        command:
          description: The argv that was run (or would have been, when nvidia-smi was not found).
          type: list
          elements: str
          returned: always
          sample: [/usr/bin/nvidia-smi, -q, -x]
        rc:
          description: nvidia-smi's exit status; V(null) when it was not found or timed out.
          type: int
          returned: always
          sample: 0
        driver_version:
          description:
            - The driver version (C(<driver_version>), or C(<kmd_version>) on drivers that use the R610 name).
            - V(null) when unknown.
          type: str
          returned: always
          sample: "580.159.04"
        driver_branch:
          description: The driver's major version, for example V(570); V(null) when unknown.
          type: str
          returned: always
          sample: "580"
        cuda_version:
          description: The newest CUDA version the driver supports (not an installed toolkit); V(null) when unknown.
          type: str
          returned: always
          sample: "13.0"
        attached_gpus:
          description: The GPU count nvidia-smi reports in C(<attached_gpus>); V(null) when it reported none.
          type: int
          returned: always
          sample: 8
        gpu_count:
          description: The number of GPU blocks actually parsed, that is the length of RV(ansible_facts.nvidia.gpus).
          type: int
          returned: always
          sample: 8
        warnings:
          description:
            - Things worth a look that do not make the facts wrong, for example fewer GPU blocks than attached GPUs.
          type: list
          elements: str
          returned: always
          sample: ["nvidia-smi reports 8 attached GPUs but printed 7 GPU blocks"]
        gpus:
          description:
            - One entry per C(<gpu>) element, in document order.
            - Values nvidia-smi prints as N/A, Not Supported or deprecated are V(null).
          type: list
          elements: dict
          returned: always
          contains:
            index:
              description: 0-based position in nvidia-smi's output, which is nvidia-smi's GPU index.
              type: int
              sample: 0
            name:
              description: Product name.
              type: str
              sample: NVIDIA H200
            uuid:
              description: GPU UUID.
              type: str
              sample: GPU-81d71e82-744d-cb38-094e-b5437ca1a564
            pci_bus_id:
              description: PCI bus id (the C(id) attribute of the C(<gpu>) element).
              type: str
              sample: "00000000:00:06.0"
            architecture:
              description: Product architecture, for example V(Hopper) or V(Blackwell).
              type: str
              sample: Hopper
            memory_total_mib:
              description: Total framebuffer memory in MiB.
              type: int
              sample: 143771
            persistence_mode:
              description: V(Enabled), V(Disabled) or V(null).
              type: str
              sample: Enabled
            mig_mode:
              description: Current MIG mode, V(Enabled), V(Disabled) or V(null) when the GPU has no MIG.
              type: str
              sample: Disabled
            mig_mode_pending:
              description: MIG mode after the next GPU reset.
              type: str
              sample: Disabled
            ecc_mode:
              description: Current ECC mode, or V(null).
              type: str
              sample: Enabled
            ecc_mode_pending:
              description: ECC mode after the next reboot.
              type: str
              sample: Enabled
            ecc_volatile_uncorrectable:
              description: Sum of the volatile (since driver load) uncorrectable ECC counters; V(null) when none
                is reported.
              type: int
              sample: 0
            retired_pages_pending:
              description: Whether a page retirement waits for a reboot (older GPUs); V(null) when not supported.
              type: bool
              sample: false
            remapped_rows_pending:
              description: Whether a row remap waits for a GPU reset; V(null) when not supported.
              type: bool
              sample: false
            remapped_rows_failure:
              description: Whether a row remap failed (the GPU needs service); V(null) when not supported.
              type: bool
              sample: false
            fabric_state:
              description:
                - NVLink fabric state, for example V(Completed) or V(In Progress); V(null) without a fabric.
                - V(In Progress) on HGX usually means nvidia-fabricmanager or NVLSM is not running.
              type: str
              sample: Completed
            fabric_status:
              description: NVLink fabric status, for example V(Success); V(null) without a fabric.
              type: str
              sample: Success
            temperature_c:
              description: GPU temperature in degrees Celsius.
              type: int
              sample: 38
"""

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi.vllm.plugins.module_utils._nvsmi import facts_from_run
from ansible_collections.kimi.vllm.plugins.module_utils._process import run_with_timeout

SEARCH_DIRS = ["/usr/bin", "/usr/local/nvidia/bin"]


class NvidiaSmi:
    """Find and run nvidia-smi once; everything it prints is interpreted by module_utils._nvsmi."""

    def __init__(self, module: AnsibleModule) -> None:
        """Take the options from ``module``."""
        self.module = module
        self.name = module.params["nvidia_smi"]
        self.timeout = module.params["timeout"]

    def find(self) -> str | None:
        """Return the executable's path, or None when there is none."""
        if "/" in self.name:
            return self.name if Path(self.name).is_file() and os.access(self.name, os.X_OK) else None
        return self.module.get_bin_path(self.name, opt_dirs=SEARCH_DIRS)

    def gather(self) -> dict:
        """Run ``nvidia-smi -q -x`` and return ``ansible_facts.nvidia``."""
        path = self.find()
        argv = [path or self.name, "-q", "-x"]
        if path is None:
            where = "no executable file there" if "/" in self.name else "not on PATH, " + " or ".join(SEARCH_DIRS)
            return facts_from_run(None, "", f"{self.name}: {where}", not_found=True, argv=argv)
        result = run_with_timeout(self.module, argv, self.timeout, environ_update={"LC_ALL": "C"})
        if result.start_error:  # vanished or not executable since find()
            return facts_from_run(None, "", f"{argv[0]}: {result.start_error}", not_found=result.not_found, argv=argv)
        return facts_from_run(
            result.rc,
            result.stdout,
            result.stderr,
            timed_out=result.timed_out,
            argv=argv,
            timeout=self.timeout,
        )


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "path", "default": "nvidia-smi"},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    if module.params["timeout"] < 1:
        module.fail_json(msg=f"timeout must be at least 1 second, got {module.params['timeout']}")
    module.exit_json(changed=False, ansible_facts={"nvidia": NvidiaSmi(module).gather()})


if __name__ == "__main__":
    main()
