# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a command with a deadline.

AnsibleModule.run_command has no timeout, and the tools our modules call can hang (nvidia-smi waits
forever on a GPU whose firmware stopped answering, Xid 119). This runs the command in a session of
its own so that a kill reaches wrappers (driver containers, test doubles) together with their children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

# After a kill, how long to wait for the pipes to close. A process stuck in the kernel (a GSP timeout)
# ignores SIGKILL until the driver lets go; the caller then gets a result without it rather than hang.
REAP_SECONDS = 5


class RunResult:
    """What a run produced: ``rc`` is None when the command timed out or could not start."""

    def __init__(self, rc, stdout, stderr, timed_out=False, start_error=None, not_found=False):
        """Keep the outcome."""
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.start_error = start_error
        self.not_found = not_found


def run_with_timeout(argv, timeout, env=None):
    """Run ``argv`` (no shell) for at most ``timeout`` seconds; decode output as UTF-8 (replacing errors)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return RunResult(None, "", "", start_error=exc.strerror, not_found=isinstance(exc, FileNotFoundError))
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            stdout, stderr = proc.communicate(timeout=REAP_SECONDS)
        except subprocess.TimeoutExpired:
            stdout, stderr = b"", b""
    return RunResult(
        None if timed_out else proc.returncode,
        stdout.decode("utf-8", errors="replace"),
        stderr.decode("utf-8", errors="replace"),
        timed_out=timed_out,
    )
