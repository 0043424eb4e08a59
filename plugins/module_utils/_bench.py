# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seed's benchmark, measured exactly as ``vllm bench serve`` 0.33.0 measures it.

Every definition here follows vLLM 0.33.0's own code (``vllm/benchmarks/serve.py``, ``calculate_metrics``;
``vllm/benchmarks/lib/endpoint_request_func.py``; ``vllm/benchmarks/datasets/``), so that a number from a node is
comparable with the seed's published one (REFERENCE.md section 4):

- a **token event** of a chat stream is an SSE chunk whose first choice's ``delta`` carries ``content``,
  ``reasoning``, ``tool_calls`` or ``function_call``, or an empty ``content`` without ``role``
  (``_choice_has_streamed_output``); the opening role-only chunk is not one. Of a completions stream, any chunk with
  a non-empty ``choices``;
- TTFT = first token event - start; ITL = the gaps between consecutive token events (one per chunk, pooled over all
  requests); E2EL = last token event - start; output tokens = ``usage.completion_tokens``; TPOT = (E2EL - TTFT) /
  (output tokens - 1) for requests of more than one token;
- duration = first dispatch to last completion; throughputs divide by it; mean, median, population standard deviation
  and linearly interpolated percentiles as numpy computes them (written out here: the nodes have no numpy).

No Ansible imports: the ``vllm_bench`` module, the report filter and the benchmarks under ``benchmarks/`` use it.
The pure parts (statistics, metrics, the dataset's lengths and arrivals, the baseline check, the result schema,
parsing ``vllm bench serve`` output) are unit-tested directly; :func:`run_load` drives the one HTTP/SSE client of
``_openai``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import re
import time

from ansible_collections.kimi.vllm.plugins.module_utils._openai import ClientError, HTTPStatusError, snippet

# ---- the seed's workload and its published result ------------------------------------------------------------

# vllm bench serve --backend openai-chat --endpoint /v1/chat/completions --dataset-name random
#   --random-input-len 8192 --random-output-len 2048 --num-prompts 512 --max-concurrency 32
SEED_WORKLOAD = {
    "endpoint": "chat",
    "input_len": 8192,
    "output_len": 2048,
    "num_prompts": 512,
    "max_concurrency": 32,
    "request_rate": float("inf"),
    "range_ratio": 0.0,
}

# The seed's table: vLLM on an NVIDIA HGX B200, CUDA 12.8 (driver 570), image nightly-e312c5cb25427e76fc3830ab14e7b6bc.
SEED_BASELINE = {
    "output_throughput": 1157.35,
    "total_token_throughput": 5786.74,
    "mean_ttft_ms": 3312.87,
    "p99_ttft_ms": 29902.17,
    "mean_tpot_ms": 26.03,
    "p99_tpot_ms": 31.07,
    "mean_itl_ms": 26.03,
    "p99_itl_ms": 369.65,
}
SEED_BASELINE_SOURCE = (
    "the seed's published vllm bench serve result on an NVIDIA HGX B200 (CUDA 12.8): 8192 in / 2048 out, "
    "512 prompts, max concurrency 32"
)

# Throughputs are better higher; latencies (every *_ms key) better lower.
HIGHER_IS_BETTER = (
    "output_throughput",
    "total_token_throughput",
    "request_throughput",
    "request_goodput",
    "max_output_tokens_per_s",
)
LATENCY_METRICS = ("ttft", "tpot", "itl")
# Keys of vLLM's --save-result file in vLLM's order; the per-metric statistics follow, one group per metric.
RESULT_HEAD_KEYS = (
    "date",
    "endpoint_type",
    "backend",
    "label",
    "model_id",
    "tokenizer_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "latencies",
    "queue_times",
    "max_output_tokens_per_s",
    "max_concurrent_requests",
    "rtfx",
)
# Quantiles kept of each per-request distribution for the report's plots (the raw lists are too long to return).
DISTRIBUTION_QUANTILES = (0, 1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 100)

BACKENDS = {"chat": "openai-chat", "completions": "openai"}
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


# ---- statistics, as numpy computes them ------------------------------------------------------------------------


def mean(values) -> float:
    """``np.mean(values or 0)``: the mean, 0.0 for no values (vLLM's ``or 0``)."""
    if not values:
        return 0.0
    return math.fsum(values) / len(values)


def std(values) -> float:
    """``np.std(values or 0)``: the population standard deviation (ddof 0), 0.0 for no values."""
    if not values:
        return 0.0
    mu = mean(values)
    return math.sqrt(math.fsum((v - mu) * (v - mu) for v in values) / len(values))


def percentile(values, p: float, presorted: bool = False) -> float:
    """``np.percentile(values or 0, p)`` with numpy's default ``linear`` method, 0.0 for no values.

    The rank is ``p / 100 * (n - 1)``; between two neighbours numpy's ``_lerp`` interpolates from the nearer one,
    which this copies so that results agree to the last bit in the common cases.
    """
    if not values:
        return 0.0
    data = values if presorted else sorted(values)
    n = len(data)
    rank = p / 100.0 * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    a, b = data[lo], data[hi]
    diff = b - a
    return b - diff * (1.0 - frac) if frac >= 0.5 else a + diff * frac


def median(values, presorted: bool = False) -> float:
    """``np.median``: the 50th percentile (the mean of the two middle values for an even count)."""
    return percentile(values, 50.0, presorted)


def percentile_key(p: float) -> str:
    """vLLM's name for a percentile: ``p99``, ``p99.9`` (``str(int(p))`` when whole)."""
    return "p" + (str(int(p)) if int(p) == p else str(p))


def summarize(values, percentiles) -> dict:
    """mean, median, std and the requested percentiles of ``values`` (seconds) in milliseconds, vLLM's way."""
    data = sorted(values)
    out = {
        "mean": mean(data) * 1000,
        "median": median(data, presorted=True) * 1000,
        "std": std(data) * 1000,
    }
    for p in percentiles:
        out[percentile_key(p)] = percentile(data, p, presorted=True) * 1000
    return out


def quantiles_ms(values, points=DISTRIBUTION_QUANTILES) -> list:
    """``[[p, value_ms], ...]`` at ``points``: enough of a distribution to draw it."""
    if not values:
        return []
    data = sorted(values)
    return [[p, percentile(data, p, presorted=True) * 1000] for p in points]


# ---- one request's measurement ---------------------------------------------------------------------------------


class RequestRecord:
    """What one request measured, in seconds of ``time.perf_counter()`` (vLLM's ``RequestFuncOutput``).

    ``output_tokens`` is ``usage.completion_tokens`` (None when the server sent no usage); ``events`` counts token
    events; ``text`` is the streamed text, kept only when there was no usage (to count its tokens afterwards).
    ``stamp`` says where the event times came from (``kernel``: the kernel's receive time of each socket read;
    ``read``: the time each read returned); ``shared`` counts token events that came in one read after another
    token event of the same request, and so carry that read's time, which is the arrival of its last segment.
    """

    __slots__ = (
        "arrival",
        "error",
        "events",
        "itl",
        "latency",
        "output_tokens",
        "prompt_len",
        "shared",
        "stamp",
        "start",
        "success",
        "text",
        "ttft",
    )

    def __init__(self, prompt_len: int = 0, arrival: float = 0.0) -> None:
        """An unsent request of ``prompt_len`` dataset tokens that arrived (was due) at ``arrival``."""
        self.prompt_len = prompt_len
        self.arrival = arrival
        self.start = 0.0
        self.ttft = 0.0
        self.itl = []
        self.latency = 0.0
        self.output_tokens = None
        self.events = 0
        self.success = False
        self.error = ""
        self.text = None
        self.stamp = ""
        self.shared = 0

    @property
    def queue_time(self) -> float:
        """Seconds the request waited for a free concurrency slot (vLLM's ``client_queue_time``)."""
        return self.start - self.arrival

    @classmethod
    def from_events(cls, start, events, output_tokens=None, prompt_len=0, arrival=None) -> RequestRecord:
        """A successful record from the times of its token events (for tests and re-computation)."""
        rec = cls(prompt_len, start if arrival is None else arrival)
        rec.start = start
        if events:
            rec.ttft = events[0] - start
            rec.itl = [b - a for a, b in zip(events, events[1:])]
            rec.latency = events[-1] - start
            rec.events = len(events)
            rec.success = True
        else:
            rec.error = "Never received a valid chunk to calculate TTFT."
        rec.output_tokens = output_tokens
        return rec


# ---- metrics ---------------------------------------------------------------------------------------------------


def output_lengths(records, count_tokens=None):
    """Each successful request's output tokens and how they were counted.

    ``usage.completion_tokens`` when the server sent it (vLLM's rule, ``if not output_len`` included: a zero counts
    as missing). Otherwise ``count_tokens(text)`` when given (vLLM re-tokenizes the generated text with its
    tokenizer), else the number of token events, which equals the token count when the server sends one token per
    chunk, as vLLM does. Returns ``(lengths, methods)``; ``lengths`` has 0 for failed requests, as vLLM's
    ``actual_output_lens``; ``methods`` maps ``usage`` / ``tokenizer`` / ``token_events`` to request counts.
    """
    lengths = []
    methods = {}
    for rec in records:
        if not rec.success:
            lengths.append(0)
            continue
        n = rec.output_tokens
        how = "usage"
        if not n:
            if count_tokens is not None and rec.text is not None:
                n = count_tokens(rec.text)
                how = "tokenizer"
            else:
                n = rec.events
                how = "token_events"
        methods[how] = methods.get(how, 0) + 1
        lengths.append(int(n))
    return lengths, methods


def peak_rates(records):
    """vLLM's ``max_output_tokens_per_s`` and ``max_concurrent_requests``: one-second buckets from the first start.

    Token times are rebuilt from start + TTFT + the ITL gaps (one per token event, as vLLM does); a request counts
    as concurrent in every bucket from its start's to its end's.
    """
    done = [r for r in records if r.success]
    if not done:
        return 0.0, 0
    t0 = min(r.start for r in done)
    t_end = max(r.start + r.latency for r in done)
    buckets = math.ceil(t_end - t0) + 1
    tokens = [0] * buckets
    concurrent = [0] * buckets
    for r in done:
        t = r.start + r.ttft
        b = int(t - t0)
        if 0 <= b < buckets:
            tokens[b] += 1
        for gap in r.itl:
            t += gap
            b = int(t - t0)
            if 0 <= b < buckets:
                tokens[b] += 1
        for b in range(int(r.start - t0), int(r.start + r.latency - t0) + 1):
            concurrent[b] += 1
    return float(max(tokens)), int(max(concurrent))


def timestamp_sources(records) -> dict:
    """Where the successful requests' event times came from, and how many token events shared a socket read."""
    done = [r for r in records if r.success]
    return {
        "kernel_receive_time": sum(1 for r in done if r.stamp == "kernel"),
        "read_return_time": sum(1 for r in done if r.stamp == "read"),
        "token_events": sum(r.events for r in done),
        "sharing_a_read": sum(r.shared for r in done),
    }


def compute_metrics(records, duration: float, percentiles=(99,), count_tokens=None) -> dict:
    """vLLM's ``calculate_metrics`` and the result keys ``benchmark()`` builds from them.

    Returns the keys from ``duration`` on (see :data:`RESULT_HEAD_KEYS`) followed by ``{mean,median,std,pNN}_{ttft,
    tpot,itl}_ms``, plus ``_output_tokens_counted_by`` (how output tokens were counted), ``_timestamps``
    (:func:`timestamp_sources`) and ``_e2el`` (E2EL statistics, which vLLM prints only when asked), which the caller
    moves out of vLLM's keys (into ``kimi_vllm``).
    """
    lengths, methods = output_lengths(records, count_tokens)
    total_input = 0
    completed = 0
    ttfts, tpots, itls, e2els = [], [], [], []
    for rec, n in zip(records, lengths):
        if not rec.success:
            continue
        total_input += rec.prompt_len
        if n > 1:
            tpots.append((rec.latency - rec.ttft) / (n - 1))
        itls.extend(rec.itl)
        ttfts.append(rec.ttft)
        e2els.append(rec.latency)
        completed += 1
    total_output = sum(lengths)
    peak_tokens, peak_concurrent = peak_rates(records)
    dur = duration if duration > 0 else float("nan")
    out = {
        "duration": duration,
        "completed": completed,
        "failed": len(records) - completed,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": completed / dur,
        "request_goodput": None,
        "output_throughput": total_output / dur,
        "total_token_throughput": (total_input + total_output) / dur,
        "latencies": [r.latency for r in records],
        "queue_times": [r.queue_time for r in records],
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_concurrent,
        "rtfx": 0.0,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls)):
        for stat, value in summarize(values, percentiles).items():
            out[f"{stat}_{name}_ms"] = value
    out["_output_tokens_counted_by"] = methods
    out["_timestamps"] = timestamp_sources(records)
    out["_e2el"] = summarize(e2els, percentiles)
    out["_distributions"] = {
        "ttft_ms": quantiles_ms(ttfts),
        "tpot_ms": quantiles_ms(tpots),
        "itl_ms": quantiles_ms(itls),
        "e2el_ms": quantiles_ms(e2els),
    }
    return out


def scalar_metrics(result: dict) -> dict:
    """The numbers of a result (vLLM keys), without the per-request lists and the setup."""
    skip = {"latencies", "queue_times", *RESULT_HEAD_KEYS[:10]}
    return {
        k: v
        for k, v in result.items()
        if k not in skip and not k.startswith("_") and (v is None or isinstance(v, (int, float, str)))
    }


# ---- the baseline ----------------------------------------------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """True for throughputs, False for latencies (``*_ms``)."""
    return metric in HIGHER_IS_BETTER or metric.endswith(("_throughput", "_per_s"))


def compare_baseline(metrics: dict, baseline: dict, tolerance: float, tolerances=None) -> dict:
    """Each baseline metric's ratio (measured / baseline) and whether it is within tolerance.

    A throughput passes when measured >= baseline x (1 - tolerance); a latency when measured <= baseline x
    (1 + tolerance). A metric the run did not produce fails, so a typo in ``baseline`` cannot pass silently.
    Returns ``{"ratios": {m: r}, "checks": [{metric, measured, baseline, ratio, limit, better, ok}], "failed": [m]}``.
    """
    ratios = {}
    checks = []
    failed = []
    for metric, base in baseline.items():
        tol = (tolerances or {}).get(metric, tolerance)
        value = metrics.get(metric)
        higher = higher_is_better(metric)
        limit = base * (1 - tol) if higher else base * (1 + tol)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            ok = False
            ratio = None
        else:
            ratio = value / base if base else None
            ok = value >= limit if higher else value <= limit
        ratios[metric] = ratio
        checks.append(
            {
                "metric": metric,
                "measured": value,
                "baseline": base,
                "ratio": ratio,
                "limit": limit,
                "better": "higher" if higher else "lower",
                "tolerance": tol,
                "ok": ok,
            }
        )
        if not ok:
            failed.append(metric)
    return {"ratios": ratios, "checks": checks, "failed": failed}


def describe_failures(comparison: dict) -> str:
    """One clause per failed metric: what was measured, the baseline and the limit."""
    parts = []
    for c in comparison["checks"]:
        if c["ok"]:
            continue
        if c["measured"] is None or c["ratio"] is None:
            parts.append(f"{c['metric']}: not measured (baseline {c['baseline']:g})")
            continue
        word = "below" if c["better"] == "higher" else "above"
        parts.append(
            f"{c['metric']} {c['measured']:.2f} is {word} the limit {c['limit']:.2f} "
            f"(baseline {c['baseline']:g}, ratio {c['ratio']:.3f}, tolerance {c['tolerance']:.0%})"
        )
    return "; ".join(parts)


def is_seed_workload(workload: dict) -> bool:
    """Whether a workload is the seed's, so that the seed's baseline applies to it."""
    return all(workload.get(k) == v for k, v in SEED_WORKLOAD.items())


# ---- the SLO of a sweep ----------------------------------------------------------------------------------------


def meets_slo(metrics: dict, slo: dict) -> list:
    """The SLO metrics (``metric: maximum``) a point misses; an empty list means it meets the SLO."""
    missed = []
    for metric, limit in slo.items():
        value = metrics.get(metric)
        if not isinstance(value, (int, float)) or math.isnan(value):
            missed.append(metric)
        elif higher_is_better(metric):
            if value < limit:
                missed.append(metric)
        elif value > limit:
            missed.append(metric)
    return missed


def best_under_slo(points) -> int | None:
    """The highest ``max_concurrency`` of the sweep points that meet the SLO (None when none does)."""
    ok = [p["max_concurrency"] for p in points if not p["slo_missed"] and p["max_concurrency"] is not None]
    return max(ok) if ok else None


# ---- the random dataset: lengths, arrivals ---------------------------------------------------------------------


def length_ranges(input_len: int, output_len: int, range_ratio: float, num_special: int = 0):
    """vLLM's ``get_sampling_params`` bounds: ``((in_low, in_high), (out_low, out_high))``, inclusive."""
    real_input = max(0, int(input_len) - num_special)
    in_low = math.floor(real_input * (1 - range_ratio))
    in_high = math.ceil(real_input * (1 + range_ratio))
    out_low = max(math.floor(output_len * (1 - range_ratio)), 1)
    out_high = max(math.ceil(output_len * (1 + range_ratio)), 1)
    return (in_low, in_high), (out_low, out_high)


def sample_lengths(num_prompts: int, input_len: int, output_len: int, range_ratio: float, rng: random.Random):
    """Per request: input length, output length and vocabulary offset, uniform over vLLM's ranges.

    vLLM draws these from numpy's PCG64; the standard library's Mersenne Twister draws from the same ranges, so the
    workload has the same distribution but not the same individual values (with ``range_ratio`` 0, the seed's, the
    lengths are identical anyway).
    """
    (in_low, in_high), (out_low, out_high) = length_ranges(input_len, output_len, range_ratio)
    inputs = [rng.randint(in_low, in_high) for _i in range(num_prompts)]
    outputs = [rng.randint(out_low, out_high) for _i in range(num_prompts)]
    offsets = [rng.randrange(1 << 30) for _i in range(num_prompts)]
    return inputs, outputs, offsets


def arrival_offsets(num_prompts: int, request_rate: float, burstiness: float, rng: random.Random) -> list:
    """Seconds after the start at which each request is due (vLLM's ``get_request``).

    ``inf``: all at 0. Otherwise gamma-distributed gaps (shape ``burstiness``, scale 1 / (rate x burstiness);
    burstiness 1 is a Poisson process), accumulated and then rescaled so that the last request is due at
    ``num_prompts / request_rate``, as vLLM does to steady the throughput across seeds.
    """
    if request_rate == float("inf"):
        return [0.0] * num_prompts
    if burstiness == float("inf"):
        gaps = [1.0 / request_rate] * num_prompts
    else:
        theta = 1.0 / (request_rate * burstiness)
        gaps = [rng.gammavariate(burstiness, theta) for _i in range(num_prompts)]
    offsets = []
    total = 0.0
    for gap in gaps:
        total += gap
        offsets.append(total)
    if offsets and offsets[-1] != 0:
        factor = (num_prompts / request_rate) / offsets[-1]
        offsets = [o * factor for o in offsets]
    return offsets


# Text from which a pool of ordinary, non-special token ids is taken when only the server's /tokenize is at hand
# (it does not say how large the vocabulary is or which ids are special).
POOL_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what more out up about into time them can "
    "only other new some could these two may first then do any like my now over such our man me even most made "
    "after also did many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here between both "
    "life being under never day same another know while last might us great old year off come since against go "
    "came right used take three code function return value error test build server model token request stream "
    "latency throughput benchmark compute memory cache kernel driver network packet queue thread process signal "
    "Python Rust Linux HTTP JSON 0 1 2 3 4 5 6 7 8 9 10 42 100 2048 8192 , . ; : ( ) [ ] { } = + - * / # @ ! ? "
)
# Words for the approximate prompts (no tokenizer at all): most BPE vocabularies hold each as one token after a space.
APPROX_WORDS = POOL_TEXT.split()


def approximate_prompt(length: int, offset: int) -> str:
    """``length`` common words starting at ``offset``: about ``length`` tokens, reported as an approximation."""
    words = APPROX_WORDS
    n = len(words)
    return " ".join(words[(offset + i) % n] for i in range(length))


def token_run(pool, length: int, offset: int, index: int) -> list:
    """vLLM's inner sequence: ``allowed[(offset + index + arange(length)) % len(allowed)]`` over ``pool``."""
    n = len(pool)
    start = offset + index
    return [pool[(start + k) % n] for k in range(length)]


async def fit_prompt(ids, target: int, encode, decode, rng: random.Random, pool, max_retry: int = 10):
    """vLLM's ``gen_prompt_decode_to_target_len``: decode, re-encode, truncate or extend until exactly ``target``.

    ``encode(text) -> ids`` and ``decode(ids) -> text`` are coroutines (a local tokenizer or the server's
    /tokenize and /detokenize). Extension tokens are drawn from ``pool``. Returns ``(prompt, token_count,
    mismatch)``; ``mismatch`` is the count minus ``target`` after ``max_retry`` rounds (0 when exact).
    """
    seq = list(ids)
    retries = max_retry
    mismatch = 0
    while True:
        prompt = await decode(seq)
        seq = await encode(prompt)
        if retries <= 0:
            mismatch = len(seq) - target
            break
        if len(seq) == target:
            break
        if len(seq) < target:
            seq.extend(pool[rng.randrange(len(pool))] for _i in range(target - len(seq)))
        else:
            seq = seq[:target]
        retries -= 1
    return prompt, len(seq), mismatch


# ---- requests --------------------------------------------------------------------------------------------------


def request_body(endpoint: str, model: str, prompt, max_tokens: int, ignore_eos: bool, extra=None) -> bytes:
    """The body ``vllm bench serve`` sends for one request, serialised once before the run.

    Chat: one user message whose content is ``[{"type": "text", "text": prompt}]``, ``max_completion_tokens``;
    completions: ``prompt``, ``repetition_penalty`` 1.0, ``max_tokens``, ``logprobs`` null. Both stream with
    ``stream_options.include_usage``; ``ignore_eos`` is sent only when true; no temperature (vLLM 0.33 sends none).
    """
    if endpoint == "chat":
        body = {
            "model": model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            "max_completion_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    else:
        body = {
            "model": model,
            "prompt": prompt,
            "repetition_penalty": 1.0,
            "max_tokens": max_tokens,
            "logprobs": None,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    if ignore_eos:
        body["ignore_eos"] = True
    if extra:
        body.update(extra)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chat_token_text(choice):
    """The text a chat choice streams, or None when the chunk is no token event (``_choice_has_streamed_output``)."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return None
    content = delta.get("content")
    if content or delta.get("reasoning") or delta.get("tool_calls") or delta.get("function_call"):
        return (content or "") + (delta.get("reasoning") or delta.get("reasoning_content") or "")
    if content == "" and "role" not in delta:
        return ""
    return None


def completion_token_text(choice):
    """The text of a completions chunk: every chunk with a choice is a token event, its text may be empty."""
    return choice.get("text") or ""


# vLLM writes a chunk's keys in one order, the first choice's delta right after its index. When that delta opens with
# a non-empty "content" string, the chunk is a token event by vLLM's rule whatever follows, so the common chunk needs
# no JSON decoding (JSON escapes every quote inside strings, so the pattern cannot come from a string's contents).
# Every other chunk is decoded and judged in full. For a completions stream, a non-empty "choices" is the whole rule.
_CHAT_CONTENT = b'"choices":[{"index":0,"delta":{"content":"'
_CHAT_CONTENT_END = len(_CHAT_CONTENT)
_SOME_CHOICE = b'"choices":[{'
_QUOTE = 0x22


async def measure_request(client, path: str, body: bytes, rec: RequestRecord, chat: bool, timeout=None) -> None:
    """Send one streamed request and fill ``rec`` as vLLM's request functions do.

    The start is taken just before the request is written (``stream_callback`` writes it before its first
    suspension, on a pooled connection when one is idle). Every event is stamped with the arrival of the socket read
    that brought it: the kernel's receive time where the connection gives it (plain http on Linux), else the time
    the read returned. The event loop reads a socket as soon as it is readable, so where the server sends one event
    per segment a read carries one event and that segment's time, whatever the client's parsing costs. A read that
    carries several token events (the client fell behind, or the server wrote them together) gives them all the
    time of its last segment: the kernel merges queued segments and keeps only the newest one's time, so no earlier
    time exists to give. Those events are counted in ``rec.shared``; their gaps read as 0. The raw token chunks are
    kept until the usage chunk arrives; only without usage is their text decoded, to count its tokens.
    """
    decode = json.JSONDecoder().decode
    token_text = chat_token_text if chat else completion_token_text
    fast = _CHAT_CONTENT if chat else _SOME_CHOICE
    fast_end = _CHAT_CONTENT_END if chat else 0
    itl = rec.itl
    raw = []
    state = [None, 0.0, 0]  # first token event, last token event, token events

    def on_read(t, batch):
        before = state[2]
        for _name, data in batch:
            if data[:1] != b"{":  # data: [DONE], or a keep-alive
                continue
            i = data.find(fast)
            if i > 0 and (not fast_end or data[i + fast_end] != _QUOTE):
                is_token = True
            else:
                doc = decode(data.decode("utf-8"))
                choices = doc.get("choices")
                is_token = bool(choices) and token_text(choices[0]) is not None
                if not is_token:
                    usage = doc.get("usage")
                    if usage:
                        rec.output_tokens = usage.get("completion_tokens")
                        if usage.get("prompt_tokens") is not None:
                            rec.prompt_len = usage["prompt_tokens"]
            if is_token:
                if state[0] is None:
                    state[0] = t
                else:
                    itl.append(t - state[1])
                state[1] = t
                state[2] += 1
                raw.append(data)
        if state[2] - before > 1:
            rec.shared += state[2] - before - 1

    rec.start = start = time.perf_counter()
    try:
        kernel = await client.stream_callback(path, on_read, content=body, timeout=timeout)
    except HTTPStatusError as exc:
        rec.error = client.redact(f"HTTP {exc.status} {exc.reason}: {exc.error_message()}")
        return
    except ClientError as exc:
        rec.error = str(exc)
        return
    except (ValueError, IndexError) as exc:  # a chunk that is not JSON
        rec.error = f"malformed chunk: {snippet(str(exc), 120)}"
        return
    first, last, events = state
    rec.events = events
    rec.stamp = "kernel" if kernel else "read"
    if first is None:
        rec.error = "Never received a valid chunk to calculate TTFT."
        return
    rec.ttft = first - start
    rec.latency = last - start
    rec.success = True
    if not rec.output_tokens:
        rec.text = "".join(
            token_text(choices[0]) or "" for choices in (decode(d.decode("utf-8")).get("choices") for d in raw)
        )


async def run_load(client, endpoint: str, bodies, prompt_lens, *, max_concurrency, arrivals, timeout=None):
    """Send every request as ``vllm bench serve`` does; return ``(records, duration)``.

    All requests are due at ``arrivals[i]`` seconds after the start (all 0 for an infinite rate) and then wait for
    one of ``max_concurrency`` slots (None: no limit), first come first served. Duration runs from the start to
    the last completion. The collector is paused meanwhile (vLLM freezes its heap for the same reason: a collection
    in the middle of a stream shows up as latency).
    """
    path = PATHS[endpoint]
    chat = endpoint == "chat"
    n = len(bodies)
    records = [RequestRecord(prompt_lens[i]) for i in range(n)]
    slots = n if not max_concurrency else min(max_concurrency, n)
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        if all(a == 0 for a in arrivals):
            for rec in records:
                rec.arrival = t0
            order = iter(range(n))

            async def worker():
                for i in order:
                    await measure_request(client, path, bodies[i], records[i], chat, timeout)

            await asyncio.gather(*(worker() for _i in range(slots)))
        else:
            queue = asyncio.Queue()

            async def feeder():
                for i in range(n):
                    delay = t0 + arrivals[i] - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    records[i].arrival = time.perf_counter()
                    queue.put_nowait(i)
                for _i in range(slots):
                    queue.put_nowait(None)

            async def worker():
                while True:
                    i = await queue.get()
                    if i is None:
                        return
                    await measure_request(client, path, bodies[i], records[i], chat, timeout)

            await asyncio.gather(feeder(), *(worker() for _i in range(slots)))
        duration = time.perf_counter() - t0
    finally:
        gc.enable()
    return records, duration


async def open_connections(client, count: int, timeout=None) -> None:
    """Open ``count`` keep-alive connections before the run (``GET /health`` on each).

    A real client keeps its connections; without this, the first wave's TTFT would include a TCP handshake that no
    later request pays. Failures are ignored: the run then opens connections as it goes.
    """

    async def one():
        with contextlib.suppress(ClientError):
            await client.request("GET", "/health", auth=False, timeout=timeout)

    await asyncio.gather(*(one() for _i in range(count)))


# ---- the result file -------------------------------------------------------------------------------------------


def result_document(metrics: dict, setup: dict, extra: dict | None = None) -> dict:
    """A ``vllm bench serve --save-result`` document: vLLM's keys in vLLM's order, then ``kimi_vllm``.

    ``setup`` holds ``date, endpoint_type, backend, label, model_id, tokenizer_id, num_prompts, request_rate,
    burstiness, max_concurrency``; ``extra`` (what vLLM's schema has no key for: method notes, baseline, E2EL,
    distributions) goes under the one key ``kimi_vllm``, which tools that read vLLM's results ignore.
    """
    doc = {}
    for key in RESULT_HEAD_KEYS[:10]:
        doc[key] = setup.get(key)
    for key, value in metrics.items():
        if not key.startswith("_"):
            doc[key] = value
    if extra is not None:
        doc["kimi_vllm"] = extra
    return doc


def format_request_rate(rate: float):
    """vLLM writes an infinite rate as the string ``inf``."""
    return "inf" if rate == float("inf") else rate


# ---- vllm bench serve itself (engine: vllm) --------------------------------------------------------------------


def vllm_bench_argv(params: dict, result_dir: str, result_filename: str, base_url: str, tokenizer_model: str):
    """``vllm bench serve`` arguments for a workload: the seed's command, plus where to save the result.

    The seed's arguments come first, in the seed's order; ``--base-url`` points at the node's server and
    ``--save-result`` makes vLLM write the file that is parsed afterwards.
    """
    argv = [
        "vllm",
        "bench",
        "serve",
        "--backend",
        BACKENDS[params["endpoint"]],
        "--model",
        tokenizer_model,
        "--served-model-name",
        params["model"],
        "--dataset-name",
        "random",
        "--random-input-len",
        str(params["input_len"]),
        "--random-output-len",
        str(params["output_len"]),
        "--num-prompts",
        str(params["num_prompts"]),
    ]
    if params.get("max_concurrency"):
        argv += ["--max-concurrency", str(params["max_concurrency"])]
    argv += ["--endpoint", PATHS[params["endpoint"]], "--base-url", base_url]
    if params["request_rate"] != float("inf"):
        argv += ["--request-rate", repr(float(params["request_rate"]))]
    if params["burstiness"] != 1.0:
        argv += ["--burstiness", repr(float(params["burstiness"]))]
    if params["range_ratio"]:
        argv += ["--random-range-ratio", repr(float(params["range_ratio"]))]
    if params["seed"]:
        argv += ["--seed", str(params["seed"])]
    if params["warmup"]:
        argv += ["--num-warmups", str(params["warmup"])]
    if list(params["percentiles"]) != [99]:
        argv += ["--metric-percentiles", ",".join(_num(p) for p in params["percentiles"])]
    if params.get("tokenizer"):
        argv += ["--tokenizer", params["tokenizer"]]
    argv += ["--save-result", "--result-dir", result_dir, "--result-filename", result_filename]
    return argv


def _num(value) -> str:
    return str(int(value)) if float(value) == int(value) else str(value)


# vLLM's end-of-run table: 'Mean TTFT (ms):   594.83'
_TABLE_LINE = re.compile(r"^([A-Za-z0-9 ().:/&-]+?):\s+(-?[0-9.]+|inf|nan)\s*$")
_TABLE_KEYS = {
    "Successful requests": "completed",
    "Failed requests": "failed",
    "Maximum request concurrency": "max_concurrency",
    "Benchmark duration (s)": "duration",
    "Total input tokens": "total_input_tokens",
    "Total generated tokens": "total_output_tokens",
    "Request throughput (req/s)": "request_throughput",
    "Output token throughput (tok/s)": "output_throughput",
    "Peak output token throughput (tok/s)": "max_output_tokens_per_s",
    "Peak concurrent requests": "max_concurrent_requests",
    "Total token throughput (tok/s)": "total_token_throughput",
}
_STAT_LINE = re.compile(r"^(Mean|Median|P([0-9.]+)) (TTFT|TPOT|ITL|E2EL) \(ms\)$")


def parse_vllm_table(text: str) -> dict:
    """The numbers of the table ``vllm bench serve`` prints at the end (rounded to 2 decimals), under vLLM's keys.

    For when the result file is missing; :func:`parse_vllm_result` reads the file, which keeps full precision.
    """
    out = {}
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if "Serving Benchmark Result" in line:
            in_table = True
            out = {}
            continue
        if not in_table:
            continue
        if line.startswith("=" * 10):
            break
        m = _TABLE_LINE.match(line)
        if not m:
            continue
        label, value = m.group(1).strip(), m.group(2)
        number = float(value)
        stat = _STAT_LINE.match(label)
        if stat:
            which = "mean" if stat.group(1) == "Mean" else "median" if stat.group(1) == "Median" else None
            if which is None:
                which = percentile_key(float(stat.group(2)))
            out[f"{which}_{stat.group(3).lower()}_ms"] = number
        elif label in _TABLE_KEYS:
            key = _TABLE_KEYS[label]
            out[key] = int(number) if key in ("completed", "failed", "total_input_tokens") else number
    return out


def parse_vllm_result(text: str) -> dict:
    """A ``--save-result`` file (the last line when results were appended); ValueError naming what is wrong."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise ValueError("the result file is empty")
    try:
        doc = json.loads(lines[-1])
    except ValueError:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the result file is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("the result file holds no JSON object")
    missing = [k for k in ("duration", "completed", "output_throughput", "mean_ttft_ms") if k not in doc]
    if missing:
        raise ValueError(f"the result file lacks {', '.join(missing)}: is it a vllm bench serve result?")
    return doc


# ---- prompts of an exact length --------------------------------------------------------------------------------


class ServerTokenizer:
    """The server's own tokenizer through ``POST /tokenize`` and ``POST /detokenize`` (no special tokens added)."""

    method = "server"

    def __init__(self, client, model: str, timeout=None) -> None:
        """Tokenize for ``model`` on ``client``'s server."""
        self.client = client
        self.model = model
        self.timeout = timeout

    async def encode(self, text: str) -> list:
        """Token ids of ``text``."""
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        resp = await self.client.request("POST", "/tokenize", json_body=body, timeout=self.timeout)
        return list(resp.raise_for_status().json()["tokens"])

    async def decode(self, ids) -> str:
        """Text of ``ids``."""
        body = {"model": self.model, "tokens": list(ids)}
        resp = await self.client.request("POST", "/detokenize", json_body=body, timeout=self.timeout)
        return resp.raise_for_status().json()["prompt"]

    async def pool(self) -> list:
        """Ordinary token ids: those of :data:`POOL_TEXT`, sorted (the server does not list its vocabulary)."""
        return sorted(set(await self.encode(POOL_TEXT)))


class LocalTokenizer:
    """A local ``tokenizer.json`` read with the Hugging Face ``tokenizers`` library, when the node has it."""

    method = "local"

    def __init__(self, path: str) -> None:
        """Load ``path`` (a ``tokenizer.json``, or a directory holding one); ImportError/OSError/ValueError."""
        import os

        from tokenizers import Tokenizer  # not in the standard library: only for the optional local tokenizer

        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        self.tok = Tokenizer.from_file(path)

    async def encode(self, text: str) -> list:
        """Token ids of ``text``."""
        return self.tok.encode(text, add_special_tokens=False).ids

    async def decode(self, ids) -> str:
        """Text of ``ids``."""
        return self.tok.decode(list(ids))

    async def pool(self) -> list:
        """vLLM's ``allowed_tokens``: the whole vocabulary less the special tokens."""
        special = set()
        decoder = getattr(self.tok, "get_added_tokens_decoder", None)
        if decoder is not None:
            special = {i for i, t in decoder().items() if getattr(t, "special", False)}
        return [i for i in range(self.tok.get_vocab_size()) if i not in special]


async def build_prompts(tokenizer, input_lens, offsets, rng: random.Random, concurrency: int = 16):
    """One prompt per request; ``(prompts, token_counts, mismatch_total)``.

    With a tokenizer (local or the server's): vLLM's random prompts, a run of consecutive ordinary token ids from a
    random offset, decoded and re-encoded to exactly the length. Without one (``tokenizer`` None): common words,
    about one token each, which the caller reports as an approximation.
    """
    if tokenizer is None:
        prompts = [approximate_prompt(n, off) for n, off in zip(input_lens, offsets)]
        return prompts, list(input_lens), 0
    pool = await tokenizer.pool()
    if not pool:
        raise ValueError("the tokenizer returned no token ids for ordinary text")
    sem = asyncio.Semaphore(concurrency)
    # One generator per request, seeded from the run's: the prompts do not depend on the order replies come in.
    seeds = [rng.randrange(1 << 30) for _i in input_lens]

    async def one(i):
        async with sem:
            ids = token_run(pool, input_lens[i], offsets[i], i)
            return await fit_prompt(
                ids, input_lens[i], tokenizer.encode, tokenizer.decode, random.Random(seeds[i]), pool
            )

    results = await asyncio.gather(*(one(i) for i in range(len(input_lens))))
    prompts = [r[0] for r in results]
    counts = [r[1] for r in results]
    return prompts, counts, sum(r[2] for r in results)
