# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm_server role against this machine's docker engine and the stand-in (a test double).

Needs what `make images` prepares: the local registry on 127.0.0.1:5000 holding the stand-in image.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = (REPO / "tests" / "fixtures" / "seed" / "docker-run.txt").read_text()
PLAYBOOKS = REPO / "tests" / "integration" / "playbooks"
API_KEY = "sk-kimi-test-4f1c9e2a7d"
HF_TOKEN = "hf_testtoken_8b3d1a6c0e"
PORT = 18711
NAME = "kimi-vllm-integration"


def ansible_playbook(playbook, *extra, check=True):
    """Run ansible-playbook at -vvvv from the checkout; returns the completed process (output captured)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = ["ansible-playbook", "-vvvv", "-i", "localhost,", str(PLAYBOOKS / playbook), *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def secrets_file(tmp_path_factory):
    """The secrets go in a vars file, as an operator's vault would: ansible-playbook -vvvv echoes its command line."""
    path = tmp_path_factory.mktemp("vars") / "secrets.json"
    path.write_text(json.dumps({"vllm_server_api_key": API_KEY, "vllm_server_hf_token": HF_TOKEN}))
    return path


def server_vars(secrets, **overrides):
    values = {
        "vllm_server_container_name": NAME,
        "vllm_server_port": PORT,
        "vllm_server_model_cache": "/var/tmp/kimi-vllm-integration/hf-cache",
    }
    values.update(overrides)
    return ["-e", f"@{secrets}", "-e", json.dumps(values)]


def get(path, key=None):
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


@pytest.fixture(scope="module")
def client():
    api = docker.from_env().api
    yield api
    for name in (NAME, f"{NAME}-previous"):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(name, force=True)


def test_defaults_render_the_seed_docker_run(tmp_path):
    spec_file = tmp_path / "spec.json"
    ansible_playbook("render_server_spec.yml", "-e", f"spec_file={spec_file}")
    spec = json.loads(spec_file.read_text())
    words = shlex.split(SEED.replace("\\\n", " "))
    image = next(w for w in words if w.startswith("vllm/vllm-openai:"))
    assert words[:7] == ["docker", "run", "-d", "--gpus", "all", "--ipc=host", "-p"]
    assert spec["image"] == image
    assert spec["command"] == words[words.index(image) + 1 :]
    assert spec["ipc_mode"] == "host"
    assert spec["published_ports"] == ["0.0.0.0:8000:8000"]  # -p 8000:8000 publishes on every address
    home = os.path.expanduser("~")
    assert spec["volumes"] == [f"{home}/.cache/huggingface:/root/.cache/huggingface"]
    assert spec["device_requests"] == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert spec["restart_policy"] == "no"
    assert spec["network_mode"] == ""


def test_deploy_replace_rollback_without_printing_secrets(client, secrets_file):
    outputs = []
    # A slower load with short steps: the wait reports progress after every step until the server serves.
    slow = {"vllm_server_env": {"STANDIN_LOAD_SECONDS": "7"}, "vllm_server_ready_step": 2}
    first = ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file, **slow))
    outputs.append(first.stdout + first.stderr)
    # one flat until loop: a RETRYING line per step, each step's result (server state) at -v
    assert first.stdout.count(f"RETRYING: [localhost]: Wait for the server to serve, one step per retry: {NAME}") >= 2
    assert "not answering yet" in first.stdout
    container = client.inspect_container(NAME)
    assert container["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
    assert f"VLLM_API_KEY={API_KEY}" in container["Config"]["Env"]
    assert API_KEY not in " ".join(container["Args"])
    assert get("/v1/models")[0] == 401
    status, models = get("/v1/models", API_KEY)
    assert status == 200
    assert [card["id"] for card in models["data"]] == ["kimi-k2.7-code"]

    again = ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file, **slow))
    outputs.append(again.stdout + again.stderr)
    assert "changed=0" in again.stdout

    # A changed configuration replaces the server and keeps the old one.
    names = ["kimi-k2.7-code", "my-kimi2.7-code"]
    changed = ansible_playbook(
        "server_on_localhost.yml", *server_vars(secrets_file, vllm_server_served_model_names=names)
    )
    outputs.append(changed.stdout + changed.stderr)
    assert [card["id"] for card in get("/v1/models", API_KEY)[1]["data"]] == names
    assert client.inspect_container(f"{NAME}-previous")["State"]["Status"] == "created"

    # Rollback puts the old one back; the replaced one is kept in its place.
    back = ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file), "-e", "server_entry=rollback")
    outputs.append(back.stdout + back.stderr)
    assert [card["id"] for card in get("/v1/models", API_KEY)[1]["data"]] == ["kimi-k2.7-code"]
    kept = json.loads(client.inspect_container(f"{NAME}-previous")["Config"]["Labels"]["kimi.vllm.spec"])
    assert kept["served_model_names"] == names

    for text in outputs:
        assert API_KEY not in text
        assert HF_TOKEN not in text


def container_id():
    return docker.from_env().api.inspect_container(NAME)["Id"]


def served_names(key=API_KEY):
    status, models = get("/v1/models", key)
    assert status == 200, status
    return [card["id"] for card in models["data"]]


def test_numbers_from_the_command_line_are_numbers(client, secrets_file):
    """`-e key=value` gives strings: an unchanged server stays, a replace waits with the string timeout."""
    ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file))  # converge (the rollback left another env)
    before = container_id()
    same = ansible_playbook(
        "server_on_localhost.yml", *server_vars(secrets_file), "-e", f"vllm_server_port={PORT}",
        "-e", "vllm_server_ready_timeout=120", "-e", "vllm_server_ready_step=5", "-e", "vllm_server_check_cuda=false",
    )  # fmt: skip
    assert "changed=0" in same.stdout
    assert container_id() == before
    names = ["kimi-k2.7-code", "strings-kimi"]
    replaced = ansible_playbook(
        "server_on_localhost.yml", *server_vars(secrets_file, vllm_server_served_model_names=names),
        "-e", "vllm_server_ready_timeout=120", "-e", f"vllm_server_port={PORT}",
    )  # fmt: skip
    assert API_KEY not in replaced.stdout + replaced.stderr
    assert served_names() == names


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"vllm_server_port": 70000}, "vllm_server_port"),
        ({"vllm_server_tensor_parallel_size": 0}, "vllm_server_tensor_parallel_size"),
        ({"vllm_server_gpu_memory_utilization": 7.5}, "vllm_server_gpu_memory_utilization"),
        ({"vllm_server_model_cache": "hf-cache"}, "vllm_server_model_cache"),
        ({"vllm_server_env": {"OMP_NUM_THREADS": 8}}, "vllm_server_env"),
        ({"vllm_server_ready_timeout": "two hours"}, "vllm_server_ready_timeout"),
    ],
)
def test_bad_input_is_refused_before_the_server_is_touched(client, secrets_file, overrides, variable):
    before = container_id()
    names = served_names()
    run = ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file, **overrides), check=False)
    assert run.returncode != 0
    assert f"{variable} must be" in run.stdout, run.stdout[-3000:]
    assert container_id() == before
    assert served_names() == names


def test_a_key_rotation_whose_new_server_crashes_restores_the_old_one_with_its_key(client, secrets_file, tmp_path):
    """The restore waits with the kept server's own key: the old server answers to the old key, and the run says so."""
    names = served_names()
    new_key = "sk-kimi-rotated-9e7d3b1f"
    rotated = tmp_path / "rotated.json"
    rotated.write_text(json.dumps({"vllm_server_api_key": new_key, "vllm_server_hf_token": HF_TOKEN}))
    crash = {"vllm_server_env": {"STANDIN_LOAD_SECONDS": "1", "STANDIN_FAULT": "crash_on_load"}}
    run = ansible_playbook("server_on_localhost.yml", *server_vars(rotated, **crash), check=False)
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "was restored and is serving again" in text, text[-4000:]
    assert served_names(API_KEY) == names
    assert get("/v1/models", new_key)[0] == 401
    for secret in (API_KEY, new_key, HF_TOKEN):
        assert secret not in text


def test_a_hang_of_400_steps_ends_in_a_clean_failure_and_a_restore(client, secrets_file):
    """The wait is a flat loop: 400 one-second steps (a recursive include died near 250) fail cleanly and restore."""
    names = served_names()
    hang = {
        "vllm_server_env": {"STANDIN_LOAD_SECONDS": "1", "STANDIN_FAULT": "hang_on_load"},
        "vllm_server_ready_step": 1,
        "vllm_server_ready_timeout": 400,
        "vllm_server_ready_poll_interval": 1,
    }
    run = ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file, **hang), check=False)
    text = run.stdout + run.stderr
    assert run.returncode == 2, text[-3000:]  # a task failed; not 250 (RecursionError)
    assert "RecursionError" not in text
    assert "did not serve" in text and "within 400 s" in text
    assert "was restored and is serving again" in text
    assert "PLAY RECAP" in text
    assert served_names() == names


IMAGE = "127.0.0.1:5000/vllm/vllm-openai:nightly-e312c5cb25427e76fc3830ab14e7b6bc0963a55c"


@contextlib.contextmanager
def moved_tag(client, tmp_path):
    """The server image's tag moved to another image (same program, one more label); moved back afterwards."""
    old = client.inspect_image(IMAGE)["Id"]
    (tmp_path / "Dockerfile").write_text(f"FROM {old}\nLABEL kimi.vllm.test.moved=1\n")
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(tmp_path)], check=True, capture_output=True)
    try:
        yield old, client.inspect_image(IMAGE)["Id"]
    finally:
        subprocess.run(["docker", "tag", old, IMAGE], check=True)


def test_a_moved_tag_keeps_and_rolls_back_to_the_old_image(client, secrets_file, tmp_path):
    ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file))
    before = client.inspect_container(NAME)["Image"]
    with moved_tag(client, tmp_path) as (old, new):
        assert before == old != new
        ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file, vllm_server_served_model_names=["m2"]))
        assert client.inspect_container(NAME)["Image"] == new
        assert client.inspect_container(f"{NAME}-previous")["Image"] == old  # not rebuilt from the moved tag
        ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file), "-e", "server_entry=rollback")
        assert client.inspect_container(NAME)["Image"] == old
        assert served_names() == ["kimi-k2.7-code"]


def test_a_kept_server_the_collection_did_not_make_is_not_removed(client, secrets_file):
    ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file))
    before = container_id()
    with contextlib.suppress(docker.errors.NotFound):
        client.remove_container(f"{NAME}-previous", force=True)
    foreign = client.create_container(IMAGE, name=f"{NAME}-previous", command=["--help"])["Id"]
    run = ansible_playbook(
        "server_on_localhost.yml", *server_vars(secrets_file, vllm_server_served_model_names=["m3"]), check=False
    )
    assert run.returncode != 0
    assert "not labelled by kimi.vllm" in run.stdout and f"docker rm -f {NAME}-previous" in run.stdout
    assert client.inspect_container(f"{NAME}-previous")["Id"] == foreign
    assert container_id() == before
    assert served_names() == ["kimi-k2.7-code"]
    client.remove_container(foreign, force=True)


def test_an_unchanged_server_that_stops_answering_fails_fast(client, secrets_file):
    """It served before: vllm_server_check_timeout (here 6 s), not the load timeout (an hour by default)."""
    ansible_playbook("server_on_localhost.yml", *server_vars(secrets_file))
    client.pause(NAME)
    try:
        run = ansible_playbook(
            "server_on_localhost.yml",
            *server_vars(secrets_file, vllm_server_check_timeout=6, vllm_server_ready_step=2),
            check=False,
        )
    finally:
        client.unpause(NAME)
    assert run.returncode != 0
    assert "within 6 s" in run.stdout, run.stdout[-3000:]
