# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a command with a deadline.

AnsibleModule.run_command has no timeout, and the tools our modules call can hang (nvidia-smi waits
forever on a GPU whose firmware stopped answering, Xid 119). The command therefore runs under coreutils'
``timeout -s KILL``, through run_command (the one way ansible-test lets modules start processes):
``timeout`` makes itself the leader of a process group of its own and kills that whole group at the deadline,
so the kill reaches wrappers (driver containers, test doubles) together with their children. A process stuck
in the kernel (a GSP timeout) ignores SIGKILL until the driver lets go; run_command returns as soon as
``timeout`` itself is gone, and the caller gets a result without that process's last output rather than hang.
"""

from __future__ import annotations

import time

# Exit statuses of `timeout -s KILL`: 137 (killed), or -9 when run_command sees timeout itself die of the KILL
# it sent to its group; 124 is timeout's own "timed out" status (kept for other signals).
_TIMED_OUT_RC = (124, 137, -9)
_START_FAILED = "timeout: failed to run command"


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


def run_with_timeout(module, argv, timeout, environ_update=None):
    """Run ``argv`` (no shell) for at most ``timeout`` seconds through ``module.run_command``.

    Output is decoded as UTF-8, invalid bytes replaced. ``environ_update`` is added to the module's environment.
    """
    timeout_bin = module.get_bin_path("timeout")
    if timeout_bin is None:
        return RunResult(None, "", "", start_error="coreutils' `timeout` is not on PATH (it bounds the command)")
    started = time.monotonic()
    try:
        rc, stdout, stderr = module.run_command(
            [timeout_bin, "-s", "KILL", f"{timeout}s", *argv],
            environ_update=environ_update or {},
            errors="surrogate_then_replace",
            expand_user_and_vars=False,
            handle_exceptions=False,
        )
    except OSError as exc:
        return RunResult(None, "", "", start_error=exc.strerror or str(exc))
    if rc in (126, 127) and stderr.startswith(_START_FAILED):
        # timeout could not exec the command: "timeout: failed to run command 'X': No such file or directory".
        why = stderr.strip().rsplit(": ", 1)[-1]
        return RunResult(None, stdout, "", start_error=why, not_found=rc == 127)
    if rc in _TIMED_OUT_RC and time.monotonic() - started >= timeout:
        return RunResult(None, stdout, stderr, timed_out=True)
    return RunResult(rc, stdout, stderr)
