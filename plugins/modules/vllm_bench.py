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
module: vllm_bench

short_description: Benchmark a vLLM server as C(vllm bench serve) does and gate it against a baseline

version_added: 0.1.0

description:
  - Runs the seed's benchmark (random prompts, 8192 tokens in, 2048 out, 512 prompts, at most 32 at once, through
    C(/v1/chat/completions)) against a server and returns its numbers under C(vllm bench serve)'s own JSON keys,
    each compared with a baseline (by default the seed's published HGX B200 result).
  - Every number is defined exactly as C(vllm bench serve) 0.33.0 defines it. A token event is a streamed chunk whose
    first choice's delta carries C(content), C(reasoning), C(tool_calls) or C(function_call), or an empty C(content)
    without C(role); the opening role-only chunk is not one. TTFT runs from just before the request is sent to the
    first token event, ITL is each gap between token events (per chunk, pooled over all requests), E2EL runs to the
    last token event, output tokens are C(usage.completion_tokens), TPOT is (E2EL - TTFT) / (output tokens - 1), and
    throughputs divide by the time from the first dispatch to the last completion. Means, medians, population
    standard deviations and linearly interpolated percentiles are computed as numpy computes them.
  - With O(engine=native) (the default) the module is the client, written on the collection's one HTTP/SSE client
    (the one C(kimi.vllm.vllm_verify) uses). It stamps the start just before the request is written, on connections
    opened before the run, and each event with the kernel's receive time of the socket read that carried it (plain
    http on Linux; otherwise the time the read returned), so its own work adds nothing measurable to the numbers
    (C(docs/benchmarks.md) gives its measured error and cost next to C(vllm bench serve)'s).
  - With O(engine=vllm) it runs C(vllm bench serve) itself with the seed's arguments inside the server's container
    (C(docker exec)) or a one-off container of the same image, and parses the result file it saves.
  - Bad input (lengths or counts below 1, a range ratio outside [0, 1), an unreachable server, an unknown model, a
    workload longer than the server's context) fails before any load is sent.
  - In check mode the input is checked and the server probed, but no load is sent.

options:
  model:
    description:
      - The model name requests carry (a C(--served-model-name)).
      - Default is the first name C(/v1/models) lists.
    type: str
  endpoint:
    description:
      - V(chat) is C(/v1/chat/completions) (C(--backend openai-chat), the seed's); V(completions) is
        C(/v1/completions) (C(--backend openai)).
    type: str
    choices: [chat, completions]
    default: chat
  input_len:
    description: Prompt tokens per request (C(--random-input-len)). The chat template adds a few on top.
    type: int
    default: 8192
  output_len:
    description: Output tokens per request (C(--random-output-len)), sent as C(max_completion_tokens).
    type: int
    default: 2048
  num_prompts:
    description: Requests in the run (C(--num-prompts)).
    type: int
    default: 512
  max_concurrency:
    description: Requests in flight at most (C(--max-concurrency)); the others wait for a free slot.
    type: int
    default: 32
  request_rate:
    description:
      - Requests per second (C(--request-rate)). V(.inf) (the default) makes every request due at the start.
    type: float
    default: .inf
  burstiness:
    description:
      - Shape of the gamma-distributed gaps between arrivals when O(request_rate) is finite; 1 is a Poisson process.
    type: float
    default: 1.0
  range_ratio:
    description:
      - Lengths are drawn uniformly from [len x (1 - ratio), len x (1 + ratio)] (C(--random-range-ratio)).
    type: float
    default: 0.0
  seed:
    description: Seed of the random lengths, offsets and arrivals (C(--seed)).
    type: int
    default: 0
  ignore_eos:
    description:
      - Send C(ignore_eos) so that every request generates exactly its output length (C(vllm bench serve) forces it
        for the random dataset).
    type: bool
    default: true
  warmup:
    description: Requests sent before the measured run and not counted (C(--num-warmups)).
    type: int
    default: 0
  percentiles:
    description: Percentiles reported for TTFT, TPOT and ITL (C(--metric-percentiles)).
    type: list
    elements: float
    default: [99]
  tokenizer:
    description:
      - A local tokenizer (a C(tokenizer.json), or a directory holding one) used to build prompts of exact length.
        Needs the Python library C(tokenizers) on the target.
      - Without it, the server's C(/tokenize) and C(/detokenize) build them when the server has them; otherwise the
        prompts are made of common words, about one token each, and RV(dataset) says C(method=approximate).
      - With O(engine=vllm), passed as C(--tokenizer).
    type: str
  label:
    description: Free text stored in the result as C(label) (C(--label)).
    type: str
  result_file:
    description:
      - Where to write the result on the target, in the schema of C(vllm bench serve --save-result) (vLLM's keys,
        plus one key C(kimi_vllm) with what vLLM's schema has no place for). A sweep writes one JSON document per
        line, as C(--append-result) does.
    type: path
  baseline:
    description:
      - Metric (a key of RV(metrics)) to the baseline value it is compared with.
      - Default is the seed's HGX B200 result, and only for the seed's workload (8192/2048, 512 prompts, concurrency
        32, infinite rate, chat); another workload has no default baseline and is not gated.
    type: dict
  tolerance:
    description:
      - How far a metric may fall short of its baseline, as a fraction. A throughput passes at or above
        baseline x (1 - tolerance), a latency at or below baseline x (1 + tolerance).
    type: float
    default: 0.1
  tolerances:
    description: Per-metric tolerances overriding O(tolerance).
    type: dict
    default: {}
  gate:
    description:
      - Fail the task when a metric is outside its tolerance, naming each one. The results are returned either way.
    type: bool
    default: true
  sweep:
    description:
      - Concurrencies to run one after the other, each with O(num_prompts) requests, for the throughput-against-latency
        curve. RV(metrics) and the baseline check use the point at O(max_concurrency) when the sweep has it,
        otherwise the last point.
    type: list
    elements: int
    default: []
  slo:
    description:
      - Latency limits (metric to maximum, for example C(p99_ttft_ms) or C(mean_itl_ms); throughputs are minimums)
        that RV(sweep) points are judged by; RV(slo_max_concurrency) is the highest concurrency that meets them.
    type: dict
    default: {}
  engine:
    description:
      - V(native) measures with this module's own client; V(vllm) runs C(vllm bench serve) in the server's image.
    type: str
    choices: [native, vllm]
    default: native
  vllm_container:
    description:
      - With O(engine=vllm), the running server container to C(docker exec) C(vllm bench serve) in.
    type: str
  vllm_image:
    description:
      - With O(engine=vllm), run C(vllm bench serve) in a one-off container of this image instead (its entrypoint
        replaced by C(vllm)), on the network of O(vllm_container) when given, else the host's.
    type: str
  vllm_model:
    description:
      - With O(engine=vllm), the C(--model) whose tokenizer C(vllm bench serve) loads. Default is the C(root) that
        C(/v1/models) reports for O(model) (the seed's C(moonshotai/Kimi-K2.7-Code)).
    type: str
  vllm_args:
    description: With O(engine=vllm), extra C(vllm bench serve) arguments (for example C(--trust-remote-code)).
    type: list
    elements: str
    default: []
  vllm_docker_args:
    description:
      - With O(vllm_image), extra C(docker run) arguments (for example the Hugging Face cache mount).
    type: list
    elements: str
    default: []
  docker:
    description: The docker executable, for O(engine=vllm).
    type: str
    default: docker
  timeout:
    description:
      - Seconds a request may wait for its next byte before it counts as failed (O(engine=native)), and for the
        probes before the run.
    type: float
    default: 600
  run_timeout:
    description: Seconds C(vllm bench serve) may run in all (O(engine=vllm)).
    type: float
    default: 21600

extends_documentation_fragment:
  - kimi.vllm.server
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups

attributes:
  check_mode:
    support: full
    details:
      - In check mode the arguments are checked and the server probed (models, context length, tokenizer), but no
        benchmark load is sent; RV(metrics) is empty.
  diff_mode:
    support: none
  idempotent:
    description: The module changes nothing on the server; O(result_file) is an output, rewritten on every run.
    support: full
  action_group:
    membership:
      - kimi.vllm.vllm
  platform:
    support: full
    platforms: posix

requirements:
  - Python's standard library on the target. O(tokenizer) needs the C(tokenizers) library; O(engine=vllm) needs
    docker and a vLLM image, and coreutils' C(timeout), which bounds the run at O(run_timeout).

notes:
  - Numbers measured against the collection's stand-in server (a test double, which says so at C(/version)) are
    marked RV(simulated=true).
  - Peers define these names differently (GuideLLM swaps ITL and TPOT; LLMPerf starts TTFT at the first content token,
    after an always-thinking model's reasoning). These are vLLM's definitions.

seealso:
  - module: kimi.vllm.vllm_verify
  - name: vllm bench serve
    description: The tool whose definitions and result schema this module follows.
    link: https://docs.vllm.ai/en/latest/cli/bench/serve.html

author:
  - kimi.vllm developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: The seed's benchmark, gated against the seed's HGX B200 result
  kimi.vllm.vllm_bench:
    result_file: /var/tmp/kimi-vllm-bench.json
  register: bench

- name: A short smoke benchmark with its own baseline
  kimi.vllm.vllm_bench:
    input_len: 1024
    output_len: 256
    num_prompts: 64
    baseline:
      output_throughput: 2000
      mean_ttft_ms: 800
    tolerance: 0.2

- name: The throughput-against-latency curve and the highest concurrency under an SLO
  kimi.vllm.vllm_bench:
    sweep: [1, 8, 16, 32, 64]
    num_prompts: 128
    slo:
      p99_ttft_ms: 10000
      mean_itl_ms: 50
    gate: false

- name: The same workload measured by vllm bench serve inside the running server container
  kimi.vllm.vllm_bench:
    engine: vllm
    vllm_container: kimi-vllm
    vllm_args: [--trust-remote-code]
"""

RETURN = r"""
metrics:
  description:
    - The run's numbers under C(vllm bench serve)'s JSON keys (its C(--save-result) file less the per-request lists
      and the setup). Latencies in milliseconds, throughputs per second. Empty in check mode.
  returned: always
  type: dict
  sample:
    duration: 905.6
    completed: 512
    failed: 0
    total_input_tokens: 4197888
    total_output_tokens: 1048576
    request_throughput: 0.565
    request_goodput: null
    output_throughput: 1157.9
    total_token_throughput: 5793.4
    max_output_tokens_per_s: 1344.0
    max_concurrent_requests: 33
    rtfx: 0.0
    mean_ttft_ms: 3343.6
    median_ttft_ms: 1812.2
    std_ttft_ms: 5712.3
    p99_ttft_ms: 27106.9
    mean_tpot_ms: 25.66
    median_tpot_ms: 25.6
    std_tpot_ms: 0.2
    p99_tpot_ms: 26.28
    mean_itl_ms: 25.69
    median_itl_ms: 21.0
    std_itl_ms: 41.2
    p99_itl_ms: 365.8
result:
  description:
    - The whole result document, as written to O(result_file) (for a sweep, the point RV(metrics) comes from).
  returned: unless check mode
  type: dict
baseline:
  description: The baseline the run was compared with (empty when none applies) and where it comes from.
  returned: always
  type: dict
  sample:
    metrics: {output_throughput: 1157.35, mean_ttft_ms: 3312.87}
    source: the seed's published vllm bench serve result on an NVIDIA HGX B200
baseline_ratio:
  description: Measured / baseline for each baseline metric (V(null) when not measured).
  returned: always
  type: dict
  sample: {output_throughput: 1.0005, mean_ttft_ms: 1.0093}
checks:
  description: One entry per baseline metric with C(measured), C(baseline), C(ratio), C(limit), C(better), C(ok).
  returned: always
  type: list
  elements: dict
failed_metrics:
  description: The baseline metrics outside tolerance.
  returned: always
  type: list
  elements: str
passed:
  description:
    - V(true) when every baseline metric is within tolerance and no request failed (V(true) without a baseline).
  returned: always
  type: bool
simulated:
  description: V(true) when the server is the collection's stand-in (a test double), whose numbers are simulated.
  returned: always
  type: bool
server:
  description: What the server reported before the run (C(version), C(model), C(max_model_len), C(root)).
  returned: always
  type: dict
dataset:
  description:
    - How the prompts were made. C(method) is V(local) (O(tokenizer)), V(server) (C(/tokenize)/C(/detokenize)) or
      V(approximate) (common words, about one token each); C(token_mismatch) the tokens off the target in all;
      C(output_tokens_counted_by) maps V(usage) (C(usage.completion_tokens)), V(tokenizer) (the streamed text
      re-tokenized, when the server sent no usage) or V(token_events) (one token per event) to request counts.
  returned: always
  type: dict
distributions:
  description: Quantiles (C([[percent, ms], ...])) of TTFT, TPOT, ITL and E2EL, for plots.
  returned: unless check mode
  type: dict
timestamps:
  description:
    - With O(engine=native), where the token event times came from, in requests (C(kernel_receive_time), the
      kernel's receive time of each socket read, on plain http on Linux; C(read_return_time), when the read
      returned, over https), and C(token_events) and C(sharing_a_read), the token events that came in one socket
      read after another of the same request and so carry that read's time (their ITL reads 0). Many of those
      mean the client fell behind the server (or the server writes several tokens at once), and ITL is then
      under-measured; docs/benchmarks.md says how close the client is to the wire.
    - V(null) with O(engine=vllm).
  returned: unless check mode
  type: dict
sweep:
  description: One entry per O(sweep) concurrency with C(max_concurrency), C(metrics) and C(slo_missed).
  returned: always
  type: list
  elements: dict
slo_max_concurrency:
  description: The highest swept concurrency that meets O(slo); V(null) when none does or there is no sweep.
  returned: always
  type: int
workload:
  description: The workload that ran (the options that define it) and the engine.
  returned: always
  type: dict
command:
  description: With O(engine=vllm), the command that ran.
  returned: when engine is vllm
  type: list
  elements: str
"""

import asyncio
import datetime
import json
import math
import os
import random
import shlex
import tempfile
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi.vllm.plugins.module_utils import _bench
from ansible_collections.kimi.vllm.plugins.module_utils._openai import SERVER_ARGUMENT_SPEC, AsyncClient, ClientError
from ansible_collections.kimi.vllm.plugins.module_utils._process import run_with_timeout

# Tokens asked of the test request before the load.
PROBE_TOKENS = 8


class BenchError(Exception):
    """A failure before or during the run, with the message to show."""


def validate(p: dict) -> list:
    """Everything wrong with the arguments, checked before the server is touched."""
    errors = []
    for key in ("input_len", "output_len", "num_prompts", "max_concurrency"):
        if p[key] < 1:
            errors.append(f"{key} must be at least 1, got {p[key]}")
    if p["warmup"] < 0:
        errors.append(f"warmup must be 0 or more, got {p['warmup']}")
    if not p["request_rate"] > 0:
        errors.append(f"request_rate must be more than 0 (or .inf), got {p['request_rate']:g}")
    if not p["burstiness"] > 0:
        errors.append(f"burstiness must be more than 0, got {p['burstiness']:g}")
    if not 0 <= p["range_ratio"] < 1:
        errors.append(f"range_ratio must be in [0, 1), got {p['range_ratio']:g}")
    if not p["percentiles"] or any(not 0 < x <= 100 for x in p["percentiles"]):
        errors.append(f"percentiles must be in (0, 100], got {p['percentiles']}")
    if p["tolerance"] < 0:
        errors.append(f"tolerance must be 0 or more, got {p['tolerance']:g}")
    for name, value in (p["tolerances"] or {}).items():
        if not isinstance(value, (int, float)) or value < 0:
            errors.append(f"tolerances.{name} must be a number of 0 or more, got {value!r}")
    for name, value in (p["baseline"] or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            errors.append(f"baseline.{name} must be a number above 0, got {value!r}")
    for name, value in (p["slo"] or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"slo.{name} must be a number, got {value!r}")
    if any(c < 1 for c in p["sweep"]):
        errors.append(f"sweep concurrencies must be at least 1, got {p['sweep']}")
    if p["timeout"] <= 0:
        errors.append(f"timeout must be more than 0 seconds, got {p['timeout']:g}")
    if p["engine"] == "vllm" and not (p["vllm_container"] or p["vllm_image"]):
        errors.append(
            "engine=vllm needs vllm_container (docker exec into the server) or vllm_image (a one-off container)"
        )
    return errors


def workload_of(p: dict) -> dict:
    """The options that define the workload, and the engine."""
    keys = ("endpoint", "input_len", "output_len", "num_prompts", "max_concurrency", "request_rate", "burstiness")
    out = {k: p[k] for k in keys}
    out.update(range_ratio=p["range_ratio"], seed=p["seed"], ignore_eos=p["ignore_eos"], warmup=p["warmup"])
    out["engine"] = p["engine"]
    if p["sweep"]:
        out["sweep"] = sorted(set(p["sweep"]))
    return out


def json_safe(value):
    """``inf`` and ``nan`` as strings, so the result is strict JSON (as vLLM writes ``request_rate: "inf"``)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Bench:
    """One module run: probe, build prompts, send the load (or run vllm bench serve), judge."""

    def __init__(self, module: AnsibleModule) -> None:
        """Keep the module and its parameters."""
        self.module = module
        self.p = module.params
        self.server = {}
        self.simulated = False
        self.dataset = {}
        self.command = []

    # -- probes ----------------------------------------------------------------------------------------------

    async def probe(self, client) -> None:
        """Models, context length and version; fail with the reason before any load."""
        p = self.p
        try:
            resp = await client.request("GET", "/v1/models", timeout=min(p["timeout"], 30))
        except ClientError as exc:
            raise BenchError(
                f"{str(exc).rstrip('.')}. Is the server up at {client.base_url}? No load was sent."
            ) from None
        if resp.status in (401, 403):
            raise BenchError(
                f"GET {resp.url}: HTTP {resp.status}: the server wants an API key (api_key). No load sent."
            )
        try:
            cards = resp.raise_for_status().json().get("data") or []
        except (ClientError, AttributeError) as exc:
            raise BenchError(f"{exc}. No load was sent.") from None
        names = [c.get("id") for c in cards if isinstance(c, dict)]
        if not names:
            raise BenchError(f"GET {resp.url} lists no model. No load was sent.")
        model = p["model"] or names[0]
        if model not in names:
            raise BenchError(f"the server does not serve model {model!r}; it serves {', '.join(names)}. No load sent.")
        card = next(c for c in cards if c.get("id") == model)
        self.server = {"model": model, "models": names, "root": card.get("root"), "max_model_len": None}
        if isinstance(card.get("max_model_len"), int):
            self.server["max_model_len"] = card["max_model_len"]
        try:
            version = (await client.request("GET", "/version", auth=False, timeout=10)).json()
        except ClientError:
            version = {}
        if isinstance(version, dict):
            self.server["version"] = version.get("version")
            self.simulated = bool(version.get("standin")) or "standin" in str(version.get("version", ""))
        longest_in = _bench.length_ranges(p["input_len"], p["output_len"], p["range_ratio"])[0][1]
        longest_out = _bench.length_ranges(p["input_len"], p["output_len"], p["range_ratio"])[1][1]
        limit = self.server["max_model_len"]
        if limit and longest_in + longest_out > limit:
            raise BenchError(
                f"input_len + output_len reaches {longest_in + longest_out} tokens, more than the server's context "
                f"(max_model_len {limit}) for {model}. No load was sent."
            )

    async def tokenizer(self, client):
        """The tokenizer that builds prompts: local, the server's, or None (approximate)."""
        p = self.p
        if p["tokenizer"]:
            try:
                return _bench.LocalTokenizer(p["tokenizer"])
            except ImportError:
                raise BenchError(
                    "tokenizer needs the Python library `tokenizers` on the target (pip install tokenizers), or "
                    "leave tokenizer unset to use the server's /tokenize."
                ) from None
            except Exception as exc:  # the library raises its own exception types for unreadable files
                raise BenchError(f"cannot load the tokenizer {p['tokenizer']}: {exc}") from None
        tok = _bench.ServerTokenizer(client, self.server["model"], timeout=min(p["timeout"], 120))
        try:
            await tok.encode("hello")
            await tok.decode([(await tok.encode("hello"))[0]])
        except (ClientError, KeyError, ValueError, IndexError, TypeError):
            return None
        return tok

    async def check_endpoint(self, client) -> None:
        """One short request: the endpoint, the model name and the key work before the load starts.

        Eight tokens, not one: a reasoning parser swallows an always-thinking model's opening ``<think>``, which would
        leave a one-token answer without a single token event.
        """
        p = self.p
        path = _bench.PATHS[p["endpoint"]]
        body = _bench.request_body(p["endpoint"], self.server["model"], "Hello", PROBE_TOKENS, True)
        rec = _bench.RequestRecord()
        await _bench.measure_request(client, path, body, rec, p["endpoint"] == "chat", min(p["timeout"], 120))
        if not rec.success:
            raise BenchError(
                f"a {PROBE_TOKENS}-token test request to {path} failed: {rec.error.rstrip('.')}. No load sent."
            )

    # -- native ----------------------------------------------------------------------------------------------

    async def native(self, concurrencies) -> list:
        """Probe, build the prompts, and run one load per concurrency; a list of ``(concurrency, result)``."""
        p = self.p
        client = AsyncClient(
            p["url"], api_key=p["api_key"], timeout=p["timeout"], validate_certs=p["validate_certs"], max_idle=4096
        )
        try:
            await self.probe(client)
            tok = await self.tokenizer(client)
            if self.module.check_mode:
                self.dataset = {"method": tok.method if tok else "approximate"}
                return []
            await self.check_endpoint(client)
            method = tok.method if tok else "approximate"
            results = []
            for index, conc in enumerate(concurrencies):
                # Each sweep point gets prompts of its own (seed + index), so that a server's prefix cache cannot
                # serve one point's prompts to the next. The first point is the seed's workload.
                try:
                    bodies, counts, arrivals, mismatch = await self.workload(tok, p["seed"] + index)
                except (ClientError, KeyError, ValueError, TypeError) as exc:
                    raise BenchError(f"building the prompts with the {method} tokenizer failed: {exc}") from None
                if index == 0:
                    self.dataset = {
                        "name": "random",
                        "method": method,
                        "input_len_target": p["input_len"],
                        "mean_prompt_tokens": sum(counts) / len(counts),
                        "token_mismatch": mismatch,
                    }
                await _bench.open_connections(client, min(conc, p["num_prompts"]), timeout=30)
                if p["warmup"]:
                    await _bench.run_load(
                        client,
                        p["endpoint"],
                        [bodies[0]] * p["warmup"],
                        [counts[0]] * p["warmup"],
                        max_concurrency=conc,
                        arrivals=[0.0] * p["warmup"],
                        timeout=p["timeout"],
                    )
                records, duration = await _bench.run_load(
                    client,
                    p["endpoint"],
                    bodies,
                    counts,
                    max_concurrency=conc,
                    arrivals=arrivals,
                    timeout=p["timeout"],
                )
                counter = await self.output_counter(records, tok)
                metrics = _bench.compute_metrics(records, duration, p["percentiles"], counter)
                errors = sorted({r.error for r in records if not r.success})
                results.append((conc, metrics, errors))
            return results
        finally:
            await client.aclose()

    async def workload(self, tok, seed: int):
        """Request bodies, prompt token counts, arrival offsets and the tokens off target, from ``seed``."""
        p = self.p
        rng = random.Random(seed)
        inputs, outputs, offsets = _bench.sample_lengths(
            p["num_prompts"], p["input_len"], p["output_len"], p["range_ratio"], rng
        )
        prompts, counts, mismatch = await _bench.build_prompts(tok, inputs, offsets, rng)
        model = self.server["model"]
        bodies = [_bench.request_body(p["endpoint"], model, pr, n, p["ignore_eos"]) for pr, n in zip(prompts, outputs)]
        arrivals = _bench.arrival_offsets(p["num_prompts"], p["request_rate"], p["burstiness"], rng)
        return bodies, counts, arrivals, mismatch

    async def output_counter(self, records, tok):
        """For requests without usage: a function counting the tokens of their text with the prompts' tokenizer."""
        texts = {r.text for r in records if r.success and not r.output_tokens and r.text is not None}
        if not texts or tok is None:
            return None
        counts = {}
        for text in texts:
            try:
                counts[text] = len(await tok.encode(text)) if text else 0
            except (ClientError, KeyError, ValueError, TypeError):
                return None
        return counts.__getitem__

    # -- vllm bench serve ------------------------------------------------------------------------------------

    def vllm(self, concurrencies) -> list:
        """Run ``vllm bench serve`` once per concurrency in the server's image; parse its result files."""
        p = self.p
        results = []
        for index, conc in enumerate(concurrencies):
            # As for the native engine: each sweep point's prompts from a seed of its own.
            params = dict(p, max_concurrency=conc, model=self.server["model"], seed=p["seed"] + index)
            name = f"kimi-vllm-bench-{uuid.uuid4().hex[:12]}.json"
            tokenizer_model = p["vllm_model"] or self.server.get("root") or self.server["model"]
            if p["vllm_image"]:
                host_dir = tempfile.mkdtemp(prefix="kimi-vllm-bench-")
                os.chmod(host_dir, 0o777)  # the image may run as another user; removed below
                inner = _bench.vllm_bench_argv(params, "/kimi-vllm-results", name, self.inner_url(), tokenizer_model)
                network = f"container:{p['vllm_container']}" if p["vllm_container"] else "host"
                argv = [p["docker"], "run", "--rm", "--network", network, "-v", f"{host_dir}:/kimi-vllm-results"]
                argv += [*p["vllm_docker_args"], "--entrypoint", "vllm", p["vllm_image"], *inner[1:]]
            else:
                inner = _bench.vllm_bench_argv(params, "/tmp", name, self.inner_url(), tokenizer_model)
                argv = [p["docker"], "exec", p["vllm_container"], *inner]
            argv += list(p["vllm_args"])
            self.command = self.redact_argv(argv)
            run = run_with_timeout(self.module, self.with_key(argv), p["run_timeout"])
            if run.rc is None:
                why = "timed out" if run.timed_out else f"could not start ({run.start_error})"
                raise BenchError(f"{shlex.join(self.command)} {why}")
            if run.rc != 0:
                tail = (run.stderr or run.stdout).strip().splitlines()[-15:]
                raise BenchError(f"{shlex.join(self.command)} exited with rc {run.rc}: " + " | ".join(tail))
            if p["vllm_image"]:
                path = os.path.join(host_dir, name)
                try:
                    with open(path, encoding="utf-8") as fh:
                        text = fh.read()
                finally:
                    for f in os.listdir(host_dir):
                        os.unlink(os.path.join(host_dir, f))
                    os.rmdir(host_dir)
            else:
                in_container = [p["docker"], "exec", p["vllm_container"]]
                cat = run_with_timeout(self.module, [*in_container, "cat", f"/tmp/{name}"], 60)
                run_with_timeout(self.module, [*in_container, "rm", "-f", f"/tmp/{name}"], 60)
                if cat.rc != 0:
                    raise BenchError(f"vllm bench serve saved no result file /tmp/{name}: {cat.stderr.strip()}")
                text = cat.stdout
            try:
                doc = _bench.parse_vllm_result(text)
            except ValueError as exc:
                raise BenchError(f"cannot read vllm bench serve's result: {exc}") from None
            doc["_output_tokens_counted_by"] = {"vllm": doc.get("completed", 0)}
            results.append((conc, doc, []))
        self.dataset = {"name": "random", "method": "vllm bench serve (its own tokenizer, aligned to /tokenize)"}
        return results

    def inner_url(self) -> str:
        """The server's URL as seen from inside the container (the node's loopback)."""
        return self.p["url"].rstrip("/")

    def with_key(self, argv):
        """``argv`` with the API key handed over: vllm bench serve reads OPENAI_API_KEY."""
        if not self.p["api_key"]:
            return argv
        i = argv.index("exec") + 1 if "exec" in argv else argv.index("run") + 1
        return [*argv[:i], "-e", f"OPENAI_API_KEY={self.p['api_key']}", *argv[i:]]

    def redact_argv(self, argv):
        """``argv`` as shown: never the key."""
        key = self.p["api_key"]
        return [a.replace(key, "********") if key else a for a in argv]

    # -- judging ---------------------------------------------------------------------------------------------

    def baseline(self) -> tuple:
        """The baseline and its source: the given one, else the seed's for the seed's workload, else none."""
        if self.p["baseline"]:
            return dict(self.p["baseline"]), "given in the task (baseline)"
        workload = workload_of(self.p)
        workload["model"] = None
        if _bench.is_seed_workload(workload):
            return dict(_bench.SEED_BASELINE), _bench.SEED_BASELINE_SOURCE
        return {}, "none: the workload is not the seed's (8192 in / 2048 out, 512 prompts, concurrency 32, chat)"

    def setup(self, conc) -> dict:
        """The setup keys of vLLM's result file."""
        p = self.p
        return {
            "date": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
            "endpoint_type": _bench.BACKENDS[p["endpoint"]],
            "backend": _bench.BACKENDS[p["endpoint"]],
            "label": p["label"],
            "model_id": self.server.get("root") or self.server.get("model"),
            "tokenizer_id": p["tokenizer"] or f"{self.dataset.get('method', 'server')}:{self.server.get('model')}",
            "num_prompts": p["num_prompts"],
            "request_rate": _bench.format_request_rate(p["request_rate"]),
            "burstiness": p["burstiness"],
            "max_concurrency": conc,
        }

    def run(self) -> None:
        """Do it all and exit the module."""
        p = self.p
        errors = validate(p)
        if errors:
            self.module.fail_json(msg="; ".join(errors) + ". No load was sent.")
        concurrencies = sorted(set(p["sweep"])) if p["sweep"] else [p["max_concurrency"]]
        base, source = self.baseline()
        out = {
            "changed": False,
            "metrics": {},
            "baseline": {"metrics": base, "source": source},
            "baseline_ratio": {},
            "checks": [],
            "failed_metrics": [],
            "passed": True,
            "simulated": False,
            "server": {},
            "dataset": {},
            "sweep": [],
            "slo_max_concurrency": None,
            "workload": json_safe(workload_of(p)),
        }
        try:
            if p["engine"] == "vllm":
                asyncio.run(self.probe_only())
                results = [] if self.module.check_mode else self.vllm(concurrencies)
                out["command"] = self.command if results else []
            else:
                results = asyncio.run(self.native(concurrencies))
        except BenchError as exc:
            out.update(server=self.server, simulated=self.simulated)
            self.module.fail_json(msg=str(exc), **out)
        out.update(server=self.server, simulated=self.simulated, dataset=self.dataset)
        if self.module.check_mode:
            out["msg"] = "check mode: arguments and server checked, no load sent"
            self.module.exit_json(**out)

        documents = []
        points = {}
        for conc, metrics, errors in results:
            counted = metrics.pop("_output_tokens_counted_by", {})
            e2el = metrics.pop("_e2el", None)
            stamps = metrics.pop("_timestamps", None)
            dists = metrics.pop("_distributions", None)
            point = _bench.scalar_metrics(metrics)
            missed = _bench.meets_slo(point, p["slo"]) if p["slo"] else []
            extra = {
                "engine": p["engine"],
                "simulated": self.simulated,
                "server": self.server,
                "dataset": dict(self.dataset, output_tokens_counted_by=counted),
                "e2el_ms": e2el,
                "timestamps": stamps,
                "distributions": dists,
                "errors": errors[:10],
            }
            doc = json_safe(_bench.result_document(metrics, self.setup(conc), extra))
            documents.append(doc)
            out["sweep"].append({"max_concurrency": conc, "metrics": json_safe(point), "slo_missed": missed})
            points[conc] = (conc, doc, point, counted, dists, errors)
        if p["sweep"] and p["slo"]:
            out["slo_max_concurrency"] = _bench.best_under_slo(out["sweep"])
        elif not p["sweep"]:
            out["sweep"] = []
        chosen = points.get(p["max_concurrency"]) or points[concurrencies[-1]]
        if chosen[0] != p["max_concurrency"] and not p["baseline"]:
            base, source = {}, f"none: the sweep has no point at max_concurrency {p['max_concurrency']}"
            out["baseline"] = {"metrics": base, "source": source}
        conc, doc, point, counted, dists, errors = chosen
        comparison = _bench.compare_baseline(point, base, p["tolerance"], p["tolerances"])
        out.update(
            metrics=json_safe(point),
            result=doc,
            distributions=json_safe(dists),
            timestamps=(doc.get("kimi_vllm") or {}).get("timestamps"),
            baseline_ratio=comparison["ratios"],
            checks=comparison["checks"],
            failed_metrics=comparison["failed"],
        )
        out["dataset"] = dict(self.dataset, output_tokens_counted_by=counted)
        if doc.get("kimi_vllm") is not None:
            doc["kimi_vllm"]["baseline"] = {"metrics": base, "source": source, "ratios": comparison["ratios"]}
            doc["kimi_vllm"]["passed"] = not comparison["failed"] and not point.get("failed")
        if p["result_file"]:
            self.write(documents)
        failed_requests = point.get("failed") or 0
        out["passed"] = not comparison["failed"] and not failed_requests
        label = "SIMULATED (stand-in server) " if self.simulated else ""
        summary = (
            f"{label}{point.get('completed')} requests at concurrency {conc}: "
            f"output {point.get('output_throughput', 0):.1f} tok/s, "
            f"TTFT mean {point.get('mean_ttft_ms', 0):.1f} ms, ITL mean {point.get('mean_itl_ms', 0):.2f} ms"
        )
        problems = []
        if failed_requests:
            problems.append(f"{failed_requests} requests failed ({'; '.join(errors[:3])})")
        if comparison["failed"]:
            problems.append("outside tolerance: " + _bench.describe_failures(comparison))
        out["msg"] = summary + (". " + ". ".join(problems) if problems else "")
        if problems and p["gate"]:
            self.module.fail_json(**out)
        self.module.exit_json(**out)

    async def probe_only(self) -> None:
        """The probes alone (engine vllm checks the server before starting a container)."""
        p = self.p
        client = AsyncClient(p["url"], api_key=p["api_key"], timeout=p["timeout"], validate_certs=p["validate_certs"])
        try:
            await self.probe(client)
        finally:
            await client.aclose()

    def write(self, documents) -> None:
        """Write the result file (one document, or one per line for a sweep) atomically."""
        path = self.p["result_file"]
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vllm_bench.")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if len(documents) == 1:
                    json.dump(documents[0], fh)
                else:
                    fh.write("\n".join(json.dumps(d) for d in documents))
                fh.write("\n")
            os.replace(tmp, path)
        except OSError as exc:
            self.module.fail_json(msg=f"cannot write result_file {path}: {exc}")


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            **SERVER_ARGUMENT_SPEC,
            "model": {"type": "str"},
            "endpoint": {"type": "str", "choices": ["chat", "completions"], "default": "chat"},
            "input_len": {"type": "int", "default": 8192},
            "output_len": {"type": "int", "default": 2048},
            "num_prompts": {"type": "int", "default": 512},
            "max_concurrency": {"type": "int", "default": 32},
            "request_rate": {"type": "float", "default": float("inf")},
            "burstiness": {"type": "float", "default": 1.0},
            "range_ratio": {"type": "float", "default": 0.0},
            "seed": {"type": "int", "default": 0},
            "ignore_eos": {"type": "bool", "default": True},
            "warmup": {"type": "int", "default": 0},
            "percentiles": {"type": "list", "elements": "float", "default": [99]},
            "tokenizer": {"type": "str", "no_log": False},
            "label": {"type": "str"},
            "result_file": {"type": "path"},
            "baseline": {"type": "dict"},
            "tolerance": {"type": "float", "default": 0.1},
            "tolerances": {"type": "dict", "default": {}},
            "gate": {"type": "bool", "default": True},
            "sweep": {"type": "list", "elements": "int", "default": []},
            "slo": {"type": "dict", "default": {}},
            "engine": {"type": "str", "choices": ["native", "vllm"], "default": "native"},
            "vllm_container": {"type": "str"},
            "vllm_image": {"type": "str"},
            "vllm_model": {"type": "str"},
            "vllm_args": {"type": "list", "elements": "str", "default": []},
            "vllm_docker_args": {"type": "list", "elements": "str", "default": []},
            "docker": {"type": "str", "default": "docker"},
            "timeout": {"type": "float", "default": 600},
            "run_timeout": {"type": "float", "default": 21600},
        },
        supports_check_mode=True,
    )
    try:
        AsyncClient(module.params["url"])
    except ValueError as exc:
        module.fail_json(msg=f"{exc}. No load was sent.")
    Bench(module).run()


if __name__ == "__main__":
    main()
