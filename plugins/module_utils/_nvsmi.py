# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Parse ``nvidia-smi -q -x`` and classify nvidia-smi failures.

Pure functions, standard library only: this file runs on the managed nodes (Python 3.8+) and is unit-tested
directly. The ``gpu_facts`` module does the I/O and hands the raw result to :func:`facts_from_run`.

The XML is the interface, not the table: driver R610 renamed the table banner's ``Driver Version`` / ``CUDA Version``
to ``KMD Version`` / ``CUDA UMD Version`` (tests/fixtures/nvidia-smi/public/b300x7-610.57.04-plain.txt).
"""

from __future__ import annotations

import re
import typing as t
import xml.etree.ElementTree as ET

KINDS = (
    "not_installed",
    "driver_not_loaded",
    "driver_mismatch",
    "no_devices",
    "gpu_lost",
    "permission",
    "unknown",
)

# What nvidia-smi prints instead of a value. Compared case-insensitively.
_NULL_VALUES = frozenset(
    (
        "",
        "n/a",
        "[n/a]",
        "not supported",
        "[not supported]",
        "requested functionality has been deprecated",
    )
)

# Markers of a dead GPU inside an XML <gpu> block. "Unknown Error" alone is not one: healthy GPUs show it for single
# fields a driver cannot query, and containers print "Failed to initialize NVML: Unknown Error" for cgroup problems.
_GPU_LOST_IN_BLOCK = ("gpu is lost", "fallen off the bus", "gpu requires reset")

_PCI_ID = r"(?:[0-9a-f]{4}|[0-9a-f]{8}):[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]"

# Message text first: it is more specific than the exit code. Order matters: the mismatch message also starts with
# "Failed to initialize NVML". The strings are the ones nvidia-smi and NVML print (nvmlErrorString and nvidia-smi's
# own banners).
_TEXT_RULES = (
    ("driver_mismatch", re.compile(r"driver/library version mismatch", re.IGNORECASE)),
    (
        "driver_not_loaded",
        re.compile(
            r"couldn't communicate with the nvidia driver|nvidia driver is not loaded|driver not loaded", re.IGNORECASE
        ),
    ),
    ("permission", re.compile(r"insufficient permissions|permission denied", re.IGNORECASE)),
    ("no_devices", re.compile(r"no devices were found", re.IGNORECASE)),
    (
        "gpu_lost",
        re.compile(
            r"unable to determine the device handle for gpu|gpu is lost|fallen off the bus|gpu requires reset"
            r"|gpu\s*" + _PCI_ID + r"\b[^\n]*unknown error",
            re.IGNORECASE,
        ),
    ),
    (
        "not_installed",
        re.compile(r"couldn't find libnvidia-ml\.so|libnvidia-ml\.so[^\n]*not found|command not found", re.IGNORECASE),
    ),
)

# nvidia-smi(1), RETURN VALUE: 4 no permission, 6 object not found (no devices), 9 driver not loaded, 12 NVML shared
# library not found, 15 GPU fallen off the bus. 18 is not in the man page but is what the version mismatch returns in
# practice. 127 is the shell's "command not found".
_RC_RULES = {
    4: "permission",
    6: "no_devices",
    9: "driver_not_loaded",
    12: "not_installed",
    15: "gpu_lost",
    18: "driver_mismatch",
    127: "not_installed",
}

_REMEDIES = {
    "not_installed": (
        "Install the NVIDIA driver, which ships nvidia-smi: `sudo apt-get install nvidia-driver-570-server-open`, "
        "then `sudo reboot`. If it is installed elsewhere, set the module option nvidia_smi to its path."
    ),
    "driver_not_loaded": (
        "The nvidia kernel module is not loaded: `sudo modprobe nvidia`, then `lsmod | grep nvidia`. If modprobe "
        "fails, check `sudo dmesg -T | grep -i nvrm`, `dkms status` (module not built for this kernel) and "
        "`mokutil --sb-state` (Secure Boot rejecting an unsigned module)."
    ),
    "driver_mismatch": (
        "The loaded kernel module and the NVML library differ, usually after a driver upgrade without a reboot. "
        "Confirm with `cat /proc/driver/nvidia/version`, then `sudo reboot` (or unload and reload the nvidia kernel "
        "modules when no process uses the GPUs)."
    ),
    "no_devices": (
        "The driver sees no GPU. Check `lspci -nn | grep -i nvidia` and `sudo dmesg -T | grep -i nvrm`; in a VM or "
        "container, check that the GPUs are passed through."
    ),
    "gpu_lost": (
        "A GPU stopped answering. Find it with `sudo dmesg -T | grep -i xid`, drain the node, then reset it "
        "(`sudo nvidia-smi -r -i <index>`) or `sudo reboot`; if it recurs, collect `sudo nvidia-bug-report.sh` for "
        "a hardware ticket."
    ),
    "permission": (
        "nvidia-smi may not open the GPU device files: run the task with `become: true`, and check "
        "`ls -l /dev/nvidia*`."
    ),
    "unknown": (
        "Check `sudo dmesg -T | grep -i xid` for GPU errors (Xid 119/120 are GSP timeouts: reset the GPU or reboot) "
        "and collect `sudo nvidia-bug-report.sh`."
    ),
}

_MAX_MESSAGE_LINES = 4
_MAX_MESSAGE_CHARS = 400


def _excerpt(*texts: str | None) -> str:
    """Return the first non-empty lines of the given outputs, trimmed, on one line."""
    lines = []
    for text in texts:
        lines.extend(line.strip() for line in (text or "").splitlines() if line.strip())
    joined = "; ".join(lines[:_MAX_MESSAGE_LINES])
    if len(joined) > _MAX_MESSAGE_CHARS:
        joined = joined[: _MAX_MESSAGE_CHARS - 3] + "..."
    return joined


def _kind_from_text(text: str) -> str | None:
    for kind, pattern in _TEXT_RULES:
        if pattern.search(text):
            return kind
    return None


def classify_failure(
    rc: int | None,
    stdout: str | None,
    stderr: str | None,
    *,
    not_found: bool = False,
    timed_out: bool = False,
    timeout: int | None = None,
) -> dict[str, str]:
    """Classify a failed nvidia-smi run.

    Returns ``{kind, message, remedy}``; ``kind`` is one of :data:`KINDS`. The message text decides first, the exit
    code second. ``message`` quotes the first lines nvidia-smi printed; ``remedy`` is what an operator runs next.
    """
    printed = _excerpt(stderr, stdout)
    if not_found:
        kind = "not_installed"
        message = "nvidia-smi was not found"
        if printed:
            message += ": " + printed
    elif timed_out:
        kind = "unknown"
        message = "nvidia-smi did not answer within " + (f"{timeout} s" if timeout is not None else "its timeout")
        if printed:
            message += "; it had printed: " + printed
    else:
        kind = _kind_from_text((stderr or "") + "\n" + (stdout or "")) or _RC_RULES.get(rc or 0, "unknown")
        outcome = "could not be run" if rc is None else f"exited with rc {rc}"
        message = f"nvidia-smi {outcome}: {printed}" if printed else f"nvidia-smi {outcome} and printed nothing"
    return {"kind": kind, "message": message, "remedy": _REMEDIES[kind]}


def _clean(text: str | None) -> str | None:
    """Return the stripped value, or None for nvidia-smi's "no value" spellings."""
    if text is None:
        return None
    value = text.strip()
    if value.lower() in _NULL_VALUES:
        return None
    return value


def _text(elem: ET.Element | None, path: str) -> str | None:
    if elem is None:
        return None
    child = elem.find(path)
    if child is None:
        return None
    return _clean(child.text)


def _leading_int(value: str | None) -> int | None:
    """Return the integer that starts a value such as ``143771 MiB`` or ``38 C``."""
    if value is None:
        return None
    match = re.match(r"-?\d+", value)
    return int(match.group(0)) if match else None


def _yes_no(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered == "yes":
        return True
    if lowered == "no":
        return False
    return None


def _first_text(root: ET.Element, tags: t.Iterable[str]) -> str | None:
    """Return the first non-null value of an element with one of ``tags``, anywhere under ``root``, in tag order."""
    for tag in tags:
        for elem in root.iter(tag):
            value = _clean(elem.text)
            if value is not None:
                return value
    return None


def _volatile_uncorrectable(gpu: ET.Element) -> int | None:
    """Sum the volatile uncorrectable ECC counters of either XML layout; None when none has a number."""
    volatile = gpu.find("ecc_errors/volatile")
    if volatile is None:
        return None
    counts = []
    # Current layout. sram_uncorrectable (R535) is the SRAM total; newer drivers split it into parity and SEC-DED
    # counters instead. Take the total when it is there so that a driver printing all three is not counted twice.
    sram_total = _leading_int(_text(volatile, "sram_uncorrectable"))
    if sram_total is not None:
        counts.append(sram_total)
    else:
        counts.extend(
            _leading_int(_text(volatile, tag)) for tag in ("sram_uncorrectable_parity", "sram_uncorrectable_secded")
        )
    counts.append(_leading_int(_text(volatile, "dram_uncorrectable")))
    # Older layout: <single_bit> (corrected) and <double_bit> (uncorrectable), each with a <total>.
    counts.append(_leading_int(_text(volatile, "double_bit/total")))
    numbers = [count for count in counts if count is not None]
    return sum(numbers) if numbers else None


def _pending_retirement(gpu: ET.Element) -> bool | None:
    # The element was called pending_blacklist before it was renamed pending_retirement; some drivers print both.
    answers = [_yes_no(_text(gpu, "retired_pages/" + tag)) for tag in ("pending_blacklist", "pending_retirement")]
    if True in answers:
        return True
    if False in answers:
        return False
    return None


def parse_gpu(gpu: ET.Element, index: int) -> dict[str, t.Any]:
    """Return the facts of one ``<gpu>`` element; ``index`` is its position in the document (nvidia-smi's index)."""
    return {
        "index": index,
        "name": _text(gpu, "product_name"),
        "uuid": _text(gpu, "uuid"),
        "pci_bus_id": _clean(gpu.get("id")) or _text(gpu, "pci/pci_bus_id"),
        "architecture": _text(gpu, "product_architecture"),
        "memory_total_mib": _leading_int(_text(gpu, "fb_memory_usage/total")),
        "persistence_mode": _text(gpu, "persistence_mode"),
        "mig_mode": _text(gpu, "mig_mode/current_mig"),
        "mig_mode_pending": _text(gpu, "mig_mode/pending_mig"),
        "ecc_mode": _text(gpu, "ecc_mode/current_ecc"),
        "ecc_mode_pending": _text(gpu, "ecc_mode/pending_ecc"),
        "ecc_volatile_uncorrectable": _volatile_uncorrectable(gpu),
        "retired_pages_pending": _pending_retirement(gpu),
        "remapped_rows_pending": _yes_no(_text(gpu, "remapped_rows/remapped_row_pending")),
        "remapped_rows_failure": _yes_no(_text(gpu, "remapped_rows/remapped_row_failure")),
        "fabric_state": _text(gpu, "fabric/state"),
        "fabric_status": _text(gpu, "fabric/status"),
        "temperature_c": _leading_int(_text(gpu, "temperature/gpu_temp")),
    }


def _gpu_problem(gpu: ET.Element, facts: dict[str, t.Any]) -> str | None:
    """Say why a parsed ``<gpu>`` block cannot be trusted, or return None when it looks whole."""
    block_text = " ".join(text.strip() for text in gpu.itertext() if text.strip())
    lowered = block_text.lower()
    for marker in _GPU_LOST_IN_BLOCK:
        if marker in lowered:
            return f"the GPU block says '{marker}'"
    uuid = facts["uuid"]
    if uuid is None or not uuid.startswith("GPU-"):
        return f"the GPU block has no valid UUID (found {_text(gpu, 'uuid')!r})"
    return None


def empty_facts() -> dict[str, t.Any]:
    """Return ``ansible_facts.nvidia`` with every key present and nothing known."""
    return {
        "ok": False,
        "error": None,
        "command": [],
        "rc": None,
        "driver_version": None,
        "driver_branch": None,
        "cuda_version": None,
        "attached_gpus": None,
        "gpu_count": 0,
        "gpus": [],
        "warnings": [],
    }


class NvidiaSmiXmlError(ValueError):
    """The text holds no ``nvidia_smi_log`` XML document that can be read."""


class _Document:
    """What one ``nvidia-smi -q -x`` output held: the facts, plus what made parts of it unusable."""

    def __init__(self) -> None:
        self.facts: dict[str, t.Any] = {}
        self.problems: list[str] = []  # reasons the run is not ok
        self.stray_text = ""  # text printed around the XML document, e.g. an error line before <?xml


class _PullResult:
    """The elements one pull parse read, and how far it got."""

    def __init__(self) -> None:
        self.root: ET.Element | None = None
        self.root_closed = False
        self.closed_gpus: set[int] = set()
        self.error: ET.ParseError | None = None


def _pull_parse(xml_text: str) -> _PullResult:
    """Parse ``xml_text``, keeping every element read before a parse error.

    nvidia-smi that hangs or crashes half way leaves a document cut short; its complete <gpu> blocks still count.
    ElementTree is adequate for this trusted local output: expat never fetches the DOCTYPE's external DTD
    (nvsmi_device_v*.dtd), and :func:`_read_document` refuses documents that declare entities.
    """
    result = _PullResult()
    parser = ET.XMLPullParser(events=("start", "end"))
    parser.feed(xml_text)  # queues a parse error instead of raising it
    try:
        parser.close()
    except ET.ParseError as exc:
        result.error = exc
    try:
        for event, elem in parser.read_events():
            if result.root is None:
                result.root = elem
            if event != "end":
                continue
            if elem is result.root:
                result.root_closed = True
            elif elem.tag == "gpu":
                result.closed_gpus.add(id(elem))
    except ET.ParseError as exc:
        result.error = exc
    return result


def _driver_facts(root: ET.Element) -> dict[str, t.Any]:
    # R610 renamed the table banner's "Driver Version" / "CUDA Version" to "KMD Version" / "CUDA UMD Version"
    # (public/b300x7-610.57.04-plain.txt). kmd_version and cuda_umd_version are the XML tags that rename implies:
    # inferred from that banner, not seen in an XML capture.
    driver_version = _text(root, "driver_version") or _first_text(root, ("kmd_version",))
    branch = re.match(r"(\d+)\.", driver_version or "")
    return {
        "driver_version": driver_version,
        "driver_branch": branch.group(1) if branch else None,
        "cuda_version": _text(root, "cuda_version") or _first_text(root, ("cuda_umd_version",)),
        "attached_gpus": _leading_int(_text(root, "attached_gpus")),
    }


def _read_document(text: str) -> _Document:
    """Parse the XML in ``text``, keeping what parsed when the document is truncated or broken."""
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<nvidia_smi_log")
    if start < 0:
        msg = "the output holds no nvidia_smi_log XML document"
        raise NvidiaSmiXmlError(msg)
    if "<!ENTITY" in text:
        # nvidia-smi never declares entities; refuse rather than expand them.
        msg = "the output declares XML entities, which nvidia-smi never does"
        raise NvidiaSmiXmlError(msg)

    pulled = _pull_parse(text[start:])
    root = pulled.root
    if root is None or root.tag != "nvidia_smi_log":
        msg = f"the output holds no nvidia_smi_log XML document ({pulled.error or 'another root element'})"
        raise NvidiaSmiXmlError(msg)

    doc = _Document()
    stray = [text[:start]]
    if pulled.error is not None and pulled.root_closed:
        # Text after the document, e.g. an error line: kept for classification.
        stray.append(text[start:].split("</nvidia_smi_log>", 1)[-1])
    elif pulled.error is not None:
        doc.problems.append(f"the XML document is incomplete ({pulled.error})")
    doc.stray_text = "\n".join(part.strip() for part in stray if part.strip())

    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        facts = parse_gpu(gpu, index)
        gpus.append(facts)
        problem = _gpu_problem(gpu, facts) if id(gpu) in pulled.closed_gpus else "the GPU block is cut short"
        if problem:
            # "GPU <bus id>" first, as nvidia-smi words device errors, so that _TEXT_RULES reads it the same way.
            doc.problems.append(f"GPU {facts['pci_bus_id'] or '(no PCI id)'} (index {index}): {problem}")

    doc.facts = _driver_facts(root)
    doc.facts.update(gpu_count=len(gpus), gpus=gpus, warnings=[])
    attached = doc.facts["attached_gpus"]
    if attached is not None and attached > len(gpus):
        doc.facts["warnings"].append(f"nvidia-smi reports {attached} attached GPUs but printed {len(gpus)} GPU blocks")
    return doc


def parse_xml(text: str) -> dict[str, t.Any]:
    """Parse ``nvidia-smi -q -x`` output into the facts that do not depend on the run.

    Returns ``driver_version``, ``driver_branch``, ``cuda_version``, ``attached_gpus``, ``gpu_count``, ``gpus`` and
    ``warnings``; problems with a broken document are added to ``warnings``. Raises :class:`NvidiaSmiXmlError` (a
    ValueError) when ``text`` holds no ``nvidia_smi_log`` document.
    """
    doc = _read_document(text)
    doc.facts["warnings"] = doc.facts["warnings"] + doc.problems
    return doc.facts


def facts_from_run(
    rc: int | None,
    stdout: str | None,
    stderr: str | None,
    *,
    not_found: bool = False,
    timed_out: bool = False,
    argv: t.Sequence[str] | None = None,
    timeout: int | None = None,
) -> dict[str, t.Any]:
    """Turn one run of ``nvidia-smi -q -x`` into ``ansible_facts.nvidia``.

    A broken driver is a fact, not an exception: ``ok`` says whether the GPUs can be trusted, and ``error`` holds
    ``{kind, message, remedy}`` from :func:`classify_failure` when they cannot.
    """
    facts = empty_facts()
    facts["command"] = list(argv or [])
    facts["rc"] = rc
    if not_found or timed_out:
        facts["error"] = classify_failure(rc, stdout, stderr, not_found=not_found, timed_out=timed_out, timeout=timeout)
        return facts

    try:
        doc = _read_document(stdout or "")
    except NvidiaSmiXmlError as exc:
        error = classify_failure(rc, stdout, stderr)
        if rc == 0:
            printed = _excerpt(stderr, stdout)
            error["message"] = f"nvidia-smi -q -x exited 0 but {exc}" + (": " + printed if printed else "")
        facts["error"] = error
        return facts

    facts.update(doc.facts)
    facts["warnings"] = list(doc.facts["warnings"])
    extra_text = "\n".join(part for part in (stderr or "", doc.stray_text) if part.strip())
    if rc == 0 and not doc.problems and _kind_from_text(extra_text) is None:
        facts["ok"] = True
        if extra_text:
            facts["warnings"].append("nvidia-smi also printed: " + _excerpt(extra_text))
        return facts

    detail = "\n".join(part for part in [doc.stray_text, *doc.problems] if part)
    error = classify_failure(rc, detail, stderr)
    if not detail and not (stderr or "").strip():
        error["message"] = f"nvidia-smi exited with rc {rc} although it printed its XML"
    facts["error"] = error
    return facts
