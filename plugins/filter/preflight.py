# Copyright (c) kimi.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Preflight verdicts: turn what the preflight role observed on a node into check rows.

The role gathers raw observations (nvidia-smi facts, docker's /info, mounts, ...) with modules; every
judgement lives here, in pure functions that are unit-tested without a node.
"""

from __future__ import annotations

import posixpath
import re

from ansible.errors import AnsibleFilterError

# Order is the order rows are reported in.
CHECKS = (
    "os",
    "driver",
    "cuda",
    "gpu_count",
    "gpu_model",
    "gpu_memory",
    "mig",
    "persistence",
    "gpu_health",
    "fabric",
    "fabric_manager",
    "ib_umad",
    "docker",
    "nvidia_runtime",
    "disk_model_cache",
    "disk_docker_root",
    "port",
)
# Persistence mode only slows the first CUDA call after the GPUs go idle; vLLM runs without it.
DEFAULT_SEVERITY = {**dict.fromkeys(CHECKS, "fail"), "persistence": "warn"}
SEVERITIES = ("fail", "warn")
GPU_CHECKS = ("cuda", "gpu_count", "gpu_model", "gpu_memory", "mig", "persistence", "gpu_health", "fabric")
GB = 1000**3


def _row(check, status, found, expected, fix="", severity="fail"):
    return {
        "check": check,
        "status": status,
        "severity": severity,
        "found": found,
        "expected": expected,
        "fix": fix,
    }


def _gb(num_bytes):
    return "%.1f GB" % (num_bytes / GB)


def _fmt_list(values):
    return ", ".join(str(v) for v in values)


def mount_for(path, mounts):
    """Return the mount (from ansible_facts.mounts) that holds ``path``: the longest mount point prefix."""
    path = posixpath.normpath(path)
    best = None
    for mount in mounts or []:
        point = mount.get("mount")
        if not point:
            continue
        point = posixpath.normpath(point)
        holds = path == point or point == "/" or path.startswith(point + "/")
        if holds and (best is None or len(point) > len(posixpath.normpath(best["mount"]))):
            best = mount
    return best


def _gpus(nvidia):
    return nvidia.get("gpus") or []


def _os_matches(distro, version, entry):
    """``Ubuntu 24.04`` accepts 24.04 and 24.04.3; ``Debian 13`` accepts 13 and 13.2: a prefix on dot boundaries."""
    want_distro, want_version = [*entry.split(None, 1), ""][:2]
    if want_distro.lower() != distro.lower():
        return False
    return version == want_version or version.startswith(want_version + ".") or not want_version


def _check_os(obs, cfg):
    os_info = obs.get("os") or {}
    distro = os_info.get("distribution") or "unknown"
    version = os_info.get("version") or ""
    found = (f"{distro} {version}").strip()
    supported = cfg["preflight_os_supported"]
    ok = any(_os_matches(distro, version, entry) for entry in supported)
    return _row(
        "os",
        "pass" if ok else "fail",
        found,
        "one of: " + _fmt_list(supported),
        ""
        if ok
        else f"Reinstall the node from the GPU Base 24.04 image (Ubuntu 24.04), or add '{found}' to "
        "preflight_os_supported once you have validated it",
    )


def _check_driver(obs, cfg):
    nvidia = obs.get("nvidia") or {}
    branches = [str(b) for b in cfg["preflight_driver_branches"]]
    expected = "NVIDIA driver branch {}, nvidia-smi answering".format(" or ".join(branches))
    if not nvidia.get("ok"):
        error = nvidia.get("error") or {}
        return _row(
            "driver",
            "fail",
            "nvidia-smi failed ({}): {}".format(error.get("kind", "unknown"), error.get("message", "no output")),
            expected,
            error.get("remedy") or "Run nvidia-smi on the node and fix what it reports",
        )
    version = nvidia.get("driver_version") or "unknown"
    branch = str(nvidia.get("driver_branch") or "")
    ok = branch in branches
    return _row(
        "driver",
        "pass" if ok else "fail",
        "{} (branch {})".format(version, branch or "unknown"),
        expected,
        ""
        if ok
        else "Install the {} server driver and its matching fabric manager, then reboot: sudo apt-get install "
        "nvidia-driver-{}-server-open nvidia-fabricmanager-{} && sudo reboot (or accept branch {} in "
        "preflight_driver_branches)".format(branches[0], branches[0], branches[0], branch or "<branch>"),
    )


def _check_cuda(obs, cfg):
    nvidia = obs["nvidia"]
    found = nvidia.get("cuda_version") or "unknown"
    allowed = [str(v) for v in cfg["preflight_cuda_versions"]]
    ok = found in allowed
    return _row(
        "cuda",
        "pass" if ok else "fail",
        f"driver supports CUDA {found}",
        "CUDA " + " or ".join(allowed),
        ""
        if ok
        else f"The CUDA version follows the driver branch: install the driver that ships CUDA {allowed[0]} "
        f"(see the driver row), or accept {found} in preflight_cuda_versions if the image's NVIDIA_REQUIRE_CUDA "
        "allows it",
    )


def _check_gpu_count(obs, cfg):
    nvidia = obs["nvidia"]
    count = int(nvidia.get("gpu_count") or 0)
    attached = nvidia.get("attached_gpus")
    want = int(cfg["preflight_gpu_count"])
    found = f"{count} GPU" + ("" if count == 1 else "s")
    if attached is not None and int(attached) != count:
        found += f" (nvidia-smi says {attached} attached)"
    ok = count == want
    return _row(
        "gpu_count",
        "pass" if ok else "fail",
        found,
        f"{want} GPU" + ("" if want == 1 else "s"),
        ""
        if ok
        else "A GPU is missing from the bus or hidden: check `nvidia-smi -L`, `lspci -d 10de:` and "
        "`sudo dmesg -T | grep -i -E 'NVRM|Xid'`; a GPU that fell off the bus needs a node reboot or RMA "
        f"(or set preflight_gpu_count to {count} for a smaller node)",
    )


def _check_gpu_model(obs, cfg):
    want = str(cfg["preflight_gpu_model"])
    names = sorted({g.get("name") or "unknown" for g in _gpus(obs["nvidia"])})
    ok = bool(names) and all(want.lower() in n.lower() for n in names)
    return _row(
        "gpu_model",
        "pass" if ok else "fail",
        _fmt_list(names) or "no GPUs",
        f"every GPU is a {want}",
        ""
        if ok
        else f"Kimi-K2.7-Code with the seed's settings needs an HGX {want} node: run this on one, or set "
        "preflight_gpu_model to the model you have validated",
    )


def _check_gpu_memory(obs, cfg):
    want = int(cfg["preflight_gpu_memory_min_mib"])
    gpus = _gpus(obs["nvidia"])
    sizes = [g.get("memory_total_mib") for g in gpus if g.get("memory_total_mib") is not None]
    if not sizes:
        return _row("gpu_memory", "fail", "unknown", f">= {want} MiB per GPU", "nvidia-smi reported no memory size")
    low = min(sizes)
    ok = low >= want
    return _row(
        "gpu_memory",
        "pass" if ok else "fail",
        f"{low} MiB per GPU (smallest)",
        f">= {want} MiB per GPU",
        "" if ok else "The model does not fit in this node's GPU memory: use a node with larger GPUs",
    )


def _indexes(gpus, predicate):
    return [str(g.get("index")) for g in gpus if predicate(g)]


def _check_mig(obs, cfg):
    gpus = _gpus(obs["nvidia"])
    bad = _indexes(gpus, lambda g: g.get("mig_mode") == "Enabled" or g.get("mig_mode_pending") == "Enabled")
    return _row(
        "mig",
        "fail" if bad else "pass",
        f"MIG enabled on GPU {_fmt_list(bad)}" if bad else "MIG disabled",
        "MIG disabled on every GPU",
        "Disable MIG, then reset the GPUs (no process may use them): sudo nvidia-smi -mig 0 && sudo nvidia-smi -r "
        "(or reboot)"
        if bad
        else "",
    )


def _check_persistence(obs, cfg):
    gpus = _gpus(obs["nvidia"])
    bad = _indexes(gpus, lambda g: g.get("persistence_mode") != "Enabled")
    return _row(
        "persistence",
        "fail" if bad else "pass",
        f"persistence mode off on GPU {_fmt_list(bad)}" if bad else "persistence mode on",
        "persistence mode on every GPU",
        "Enable it: sudo systemctl enable --now nvidia-persistenced (or sudo nvidia-smi -pm 1)" if bad else "",
    )


def _check_gpu_health(obs, cfg):
    problems = []
    for gpu in _gpus(obs["nvidia"]):
        idx = gpu.get("index")
        if gpu.get("remapped_rows_failure"):
            problems.append(f"GPU {idx}: row remapping failed")
        if gpu.get("remapped_rows_pending"):
            problems.append(f"GPU {idx}: row remap pending")
        if gpu.get("retired_pages_pending"):
            problems.append(f"GPU {idx}: page retirement pending")
        if gpu.get("ecc_volatile_uncorrectable"):
            problems.append(
                "GPU {}: {} volatile uncorrectable ECC errors".format(idx, gpu["ecc_volatile_uncorrectable"])
            )
    fix = ""
    if problems:
        fix = "Drain the node and reset the GPUs so pending remaps take effect: sudo nvidia-smi -r (or reboot); "
        fix += "a failed remap or errors that return after a reset mean the GPU needs RMA"
    return _row(
        "gpu_health",
        "fail" if problems else "pass",
        "; ".join(problems) if problems else "no pending remaps, no volatile uncorrectable ECC errors",
        "no pending row remaps or page retirements, no volatile uncorrectable ECC errors",
        fix,
    )


def fabric_required(nvidia, mode):
    """Whether the NVSwitch fabric must be up: ``auto`` means nvidia-smi reports a fabric state."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return any(g.get("fabric_state") for g in nvidia.get("gpus") or [])


def _check_fabric(obs, cfg):
    gpus = _gpus(obs["nvidia"])
    if not fabric_required(obs["nvidia"], cfg["preflight_fabric_required"]):
        return _row("fabric", "skip", "no NVSwitch fabric reported", "fabric state Completed (NVSwitch systems)")
    bad = [
        "GPU {}: {}/{}".format(g.get("index"), g.get("fabric_state") or "N/A", g.get("fabric_status") or "N/A")
        for g in gpus
        if g.get("fabric_state") != "Completed" or g.get("fabric_status") not in ("Success", None)
    ]
    return _row(
        "fabric",
        "fail" if bad else "pass",
        "; ".join(bad) if bad else "all GPUs Completed/Success",
        "fabric state Completed, status Success on every GPU",
        "The NVLink fabric is not trained: sudo systemctl restart nvidia-fabricmanager (and nvlsm on Blackwell), "
        "then check `journalctl -u nvidia-fabricmanager` and `nvidia-smi -q | grep -A2 Fabric`"
        if bad
        else "",
    )


def _check_fabric_manager(obs, cfg):
    nvidia = obs.get("nvidia") or {}
    service = cfg["preflight_fabric_manager_service"]
    if not nvidia.get("ok") or not fabric_required(nvidia, cfg["preflight_fabric_required"]):
        return _row("fabric_manager", "skip", "no NVSwitch fabric reported", f"{service} active")
    state = (obs.get("fabric_manager") or {}).get("state") or "not installed"
    ok = state == "running"
    return _row(
        "fabric_manager",
        "pass" if ok else "fail",
        f"{service}: {state}",
        f"{service} running",
        ""
        if ok
        else "Install the fabric manager matching the driver and start it: sudo apt-get install "
        "nvidia-fabricmanager-{} && sudo systemctl enable --now {}".format(
            nvidia.get("driver_branch") or "570", service
        ),
    )


def _is_blackwell(nvidia):
    for gpu in nvidia.get("gpus") or []:
        arch = (gpu.get("architecture") or "").lower()
        name = (gpu.get("name") or "").upper()
        if arch == "blackwell" or re.search(r"\bG?B[0-9]{3}\b", name):
            return True
    return False


def _check_ib_umad(obs, cfg):
    nvidia = obs.get("nvidia") or {}
    mode = cfg["preflight_ib_umad_required"]
    required = mode == "always" or (
        mode == "auto"
        and nvidia.get("ok")
        and fabric_required(nvidia, cfg["preflight_fabric_required"])
        and _is_blackwell(nvidia)
    )
    if not required:
        return _row("ib_umad", "skip", "not a Blackwell NVSwitch system", "ib_umad loaded (Blackwell HGX)")
    modules = obs.get("kernel_modules") or {}
    if modules.get("error"):
        return _row(
            "ib_umad",
            "fail",
            "cannot read {}: {}".format(cfg["preflight_kernel_modules_file"], modules["error"]),
            "ib_umad loaded",
            "Check that {} is readable".format(cfg["preflight_kernel_modules_file"]),
        )
    ok = "ib_umad" in (modules.get("loaded") or [])
    return _row(
        "ib_umad",
        "pass" if ok else "fail",
        "ib_umad loaded" if ok else "ib_umad not loaded",
        "ib_umad loaded (NVLSM needs it on NVLink 5 systems)",
        "" if ok else "sudo modprobe ib_umad && echo ib_umad | sudo tee /etc/modules-load.d/ib_umad.conf",
    )


def _check_docker(obs, cfg):
    docker = obs.get("docker") or {}
    if docker.get("ok"):
        return _row(
            "docker",
            "pass",
            "docker {} answering at {}".format(docker.get("version") or "?", cfg["preflight_docker_host"]),
            "docker daemon answering",
        )
    if docker.get("installed"):
        found = "installed, but the daemon does not answer at {}: {}".format(
            cfg["preflight_docker_host"],
            docker.get("error") or "no answer",
        )
        fix = "Start it and look at why it stopped: sudo systemctl enable --now docker; journalctl -u docker"
    else:
        found = "not installed (no docker command, no socket at {})".format(cfg["preflight_docker_host"])
        fix = "Install Docker and start it: sudo apt-get install -y docker.io && sudo systemctl enable --now docker"
    return _row("docker", "fail", found, "docker daemon answering", fix)


def _check_nvidia_runtime(obs, cfg):
    docker = obs.get("docker") or {}
    if not docker.get("ok"):
        return _row("nvidia_runtime", "skip", "docker is not answering", "NVIDIA runtime registered with docker")
    name = cfg["preflight_nvidia_runtime_name"]
    runtimes = docker.get("runtimes") or []
    cdi_dirs = docker.get("cdi_spec_dirs") or []
    cdi_specs = obs.get("cdi_specs") or []
    if name in runtimes:
        return _row("nvidia_runtime", "pass", f"docker runtime '{name}' registered", "NVIDIA runtime or CDI")
    if cdi_dirs and cdi_specs:
        return _row("nvidia_runtime", "pass", f"CDI spec {_fmt_list(cdi_specs)}", "NVIDIA runtime or CDI")
    found = "runtimes: {}; CDI: {}".format(
        _fmt_list(runtimes) or "none",
        (f"spec dirs {_fmt_list(cdi_dirs)} but no NVIDIA spec") if cdi_dirs else "not enabled in the daemon",
    )
    return _row(
        "nvidia_runtime",
        "fail",
        found,
        f"docker runtime '{name}' or an NVIDIA CDI spec",
        "sudo apt-get install -y nvidia-container-toolkit && sudo nvidia-ctk runtime configure --runtime=docker "
        "&& sudo systemctl restart docker",
    )


def _free_space_row(check, path, mounts, need, expected, holds, fix):
    """A disk row: the mount holding ``path`` must have ``need`` bytes free."""
    mount = mount_for(path, mounts)
    if mount is None or mount.get("size_available") is None:
        return _row(check, "fail", f"no mount found for {path}", expected, f"Check that {path} is on a mounted disk")
    free = int(mount["size_available"])
    ok = free >= need
    return _row(
        check,
        "pass" if ok else "fail",
        f"{_gb(free)} free on {mount['mount']} ({holds})",
        expected,
        "" if ok else fix.format(short=_gb(need - free), mount=mount["mount"]),
    )


def _check_disk_model_cache(obs, cfg):
    cache = obs.get("model_cache") or {}
    path = cache.get("path") or cfg["preflight_model_cache_path"]
    size = int(cfg["preflight_model_size_gb"]) * GB
    present = int(cache.get("present_bytes") or 0)
    margin_gb = int(cfg["preflight_model_cache_margin_gb"])
    need = max(size - present, 0) + margin_gb * GB
    return _free_space_row(
        "disk_model_cache",
        path,
        obs.get("mounts"),
        need,
        f">= {_gb(need)} free (weights {_gb(size)}, {_gb(present)} already there, margin {margin_gb} GB)",
        f"holds {path}",
        "Free {short} on {mount}, or put the model cache on a larger volume (e.g. the node's NVMe array) and set "
        "vllm_server_model_cache / preflight_model_cache_path to it",
    )


def _check_disk_docker_root(obs, cfg):
    docker = obs.get("docker") or {}
    if not docker.get("ok"):
        return _row("disk_docker_root", "skip", "docker is not answering", "room for the vLLM image")
    root = docker.get("root_dir") or "/var/lib/docker"
    pulled = bool(obs.get("image_present"))
    image_gb = int(cfg["preflight_image_size_gb"])
    need = int(cfg["preflight_docker_root_margin_gb"]) * GB + (0 if pulled else image_gb * GB)
    return _free_space_row(
        "disk_docker_root",
        root,
        obs.get("mounts"),
        need,
        f">= {_gb(need)} free (image {'already pulled' if pulled else f'{image_gb} GB'})",
        f"docker data root {root}",
        "Free {short} in docker's data root (sudo docker system prune) or move it to a larger volume "
        '("data-root" in /etc/docker/daemon.json)',
    )


def _check_port(obs, cfg):
    port = obs.get("port") or {}
    number = cfg["preflight_port"]
    if not port.get("in_use"):
        return _row("port", "pass", f"port {number} free", f"port {number} free or held by our server")
    if port.get("ours"):
        return _row(
            "port",
            "pass",
            "port {} held by our container {}".format(number, cfg["preflight_server_container"]),
            f"port {number} free or held by our server",
        )
    return _row(
        "port",
        "fail",
        f"port {number} in use by another process",
        "port {} free or held by container {}".format(number, cfg["preflight_server_container"]),
        f"Find the owner with `sudo ss -ltnp 'sport = :{number}'` and stop it, or serve on another port "
        "(vllm_server_port / preflight_port)",
    )


_CHECK_FUNCS = {
    "os": _check_os,
    "driver": _check_driver,
    "cuda": _check_cuda,
    "gpu_count": _check_gpu_count,
    "gpu_model": _check_gpu_model,
    "gpu_memory": _check_gpu_memory,
    "mig": _check_mig,
    "persistence": _check_persistence,
    "gpu_health": _check_gpu_health,
    "fabric": _check_fabric,
    "fabric_manager": _check_fabric_manager,
    "ib_umad": _check_ib_umad,
    "docker": _check_docker,
    "nvidia_runtime": _check_nvidia_runtime,
    "disk_model_cache": _check_disk_model_cache,
    "disk_docker_root": _check_disk_docker_root,
    "port": _check_port,
}


def _validate(cfg):
    unknown = [name for name in cfg.get("preflight_skip") or [] if name not in CHECKS]
    if unknown:
        raise AnsibleFilterError(f"preflight_skip: unknown check(s) {_fmt_list(unknown)}; allowed: {_fmt_list(CHECKS)}")
    severity = cfg.get("preflight_severity") or {}
    if not isinstance(severity, dict):
        raise AnsibleFilterError("preflight_severity must be a dict of check name -> fail|warn")
    for name, level in severity.items():
        if name not in CHECKS:
            raise AnsibleFilterError(f"preflight_severity: unknown check '{name}'; allowed: {_fmt_list(CHECKS)}")
        if level not in SEVERITIES:
            raise AnsibleFilterError(f"preflight_severity.{name}: '{level}' is not one of {_fmt_list(SEVERITIES)}")


def preflight_evaluate(observed, settings):
    """Judge every check. Returns ``{fit, rows, failed, warned, skipped}``; rows keep CHECKS order."""
    _validate(settings)
    skip = set(settings.get("preflight_skip") or [])
    severity = dict(DEFAULT_SEVERITY)
    severity.update(settings.get("preflight_severity") or {})
    nvidia_ok = bool((observed.get("nvidia") or {}).get("ok"))
    rows = []
    for name in CHECKS:
        if name in skip:
            rows.append(_row(name, "skip", "skipped by preflight_skip", "", severity=severity[name]))
            continue
        if name in GPU_CHECKS and not nvidia_ok:
            rows.append(
                _row(name, "skip", "nvidia-smi is not usable (see the driver row)", "", severity=severity[name])
            )
            continue
        row = _CHECK_FUNCS[name](observed, settings)
        row["severity"] = severity[name]
        if row["status"] == "fail" and severity[name] == "warn":
            row["status"] = "warn"
        rows.append(row)
    failed = [r["check"] for r in rows if r["status"] == "fail"]
    return {
        "fit": not failed,
        "rows": rows,
        "failed": failed,
        "warned": [r["check"] for r in rows if r["status"] == "warn"],
        "skipped": [r["check"] for r in rows if r["status"] == "skip"],
    }


def _wrap(text, width):
    words = text.split()
    lines, current = [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines or [""]


def preflight_report(result, host, show_all=False):
    """Render a verdict as a list of lines: a header, then check / status / found / expected, then the fix."""
    failed, warned = result.get("failed") or [], result.get("warned") or []
    if result.get("fit"):
        head = f"{host}: FIT"
        if warned:
            head += f" ({len(warned)} warning{'' if len(warned) == 1 else 's'})"
    else:
        head = f"{host}: NOT FIT: {len(failed)} check{'' if len(failed) == 1 else 's'} failed"
    rows = [r for r in result.get("rows") or [] if show_all or r["status"] in ("fail", "warn")]
    lines = [head]
    if not rows:
        return lines
    width = {
        "check": max(len("check"), *(len(r["check"]) for r in rows)),
        "status": 6,
        "found": min(48, max(len("found"), *(len(r["found"]) for r in rows))),
    }
    fmt = "  %-{check}s  %-{status}s  %-{found}s  %s".format(**width)
    lines.append(fmt % ("check", "status", "found", "expected"))
    for row in rows:
        found_lines = _wrap(row["found"], width["found"])
        expected_lines = _wrap(row["expected"], 60)
        for i in range(max(len(found_lines), len(expected_lines))):
            lines.append(
                (
                    fmt
                    % (
                        row["check"] if i == 0 else "",
                        row["status"].upper() if i == 0 else "",
                        found_lines[i] if i < len(found_lines) else "",
                        expected_lines[i] if i < len(expected_lines) else "",
                    )
                ).rstrip()
            )
        if row["fix"] and row["status"] in ("fail", "warn"):
            indent = " " * (width["check"] + 4)
            for j, part in enumerate(_wrap(row["fix"], 100)):
                lines.append("{}{}{}".format(indent, "fix: " if j == 0 else "     ", part))
    return lines


def preflight_fleet_summary(hosts, hostvars):
    """One line per host: FIT, NOT FIT with the failed checks, or no verdict (unreachable, failed earlier)."""
    verdicts = {}
    for host in hosts:
        result = hostvars[host].get("preflight_result") if host in hostvars else None
        verdicts[host] = result
    fit = [h for h, r in verdicts.items() if r and r.get("fit")]
    unfit = [h for h, r in verdicts.items() if r and not r.get("fit")]
    unknown = [h for h, r in verdicts.items() if not r]
    lines = [f"fleet: {len(fit)} fit, {len(unfit)} not fit, {len(unknown)} without a verdict"]
    width = max([len(h) for h in hosts] + [4])
    for host in hosts:
        result = verdicts[host]
        if not result:
            state = "NO VERDICT (unreachable or failed before the checks ran)"
        elif result.get("fit"):
            state = "FIT" + (" (warnings: {})".format(", ".join(result["warned"])) if result.get("warned") else "")
        else:
            state = "NOT FIT: " + ", ".join(result["failed"])
        lines.append(f"  {host:<{width}}  {state}")
    return lines


class FilterModule:
    """kimi.vllm preflight filters."""

    def filters(self):
        """Map filter names to functions."""
        return {
            "preflight_evaluate": preflight_evaluate,
            "preflight_report": preflight_report,
            "preflight_fleet_summary": preflight_fleet_summary,
        }
