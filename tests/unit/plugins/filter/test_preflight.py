# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preflight verdict, judged from observations built on real captures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.kimi.vllm.plugins.filter import preflight as pf
from ansible_collections.kimi.vllm.plugins.module_utils import _nvsmi

REPO = Path(__file__).resolve().parents[4]
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
PROFILES = REPO / "tests" / "sim" / "profiles"
DEFAULTS = yaml.safe_load((REPO / "roles" / "preflight" / "defaults" / "main.yml").read_text())
GB = 1000**3


def nvidia_from(path: Path) -> dict:
    """What gpu_facts reports for a capture replayed with rc 0."""
    return _nvsmi.facts_from_run(0, path.read_text(), "")


def observed(nvidia: dict, **overrides) -> dict:
    """A fit B200 node's observations, with ``nvidia`` and any part replaced."""
    obs = {
        "os": {"distribution": "Ubuntu", "version": "24.04"},
        "nvidia": nvidia,
        "fabric_manager": {"state": "running"},
        "kernel_modules": {"error": "", "loaded": ["nvidia", "nvidia_uvm", "ib_umad", "ib_core"]},
        "docker": {
            "ok": True,
            "installed": True,
            "version": "28.2.2",
            "root_dir": "/var/lib/docker",
            "runtimes": ["io.containerd.runc.v2", "nvidia", "runc"],
            "cdi_spec_dirs": [],
        },
        "cdi_specs": [],
        "mounts": [
            {"mount": "/", "size_available": 800 * GB},
            {"mount": "/var/lib/docker", "size_available": 100 * GB},
        ],
        "model_cache": {"path": "/root/.cache/huggingface", "present_bytes": 0},
        "image_present": False,
        "port": {"in_use": False, "ours": False},
    }
    obs.update(overrides)
    return obs


@pytest.fixture(scope="module")
def b200():
    """The synthetic fit B200 node's facts (tests/sim/profiles, derived from real captures)."""
    return nvidia_from(PROFILES / "b200x8-570-fit" / "q-x.xml")


@pytest.fixture(scope="module")
def h200():
    """The real H200 host's facts."""
    return nvidia_from(FIXTURES / "h200-ubuntu2404-580" / "h200-q.xml")


def settings(**overrides) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(overrides)
    return cfg


def rows_by_check(result: dict) -> dict:
    return {row["check"]: row for row in result["rows"]}


def test_fit_b200_node_passes_every_check(b200):
    result = pf.preflight_evaluate(observed(b200), settings())
    assert result["fit"], result["failed"]
    assert result["failed"] == []
    statuses = {row["check"]: row["status"] for row in result["rows"]}
    assert statuses == dict.fromkeys(pf.CHECKS, "pass")


def test_rows_follow_check_order(b200):
    result = pf.preflight_evaluate(observed(b200), settings())
    assert [row["check"] for row in result["rows"]] == list(pf.CHECKS)


def test_real_h200_host_with_defaults_fails_on_gpu_rows(h200):
    obs = observed(h200, docker={"ok": False, "installed": False, "error": "connection refused"})
    result = pf.preflight_evaluate(obs, settings())
    assert result["failed"] == ["driver", "cuda", "gpu_count", "gpu_model", "docker"]
    rows = rows_by_check(result)
    assert rows["driver"]["found"] == "580.159.04 (branch 580)"
    assert rows["cuda"]["found"] == "driver supports CUDA 13.0"
    assert rows["gpu_count"]["found"] == "1 GPU"
    assert rows["gpu_model"]["found"] == "NVIDIA H200"
    assert rows["docker"]["found"].startswith("not installed")
    # No NVSwitch fabric on a single H200: the fabric checks do not apply.
    assert rows["fabric"]["status"] == "skip"
    assert rows["fabric_manager"]["status"] == "skip"
    assert rows["ib_umad"]["status"] == "skip"
    # Without docker, the checks that need it are skipped, not failed.
    assert rows["nvidia_runtime"]["status"] == "skip"
    assert rows["disk_docker_root"]["status"] == "skip"


def test_real_h200_host_with_overrides_passes_gpu_rows(h200):
    cfg = settings(
        preflight_driver_branches=["580"],
        preflight_cuda_versions=["13.0"],
        preflight_gpu_count=1,
        preflight_gpu_model="H200",
    )
    result = pf.preflight_evaluate(observed(h200), cfg)
    assert result["fit"], result["failed"]


def test_broken_driver_fails_one_row_and_skips_gpu_rows():
    text = (FIXTURES / "public" / "err-driver-mismatch-570.124.txt").read_text()
    nvidia = _nvsmi.facts_from_run(18, text, "")
    result = pf.preflight_evaluate(observed(nvidia), settings())
    assert result["failed"] == ["driver"]
    row = rows_by_check(result)["driver"]
    assert "Driver/library version mismatch" in row["found"]
    assert "reboot" in row["fix"]
    for name in pf.GPU_CHECKS:
        assert rows_by_check(result)[name]["status"] == "skip"


@pytest.mark.parametrize(
    ("edit", "check", "found"),
    [
        (lambda g: g.update(mig_mode="Enabled"), "mig", "MIG enabled on GPU"),
        (lambda g: g.update(mig_mode_pending="Enabled"), "mig", "MIG enabled on GPU"),
        (lambda g: g.update(fabric_state="In Progress", fabric_status=None), "fabric", "In Progress"),
        (lambda g: g.update(remapped_rows_pending=True), "gpu_health", "row remap pending"),
        (lambda g: g.update(remapped_rows_failure=True), "gpu_health", "row remapping failed"),
        (lambda g: g.update(retired_pages_pending=True), "gpu_health", "page retirement pending"),
        (lambda g: g.update(ecc_volatile_uncorrectable=3), "gpu_health", "3 volatile uncorrectable"),
        (lambda g: g.update(memory_total_mib=40960), "gpu_memory", "40960 MiB"),
        (lambda g: g.update(name="NVIDIA H100 80GB HBM3"), "gpu_model", "H100"),
    ],
)
def test_one_bad_gpu_fails_exactly_its_row(b200, edit, check, found):
    nvidia = copy.deepcopy(b200)
    edit(nvidia["gpus"][3])
    result = pf.preflight_evaluate(observed(nvidia), settings())
    assert result["failed"] == [check]
    assert found in rows_by_check(result)[check]["found"]
    assert rows_by_check(result)[check]["fix"]


def test_persistence_off_warns_by_default_and_fails_when_asked(b200):
    nvidia = copy.deepcopy(b200)
    nvidia["gpus"][0]["persistence_mode"] = "Disabled"
    result = pf.preflight_evaluate(observed(nvidia), settings())
    assert result["fit"]
    assert result["warned"] == ["persistence"]
    result = pf.preflight_evaluate(observed(nvidia), settings(preflight_severity={"persistence": "fail"}))
    assert result["failed"] == ["persistence"]


def test_seven_gpus(b200):
    nvidia = copy.deepcopy(b200)
    nvidia["gpus"] = nvidia["gpus"][:7]
    nvidia["gpu_count"] = 7
    result = pf.preflight_evaluate(observed(nvidia), settings())
    assert result["failed"] == ["gpu_count"]
    assert rows_by_check(result)["gpu_count"]["found"] == "7 GPUs (nvidia-smi says 8 attached)"


def test_fabric_manager_and_ib_umad(b200):
    obs = observed(b200, fabric_manager={"state": "stopped"}, kernel_modules={"error": "", "loaded": ["nvidia"]})
    result = pf.preflight_evaluate(obs, settings())
    assert result["failed"] == ["fabric_manager", "ib_umad"]
    assert "nvidia-fabricmanager-570" in rows_by_check(result)["fabric_manager"]["fix"]
    assert "modprobe ib_umad" in rows_by_check(result)["ib_umad"]["fix"]


def test_fabric_can_be_forced_off(b200):
    nvidia = copy.deepcopy(b200)
    for gpu in nvidia["gpus"]:
        gpu["fabric_state"] = "In Progress"
    result = pf.preflight_evaluate(observed(nvidia), settings(preflight_fabric_required="never"))
    assert result["fit"]
    assert rows_by_check(result)["fabric"]["status"] == "skip"


def test_docker_installed_but_down(b200):
    obs = observed(b200, docker={"ok": False, "installed": True, "error": "Error while fetching server API version"})
    result = pf.preflight_evaluate(obs, settings())
    assert result["failed"] == ["docker"]
    row = rows_by_check(result)["docker"]
    assert row["found"].startswith("installed, but the daemon does not answer")
    assert "systemctl enable --now docker" in row["fix"]


def test_nvidia_runtime_or_cdi(b200):
    docker = dict(observed(b200)["docker"], runtimes=["runc"])
    result = pf.preflight_evaluate(observed(b200, docker=docker), settings())
    assert result["failed"] == ["nvidia_runtime"]
    assert "nvidia-ctk runtime configure" in rows_by_check(result)["nvidia_runtime"]["fix"]
    docker["cdi_spec_dirs"] = ["/etc/cdi", "/var/run/cdi"]
    result = pf.preflight_evaluate(observed(b200, docker=docker, cdi_specs=["/etc/cdi/nvidia.yaml"]), settings())
    assert result["fit"]
    # CDI spec files without a daemon that reads them are not enough.
    docker["cdi_spec_dirs"] = []
    result = pf.preflight_evaluate(observed(b200, docker=docker, cdi_specs=["/etc/cdi/nvidia.yaml"]), settings())
    assert result["failed"] == ["nvidia_runtime"]


def test_model_cache_disk_counts_weights_already_there(b200):
    mounts = [{"mount": "/", "size_available": 1000 * GB}, {"mount": "/data", "size_available": 300 * GB}]
    cache = {"path": "/data/hf", "present_bytes": 0}
    result = pf.preflight_evaluate(observed(b200, mounts=mounts, model_cache=cache), settings())
    assert result["failed"] == ["disk_model_cache"]
    row = rows_by_check(result)["disk_model_cache"]
    assert row["found"] == "300.0 GB free on /data (holds /data/hf)"
    assert row["expected"].startswith(">= 645.0 GB free")
    # A re-run on a node that already holds the weights needs only the margin.
    cache["present_bytes"] = 595 * GB
    result = pf.preflight_evaluate(observed(b200, mounts=mounts, model_cache=cache), settings())
    assert "disk_model_cache" not in result["failed"]


def test_docker_root_needs_no_room_for_a_pulled_image(b200):
    mounts = [{"mount": "/", "size_available": 800 * GB}, {"mount": "/var/lib/docker", "size_available": 20 * GB}]
    result = pf.preflight_evaluate(observed(b200, mounts=mounts), settings())
    assert result["failed"] == ["disk_docker_root"]
    result = pf.preflight_evaluate(observed(b200, mounts=mounts, image_present=True), settings())
    assert result["fit"]


def test_port(b200):
    busy = observed(b200, port={"in_use": True, "ours": False})
    result = pf.preflight_evaluate(busy, settings())
    assert result["failed"] == ["port"]
    assert "ss -ltnp" in rows_by_check(result)["port"]["fix"]
    ours = observed(b200, port={"in_use": True, "ours": True})
    assert pf.preflight_evaluate(ours, settings())["fit"]


def test_os(b200):
    obs = observed(b200, os={"distribution": "Ubuntu", "version": "22.04"})
    result = pf.preflight_evaluate(obs, settings())
    assert result["failed"] == ["os"]
    obs = observed(b200, os={"distribution": "Ubuntu", "version": "24.04.3"})
    assert pf.preflight_evaluate(obs, settings())["fit"]
    obs = observed(b200, os={"distribution": "Debian", "version": "13.2"})
    assert pf.preflight_evaluate(obs, settings())["failed"] == ["os"]
    assert pf.preflight_evaluate(obs, settings(preflight_os_supported=["Debian 13"]))["fit"]
    obs = observed(b200, os={"distribution": "Debian", "version": "12.11"})
    assert pf.preflight_evaluate(obs, settings(preflight_os_supported=["Debian 13", "Debian 1"]))["failed"] == ["os"]


def test_skip_by_name(b200):
    obs = observed(b200, os={"distribution": "Rocky", "version": "9.4"})
    result = pf.preflight_evaluate(obs, settings(preflight_skip=["os"]))
    assert result["fit"]
    assert rows_by_check(result)["os"]["status"] == "skip"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"preflight_skip": ["gpus"]}, "preflight_skip: unknown check(s) gpus; allowed: os, driver"),
        ({"preflight_severity": {"bogus": "warn"}}, "preflight_severity: unknown check 'bogus'"),
        ({"preflight_severity": {"mig": "ignore"}}, "preflight_severity.mig: 'ignore' is not one of fail, warn"),
    ],
)
def test_bad_settings_name_the_variable_and_allowed_values(b200, cfg, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pf.preflight_evaluate(observed(b200), settings(**cfg))


def test_mount_for_picks_the_longest_prefix():
    mounts = [{"mount": "/"}, {"mount": "/var"}, {"mount": "/var/lib/docker"}, {"mount": "/var/lib/docker2"}]
    assert pf.mount_for("/var/lib/docker/overlay2", mounts)["mount"] == "/var/lib/docker"
    assert pf.mount_for("/var/lib/docker2", mounts)["mount"] == "/var/lib/docker2"
    assert pf.mount_for("/var/lib/dockerx", mounts)["mount"] == "/var"
    assert pf.mount_for("/home/u", mounts)["mount"] == "/"
    assert pf.mount_for("/x", []) is None


def test_report_lists_failures_with_fixes(h200):
    obs = observed(h200, docker={"ok": False, "installed": False, "error": ""})
    result = pf.preflight_evaluate(obs, settings())
    lines = pf.preflight_report(result, "gpu-node-7")
    assert lines[0] == "gpu-node-7: NOT FIT: 5 checks failed"
    assert lines[1].split() == ["check", "status", "found", "expected"]
    text = "\n".join(lines)
    for check in ("driver", "cuda", "gpu_count", "gpu_model", "docker"):
        assert f"  {check} " in text
    assert text.count("fix: ") == 5
    assert "os " not in text  # passing rows are left out unless asked for
    assert "  os " in "\n".join(pf.preflight_report(result, "gpu-node-7", show_all=True))


def test_report_for_a_fit_node(b200):
    result = pf.preflight_evaluate(observed(b200), settings())
    assert pf.preflight_report(result, "n1") == ["n1: FIT"]


def test_fleet_summary():
    hostvars = {
        "a": {"preflight_result": {"fit": True, "warned": []}},
        "b": {"preflight_result": {"fit": False, "failed": ["driver", "docker"]}},
        "c": {},
    }
    lines = pf.preflight_fleet_summary(["a", "b", "c"], hostvars)
    assert lines[0] == "fleet: 1 fit, 1 not fit, 1 without a verdict"
    assert lines[1].split() == ["a", "FIT"]
    assert lines[2].split(None, 1) == ["b", "NOT FIT: driver, docker"]
    assert "NO VERDICT" in lines[3]
