# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role's defaults and its typed argument spec say the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_has_a_typed_spec_matching_its_defaults(role):
    defaults = load(ROLES / role / "defaults" / "main.yml")
    options = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults/main.yml and meta/argument_specs.yml list different variables"
    for name, spec in options.items():
        assert name.startswith(role + "_"), f"{name} lacks the role prefix {role}_"
        assert "type" in spec, f"{name} has no type"
        assert spec.get("description"), f"{name} has no description"
        if spec["type"] == "list":
            assert "elements" in spec, f"{name} is a list without elements"
        if spec.get("required"):
            assert name not in defaults, f"{name} is required but has a default"
        else:
            assert spec.get("default") == defaults[name], f"{name}: spec default differs from defaults/main.yml"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_internal_vars_are_underscored(role):
    path = ROLES / role / "vars" / "main.yml"
    if path.exists():
        for name in load(path):
            assert name.startswith("_" + role + "_"), f"{name} in vars/main.yml must start with _{role}_"
