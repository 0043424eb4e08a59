# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The server container on a simulated node matches the seed's `docker run`, and serves."""

import json
import shlex
from pathlib import Path

import docker
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SEED = (REPO / "tests" / "fixtures" / "seed" / "docker-run.txt").read_text()
NODE = "srv-node"
CONTAINER = f"kimi-vllm-{NODE}"
IMAGE = "vllm/vllm-openai:nightly-e312c5cb25427e76fc3830ab14e7b6bc0963a55c"


def seed_serve_args():
    """The arguments after the image in the seed's command."""
    words = shlex.split(SEED.replace("\\\n", " "))
    return words[words.index(IMAGE) + 1 :]


@pytest.fixture(scope="module")
def container():
    """The server container's inspect data, from this machine's docker engine."""
    return docker.from_env().api.inspect_container(CONTAINER)


def test_runs_the_seed_arguments_exactly(container):
    assert container["State"]["Running"]
    # The stand-in image's entrypoint is `python3 vllm_standin.py serve`: what follows is what docker was given.
    assert container["Config"]["Cmd"] == seed_serve_args()


def test_runs_the_pinned_image(container):
    assert container["Config"]["Image"] == f"127.0.0.1:5000/{IMAGE}"


def test_ipc_host_restart_policy_and_network(container):
    host_config = container["HostConfig"]
    assert host_config["IpcMode"] == "host"
    assert host_config["RestartPolicy"]["Name"] in ("", "no")
    node = docker.from_env().api.inspect_container(NODE)
    assert host_config["NetworkMode"] == f"container:{node['Id']}"


def test_model_cache_is_mounted(container):
    mounts = {m["Destination"]: m["Source"] for m in container["Mounts"]}
    assert mounts["/root/.cache/huggingface"] == f"/var/tmp/kimi-sim/{NODE}/hf-cache"


def test_no_secret_in_labels(container):
    spec = json.loads(container["Config"]["Labels"]["kimi.vllm.spec"])
    assert "VLLM_API_KEY" not in json.dumps(spec["env"])
    assert spec["command"] == seed_serve_args()


def test_port_is_served_on_the_node(host):
    assert host.socket("tcp://0.0.0.0:8000").is_listening


GROUP_VARS = yaml.safe_load((REPO / "inventories" / "demo" / "group_vars" / "sim_nodes.yml").read_text())
LIST_MODELS = (
    'python3 -c "import json,sys,urllib.request;'
    "r=urllib.request.Request('http://127.0.0.1:8000/v1/models', headers=dict([sys.argv[1:]]) if sys.argv[1:] else {});"
    'print(json.dumps(json.load(urllib.request.urlopen(r))))"'
)


def test_models_are_listed_on_the_node(host):
    out = host.check_output(LIST_MODELS + " Authorization 'Bearer %s'", GROUP_VARS["vllm_server_api_key"])
    cards = json.loads(out)["data"]
    assert [card["id"] for card in cards] == ["kimi-k2.7-code"]
    assert cards[0]["root"] == "moonshotai/Kimi-K2.7-Code"


def test_the_api_key_is_enforced(host):
    refused = host.run(LIST_MODELS)
    assert refused.rc != 0
    assert "401" in refused.stderr
