# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The collection as operators get it: the built tarball, installed with ansible-galaxy into an empty path.

1. The tarball holds the collection and nothing of its development (an allow-list, so a new tooling file at
   the top of the repository fails here until galaxy.yml's build_ignore leaves it out).
2. Installed into an empty path, away from the checkout (no ansible.cfg, no .build/collections link), every
   playbook resolves by its FQCN (``ansible-playbook kimi.vllm.deploy``) and every module's docs render.
3. ``ansible-playbook kimi.vllm.deploy`` from that installed copy deploys one SIMULATED node for real: preflight,
   the stand-in server pulled from the local registry, the ready-wait, verify. The node has its own name
   prefix, so a demo fleet on the same machine is left alone.

Runs on the pinned Ansible in `make integration` and on the newest in `make compat` (tests/compat).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
from simnodes import BIN, REPO, docker, remove_node, run, start_nodes

PLAYBOOKS = ("deploy", "preflight", "verify", "benchmark", "rollback")
NODE_PREFIX = "kimi-pkg-node-"
NODE = NODE_PREFIX + "01"

# What a built collection may hold at its top level, and where inventories may come from.
ALLOWED_TOP = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "CHANGELOG.md",
    "changelogs",
    "docs",
    "inventories",
    "meta",
    "playbooks",
    "plugins",
    "roles",
}
DEVELOPMENT_FILES = (
    "Makefile",
    "ansible.cfg",
    "ruff.toml",
    "requirements-dev.in",
    "requirements-dev.txt",
    ".ansible-lint",
    ".gitignore",
    "execution-environment.yml",
)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(out), str(REPO)], cwd=REPO)
    (built,) = out.glob("kimi-vllm-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    """(collections path, an environment that sees only it and the collections bundled with ansible, a cwd)."""
    where = tmp_path_factory.mktemp("installed")
    collections = where / "collections"
    outside = where / "work"  # no ansible.cfg here: nothing of the checkout's configuration applies
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{env.get('PATH', '')}")
    # --offline: community.docker must be found installed (it comes with the ansible package), not fetched.
    proc = run(
        [BIN / "ansible-galaxy", "collection", "install", "--offline", str(tarball), "-p", str(collections)],
        cwd=outside,
        env=env,
    )
    assert "kimi.vllm:" in proc.stdout and "was installed successfully" in proc.stdout, proc.stdout
    return collections, env, outside


def test_the_tarball_holds_no_development_file(tarball):
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    tops = {name.split("/")[0] for name in names}
    assert tops <= ALLOWED_TOP, f"not part of the collection: {sorted(tops - ALLOWED_TOP)} (add them to build_ignore)"
    assert not [n for n in names if n in DEVELOPMENT_FILES]
    assert not [n for n in names if n.startswith("inventories/") and not n.startswith("inventories/production/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # ...and it is the collection: the pieces the README names are all there.
    for needed in (
        "plugins/modules/vllm_server_wait.py",
        "plugins/module_utils/_docker_engine.py",
        "plugins/doc_fragments/docker_engine.py",
        "roles/vllm_server/meta/argument_specs.yml",
        "meta/runtime.yml",
        "meta/execution-environment.yml",
        *(f"playbooks/{p}.yml" for p in PLAYBOOKS),
    ):
        assert needed in names


def test_the_manifest_states_tested_dependency_bounds(tarball):
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["dependencies"] == {"community.docker": ">=4.8.5,<6.0.0"}


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbooks_resolve_by_fqcn_from_the_installed_copy(installed, playbook):
    collections, env, outside = installed
    proc = run([BIN / "ansible-playbook", f"kimi.vllm.{playbook}", "-i", "localhost,", "--syntax-check"], outside, env)
    assert f"{collections}/ansible_collections/kimi/vllm/playbooks/{playbook}.yml" in proc.stdout


def test_module_docs_render_from_the_installed_copy(installed):
    _collections, env, outside = installed
    listed = json.loads(run([BIN / "ansible-doc", "-t", "module", "-l", "kimi.vllm", "--json"], outside, env).stdout)
    assert set(listed) == {f"kimi.vllm.{m}" for m in ("gpu_facts", "vllm_server_wait", "vllm_verify", "vllm_bench")}
    doc = json.loads(
        run([BIN / "ansible-doc", "-t", "module", "kimi.vllm.vllm_server_wait", "--json"], outside, env).stdout
    )
    options = doc["kimi.vllm.vllm_server_wait"]["doc"]["options"]
    assert options["docker_host"]["default"] == "unix:///var/run/docker.sock"  # from kimi.vllm.docker_engine


@pytest.fixture
def sim_node(tmp_path):
    """One simulated node of this module's own (the demo fleet's group_vars), started; removed afterwards."""
    hosts, _names = start_nodes(tmp_path, NODE_PREFIX)
    yield hosts
    remove_node(NODE)


def test_deploy_by_fqcn_from_the_installed_copy(installed, sim_node):
    collections, env, outside = installed
    proc = run([BIN / "ansible-playbook", "kimi.vllm.deploy", "-i", str(sim_node)], outside, env)
    recap = [line for line in proc.stdout.splitlines() if line.startswith(NODE)]
    assert recap and "failed=0" in recap[-1] and "unreachable=0" in recap[-1], proc.stdout[-3000:]
    # The ready-wait ran (kimi.vllm.vllm_server_wait from the installed copy) and the server then served.
    assert "Wait for the server to serve, one step per retry" in proc.stdout
    assert (
        str(collections)
        in run([BIN / "ansible-doc", "-t", "module", "kimi.vllm.vllm_server_wait"], outside, env).stdout
    )
    listed = docker(
        "inspect", "-f", '{{.State.Running}} {{index .Config.Labels "kimi.vllm.sim.node"}}', f"kimi-vllm-{NODE}"
    )
    assert listed == ["true", NODE]


def test_ready_wait_for_an_absent_container_is_the_modules_own_error(installed):
    """On any community.docker (5.x made its module_utils private): the module's message, no import error."""
    _collections, env, outside = installed
    argv = [BIN / "ansible", "localhost", "-m", "kimi.vllm.vllm_server_wait", "-a", "container=kimi-absent"]
    proc = subprocess.run(argv, cwd=outside, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "There is no container 'kimi-absent' on the Docker engine at unix:///var/run/docker.sock" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr and "ImportError" not in proc.stdout + proc.stderr
