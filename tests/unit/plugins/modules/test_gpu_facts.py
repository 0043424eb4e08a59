# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the gpu_facts module: main() against a fake nvidia-smi that replays a real capture."""

from __future__ import annotations

import os
import shlex
import stat
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kimi.vllm.plugins.module_utils._nvsmi import KINDS
from ansible_collections.kimi.vllm.plugins.modules import gpu_facts

FIXTURES = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "nvidia-smi"
H200_XML = FIXTURES / "h200-ubuntu2404-580" / "h200-q.xml"
A100_MIG_XML = FIXTURES / "public" / "a100-sxm4-535.54.03-mig-q-x.xml"
DRIVER_MISMATCH = FIXTURES / "public" / "err-driver-mismatch-570.124.txt"


class ModuleExit(Exception):  # noqa: N818 - it carries a result, not an error
    """Raised instead of exit_json, carrying the module's result."""

    def __init__(self, result: dict) -> None:
        super().__init__(result)
        self.result = result


class ModuleFail(Exception):  # noqa: N818 - named after fail_json
    """Raised instead of fail_json, carrying the module's result."""

    def __init__(self, result: dict) -> None:
        super().__init__(result)
        self.result = result


def _exit_json(_module, **result):
    raise ModuleExit(result)


def _fail_json(_module, **result):
    raise ModuleFail(dict(result, failed=True))


def run_module(args: dict) -> dict:
    """Run gpu_facts.main() with ``args`` and return what it passed to exit_json or fail_json."""
    with patch_module_args(args), mock.patch.multiple(AnsibleModule, exit_json=_exit_json, fail_json=_fail_json):
        try:
            gpu_facts.main()
        except (ModuleExit, ModuleFail) as exc:
            return exc.result
    pytest.fail("the module returned without exit_json or fail_json")
    return {}


def fake_nvidia_smi(
    directory: Path,
    *,
    stdout_file: Path | None = None,
    stderr: str = "",
    rc: int = 0,
    sleep: int = 0,
    name: str = "nvidia-smi",
) -> Path:
    """Write an executable stand-in for nvidia-smi that replays a capture and exits with ``rc``."""
    lines = [
        "#!/bin/sh",
        '[ "$*" = "-q -x" ] || { echo "unexpected arguments: $*" >&2; exit 2; }',
    ]
    if sleep:
        # Not exec: a child holding the pipes shows that the kill reaches the whole process group.
        lines.append(f"sleep {sleep}")
    if stdout_file is not None:
        lines.append(f"cat {shlex.quote(str(stdout_file))}")
    if stderr:
        lines.append(f"printf '%s\\n' {shlex.quote(stderr)} >&2")
    lines.append(f"exit {rc}")
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def nvidia_facts(result: dict) -> dict:
    """Return ansible_facts.nvidia after checking what every run returns."""
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    return result["ansible_facts"]["nvidia"]


def test_real_h200_capture(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=H200_XML)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["ok"] is True
    assert facts["error"] is None
    assert facts["command"] == [str(script), "-q", "-x"]
    assert facts["rc"] == 0
    assert (facts["driver_version"], facts["driver_branch"], facts["cuda_version"]) == ("580.159.04", "580", "13.0")
    assert (facts["attached_gpus"], facts["gpu_count"]) == (1, 1)
    gpu = facts["gpus"][0]
    assert (gpu["name"], gpu["memory_total_mib"], gpu["persistence_mode"]) == ("NVIDIA H200", 143771, "Enabled")
    assert (gpu["mig_mode"], gpu["temperature_c"], gpu["fabric_state"]) == ("Disabled", 38, None)


def test_check_mode_gathers_the_same_facts(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=H200_XML)
    normal = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    checked = nvidia_facts(run_module({"nvidia_smi": str(script), "_ansible_check_mode": True}))
    assert checked == normal


def test_real_a100_mig_capture(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=A100_MIG_XML)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["ok"] is True
    assert facts["gpus"][0]["mig_mode"] == "Enabled"
    assert facts["warnings"] == ["nvidia-smi reports 4 attached GPUs but printed 1 GPU blocks"]


def test_driver_mismatch_is_a_fact_not_a_failure(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=DRIVER_MISMATCH, rc=18)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["ok"] is False
    assert facts["rc"] == 18
    assert facts["error"]["kind"] == "driver_mismatch"
    assert "Driver/library version mismatch" in facts["error"]["message"]
    assert facts["gpus"] == []


def test_driver_not_loaded_on_stderr(tmp_path):
    # nvidia-smi's documented banner, not a capture.
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    script = fake_nvidia_smi(tmp_path, stderr=message, rc=9)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "driver_not_loaded"
    assert facts["error"]["message"] == f"nvidia-smi exited with rc 9: {message}"


def test_missing_path(tmp_path):
    missing = tmp_path / "no-such-nvidia-smi"
    facts = nvidia_facts(run_module({"nvidia_smi": str(missing)}))
    assert facts["ok"] is False
    assert facts["rc"] is None
    assert facts["command"] == [str(missing), "-q", "-x"]
    assert facts["error"]["kind"] == "not_installed"
    assert facts["error"]["message"] == f"nvidia-smi was not found: {missing}: no executable file there"


def test_file_that_is_not_executable(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=H200_XML)
    script.chmod(0o644)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["error"]["kind"] == "not_installed"


def test_name_not_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    facts = nvidia_facts(run_module({"nvidia_smi": "nvidia-smi-kimi-test-absent"}))
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "not_installed"
    assert facts["command"] == ["nvidia-smi-kimi-test-absent", "-q", "-x"]
    assert "not on PATH, /usr/bin or /usr/local/nvidia/bin" in facts["error"]["message"]


@pytest.mark.skipif(
    any(Path(directory, "nvidia-smi").exists() for directory in gpu_facts.SEARCH_DIRS),
    reason="a real nvidia-smi in the search directories comes before PATH",
)
def test_default_name_found_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = fake_nvidia_smi(bin_dir, stdout_file=H200_XML)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/bin")  # /bin for the script's cat
    facts = nvidia_facts(run_module({}))
    assert facts["ok"] is True
    assert facts["command"] == [str(script), "-q", "-x"]


def test_timeout_kills_a_hung_nvidia_smi(tmp_path):
    pid_file = tmp_path / "pid"
    script = tmp_path / "nvidia-smi"
    # A hung nvidia-smi that leaves a child behind, as wrappers do: both must be gone after the timeout.
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    script.chmod(0o755)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script), "timeout": 1}))
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        for _attempt in range(50):  # the kill is sent; give the kernel a moment to reap
            os.kill(child, 0)
            time.sleep(0.1)
    assert facts["ok"] is False
    assert facts["rc"] is None
    assert facts["error"]["kind"] == "unknown"
    assert facts["error"]["message"] == "nvidia-smi did not answer within 1 s"
    assert "dmesg -T | grep -i xid" in facts["error"]["remedy"]
    assert facts["gpus"] == []


def test_garbage_with_rc_0(tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault\n", encoding="utf-8")
    script = fake_nvidia_smi(tmp_path, stdout_file=garbage)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "unknown"
    assert facts["error"]["message"] == (
        "nvidia-smi -q -x exited 0 but the output holds no nvidia_smi_log XML document: Segmentation fault"
    )


@pytest.mark.parametrize("timeout", [0, -5])
def test_bad_timeout_fails_the_task(timeout):
    result = run_module({"timeout": timeout})
    assert result["failed"] is True
    assert result["msg"] == f"timeout must be at least 1 second, got {timeout}"


def test_unknown_option_fails_the_task():
    result = run_module({"nvidia_smi_path": "/usr/bin/nvidia-smi"})
    assert result["failed"] is True
    assert "nvidia_smi_path" in result["msg"]


def test_return_documents_every_fact_key(tmp_path):
    script = fake_nvidia_smi(tmp_path, stdout_file=H200_XML)
    facts = nvidia_facts(run_module({"nvidia_smi": str(script)}))
    documented = yaml.safe_load(gpu_facts.RETURN)["ansible_facts"]["contains"]["nvidia"]["contains"]
    assert set(documented) == set(facts)
    assert set(documented["gpus"]["contains"]) == set(facts["gpus"][0])
    assert set(documented["error"]["contains"]["kind"]["choices"]) == set(KINDS)
