# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Simulated nodes of their own for an integration test module (tests/sim), beside any demo fleet.

Each test module names its nodes with a prefix of its own, so that it never touches the demo's nodes (or another
module's), and removes exactly what it made: the nodes, the containers started for them (label
kimi.vllm.sim.node), their simulated disks and their model caches under /var/tmp/kimi-sim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_GROUP_VARS = REPO / "inventories" / "demo" / "group_vars"


def run(cmd, cwd=REPO, env=None, timeout=1200):
    """Run ``cmd``; fail the test with the end of its output when it fails. Returns the completed process."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}")
    return proc


def docker(*args):
    """A docker CLI call whose failure is fine (lookups, cleanup); its output, split in words."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout.split()


def checkout_env(**extra):
    """The environment for ansible-playbook from the checkout (its ansible.cfg, no colour)."""
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **extra)


def remove_node(name):
    """Remove the node ``name``, what was started for it, its simulated disks and its model cache."""
    for ident in [*docker("ps", "-aq", "--filter", f"label=kimi.vllm.sim.node={name}"), name]:
        docker("rm", "-f", ident)
    for volume in docker("volume", "ls", "-q", "--filter", f"name={name}-"):
        docker("volume", "rm", "-f", volume)
    shutil.rmtree(f"/var/tmp/kimi-sim/{name}", ignore_errors=True)


def start_nodes(where, prefix, nodes=1, real_vllm=0, host_vars=None):
    """Write an inventory of ``nodes`` simulated nodes under ``where`` (with the demo fleet's group_vars) and start
    them with tests/sim/up.yml. ``host_vars`` maps a host name to YAML text for host_vars/<name>.yml.

    Returns (inventory path, host names).
    """
    inventory = Path(where) / "inventory"
    shutil.copytree(DEMO_GROUP_VARS, inventory / "group_vars")
    for host, text in (host_vars or {}).items():
        (inventory / "host_vars").mkdir(parents=True, exist_ok=True)
        (inventory / "host_vars" / f"{host}.yml").write_text(text)
    hosts = inventory / "hosts.yml"
    argv = [sys.executable, REPO / "tests" / "sim" / "write-inventory.py", "-n", str(nodes), "--prefix", prefix]
    run([*argv, "--real-vllm", str(real_vllm), "-o", str(hosts)])
    names = [f"{prefix}{i + 1:02d}" for i in range(nodes)]
    for name in names:
        remove_node(name)
    run([BIN / "ansible-playbook", "-i", str(hosts), str(REPO / "tests" / "sim" / "up.yml")], env=checkout_env())
    return hosts, names
