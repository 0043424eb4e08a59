#!/usr/bin/env python3
"""Generate every file of the simulated-node profiles under tests/sim/profiles/<name>/.

There is NO real `nvidia-smi -q -x` capture of a B200 node. The B200 XMLs are therefore SYNTHETIC:
the REAL H200 capture (tests/fixtures/nvidia-smi/h200-ubuntu2404-580/h200-q.xml) gives the structure,
and the REAL B200 table capture (tests/fixtures/nvidia-smi/public/b200x8-570.133.20-plain.txt) gives the
B200 values (product name, bus ids, memory total, driver, CUDA, temperatures, power, P-state).
Real captures that a profile replays unchanged are copied byte for byte.

Usage:
    make_synthetic.py            write the files (only those that differ)
    make_synthetic.py --check    exit 1 if any file on disk differs from what would be generated

Standard library only; deterministic (no clock, no randomness): running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
H200_XML = FIXTURES / "h200-ubuntu2404-580" / "h200-q.xml"
H200_PLAIN = FIXTURES / "h200-ubuntu2404-580" / "h200-plain.txt"
B200_PLAIN = FIXTURES / "public" / "b200x8-570.133.20-plain.txt"
DRIVER_MISMATCH = FIXTURES / "public" / "err-driver-mismatch-570.124.txt"
FABRIC_EXCERPT = FIXTURES / "public" / "err-fabric-in-progress-580.159.04-q-excerpt.txt"
H100_Q = FIXTURES / "public" / "h100x8-565.57.01-q.txt"


def rel(path: Path) -> str:
    """Return a repository-relative path string for headers and metadata."""
    return path.relative_to(REPO).as_posix()


# --------------------------------------------------------------------------------------------------------------
# Kernel modules, written in /proc/modules format ("name size refcount deps state offset [taints]").
# Sizes and reference counts are plausible, not measured: only the names matter to the roles.
MODULES = {
    "nvidia_uvm": ("2076672", "4", "-", " (POE)"),
    "nvidia_drm": ("135168", "0", "-", " (POE)"),
    "nvidia_modeset": ("1638400", "1", "nvidia_drm,", " (POE)"),
    "nvidia": ("11636736", "44", "nvidia_uvm,nvidia_modeset,", " (POE)"),
    "nvidia_peermem": ("16384", "0", "-", " (POE)"),
    "ib_umad": ("45056", "8", "-", ""),
    "ib_uverbs": ("200704", "2", "nvidia_peermem,mlx5_ib,", ""),
    "mlx5_ib": ("507904", "0", "-", ""),
    "ib_core": ("520192", "4", "ib_umad,ib_uverbs,mlx5_ib,", ""),
    "mlx5_core": ("2568192", "1", "mlx5_ib,", ""),
}
B200_MODULES = [
    "nvidia_uvm",
    "nvidia_drm",
    "nvidia_modeset",
    "nvidia_peermem",
    "nvidia",
    "ib_umad",
    "ib_uverbs",
    "mlx5_ib",
    "ib_core",
    "mlx5_core",
]
H200_MODULES = ["nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nvidia"]


def proc_modules(names: list[str]) -> str:
    """Render a /proc/modules file for the given module names."""
    lines = []
    for name in names:
        size, refs, deps, taint = MODULES[name]
        lines.append(f"{name} {size} {refs} {deps} Live 0x0000000000000000{taint}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# The real B200 table capture.
@dataclass(frozen=True)
class TableGpu:
    """One GPU row of a plain `nvidia-smi` table."""

    index: int
    name: str
    persistence: str
    bus_id: str
    temp_c: int
    perf: str
    power_w: int
    power_cap_w: int
    mem_used_mib: int
    mem_total_mib: int
    mig: str


@dataclass(frozen=True)
class Table:
    """The parsed plain table: banner versions plus GPU rows."""

    smi_version: str
    driver: str
    cuda: str
    gpus: list[TableGpu]


ROW1 = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|\s+([0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.\d)\s+\S+\s+\|")
ROW2 = re.compile(r"^\|\s+\S+\s+(\d+)C\s+(P\d+)\s+(\d+)W\s*/\s*(\d+)W\s+\|\s+(\d+)MiB\s*/\s*(\d+)MiB\s+\|")
ROW3 = re.compile(r"^\|\s+\|\s+\|\s+(\S+)\s+\|$")
BANNER = re.compile(r"NVIDIA-SMI (\S+)\s+Driver Version: (\S+)\s+CUDA Version: (\S+)")


def parse_table(text: str) -> Table:
    """Parse a plain `nvidia-smi` table (R570 banner format)."""
    lines = text.splitlines()
    banner = next(BANNER.search(line) for line in lines if BANNER.search(line))
    gpus = []
    for i, line in enumerate(lines):
        m1 = ROW1.match(line)
        if not m1:
            continue
        m2 = ROW2.match(lines[i + 1])
        m3 = ROW3.match(lines[i + 2])
        if not (m2 and m3):
            raise SystemExit(f"make_synthetic.py: unexpected table layout near line {i + 1}")
        gpus.append(
            TableGpu(
                index=int(m1.group(1)),
                name=m1.group(2),
                persistence=m1.group(3),
                bus_id=m1.group(4),
                temp_c=int(m2.group(1)),
                perf=m2.group(2),
                power_w=int(m2.group(3)),
                power_cap_w=int(m2.group(4)),
                mem_used_mib=int(m2.group(5)),
                mem_total_mib=int(m2.group(6)),
                mig=m3.group(1),
            )
        )
    if not gpus:
        raise SystemExit("make_synthetic.py: no GPU rows found in the table capture")
    return Table(banner.group(1), banner.group(2), banner.group(3), gpus)


def plain_variant(text: str, gpu_count: int, persistence_on: bool, mig_on: bool) -> str:
    """Derive a plain table from the real capture: keep gpu_count GPUs, set Persistence-M and MIG M."""
    lines = text.splitlines(keepends=True)
    out = []
    i = 0
    while i < len(lines):
        m1 = ROW1.match(lines[i])
        if not m1:
            out.append(lines[i])
            i += 1
            continue
        block = lines[i : i + 4]  # 3 GPU lines + the separator under them
        i += 4
        if int(m1.group(1)) >= gpu_count:
            continue
        row1, row2, row3, sep = block
        if persistence_on:
            row1 = row1.replace(" Off |", " On  |", 1)
        if mig_on:
            row3 = row3.replace("Disabled |", " Enabled |", 1)  # right-aligned column: same width
        out.extend([row1, row2, row3, sep])
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# XML editing on the text of the real template: keeps its exact formatting (tabs, declaration, DOCTYPE).
def _span(text: str, tag: str, start: int, end: int) -> tuple[int, int]:
    """Return the (start, end) of the content of the unique <tag>...</tag> inside text[start:end]."""
    pattern = re.compile(rf"<{tag}>(.*?)</{tag}>", re.S)
    found = list(pattern.finditer(text, start, end))
    if len(found) != 1:
        raise SystemExit(f"make_synthetic.py: template has {len(found)} <{tag}> elements where 1 was expected")
    return found[0].start(1), found[0].end(1)


def set_elem(text: str, path: str, value: str) -> str:
    """Set the text of the element at a slash path (e.g. "fabric/state") inside one <gpu> block."""
    start, end = 0, len(text)
    for tag in path.split("/"):
        start, end = _span(text, tag, start, end)
    return text[:start] + escape(value) + text[end:]


def stable_hex(seed: str, length: int) -> str:
    """Return `length` hex digits derived from seed (deterministic stand-in for serials and ids)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class GpuState:
    """What a profile changes in every GPU of the synthetic XML."""

    persistence: str = "Enabled"
    mig: str = "Disabled"
    ecc: str = "Enabled"
    fabric_state: str = "Completed"
    fabric_status: str = "Success"
    clique_id: str = "0"
    cluster_uuid: str = "00000000-0000-0000-0000-000000000000"


FABRIC_IN_PROGRESS = GpuState(fabric_state="In Progress", fabric_status="N/A", clique_id="N/A", cluster_uuid="N/A")


def b200_gpu_block(template_gpu: str, gpu: TableGpu, table: Table, state: GpuState) -> str:
    """Fill one <gpu> block of the H200 template with the values of one B200 of the table capture."""
    b = template_gpu
    b = re.sub(r'<gpu id="[^"]*">', f'<gpu id="{gpu.bus_id}">', b, count=1)
    seed = f"kimi.vllm sim B200 {gpu.bus_id}"
    domain, bus, devfn = gpu.bus_id.split(":")
    fb_reserved = 616  # copied from the H200 template (no B200 value captured)
    values = {
        "product_name": gpu.name,
        "product_architecture": "Blackwell",
        "persistence_mode": state.persistence,
        "mig_mode/current_mig": state.mig,
        "mig_mode/pending_mig": state.mig,
        "serial": str(1650000000000 + int(stable_hex(seed, 8), 16) % 10**9),
        "uuid": f"GPU-{uuid.UUID(stable_hex(seed, 32))}",
        "pdi": f"0x{stable_hex(seed + ' pdi', 16)}",
        "minor_number": str(gpu.index),
        "platformInfo/module_id": str(gpu.index + 1),
        "gsp_firmware_version": table.driver,
        "pci/pci_bus": bus,
        "pci/pci_device": devfn.split(".")[0],
        "pci/pci_domain": domain[-4:],
        "pci/pci_bus_id": gpu.bus_id,
        "performance_state": gpu.perf,
        "fb_memory_usage/total": f"{gpu.mem_total_mib} MiB",
        "fb_memory_usage/reserved": f"{fb_reserved} MiB",
        "fb_memory_usage/used": f"{gpu.mem_used_mib} MiB",
        "fb_memory_usage/free": f"{gpu.mem_total_mib - fb_reserved - gpu.mem_used_mib} MiB",
        "ecc_mode/current_ecc": state.ecc,
        "ecc_mode/pending_ecc": state.ecc,
        "temperature/gpu_temp": f"{gpu.temp_c} C",
        "gpu_power_readings/power_state": gpu.perf,
        "gpu_power_readings/average_power_draw": f"{gpu.power_w:.2f} W",
        "gpu_power_readings/instant_power_draw": f"{gpu.power_w:.2f} W",
        "gpu_power_readings/current_power_limit": f"{gpu.power_cap_w:.2f} W",
        "gpu_power_readings/requested_power_limit": f"{gpu.power_cap_w:.2f} W",
        "gpu_power_readings/default_power_limit": f"{gpu.power_cap_w:.2f} W",
        "gpu_power_readings/max_power_limit": f"{gpu.power_cap_w:.2f} W",
        "module_power_readings/power_state": gpu.perf,
        "fabric/state": state.fabric_state,
        "fabric/status": state.fabric_status,
        "fabric/cliqueId": state.clique_id,
        "fabric/clusterUuid": state.cluster_uuid,
    }
    for path, value in values.items():
        b = set_elem(b, path, value)
    return b


def synthetic_xml(template: str, table: Table, gpu_count: int, state: GpuState, profile: str) -> str:
    """Build a whole `nvidia-smi -q -x` document for gpu_count B200s from the H200 template."""
    m = re.search(r"\n(\t<gpu id=.*?\t</gpu>\n)", template, re.S)
    if not m or template.count("<gpu id=") != 1:
        raise SystemExit("make_synthetic.py: the template must hold exactly one <gpu> block")
    head, template_gpu, tail = template[: m.start(1)], m.group(1), template[m.end(1) :]
    decl, _newline, rest = head.partition("\n")
    if not decl.startswith("<?xml"):
        raise SystemExit("make_synthetic.py: the template must start with the XML declaration")
    comment = (
        f"<!-- SYNTHETIC: generated by tests/sim/profiles/make_synthetic.py from {rel(H200_XML)} (structure, "
        f"real H200 capture) and {rel(B200_PLAIN)} (B200 values, real table capture). Not a real capture. "
        f"Profile {profile}; see tests/sim/profiles/README.md. -->"
    )
    rest = set_elem(rest, "driver_version", table.driver)
    rest = set_elem(rest, "cuda_version", table.cuda)
    rest = set_elem(rest, "attached_gpus", str(gpu_count))
    blocks = [b200_gpu_block(template_gpu, gpu, table, state) for gpu in table.gpus[:gpu_count]]
    # nvidia-smi separates <gpu> blocks with an empty line; the template's tail starts with that line.
    return decl + "\n" + comment + "\n" + rest + "\n".join(blocks) + tail


# --------------------------------------------------------------------------------------------------------------
# Profiles.
@dataclass
class Profile:
    """One simulated node profile: its metadata (profile.yml) and how its replay files are made."""

    name: str
    description: str
    source: list[str]
    kind: str  # synthetic | real | failure
    fabricmanager: str = "active"
    kernel_modules: list[str] = field(default_factory=lambda: list(B200_MODULES))
    docker: bool = True
    hf_cache_size: str = "700g"
    docker_root_size: str = "200g"
    gpu_count: int = 8
    state: GpuState = GpuState()
    notes: list[str] = field(default_factory=list)


SYNTH_SOURCES = [
    f"{rel(H200_XML)} (real capture: XML structure)",
    f"{rel(B200_PLAIN)} (real capture: B200 values)",
]
FIT_NOTE = (
    "Persistence-M is Off in the real B200 capture; this profile sets persistence_mode Enabled, "
    "as the preflight requires for a fit node."
)

PROFILES = [
    Profile(
        name="b200x8-570-fit",
        description="HGX B200 node that passes every preflight check: 8x B200 183359 MiB, driver 570.133.20, "
        "CUDA 12.8, persistence Enabled, MIG Disabled, ECC Enabled, no pending row remaps, fabric Completed/Success, "
        "fabric manager active, ib_umad loaded, Docker available, 700g model cache.",
        source=SYNTH_SOURCES,
        kind="synthetic",
        notes=[FIT_NOTE],
    ),
    Profile(
        name="b200x8-570-driver-mismatch",
        description="Kernel module and NVML library versions differ: every nvidia-smi call fails with the real "
        "'Driver/library version mismatch' output and exit code 18 (NVML_ERROR_LIB_RM_VERSION_MISMATCH). "
        "Otherwise like b200x8-570-fit.",
        source=[f"{rel(DRIVER_MISMATCH)} (real capture, replayed unchanged as stdout)"],
        kind="failure",
        notes=["The exit code 18 is NVML_ERROR_LIB_RM_VERSION_MISMATCH; the capture itself records no exit code."],
    ),
    Profile(
        name="b200x7-570",
        description="Like b200x8-570-fit but only 7 GPUs attached (attached_gpus 7; the GPU at 00000000:87:00.0 "
        "is missing).",
        source=[
            *SYNTH_SOURCES,
            (
                "NVIDIA/gpu-operator issue #2511 (see tests/fixtures/nvidia-smi/public/SOURCES.md): some nodes show "
                "7 of 8 attached GPUs"
            ),
        ],
        kind="synthetic",
        gpu_count=7,
        notes=[FIT_NOTE],
    ),
    Profile(
        name="b200x8-570-mig-on",
        description="Like b200x8-570-fit but MIG mode is Enabled (current and pending) on all 8 GPUs, with no MIG "
        "instances created.",
        source=SYNTH_SOURCES,
        kind="synthetic",
        state=GpuState(mig="Enabled"),
        notes=[FIT_NOTE],
    ),
    Profile(
        name="b200x8-570-fabric-in-progress",
        description="Like b200x8-570-fit (fabric manager active) but every GPU's fabric State is 'In Progress', "
        "Status N/A: NVLink fabric training has not finished.",
        source=[*SYNTH_SOURCES, f"{rel(FABRIC_EXCERPT)} (real excerpt showing this fabric state)"],
        kind="synthetic",
        state=FABRIC_IN_PROGRESS,
        notes=[FIT_NOTE],
    ),
    Profile(
        name="b200x8-570-no-docker",
        description="Like b200x8-570-fit but the node has no Docker engine: no /var/run/docker.sock in the node.",
        source=SYNTH_SOURCES,
        kind="synthetic",
        docker=False,
        notes=[FIT_NOTE],
    ),
    Profile(
        name="b200x8-570-small-disk",
        description="Like b200x8-570-fit but the model cache filesystem (/root/.cache/huggingface) is only 20g.",
        source=SYNTH_SOURCES,
        kind="synthetic",
        hf_cache_size="20g",
        notes=[FIT_NOTE],
    ),
    Profile(
        name="h200x1-580-real",
        description="The real single-H200 host (Ubuntu 24.04, driver 580.159.04, CUDA 13.0, Firecracker VM with the "
        "GPU passed through): no NVSwitch fabric, no fabric manager, no InfiniBand.",
        source=[
            f"{rel(H200_XML)} (real capture, replayed unchanged)",
            f"{rel(H200_PLAIN)} (real capture, replayed unchanged)",
        ],
        kind="real",
        fabricmanager="absent",
        kernel_modules=list(H200_MODULES),
        gpu_count=1,
    ),
]


def plain_ok(value: str, room: int) -> bool:
    """Tell whether value fits in `room` columns as a plain (unquoted) YAML scalar."""
    risky = ": " in value or " #" in value or value[:1] in "!&*-?{}[]|>'\"%@`,#" or value.endswith(":")
    return len(value) <= room and not risky


def yaml_text(key: str, value: str, indent: str = "") -> list[str]:
    """Render `key: value` as YAML; long or risky texts become folded block scalars wrapped at 110 columns."""
    if plain_ok(value, 110 - len(indent) - len(key) - 2):
        return [f"{indent}{key}: {value}"]
    body = textwrap.wrap(value, width=110 - len(indent) - 2, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}{key}: >-", *[f"{indent}  {line}" for line in body]]


def yaml_list_item(value: str, indent: str = "  ") -> list[str]:
    """Render one list item of text, folded like yaml_text."""
    if plain_ok(value, 110 - len(indent) - 2):
        return [f"{indent}- {value}"]
    body = textwrap.wrap(value, width=110 - len(indent) - 2, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}- >-", *[f"{indent}  {line}" for line in body]]


def profile_yml(p: Profile) -> str:
    """Render profile.yml (metadata read by tests/sim/up.yml and by tests)."""
    if p.kind == "failure":
        replay = "stdout, stderr, rc (every invocation fails)"
    elif p.kind == "real":
        replay = "q-x.xml (real), plain.txt (real)"
    else:
        replay = "q-x.xml (synthetic), plain.txt (derived from the real table)"
    lines = [
        "---",
        "# Simulated GPU node profile (kimi.vllm test harness). GENERATED by tests/sim/profiles/make_synthetic.py:",
        "# edit the script and re-run it, not this file.",
        f"name: {p.name}",
        *yaml_text("description", p.description),
        "simulated: true",
        f"nvidia_smi: {p.kind}  # synthetic | real | failure",
        *yaml_text("replay", replay),
        "source:",
        *[line for s in p.source for line in yaml_list_item(s)],
        f"gpu_count: {p.gpu_count}",
        f"fabricmanager: {p.fabricmanager}",
        "kernel_modules:  # also written to proc-modules (/proc/modules format)",
        *[f"  - {m}" for m in p.kernel_modules],
        f"docker: {'true' if p.docker else 'false'}",
        f"hf_cache_size: {p.hf_cache_size}",
        f"docker_root_size: {p.docker_root_size}",
    ]
    if p.notes:
        lines.append("notes:")
        lines.extend(line for n in p.notes for line in yaml_list_item(n))
    return "\n".join(lines) + "\n"


def render(p: Profile) -> dict[str, bytes]:
    """Return every file of a profile directory, name -> content."""
    files: dict[str, bytes] = {
        "profile.yml": profile_yml(p).encode(),
        "proc-modules": proc_modules(p.kernel_modules).encode(),
    }
    if p.kind == "real":
        files["q-x.xml"] = H200_XML.read_bytes()
        files["plain.txt"] = H200_PLAIN.read_bytes()
    elif p.kind == "failure":
        files["stdout"] = DRIVER_MISMATCH.read_bytes()
        files["stderr"] = b""
        files["rc"] = b"18\n"
    else:
        table_text = B200_PLAIN.read_text()
        table = parse_table(table_text)
        xml = synthetic_xml(H200_XML.read_text(), table, p.gpu_count, p.state, p.name)
        files["q-x.xml"] = xml.encode()
        plain = plain_variant(table_text, p.gpu_count, p.state.persistence == "Enabled", p.state.mig == "Enabled")
        files["plain.txt"] = plain.encode()
    return files


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every profile directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any generated file differs on disk")
    args = parser.parse_args(argv)
    differ = []
    for p in PROFILES:
        pdir = HERE / p.name
        wanted = render(p)
        present = {f.name for f in pdir.iterdir() if f.is_file()} if pdir.is_dir() else set()
        for extra in sorted(present - wanted.keys()):
            differ.append(f"{rel(pdir / extra)} (not generated: remove it)")
            if not args.check:
                (pdir / extra).unlink()
        for name, content in wanted.items():
            path = pdir / name
            if path.is_file() and path.read_bytes() == content:
                continue
            differ.append(rel(path))
            if not args.check:
                pdir.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                path.chmod(0o644)
    if args.check:
        if differ:
            print("make_synthetic.py --check: generated profile files are out of date:", file=sys.stderr)
            for d in differ:
                print(f"  {d}", file=sys.stderr)
            print("run: python3 tests/sim/profiles/make_synthetic.py", file=sys.stderr)
            return 1
        print(f"make_synthetic.py --check: {len(PROFILES)} profiles up to date")
        return 0
    for d in differ:
        print(f"wrote {d}")
    print(f"make_synthetic.py: {len(PROFILES)} profiles, {len(differ)} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
