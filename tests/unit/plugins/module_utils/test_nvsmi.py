# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for module_utils/_nvsmi.py against the real captures in tests/fixtures/nvidia-smi.

Expected values were read from the capture files by hand. Variants are made by editing the real H200 XML with
ElementTree, so every variant keeps the real document's shape.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils._nvsmi import (
    KINDS,
    NvidiaSmiXmlError,
    classify_failure,
    facts_from_run,
    parse_xml,
)

FIXTURES = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "nvidia-smi"
H200_XML = FIXTURES / "h200-ubuntu2404-580" / "h200-q.xml"
A100_MIG_XML = FIXTURES / "public" / "a100-sxm4-535.54.03-mig-q-x.xml"
DRIVER_MISMATCH = FIXTURES / "public" / "err-driver-mismatch-570.124.txt"
FABRIC_IN_PROGRESS_Q = FIXTURES / "public" / "err-fabric-in-progress-580.159.04-q-excerpt.txt"
XID_DMESG = FIXTURES / "public" / "err-h100-xid119-gsp-timeout-dmesg.txt"
ARGV = ["/usr/bin/nvidia-smi", "-q", "-x"]

FACT_KEYS = {
    "ok",
    "error",
    "command",
    "rc",
    "driver_version",
    "driver_branch",
    "cuda_version",
    "attached_gpus",
    "gpu_count",
    "gpus",
    "warnings",
}
GPU_KEYS = {
    "index",
    "name",
    "uuid",
    "pci_bus_id",
    "architecture",
    "memory_total_mib",
    "persistence_mode",
    "mig_mode",
    "mig_mode_pending",
    "ecc_mode",
    "ecc_mode_pending",
    "ecc_volatile_uncorrectable",
    "retired_pages_pending",
    "remapped_rows_pending",
    "remapped_rows_failure",
    "fabric_state",
    "fabric_status",
    "temperature_c",
}

H200_GPU = {
    "index": 0,
    "name": "NVIDIA H200",
    "uuid": "GPU-81d71e82-744d-cb38-094e-b5437ca1a564",
    "pci_bus_id": "00000000:00:06.0",
    "architecture": "Hopper",
    "memory_total_mib": 143771,
    "persistence_mode": "Enabled",
    "mig_mode": "Disabled",
    "mig_mode_pending": "Disabled",
    "ecc_mode": "Enabled",
    "ecc_mode_pending": "Enabled",
    "ecc_volatile_uncorrectable": 0,
    "retired_pages_pending": None,  # pending_blacklist and pending_retirement are both N/A on this H200
    "remapped_rows_pending": False,
    "remapped_rows_failure": False,
    "fabric_state": None,  # single GPU, no NVLink fabric: N/A
    "fabric_status": None,
    "temperature_c": 38,
}


def read(path: Path) -> str:
    """Return a capture's text."""
    return path.read_text(encoding="utf-8")


def edit_h200(edit) -> str:
    """Return the real H200 document after ``edit(root)`` changed it, with its XML declaration and DOCTYPE."""
    text = read(H200_XML)
    root = ET.fromstring(text)
    edit(root)
    header = text[: text.index("<nvidia_smi_log>")]
    return header + ET.tostring(root, encoding="unicode")


def set_text(root: ET.Element, path: str, value: str) -> None:
    """Set the text of the element at ``path``, which must exist."""
    elem = root.find(path)
    assert elem is not None, path
    elem.text = value


# --- real captures -------------------------------------------------------------------------------------------------


def test_h200_capture_parses_to_exact_values():
    facts = parse_xml(read(H200_XML))
    assert facts == {
        "driver_version": "580.159.04",
        "driver_branch": "580",
        "cuda_version": "13.0",
        "attached_gpus": 1,
        "gpu_count": 1,
        "gpus": [H200_GPU],
        "warnings": [],
    }


def test_h200_capture_run_is_ok():
    facts = facts_from_run(0, read(H200_XML), "", argv=ARGV)
    assert set(facts) == FACT_KEYS
    assert facts["ok"] is True
    assert facts["error"] is None
    assert facts["command"] == ARGV
    assert facts["rc"] == 0
    assert facts["gpus"] == [H200_GPU]
    assert facts["warnings"] == []


def test_a100_mig_capture_parses_to_exact_values():
    facts = parse_xml(read(A100_MIG_XML))
    assert facts["driver_version"] == "535.54.03"
    assert facts["driver_branch"] == "535"
    assert facts["cuda_version"] == "12.2"
    # The capture was trimmed to 1 of its 4 GPUs (public/SOURCES.md).
    assert facts["attached_gpus"] == 4
    assert facts["gpu_count"] == 1
    assert facts["warnings"] == ["nvidia-smi reports 4 attached GPUs but printed 1 GPU blocks"]
    assert facts["gpus"] == [
        {
            "index": 0,  # document order; this GPU's <minor_number> is 1
            "name": "NVIDIA A100-SXM4-80GB",
            "uuid": "GPU-513536b6-7d19-9063-b049-1e69664bb298",
            "pci_bus_id": "00000000:01:00.0",
            "architecture": "Ampere",
            "memory_total_mib": 81920,  # the GPU's, not one of its MIG devices' 19968
            "persistence_mode": "Disabled",
            "mig_mode": "Enabled",
            "mig_mode_pending": "Enabled",
            "ecc_mode": "Enabled",
            "ecc_mode_pending": "Enabled",
            "ecc_volatile_uncorrectable": 0,  # R535 layout: sram_uncorrectable + dram_uncorrectable
            "retired_pages_pending": None,
            "remapped_rows_pending": None,  # <remapped_rows>N/A</remapped_rows>
            "remapped_rows_failure": None,
            "fabric_state": None,
            "fabric_status": None,
            "temperature_c": 27,
        }
    ]


def test_a100_fewer_blocks_than_attached_is_ok_with_a_warning():
    facts = facts_from_run(0, read(A100_MIG_XML), "", argv=ARGV)
    assert facts["ok"] is True
    assert facts["error"] is None
    assert facts["warnings"] == ["nvidia-smi reports 4 attached GPUs but printed 1 GPU blocks"]


@pytest.mark.parametrize("rc", [18, 255])
def test_driver_mismatch_capture(rc):
    # The text decides, whatever the exit code.
    error = classify_failure(rc, read(DRIVER_MISMATCH), "")
    assert error["kind"] == "driver_mismatch"
    assert error["message"] == (
        f"nvidia-smi exited with rc {rc}: Failed to initialize NVML: Driver/library version mismatch; "
        "NVML library version: 570.124"
    )
    assert "sudo reboot" in error["remedy"]
    assert "cat /proc/driver/nvidia/version" in error["remedy"]


def test_driver_mismatch_capture_run_is_a_fact_not_a_failure():
    facts = facts_from_run(18, read(DRIVER_MISMATCH), "", argv=ARGV)
    assert set(facts) == FACT_KEYS
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "driver_mismatch"
    assert facts["rc"] == 18
    assert facts["driver_version"] is None  # 570.124 is the NVML library's version, not the loaded driver's
    assert facts["gpus"] == []
    assert facts["gpu_count"] == 0


def _q_text_value(text: str, block: str, field: str) -> str:
    """Return ``field``'s value inside ``block`` of ``nvidia-smi -q`` text."""
    inside = text[text.index(block) :]
    match = re.search(rf"^\s*{re.escape(field)}\s*:\s*(.*?)\s*$", inside, re.MULTILINE)
    assert match, field
    return match.group(1)


def test_fabric_in_progress_capture_carried_into_the_xml():
    # The capture is -q text (the Fabric block only); its values go into the H200 XML where -q -x puts them.
    excerpt = read(FABRIC_IN_PROGRESS_Q)
    state = _q_text_value(excerpt, "Fabric", "State")
    status = _q_text_value(excerpt, "Fabric", "Status")
    assert (state, status) == ("In Progress", "N/A")

    def edit(root):
        set_text(root, "gpu/fabric/state", state)
        set_text(root, "gpu/fabric/status", status)

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    # The fabric state is a fact for the preflight role to judge, not a failure of the facts.
    assert facts["ok"] is True
    assert facts["gpus"][0]["fabric_state"] == "In Progress"
    assert facts["gpus"][0]["fabric_status"] is None


def test_fabric_in_progress_capture_is_not_xml():
    facts = facts_from_run(0, read(FABRIC_IN_PROGRESS_Q), "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "unknown"
    assert facts["error"]["message"].startswith(
        "nvidia-smi -q -x exited 0 but the output holds no nvidia_smi_log XML document: Fabric; State"
    )


def test_timeout_remedy_finds_the_xid_in_the_dmesg_capture():
    error = classify_failure(None, "", "", timed_out=True, timeout=60)
    assert error["kind"] == "unknown"
    assert error["message"] == "nvidia-smi did not answer within 60 s"
    assert "dmesg -T | grep -i xid" in error["remedy"]
    assert "nvidia-bug-report" in error["remedy"]
    # What the remedy's grep would show on the GSP-timeout host of the capture.
    xid_lines = [line for line in read(XID_DMESG).splitlines() if "xid" in line.lower()]
    assert len(xid_lines) == 5
    assert all(re.search(r"NVRM: Xid \(PCI:0000:9b:00\): 119, ", line) for line in xid_lines)


def test_timeout_quotes_partial_output():
    error = classify_failure(None, "<?xml version", "", timed_out=True, timeout=5)
    assert error == {
        "kind": "unknown",
        "message": "nvidia-smi did not answer within 5 s; it had printed: <?xml version",
        "remedy": error["remedy"],
    }


NON_XML_CAPTURES = sorted(
    path.relative_to(FIXTURES).as_posix()
    for path in FIXTURES.rglob("*")
    if path.suffix in (".txt", ".csv") and not path.name.startswith("err-")
)


def test_non_xml_captures_exist():
    assert "public/b300x7-610.57.04-plain.txt" in NON_XML_CAPTURES
    assert "h200-ubuntu2404-580/h200-q.txt" in NON_XML_CAPTURES


@pytest.mark.parametrize("capture", NON_XML_CAPTURES)
def test_non_xml_output_with_rc_0_is_not_ok(capture):
    # Tables, -q text, CSV: what a wrapper or the wrong flags would print instead of -q -x.
    facts = facts_from_run(0, read(FIXTURES / capture), "", argv=ARGV)
    assert set(facts) == FACT_KEYS
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "unknown"
    assert "holds no nvidia_smi_log XML document" in facts["error"]["message"]
    assert facts["gpus"] == []
    assert facts["driver_version"] is None


# --- classify_failure: synthetic strings -----------------------------------------------------------------------------
# These are the messages nvidia-smi and NVML document and print (nvmlErrorString, nvidia-smi's own banners), written
# here by hand; they are not captures.

SYNTHETIC_FAILURES = [
    (
        "not_installed",
        12,
        (
            "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA "
            "Display Driver is properly installed and present in your system.\nPlease also try adding directory "
            "that contains libnvidia-ml.so to your system PATH."
        ),
    ),
    ("not_installed", 127, "/bin/sh: 1: nvidia-smi: not found"),
    (
        "driver_not_loaded",
        9,
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
            "NVIDIA driver is installed and running."
        ),
    ),
    ("driver_not_loaded", 9, "Failed to initialize NVML: NVIDIA driver is not loaded"),
    ("driver_mismatch", 18, "Failed to initialize NVML: Driver/library version mismatch"),
    ("no_devices", 6, "No devices were found"),
    ("gpu_lost", 15, "Unable to determine the device handle for GPU0000:9B:00.0: Unknown Error"),
    ("gpu_lost", 15, "Unable to determine the device handle for gpu 0000:9B:00.0: GPU is lost.  Reboot the system"),
    ("gpu_lost", 255, "GPU 00000000:9B:00.0: Unknown Error"),
    ("gpu_lost", 15, "The GPU has fallen off the bus or has otherwise become inaccessible"),
    ("permission", 4, "Failed to initialize NVML: Insufficient Permissions"),
    ("permission", 126, "/usr/bin/nvidia-smi: Permission denied"),
    # Not a lost GPU: containers print this when the device cgroup was reset (e.g. systemctl daemon-reload).
    ("unknown", 255, "Failed to initialize NVML: Unknown Error"),
    ("unknown", 3, "Something nvidia-smi never says"),
]


@pytest.mark.parametrize(("kind", "rc", "text"), SYNTHETIC_FAILURES)
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_classify_synthetic_failures(kind, rc, text, stream):
    outputs = {"stdout": "", "stderr": ""}
    outputs[stream] = text
    error = classify_failure(rc, outputs["stdout"], outputs["stderr"])
    assert error["kind"] == kind
    assert error["message"].startswith(f"nvidia-smi exited with rc {rc}: ")
    assert text.splitlines()[0].strip() in error["message"]
    assert error["remedy"]


@pytest.mark.parametrize(
    ("rc", "kind"),
    [
        (4, "permission"),
        (6, "no_devices"),
        (9, "driver_not_loaded"),
        (12, "not_installed"),
        (15, "gpu_lost"),
        (18, "driver_mismatch"),
        (127, "not_installed"),
        (2, "unknown"),
        (255, "unknown"),
        (0, "unknown"),
    ],
)
def test_classify_by_exit_code_when_silent(rc, kind):
    error = classify_failure(rc, "", "")
    assert error["kind"] == kind
    assert error["message"] == f"nvidia-smi exited with rc {rc} and printed nothing"


def test_could_not_be_run():
    # What the module passes when exec fails for another reason than a missing file.
    error = classify_failure(None, "", "/usr/bin/nvidia-smi: Permission denied")
    assert error["kind"] == "permission"
    assert error["message"] == "nvidia-smi could not be run: /usr/bin/nvidia-smi: Permission denied"
    assert classify_failure(None, "", "")["message"] == "nvidia-smi could not be run and printed nothing"


def test_text_beats_exit_code():
    assert classify_failure(9, "No devices were found", "")["kind"] == "no_devices"


def test_not_found():
    error = classify_failure(None, "", "nvidia-smi: not on PATH", not_found=True)
    assert error["kind"] == "not_installed"
    assert error["message"] == "nvidia-smi was not found: nvidia-smi: not on PATH"
    assert "sudo apt-get install nvidia-driver-570-server-open" in error["remedy"]


def test_every_kind_has_a_remedy_and_no_other_kind_exists():
    assert set(KINDS) == {
        "not_installed",
        "driver_not_loaded",
        "driver_mismatch",
        "no_devices",
        "gpu_lost",
        "permission",
        "unknown",
    }
    seen = {classify_failure(rc, text, "")["kind"] for _kind, rc, text in SYNTHETIC_FAILURES}
    assert seen == set(KINDS)


def test_message_is_trimmed_to_the_first_lines():
    text = "\n\n   first   \n" + "\n".join(f"line {n}" for n in range(2, 50))
    message = classify_failure(255, text, "")["message"]
    assert message == "nvidia-smi exited with rc 255: first; line 2; line 3; line 4"
    long_line = "x" * 2000
    assert len(classify_failure(255, long_line, "")["message"]) < 450


# --- variants of the real H200 document ------------------------------------------------------------------------------


def test_variant_fabric_completed():
    def edit(root):
        set_text(root, "gpu/fabric/state", "Completed")
        set_text(root, "gpu/fabric/status", "Success")

    gpu = parse_xml(edit_h200(edit))["gpus"][0]
    assert (gpu["fabric_state"], gpu["fabric_status"]) == ("Completed", "Success")


def test_variant_mig_enabled_and_pending():
    def edit(root):
        set_text(root, "gpu/mig_mode/current_mig", "Enabled")
        set_text(root, "gpu/mig_mode/pending_mig", "Disabled")

    gpu = parse_xml(edit_h200(edit))["gpus"][0]
    assert (gpu["mig_mode"], gpu["mig_mode_pending"]) == ("Enabled", "Disabled")


def test_variant_remapped_rows_pending_and_failed():
    def edit(root):
        set_text(root, "gpu/remapped_rows/remapped_row_pending", "Yes")
        set_text(root, "gpu/remapped_rows/remapped_row_failure", "Yes")

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is True  # a fact for preflight to judge
    assert facts["gpus"][0]["remapped_rows_pending"] is True
    assert facts["gpus"][0]["remapped_rows_failure"] is True


@pytest.mark.parametrize(
    ("blacklist", "retirement", "expected"),
    [("N/A", "Yes", True), ("Yes", "N/A", True), ("No", "N/A", False), ("No", "No", False), ("N/A", "N/A", None)],
)
def test_variant_retired_pages_pending(blacklist, retirement, expected):
    def edit(root):
        set_text(root, "gpu/retired_pages/pending_blacklist", blacklist)
        set_text(root, "gpu/retired_pages/pending_retirement", retirement)

    assert parse_xml(edit_h200(edit))["gpus"][0]["retired_pages_pending"] is expected


def test_variant_two_gpus():
    def edit(root):
        set_text(root, "attached_gpus", "2")
        first = root.find("gpu")
        second = copy.deepcopy(first)
        second.set("id", "00000000:00:07.0")
        set_text(second, "uuid", "GPU-00000000-0000-0000-0000-000000000001")
        set_text(second, "temperature/gpu_temp", "41 C")
        root.append(second)

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is True
    assert facts["warnings"] == []
    assert facts["attached_gpus"] == 2
    assert facts["gpu_count"] == 2
    assert [gpu["index"] for gpu in facts["gpus"]] == [0, 1]
    assert [gpu["pci_bus_id"] for gpu in facts["gpus"]] == ["00000000:00:06.0", "00000000:00:07.0"]
    assert facts["gpus"][1] == dict(
        H200_GPU,
        index=1,
        pci_bus_id="00000000:00:07.0",
        uuid="GPU-00000000-0000-0000-0000-000000000001",
        temperature_c=41,
    )


def test_variant_more_attached_than_printed():
    facts = facts_from_run(0, edit_h200(lambda root: set_text(root, "attached_gpus", "8")), "", argv=ARGV)
    assert facts["ok"] is True
    assert facts["attached_gpus"] == 8
    assert facts["gpu_count"] == 1
    assert facts["warnings"] == ["nvidia-smi reports 8 attached GPUs but printed 1 GPU blocks"]


def test_variant_r610_names():
    # kmd_version / cuda_umd_version are inferred from the R610 table banner, not from an R610 XML capture.
    def edit(root):
        root.remove(root.find("driver_version"))
        root.remove(root.find("cuda_version"))
        kmd = ET.Element("kmd_version")
        kmd.text = "610.57.04"
        umd = ET.Element("cuda_umd_version")
        umd.text = "13.3"
        root.insert(1, kmd)
        root.insert(2, umd)

    facts = parse_xml(edit_h200(edit))
    assert (facts["driver_version"], facts["driver_branch"], facts["cuda_version"]) == ("610.57.04", "610", "13.3")


def test_variant_driver_elements_missing():
    def edit(root):
        for tag in ("driver_version", "cuda_version", "attached_gpus"):
            root.remove(root.find(tag))

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is True
    assert (facts["driver_version"], facts["driver_branch"], facts["cuda_version"]) == (None, None, None)
    assert facts["attached_gpus"] is None
    assert facts["gpu_count"] == 1


NULL_SPELLINGS = ["N/A", "[N/A]", "Not Supported", "[Not Supported]", "Requested functionality has been deprecated", ""]


def test_variant_all_values_na():
    def edit(root):
        set_text(root, "attached_gpus", "N/A")
        leaves = [elem for elem in root.find("gpu").iter() if len(elem) == 0]
        for number, leaf in enumerate(leaves):
            leaf.text = NULL_SPELLINGS[number % len(NULL_SPELLINGS)]

    text = edit_h200(edit)
    facts = parse_xml(text)
    assert facts["attached_gpus"] is None
    gpu = facts["gpus"][0]
    assert set(gpu) == GPU_KEYS
    assert gpu["index"] == 0
    assert gpu["pci_bus_id"] == "00000000:00:06.0"  # the id attribute is not a value
    assert {key: value for key, value in gpu.items() if key not in ("index", "pci_bus_id")} == dict.fromkeys(
        GPU_KEYS - {"index", "pci_bus_id"}
    )
    # A GPU without a UUID cannot be trusted.
    run = facts_from_run(0, text, "", argv=ARGV)
    assert run["ok"] is False
    assert run["error"]["kind"] == "unknown"
    assert "GPU 00000000:00:06.0 (index 0): the GPU block has no valid UUID" in run["error"]["message"]
    assert run["gpus"] == [gpu]


def test_variant_elements_missing():
    def edit(root):
        gpu = root.find("gpu")
        for tag in (
            "product_architecture",
            "fb_memory_usage",
            "persistence_mode",
            "mig_mode",
            "ecc_mode",
            "ecc_errors",
            "retired_pages",
            "remapped_rows",
            "fabric",
            "temperature",
        ):
            gpu.remove(gpu.find(tag))
        del gpu.attrib["id"]

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is True
    gpu = facts["gpus"][0]
    assert gpu["pci_bus_id"] == "00000000:00:06.0"  # falls back to <pci><pci_bus_id>
    assert gpu["name"] == "NVIDIA H200"
    assert {key for key, value in gpu.items() if value is None} == GPU_KEYS - {"index", "name", "uuid", "pci_bus_id"}


def _volatile(root: ET.Element) -> ET.Element:
    volatile = root.find("gpu/ecc_errors/volatile")
    for child in list(volatile):
        volatile.remove(child)
    return volatile


def _add(parent: ET.Element, tag: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = text
    return child


def test_variant_ecc_current_layout_sums_uncorrectable_counters():
    def edit(root):
        volatile = _volatile(root)
        _add(volatile, "sram_correctable", "100")
        _add(volatile, "sram_uncorrectable_parity", "1")
        _add(volatile, "sram_uncorrectable_secded", "2")
        _add(volatile, "dram_correctable", "100")
        _add(volatile, "dram_uncorrectable", "4")

    assert parse_xml(edit_h200(edit))["gpus"][0]["ecc_volatile_uncorrectable"] == 7


def test_variant_ecc_sram_total_is_not_counted_twice():
    def edit(root):
        volatile = _volatile(root)
        _add(volatile, "sram_uncorrectable", "3")
        _add(volatile, "sram_uncorrectable_parity", "1")
        _add(volatile, "sram_uncorrectable_secded", "2")
        _add(volatile, "dram_uncorrectable", "4")

    assert parse_xml(edit_h200(edit))["gpus"][0]["ecc_volatile_uncorrectable"] == 7


def test_variant_ecc_older_layout():
    def edit(root):
        volatile = _volatile(root)
        single = ET.SubElement(volatile, "single_bit")
        _add(single, "device_memory", "9")
        _add(single, "total", "9")
        double = ET.SubElement(volatile, "double_bit")
        _add(double, "device_memory", "2")
        _add(double, "register_file", "N/A")
        _add(double, "total", "2")

    assert parse_xml(edit_h200(edit))["gpus"][0]["ecc_volatile_uncorrectable"] == 2


def test_variant_ecc_all_na():
    def edit(root):
        for elem in root.find("gpu/ecc_errors/volatile").iter():
            elem.text = "N/A"

    assert parse_xml(edit_h200(edit))["gpus"][0]["ecc_volatile_uncorrectable"] is None


def _two_gpu_text() -> str:
    def edit(root):
        set_text(root, "attached_gpus", "2")
        second = copy.deepcopy(root.find("gpu"))
        second.set("id", "00000000:00:07.0")
        set_text(second, "uuid", "GPU-00000000-0000-0000-0000-000000000001")
        root.append(second)

    return edit_h200(edit)


def test_variant_truncated_document_keeps_complete_gpus():
    text = _two_gpu_text()
    cut = text[: text.index("<fb_memory_usage>", text.index('id="00000000:00:07.0"'))]
    facts = facts_from_run(0, cut, "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "unknown"
    assert "the XML document is incomplete" in facts["error"]["message"]
    assert facts["gpu_count"] == 2
    assert facts["gpus"][0] == H200_GPU
    partial = facts["gpus"][1]
    assert partial["uuid"] == "GPU-00000000-0000-0000-0000-000000000001"  # read before the cut
    assert partial["memory_total_mib"] is None  # after the cut
    assert "GPU 00000000:00:07.0 (index 1): the GPU block is cut short" in parse_xml(cut)["warnings"]


def test_variant_gpu_block_with_lost_gpu():
    def edit(root):
        set_text(root, "gpu/uuid", "Unknown Error")

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "gpu_lost"
    assert (
        "GPU 00000000:00:06.0 (index 0): the GPU block has no valid UUID (found 'Unknown Error')"
        in (facts["error"]["message"])
    )
    assert facts["gpus"][0]["name"] == "NVIDIA H200"


def test_variant_gpu_block_says_gpu_is_lost():
    def edit(root):
        set_text(root, "gpu/gpu_recovery_action", "GPU is lost")

    facts = facts_from_run(0, edit_h200(edit), "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "gpu_lost"


@pytest.mark.parametrize("where", ["stdout_before", "stdout_after", "stderr"])
def test_variant_device_error_next_to_the_xml(where):
    # With 1 of 8 GPUs lost, nvidia-smi prints the error next to the XML of the others (gpu-operator #2511: 7 of 8).
    error_line = "Unable to determine the device handle for GPU0000:9B:00.0: Unknown Error\n"
    stdout, stderr = read(H200_XML), ""
    if where == "stdout_before":
        stdout = error_line + stdout
    elif where == "stdout_after":
        stdout = stdout + error_line
    else:
        stderr = error_line
    facts = facts_from_run(0, stdout, stderr, argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "gpu_lost"
    assert "Unable to determine the device handle for GPU0000:9B:00.0: Unknown Error" in facts["error"]["message"]
    assert facts["gpus"] == [H200_GPU]


def test_harmless_stderr_is_a_warning():
    facts = facts_from_run(0, read(H200_XML), "WARNING: infoROM is corrupted at gpu 0000:00:06.0\n", argv=ARGV)
    assert facts["ok"] is True
    assert facts["warnings"] == ["nvidia-smi also printed: WARNING: infoROM is corrupted at gpu 0000:00:06.0"]


def test_complete_xml_with_nonzero_exit_is_not_ok():
    facts = facts_from_run(15, read(H200_XML), "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "gpu_lost"
    assert facts["error"]["message"] == "nvidia-smi exited with rc 15 although it printed its XML"
    assert facts["gpus"] == [H200_GPU]


@pytest.mark.parametrize("garbage", ["", "Segmentation fault (core dumped)", "<html>not it</html>", "\x00\xff"])
def test_garbage_with_rc_0(garbage):
    facts = facts_from_run(0, garbage, "", argv=ARGV)
    assert set(facts) == FACT_KEYS
    assert facts["ok"] is False
    assert facts["error"]["kind"] == "unknown"
    assert facts["error"]["message"].startswith("nvidia-smi -q -x exited 0 but the output holds no nvidia_smi_log")
    with pytest.raises(NvidiaSmiXmlError):
        parse_xml(garbage)


def test_other_root_element_is_refused():
    with pytest.raises(NvidiaSmiXmlError, match="another root element"):
        parse_xml("<?xml version='1.0'?><something_else/>")


def test_entities_are_refused_not_expanded():
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE nvidia_smi_log [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<nvidia_smi_log><driver_version>&b;</driver_version></nvidia_smi_log>"
    )
    with pytest.raises(NvidiaSmiXmlError, match="entities"):
        parse_xml(bomb)
    facts = facts_from_run(0, bomb, "", argv=ARGV)
    assert facts["ok"] is False
    assert facts["driver_version"] is None


def test_not_found_and_timeout_runs_keep_every_key():
    for facts in (
        facts_from_run(None, "", "nvidia-smi: not on PATH", not_found=True, argv=ARGV),
        facts_from_run(None, "", "", timed_out=True, argv=ARGV, timeout=3),
    ):
        assert set(facts) == FACT_KEYS
        assert facts["ok"] is False
        assert facts["rc"] is None
        assert facts["command"] == ARGV
    assert facts["error"]["message"] == "nvidia-smi did not answer within 3 s"
