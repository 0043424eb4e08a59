# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vLLM server's command line, and whether an image's CUDA requirement fits the host driver.

``vllm_serve_args`` is the only place the ``vllm serve`` argument list is built: the role, its tests and
the rollback all go through it.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# Flags each role variable owns; extra args may not repeat them (the variable is the one place to set them).
MANAGED_FLAGS = {
    "--model": "vllm_server_model",
    "--served-model-name": "vllm_server_served_model_names",
    "--tensor-parallel-size": "vllm_server_tensor_parallel_size",
    "-tp": "vllm_server_tensor_parallel_size",
    "--trust-remote-code": "vllm_server_trust_remote_code",
    "--mm-encoder-tp-mode": "vllm_server_mm_encoder_tp_mode",
    "--tool-call-parser": "vllm_server_tool_call_parser",
    "--reasoning-parser": "vllm_server_reasoning_parser",
    "--enable-auto-tool-choice": "vllm_server_enable_auto_tool_choice",
    "--revision": "vllm_server_revision",
    "--code-revision": "vllm_server_code_revision",
    "--tokenizer-revision": "vllm_server_tokenizer_revision",
    "--max-model-len": "vllm_server_max_model_len",
    "--gpu-memory-utilization": "vllm_server_gpu_memory_utilization",
    "--api-key": "vllm_server_api_key",
    "--port": "vllm_server_port",
}


_BOOLS = ("vllm_server_trust_remote_code", "vllm_server_enable_auto_tool_choice")
_NUMBERS = {
    "vllm_server_tensor_parallel_size": int,
    "vllm_server_max_model_len": int,
    "vllm_server_gpu_memory_utilization": float,
}


def _typed(cfg):
    """``cfg`` with booleans and numbers given as strings (``-e key=value``) made booleans and numbers.

    Without this, ``-e vllm_server_trust_remote_code=false`` would be a true string and add the flag, and
    ``-e vllm_server_max_model_len=0`` would add ``--max-model-len 0``.
    """
    out = dict(cfg)
    for key in _BOOLS:
        if key in out and isinstance(out[key], str):
            try:
                out[key] = boolean(out[key], strict=True)
            except TypeError:
                raise AnsibleFilterError(f"{key} must be a boolean (true or false), found {out[key]!r}") from None
    for key, kind in _NUMBERS.items():
        if key in out and isinstance(out[key], str):
            try:
                value = kind(out[key])
            except ValueError:
                raise AnsibleFilterError(f"{key} must be a number, found {out[key]!r}") from None
            # a whole number written without a point stays an int, as YAML reads it (so the spec compares equal)
            out[key] = int(value) if kind is float and value.is_integer() and "." not in out[key] else value
    return out


def vllm_serve_args(cfg):
    """The arguments after the image (its ENTRYPOINT is ``vllm serve``), in the seed's order.

    With the role's defaults this is exactly the seed's list. The API key is not here: it goes to the
    container as VLLM_API_KEY, which vLLM reads when --api-key is absent, so it never shows in a process list.
    """
    cfg = _typed(cfg)
    names = cfg.get("vllm_server_served_model_names") or []
    if cfg.get("vllm_server_enable_auto_tool_choice") and not cfg.get("vllm_server_tool_call_parser"):
        raise AnsibleFilterError(
            "vllm_server_enable_auto_tool_choice needs vllm_server_tool_call_parser (kimi_k2 for this model); "
            "vLLM refuses to start otherwise"
        )
    args = ["--model", cfg["vllm_server_model"]]
    if names:
        args += ["--served-model-name", *names]
    args += ["--tensor-parallel-size", str(cfg["vllm_server_tensor_parallel_size"])]
    if cfg.get("vllm_server_trust_remote_code"):
        args.append("--trust-remote-code")
    optional = (
        ("--mm-encoder-tp-mode", "vllm_server_mm_encoder_tp_mode"),
        ("--tool-call-parser", "vllm_server_tool_call_parser"),
        ("--reasoning-parser", "vllm_server_reasoning_parser"),
    )
    for flag, var in optional:
        if cfg.get(var):
            args += [flag, str(cfg[var])]
    if cfg.get("vllm_server_enable_auto_tool_choice"):
        args.append("--enable-auto-tool-choice")
    for flag, var in (
        ("--revision", "vllm_server_revision"),
        ("--code-revision", "vllm_server_code_revision"),
        ("--tokenizer-revision", "vllm_server_tokenizer_revision"),
    ):
        if cfg.get(var):
            args += [flag, str(cfg[var])]
    if cfg.get("vllm_server_max_model_len"):
        args += ["--max-model-len", str(cfg["vllm_server_max_model_len"])]
    if cfg.get("vllm_server_gpu_memory_utilization"):
        args += ["--gpu-memory-utilization", str(cfg["vllm_server_gpu_memory_utilization"])]
    extra = [str(a) for a in cfg.get("vllm_server_extra_args") or []]
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            raise AnsibleFilterError(
                f"vllm_server_extra_args: {flag} is set through {MANAGED_FLAGS[flag]}; remove it from the extra args"
            )
    return args + extra


_VERSION = re.compile(r"^\d+(\.\d+)*$")
_CONSTRAINT = re.compile(r"^(cuda|driver|arch|brand)(>=|<=|==|=|>|<)(.+)$")


def _version(text):
    return tuple(int(part) for part in text.split("."))


def _compare(found, op, want):
    left, right = _version(found), _version(want)
    width = max(len(left), len(right))
    left, right = left + (0,) * (width - len(left)), right + (0,) * (width - len(right))
    return {
        ">=": left >= right,
        "<=": left <= right,
        ">": left > right,
        "<": left < right,
        "=": left == right,
        "==": left == right,
    }[op]


def cuda_requirement_check(require, cuda_version, driver_version):
    """Would nvidia-container-cli start an image declaring ``NVIDIA_REQUIRE_CUDA=require`` on this host?

    The variable is a list of alternatives separated by spaces, each a comma-separated list of constraints
    that must all hold (nvidia-container-toolkit's rule). ``cuda`` is compared with the CUDA version the driver
    supports, ``driver`` with the driver version; ``brand`` and ``arch`` cannot be judged from here and count
    as met, which only widens the forward-compatibility alternatives (each of them also pins a driver range).
    Returns ``{ok, reason, require}``.
    """
    require = (require or "").strip()
    if not require:
        return {"ok": True, "reason": "the image declares no CUDA requirement", "require": require}
    if not cuda_version or not driver_version:
        return {"ok": False, "reason": "the host driver's versions are unknown (nvidia-smi failed)", "require": require}
    unmet = []
    for alternative in require.split():
        failed = []
        for constraint in alternative.split(","):
            match = _CONSTRAINT.match(constraint)
            if not match:
                raise AnsibleFilterError(f"NVIDIA_REQUIRE_CUDA: cannot read the constraint '{constraint}'")
            key, op, want = match.groups()
            if key in ("brand", "arch"):
                continue
            found = cuda_version if key == "cuda" else driver_version
            found_num = ".".join(found.split(".")[: len(want.split("."))]) if key == "driver" else found
            if not _VERSION.match(want) or not _VERSION.match(found_num):
                raise AnsibleFilterError(f"NVIDIA_REQUIRE_CUDA: cannot compare '{constraint}' with {key} {found}")
            if not _compare(found_num, op, want):
                failed.append(constraint)
        if not failed:
            return {"ok": True, "reason": f"host meets '{alternative}'", "require": require}
        unmet.append(failed[0])
    return {
        "ok": False,
        "reason": f"unsatisfied condition: {unmet[0]} (host driver {driver_version} supports CUDA {cuda_version})",
        "require": require,
    }


def env_subset(env_list, keys):
    """``{key: value}`` for the given keys from a container's ``Config.Env`` list (``KEY=value`` strings)."""
    wanted = set(keys or [])
    pairs = (item.split("=", 1) for item in env_list or [] if "=" in item)
    return {key: value for key, value in pairs if key in wanted}


class FilterModule:
    """kimi.vllm server filters."""

    def filters(self):
        """Map filter names to functions."""
        return {
            "vllm_serve_args": vllm_serve_args,
            "cuda_requirement_check": cuda_requirement_check,
            "env_subset": env_subset,
        }
