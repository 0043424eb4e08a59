#!/usr/bin/python
#
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow DOCUMENTATION, EXAMPLES and RETURN, as ansible-test's validate-modules requires
# (import-before-documentation); E402 says the opposite.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_verify

short_description: Prove that a vLLM server does what Claude Code, ncode and benchmarks need

version_added: 0.1.0

description:
  - Probes a running vLLM server over HTTP and reports, per check, whether a client-visible behaviour works and, when
    it does not, which flag or version to look at.
  - An open port is not a working server. The kimi_k2 parsers have shipped with tool-call markers leaking into the
    content, truncated tool arguments and reasoning mixed into the answer, and Claude Code talks to the Anthropic
    Messages endpoint, not to the OpenAI one. Each of these has a check.
  - The task fails when a selected check fails, with a message naming each failed check, what was found and the fix.
    The results are returned on failure too, so a playbook can print them.
  - >-
    The checks are V(health) (C(GET /health) answers 200); V(models) (every name in O(expect_models) and O(model)
    is listed by C(/v1/models), with O(expect_max_model_len) when given); V(chat) (a plain chat completion returns
    answer text and a finish reason); V(stream) (a streamed completion delivers chunks, a finish reason, a final
    usage chunk and C(data: [DONE])); V(reasoning) (the thinking arrives in C(reasoning) or the older
    C(reasoning_content), and the answer carries no thinking markers, plain and streamed); V(tools) (a request with
    one simple function yields C(tool_calls) with JSON-object arguments and no tool-call markers in the content,
    plain and streamed); V(anthropic) (C(POST /v1/messages) answers in the Anthropic Messages shape, plain and
    streamed with Anthropic's event sequence); V(metrics) (C(/metrics) exposes vLLM's request and KV-cache gauges);
    V(auth) (with O(api_key) set, C(/v1/*) refuses requests without it or with a wrong one); V(smoke) (the seed's
    ncode check, C(Reply exactly: ok), answered C(ok)).
  - A check that does not apply is reported as skipped and counts as passed. V(auth) is skipped without O(api_key).
  - When the server cannot be reached at all, the checks after the first failed connection are reported as not run,
    with the same cause.
  - The probes ask for short answers, at most O(probe_max_tokens) tokens each (thinking included, as Kimi-K2.7-Code
    always thinks first).
    On a real model the V(chat), V(stream), V(reasoning), V(tools), V(anthropic) and V(smoke) checks make nine
    generation requests in all, one after the other.

options:
  model:
    description:
      - Model name used for the generation probes.
      - Default is the first name C(/v1/models) lists, which is the first C(--served-model-name).
    type: str
  expect_models:
    description:
      - Names that C(/v1/models) must list, for example every C(--served-model-name).
    type: list
    elements: str
    default: []
  expect_max_model_len:
    description:
      - Context length that the model cards of O(expect_models) (or, when empty, of every listed model) must report
        in C(max_model_len).
    type: int
  checks:
    description:
      - Which checks to run, in any order; they run in the order of the choices below.
      - Default is every check except V(smoke), which needs a real model to answer exactly.
      - Against a plain OpenAI-compatible server (not vLLM, or a model without reasoning or tool parsers) select the
        checks it supports, for example V([health, models, chat, stream]).
    type: list
    elements: str
    choices: [health, models, chat, stream, reasoning, tools, anthropic, metrics, auth, smoke]
    default: [health, models, chat, stream, reasoning, tools, anthropic, metrics, auth]
  probe_max_tokens:
    description:
      - The token budget (C(max_tokens)) of each generation probe, thinking included.
      - When V(chat) finds the model still thinking at the end of the budget, it says so (not that a parser
        misplaced the answer) and asks once more with thinking off (C(chat_template_kwargs.thinking=false)), to
        tell an overlong thinking from a server that cannot answer.
    type: int
    default: 2048
  timeout:
    description:
      - Seconds to wait for a connection, and then for each next piece of an answer. A non-streamed completion
        arrives all at once, so this also bounds its whole generation time.
      - Each check as a whole (its requests together, at most two generations, or four small requests for
        V(auth)) must be done within three times this, and so must the first look at C(/version) and
        C(/v1/models). A server that keeps sending a byte now and then never trips the wait for the next piece,
        but fails that check with a timeout once the three times O(timeout) have passed.
    type: float
    default: 120

extends_documentation_fragment:
  - kimi.vllm.server
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups

attributes:
  check_mode:
    support: full
    details:
      - The probes only read and generate short answers; they change nothing on the server, so they run in check mode
        too.
  diff_mode:
    support: none
  idempotent:
    description: Running the module twice with the same arguments changes nothing.
    support: full
  action_group:
    membership:
      - kimi.vllm.vllm
  platform:
    support: full
    platforms: posix

requirements:
  - Python 3.8 or later on the target. No library beyond the standard library.

notes:
  - The probes run from the target, so the default O(url) checks the server on the node itself.
  - The generation probes count in the server's metrics and logs like any other request.
  - >-
    An API key given as C(x-api-key) is not read by vLLM. When the server refuses one, the V(auth) detail says so:
    Claude Code must then get the key through C(ANTHROPIC_AUTH_TOKEN), which it sends as a bearer token.

seealso:
  - name: vLLM OpenAI-compatible server
    description: The endpoints the checks call.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html

author:
  - kimi.vllm developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Verify the server on the node
  kimi.vllm.vllm_verify:
    api_key: "{{ vllm_server_api_key }}"
    expect_models: [kimi-k2.7-code, my-kimi2.7-code]
    expect_max_model_len: 262144

- name: Add the seed's ncode smoke test (needs the real model)
  kimi.vllm.vllm_verify:
    url: http://10.0.0.12:8000
    api_key: "{{ vllm_server_api_key }}"
    model: my-kimi2.7-code
    checks: [health, models, chat, tools, anthropic, smoke]

- name: Check a plain OpenAI-compatible server, keep the result, print the table
  kimi.vllm.vllm_verify:
    url: https://llm.example.com/vllm
    checks: [health, models, chat, stream]
    timeout: 30
  register: verify
  failed_when: false

- name: Show the checks
  ansible.builtin.debug:
    msg: "{{ verify.report | join('\n') }}"
"""

RETURN = r"""
ok:
  description: V(true) when every selected check passed (skipped ones count as passed).
  returned: always
  type: bool
  sample: false
failed_checks:
  description: Names of the checks that failed, in the order they ran.
  returned: always
  type: list
  elements: str
  sample: [tools]
checks:
  description: One entry per selected check, keyed by its name, in the order they ran.
  returned: always
  type: dict
  sample:
    health: {ok: true, skipped: false, latency_ms: 1.2, detail: /health answered 200, hint: null}
    tools:
      ok: false
      skipped: false
      latency_ms: 38.5
      detail: "plain: no tool_calls (finish_reason stop); the content carries tool-call markers: '<|tool_calls_...'"
      hint: "Tool-call markers leaked into the content instead of `tool_calls`: check `--tool-call-parser kimi_k2` ..."
  contains:
    ok:
      description: Whether the check passed (or was skipped).
      type: bool
      returned: always
    skipped:
      description: Whether the check did not apply (its detail says why).
      type: bool
      returned: always
    latency_ms:
      description: Wall time of the check's requests, in milliseconds.
      type: float
      returned: always
    detail:
      description: What was found.
      type: str
      returned: always
    hint:
      description: For a failed check, the likely cause and the flag, version or setting to look at; V(null) otherwise.
      type: str
      returned: always
server:
  description: What the server said about itself.
  returned: always
  type: dict
  contains:
    url:
      description: The base URL probed.
      type: str
      returned: always
      sample: http://127.0.0.1:8000
    version:
      description: C(GET /version); V(null) when the server has none.
      type: str
      returned: always
      sample: 0.19.1
    stand_in:
      description: V(true) when the server says it is the collection's stand-in test double (not vLLM).
      type: bool
      returned: always
      sample: false
    models:
      description: The names C(/v1/models) lists, in its order.
      type: list
      elements: str
      returned: always
      sample: [kimi-k2.7-code, my-kimi2.7-code]
    model:
      description: The model name the generation probes used.
      type: str
      returned: always
      sample: kimi-k2.7-code
    max_model_len:
      description: The context length C(/v1/models) reports for RV(server.model).
      type: int
      returned: always
      sample: 262144
report:
  description: The results as a table for people, one line per check and a C(fix:) line under each failure.
  returned: always
  type: list
  elements: str
  sample:
    - "vLLM at http://127.0.0.1:8000 (0.19.1); model kimi-k2.7-code, max_model_len 262144"
    - "check      result       ms  detail"
    - "health     ok          1.2  /health answered 200"
msg:
  description: One line; on failure it names each failed check with its detail and hint.
  returned: always
  type: str
  sample: "all 9 checks passed at http://127.0.0.1:8000"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi.vllm.plugins.module_utils._openai import SERVER_ARGUMENT_SPEC, Client
from ansible_collections.kimi.vllm.plugins.module_utils._verify import (
    CHECKS,
    DEFAULT_CHECKS,
    report_lines,
    run_checks,
    summary_message,
)


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            **SERVER_ARGUMENT_SPEC,
            "model": {"type": "str"},
            "expect_models": {"type": "list", "elements": "str", "default": []},
            "expect_max_model_len": {"type": "int"},
            "checks": {"type": "list", "elements": "str", "choices": list(CHECKS), "default": list(DEFAULT_CHECKS)},
            "probe_max_tokens": {"type": "int", "default": 2048, "no_log": False},  # a count, not a secret
            "timeout": {"type": "float", "default": 120},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0 seconds, got {params['timeout']:g}")
    if params["probe_max_tokens"] < 16:
        module.fail_json(msg=f"probe_max_tokens must be at least 16, got {params['probe_max_tokens']}")
    if not params["checks"]:
        module.fail_json(msg=f"checks is empty; choose from: {', '.join(CHECKS)}")
    try:
        client = Client(
            params["url"],
            api_key=params["api_key"],
            timeout=params["timeout"],
            validate_certs=params["validate_certs"],
        )
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    with client:
        result = run_checks(
            client,
            params["checks"],
            api_key_set=bool(params["api_key"]),
            model=params["model"],
            expect_models=params["expect_models"],
            expect_max_model_len=params["expect_max_model_len"],
            timeout=params["timeout"],
            probe_max_tokens=params["probe_max_tokens"],
        )
    output = {
        "changed": False,
        "ok": result["ok"],
        "failed_checks": result["failed"],
        "checks": result["checks"],
        "server": result["server"],
        "report": report_lines(result),
        "msg": summary_message(result),
    }
    if result["ok"]:
        module.exit_json(**output)
    module.fail_json(**output)


if __name__ == "__main__":
    main()
