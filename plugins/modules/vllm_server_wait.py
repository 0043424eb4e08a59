#!/usr/bin/python
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
---
module: vllm_server_wait
short_description: Watch a starting vLLM container for one step of its ready-wait
version_added: 0.1.0
description:
  - Polls the container (through the Docker API) and the server (C(/health), then C(/v1/models)) for at most
    O(step_seconds), and returns as soon as the server lists every expected model, or as soon as the container has
    exited or restarted.
  - A 1T-parameter model takes 30 to 60 minutes to load. The role calls this module in steps so that it can
    report progress between them and give up at its own deadline, while a crash is reported within
    O(poll_interval) seconds, with the last O(log_lines) lines of the container's log.
  - Reads only; it never changes the container.
  - It reads the container through the Docker Engine HTTP API on the engine's socket, with Python's standard
    library (no C(requests), no Docker SDK, no other collection's code), because community.docker's API client
    is private to community.docker from version 5.0 on.
author:
  - kimi.vllm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kimi.vllm.docker_engine
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so it watches the same way in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  container:
    description: Name or ID of the vLLM container.
    type: str
    required: true
  url:
    description: Base URL of the server as seen from where the module runs.
    type: str
    default: http://127.0.0.1:8000
  api_key:
    description: API key the server was started with; sent to C(/v1/models).
    type: str
  expect_models:
    description: Served model names that C(/v1/models) must list before the server counts as ready.
    type: list
    elements: str
    default: []
  restart_count:
    description: The container's restart count when it was started; a higher count means it crashed and restarted.
    type: int
    default: 0
  step_seconds:
    description: Return after this many seconds even when the server is not ready yet.
    type: int
    default: 30
  poll_interval:
    description: Seconds between two looks at the container and the server.
    type: int
    default: 2
  log_lines:
    description: How many of the container's last log lines to return when it exits or restarts.
    type: int
    default: 50
requirements:
  - Python 3.8 or later on the node; nothing outside the standard library.
notes:
  - A container that does not exist when the step begins is an error (there is nothing to wait for); one that
    disappears during the step is reported as exited, with RV(state=missing).
  - C(/health) refuses connections until the engine is up, answers 503 when the engine died, and 200 when
    healthy; C(/v1/models) then lists one card per served name.
  - Each look at the server (C(/health), then C(/v1/models)) must be done within 10 seconds in all, and never
    later than O(step_seconds) after the step began, however slowly the server sends its answer; a server that
    sends a byte now and then cannot hold a step past O(step_seconds). A look cut short is reported in RV(server)
    as C(not answering yet (... the total deadline (N s) passed ...)).
"""

EXAMPLES = r"""
- name: Wait one step for the server
  kimi.vllm.vllm_server_wait:
    container: kimi-vllm
    url: http://127.0.0.1:8000
    expect_models: [kimi-k2.7-code]
  register: step
"""

RETURN = r"""
ready:
  description: The server answered C(/health) and listed every expected model.
  returned: always
  type: bool
exited:
  description: The container stopped running (or disappeared) during the step.
  returned: always
  type: bool
restarted:
  description: The container restarted (its restart count went above O(restart_count)).
  returned: always
  type: bool
state:
  description: The container's state, as Docker reports it (C(running), C(exited), C(restarting), C(missing)).
  returned: always
  type: str
exit_code:
  description: The container's exit code, when it has exited.
  returned: always
  type: int
oom_killed:
  description: Whether the kernel killed the container for memory.
  returned: always
  type: bool
restart_count:
  description: The container's restart count now.
  returned: always
  type: int
server:
  description: What the server last answered, for example C(connection refused), C(/health 503) or C(ready).
  returned: always
  type: str
models:
  description: The model names C(/v1/models) listed last.
  returned: always
  type: list
  elements: str
last_log_line:
  description: The container's last log line.
  returned: always
  type: str
log_tail:
  description: The container's last O(log_lines) log lines, when it exited or restarted; empty otherwise.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds this step took.
  returned: always
  type: float
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.kimi.vllm.plugins.module_utils._docker_engine import (  # noqa: E402
    ENGINE_ARGUMENT_SPEC,
    ENGINE_REQUIRED_TOGETHER,
    EngineClient,
    EngineError,
    settings_from_params,
)
from ansible_collections.kimi.vllm.plugins.module_utils._openai import (  # noqa: E402
    Client,
    ClientError,
    ConnectError,
    ConnectTimeoutError,
    HTTPStatusError,
)

# One look at the server, /health and /v1/models together: both are answered at once by a server that works.
PROBE_SECONDS = 10


class ContainerWatch:
    """One ready-wait step: the container's state and the server's answers, polled together."""

    def __init__(self, engine, params):
        """``engine`` is an EngineClient; ``params`` the module's parameters."""
        self.engine = engine
        self.params = params

    def inspect(self):
        """The container's inspect data, or None when it is gone."""
        return self.engine.container(self.params["container"])

    def logs(self, container, lines):
        """The last ``lines`` lines of the container's log (stdout and stderr together)."""
        return self.engine.logs(container, lines)

    def probe(self, http, until):
        """Ask the server, and be done by ``until`` (a ``time.monotonic()`` time).

        Returns (ready, what it answered, models listed).
        """
        try:
            http.get("/health", auth=False, deadline=until - time.monotonic()).raise_for_status()
        except HTTPStatusError as exc:
            return False, f"/health {exc.status}", []
        except ConnectTimeoutError as exc:
            return False, f"not answering yet ({exc})", []
        except ConnectError:
            return False, "not answering yet (connection refused)", []
        except ClientError as exc:
            return False, f"not answering yet ({exc})", []
        left = until - time.monotonic()
        if left <= 0:
            return False, "/health 200; no time left in this step for /v1/models", []
        try:
            doc = http.get("/v1/models", deadline=left).raise_for_status().json()
            listed = [card.get("id") for card in doc.get("data", [])]
        except HTTPStatusError as exc:
            return False, f"/v1/models {exc.status}", []
        except (ClientError, ValueError, AttributeError) as exc:
            return False, f"/v1/models unreadable ({exc})", []
        missing = [name for name in self.params["expect_models"] if name not in listed]
        if missing:
            return False, "/v1/models lacks " + ", ".join(missing), listed
        return True, "ready", listed

    def step(self, first=None):
        """Poll until ready, dead or out of time for this step; ``first`` is an inspect result already taken."""
        started = time.monotonic()
        http = Client(self.params["url"], api_key=self.params["api_key"], timeout=10)
        result = {
            "ready": False,
            "exited": False,
            "restarted": False,
            "state": "missing",
            "exit_code": 0,
            "oom_killed": False,
            "restart_count": 0,
            "server": "not asked",
            "models": [],
            "last_log_line": "",
            "log_tail": [],
        }
        while True:
            container, first = (first, None) if first is not None else (self.inspect(), None)
            if container is None:
                result.update(exited=True, state="missing")
                break
            state = container["State"]
            result.update(
                state=state.get("Status", "unknown"),
                exit_code=state.get("ExitCode", 0),
                oom_killed=bool(state.get("OOMKilled")),
                restart_count=container.get("RestartCount", 0),
            )
            if result["restart_count"] > self.params["restart_count"] or state.get("Restarting"):
                result["restarted"] = True
            if not state.get("Running") or result["restarted"]:
                result["exited"] = not state.get("Running")
                result["log_tail"] = self.logs(container, self.params["log_lines"])
                result["last_log_line"] = result["log_tail"][-1] if result["log_tail"] else ""
                break
            until = min(time.monotonic() + PROBE_SECONDS, started + self.params["step_seconds"])
            if until <= time.monotonic():
                break
            ready, result["server"], result["models"] = self.probe(http, until)
            if ready:
                result["ready"] = True
                break
            if time.monotonic() - started + self.params["poll_interval"] > self.params["step_seconds"]:
                break
            time.sleep(self.params["poll_interval"])
        if container is not None and not result["log_tail"]:
            tail = self.logs(container, 1)
            result["last_log_line"] = tail[-1] if tail else ""
        http.close()
        result["elapsed"] = round(time.monotonic() - started, 1)
        return result


def main():
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "url": {"type": "str", "default": "http://127.0.0.1:8000"},
            "api_key": {"type": "str", "no_log": True},
            "expect_models": {"type": "list", "elements": "str", "default": []},
            "restart_count": {"type": "int", "default": 0},
            "step_seconds": {"type": "int", "default": 30},
            "poll_interval": {"type": "int", "default": 2},
            "log_lines": {"type": "int", "default": 50},
            **ENGINE_ARGUMENT_SPEC,
        },
        required_together=ENGINE_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    name = module.params["container"]
    try:
        engine = EngineClient(settings_from_params(module.params))
        watch = ContainerWatch(engine, module.params)
        first = watch.inspect()
        if first is None:
            module.fail_json(
                msg=f"There is no container {name!r} on the Docker engine at {engine.host}, so there is no server "
                "to wait for. Start it first (the kimi.vllm.vllm_server role does), or look for it with "
                "`docker ps -a --filter name=" + name + "`."
            )
        result = watch.step(first)
    except EngineError as exc:
        module.fail_json(msg=f"Docker did not answer about container {name!r}: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
