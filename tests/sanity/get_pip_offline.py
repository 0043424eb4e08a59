# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for ansible-test's get-pip bootstrap script.

ansible-test --venv downloads get-pip.py from ci-files.testing.ansible.com, which our CI machines
cannot reach (PyPI only). `make sanity` copies this file to ~/.ansible/test/cache/get_pip_<ver>.py,
where ansible-test looks first: it installs pip with the interpreter's own ensurepip, then the exact
packages ansible-test asked for (pip==<ver> among them) from PyPI.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
packages = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *packages])
