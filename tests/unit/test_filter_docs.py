# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every filter has its documentation file, so that ``ansible-doc -t filter kimi.vllm.<name>`` finds it.

A file of several filters cannot hold their docs itself: ansible-doc reads ``plugins/filter/<name>.yml`` for each
filter name. A filter added without that file fails here, before ``make docs-check``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FILTER_DIR = REPO / "plugins" / "filter"


def _filters() -> dict:
    """Filter name -> the Python file that defines it, from each file's FilterModule().filters()."""
    names = {}
    for path in sorted(FILTER_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = importlib.import_module(f"ansible_collections.kimi.vllm.plugins.filter.{path.stem}")
        for name in module.FilterModule().filters():
            names[name] = path.name
    return names


FILTERS = _filters()


def test_filters_are_found():
    assert FILTERS, f"no filters found in {FILTER_DIR}"


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_has_its_documentation_file(name):
    doc_file = FILTER_DIR / f"{name}.yml"
    assert doc_file.is_file(), f"{FILTERS[name]} defines the filter {name}, but {doc_file.relative_to(REPO)} is missing"
    doc = yaml.safe_load(doc_file.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{doc_file.name} is not a YAML mapping"
    missing = [key for key in ("DOCUMENTATION", "EXAMPLES", "RETURN") if not doc.get(key)]
    assert not missing, f"{doc_file.name} lacks {', '.join(missing)}"
    assert doc["DOCUMENTATION"].get("name") == name, f"{doc_file.name}: DOCUMENTATION.name must be {name}"
    assert "_input" in (doc["DOCUMENTATION"].get("options") or {}), f"{doc_file.name}: options._input is missing"
    assert "_value" in doc["RETURN"], f"{doc_file.name}: RETURN._value is missing"
    assert isinstance(yaml.safe_load(doc["EXAMPLES"]), list), f"{doc_file.name}: EXAMPLES is not a list of tasks"


def test_no_documentation_file_without_its_filter():
    orphans = sorted(p.name for p in FILTER_DIR.glob("*.yml") if p.stem not in FILTERS)
    assert not orphans, f"documentation for filters that no FilterModule defines: {', '.join(orphans)}"
