# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm serve argument list and the image/driver CUDA check."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.kimi.vllm.plugins.filter import vllm_server as vs

REPO = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((REPO / "roles" / "vllm_server" / "defaults" / "main.yml").read_text())
SEED = (REPO / "tests" / "fixtures" / "seed" / "docker-run.txt").read_text()


def seed_words():
    return shlex.split(SEED.replace("\\\n", " "))


def cfg(**overrides):
    return {**DEFAULTS, **overrides}


def test_defaults_give_the_seed_arguments_exactly():
    words = seed_words()
    image = f"{DEFAULTS['vllm_server_image_repository']}:{DEFAULTS['vllm_server_image_tag']}"
    assert words[words.index(image) + 1 :] == vs.vllm_serve_args(cfg())


def test_several_served_names():
    args = vs.vllm_serve_args(cfg(vllm_server_served_model_names=["kimi-k2.7-code", "my-kimi2.7-code"]))
    i = args.index("--served-model-name")
    assert args[i : i + 3] == ["--served-model-name", "kimi-k2.7-code", "my-kimi2.7-code"]


def test_pins_and_limits_are_added_when_set():
    args = vs.vllm_serve_args(
        cfg(
            vllm_server_revision="abc",
            vllm_server_code_revision="abc",
            vllm_server_tokenizer_revision="abc",
            vllm_server_max_model_len=131072,
            vllm_server_gpu_memory_utilization=0.92,
            vllm_server_extra_args=["--max-num-seqs", "64"],
        )
    )
    assert args[-12:] == [
        "--revision", "abc", "--code-revision", "abc", "--tokenizer-revision", "abc",
        "--max-model-len", "131072", "--gpu-memory-utilization", "0.92", "--max-num-seqs", "64",
    ]  # fmt: skip


def test_empty_optional_flags_are_left_out():
    args = vs.vllm_serve_args(
        cfg(
            vllm_server_mm_encoder_tp_mode="",
            vllm_server_reasoning_parser="",
            vllm_server_trust_remote_code=False,
            vllm_server_enable_auto_tool_choice=False,
        )
    )
    assert "--mm-encoder-tp-mode" not in args
    assert "--reasoning-parser" not in args
    assert "--trust-remote-code" not in args
    assert "--enable-auto-tool-choice" not in args


def test_api_key_never_on_the_command_line():
    assert "--api-key" not in vs.vllm_serve_args(cfg(vllm_server_api_key="sk-secret"))
    assert "sk-secret" not in " ".join(vs.vllm_serve_args(cfg(vllm_server_api_key="sk-secret")))


def test_auto_tool_choice_needs_a_parser():
    with pytest.raises(
        AnsibleFilterError, match="vllm_server_enable_auto_tool_choice needs vllm_server_tool_call_parser"
    ):
        vs.vllm_serve_args(cfg(vllm_server_tool_call_parser=""))


@pytest.mark.parametrize(
    ("extra", "owner"),
    [
        (["--model", "x"], "vllm_server_model"),
        (["--api-key=k"], "vllm_server_api_key"),
        (["-tp", "4"], "vllm_server_tensor_parallel_size"),
    ],
)
def test_extra_args_may_not_repeat_a_managed_flag(extra, owner):
    with pytest.raises(AnsibleFilterError, match=f"is set through {owner}"):
        vs.vllm_serve_args(cfg(vllm_server_extra_args=extra))


# NVIDIA_REQUIRE_CUDA values in the form the CUDA base images use (nvidia/cuda Dockerfiles).
CU128 = "cuda>=12.8 brand=unknown,driver>=470,driver<471 brand=tesla,driver>=535,driver<536"
CU129 = "cuda>=12.9 brand=unknown,driver>=535,driver<536 brand=tesla,driver>=565,driver<566"
CU130 = "cuda>=13.0"


@pytest.mark.parametrize(
    ("require", "cuda", "driver", "ok"),
    [
        (CU128, "12.8", "570.133.20", True),  # the seed's host and image
        (CU129, "12.8", "570.133.20", False),  # a -cu129 build on a 570 driver
        (CU130, "12.8", "570.133.20", False),  # a CUDA 13 nightly on a 570 driver
        (CU130, "13.0", "580.159.04", True),
        (CU129, "12.8", "565.57.01", True),  # forward compatibility: the 565 branch is listed
        (CU129, "12.7", "535.183.01", True),
        ("", "12.8", "570.133.20", True),
    ],
)
def test_cuda_requirement(require, cuda, driver, ok):
    verdict = vs.cuda_requirement_check(require, cuda, driver)
    assert verdict["ok"] is ok, verdict


def test_cuda_requirement_names_the_unmet_condition():
    verdict = vs.cuda_requirement_check(CU130, "12.8", "570.133.20")
    assert verdict["reason"] == "unsatisfied condition: cuda>=13.0 (host driver 570.133.20 supports CUDA 12.8)"


def test_cuda_requirement_without_driver_facts():
    assert not vs.cuda_requirement_check(CU128, None, None)["ok"]


def test_cuda_requirement_refuses_what_it_cannot_read():
    with pytest.raises(AnsibleFilterError, match="cannot read the constraint 'cuda~12'"):
        vs.cuda_requirement_check("cuda~12", "12.8", "570.1")


def test_env_subset():
    env = ["PATH=/usr/bin", "VLLM_API_KEY=k=with=equals", "HF_TOKEN=t", "NVIDIA_REQUIRE_CUDA=cuda>=12.8"]
    assert vs.env_subset(env, ["VLLM_API_KEY", "HF_TOKEN"]) == {"VLLM_API_KEY": "k=with=equals", "HF_TOKEN": "t"}
    assert vs.env_subset(None, ["X"]) == {}


def test_command_line_strings_read_as_booleans_and_numbers():
    """`-e key=value` gives strings: "false" must not add a flag, "0" must not add --max-model-len 0."""
    as_strings = cfg(
        vllm_server_trust_remote_code="false",
        vllm_server_enable_auto_tool_choice="yes",
        vllm_server_max_model_len="0",
        vllm_server_gpu_memory_utilization="0.9",
        vllm_server_tensor_parallel_size="8",
    )
    args = vs.vllm_serve_args(as_strings)
    assert "--trust-remote-code" not in args
    assert "--enable-auto-tool-choice" in args
    assert "--max-model-len" not in args
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"
    typed = cfg(vllm_server_trust_remote_code=False, vllm_server_gpu_memory_utilization=0.9)
    assert vs.vllm_serve_args(cfg(vllm_server_trust_remote_code="false", vllm_server_gpu_memory_utilization="0.9")) == (
        vs.vllm_serve_args(typed)
    )
    with pytest.raises(AnsibleFilterError, match="vllm_server_trust_remote_code must be a boolean"):
        vs.vllm_serve_args(cfg(vllm_server_trust_remote_code="maybe"))
    with pytest.raises(AnsibleFilterError, match="vllm_server_max_model_len must be a number"):
        vs.vllm_serve_args(cfg(vllm_server_max_model_len="lots"))
