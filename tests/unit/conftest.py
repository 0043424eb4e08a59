# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make this checkout importable as ``ansible_collections.kimi.vllm`` for pytest.

Modules import their helpers by collection path, so the repository (the collection root) has to sit at
``<dir>/ansible_collections/kimi/vllm`` with ``<dir>`` on sys.path. When it does not (a plain checkout), a temporary
directory with that layout and a symlink to the checkout takes its place for the test session.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = "ansible_collections.kimi.vllm.plugins.module_utils._nvsmi"


def _importable() -> bool:
    try:
        importlib.import_module(PROBE)
    except ImportError:
        return False
    return True


def _forget_collection_modules() -> None:
    """Drop cached (failed) imports so that the next import sees the new sys.path entry."""
    for name in list(sys.modules):
        if name == "ansible_collections.kimi" or name.startswith("ansible_collections.kimi."):
            del sys.modules[name]
    importlib.invalidate_caches()


def _make_importable() -> None:
    if _importable():
        return
    if REPO_ROOT.parent.name == "kimi" and REPO_ROOT.parents[1].name == "ansible_collections":
        sys.path.insert(0, str(REPO_ROOT.parents[2]))  # already laid out, just not on sys.path
    else:
        farm = Path(tempfile.mkdtemp(prefix="kimi-vllm-pytest-"))
        atexit.register(shutil.rmtree, farm, ignore_errors=True)  # removes the link, never its target
        (farm / "ansible_collections" / "kimi").mkdir(parents=True)
        (farm / "ansible_collections" / "kimi" / "vllm").symlink_to(REPO_ROOT, target_is_directory=True)
        sys.path.insert(0, str(farm))
    _forget_collection_modules()
    importlib.import_module(PROBE)  # fail here, loudly, rather than in every test


_make_importable()
