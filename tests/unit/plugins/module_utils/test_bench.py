# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for _bench: vllm bench serve 0.33's definitions, by hand and against real result files."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from pathlib import Path

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils import _bench
from ansible_collections.kimi.vllm.plugins.module_utils._bench import RequestRecord

FIXTURES = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "vllm-bench-serve"
CHAT_JSON = FIXTURES / "openai-chat-16x64in32out-c4.json"
COMPLETIONS_JSON = FIXTURES / "openai-completions-16x64in32out-c4.json"
CHAT_STDOUT = FIXTURES / "openai-chat-16x64in32out-c4.stdout.txt"


# ---- statistics ------------------------------------------------------------------------------------------------


def test_statistics_by_hand():
    values = [4.0, 1.0, 3.0, 2.0]
    assert _bench.mean(values) == 2.5
    assert _bench.median(values) == 2.5
    assert _bench.std(values) == pytest.approx(math.sqrt(1.25))  # population: ((1.5^2+0.5^2)*2)/4
    # rank 0.99 * 3 = 2.97: 3 + 0.97 * (4 - 3)
    assert _bench.percentile(values, 99) == pytest.approx(3.97)
    assert _bench.percentile(values, 0) == 1.0
    assert _bench.percentile(values, 100) == 4.0
    assert _bench.percentile([7.0], 99) == 7.0


def test_empty_statistics_are_zero_like_vllms_or_0():
    assert _bench.mean([]) == _bench.std([]) == _bench.median([]) == _bench.percentile([], 99) == 0.0


def test_percentile_key_is_vllms():
    assert _bench.percentile_key(99) == "p99"
    assert _bench.percentile_key(99.0) == "p99"
    assert _bench.percentile_key(99.9) == "p99.9"


# ---- metrics by hand -------------------------------------------------------------------------------------------


def hand_records():
    # Request A: start 0, token events at 0.1, 0.12, 0.15, usage 3 tokens. Request B: start 0.05, events at
    # 0.25 and 0.30, usage 2. Request C failed.
    a = RequestRecord.from_events(0.0, [0.1, 0.12, 0.15], output_tokens=3, prompt_len=10)
    b = RequestRecord.from_events(0.05, [0.25, 0.30], output_tokens=2, prompt_len=12, arrival=0.0)
    c = RequestRecord(prompt_len=11)
    c.error = "HTTP 500"
    return [a, b, c]


def test_compute_metrics_by_hand():
    m = _bench.compute_metrics(hand_records(), duration=1.0, percentiles=[50, 99])
    assert m["completed"] == 2
    assert m["failed"] == 1
    assert m["total_input_tokens"] == 22  # failed requests count no input, as in vLLM
    assert m["total_output_tokens"] == 5
    assert m["request_throughput"] == 2.0
    assert m["output_throughput"] == 5.0
    assert m["total_token_throughput"] == 27.0
    # TTFT: 0.1 and 0.2
    assert m["mean_ttft_ms"] == pytest.approx(150.0)
    assert m["std_ttft_ms"] == pytest.approx(50.0)
    # ITL pooled per chunk: 0.02, 0.03 (A) and 0.05 (B)
    assert m["mean_itl_ms"] == pytest.approx(100 / 3)
    assert m["median_itl_ms"] == pytest.approx(30.0)
    assert m["p50_itl_ms"] == pytest.approx(30.0)
    # TPOT: A (0.15 - 0.1) / 2 = 0.025, B (0.25 - 0.2) / 1 = 0.05
    assert m["mean_tpot_ms"] == pytest.approx(37.5)
    assert m["p99_tpot_ms"] == pytest.approx(25 + 0.99 * 25)
    # vLLM's lists: E2EL per request (0 for the failed one) and the wait for a slot (B waited 0.05 s)
    assert m["latencies"] == pytest.approx([0.15, 0.25, 0.0])
    assert m["queue_times"][1] == pytest.approx(0.05)
    assert m["_e2el"]["mean"] == pytest.approx(200.0)
    assert m["_output_tokens_counted_by"] == {"usage": 2}
    assert m["request_goodput"] is None


def test_key_order_is_vllms():
    m = _bench.compute_metrics(hand_records(), duration=1.0)
    keys = [k for k in m if not k.startswith("_")]
    fixture = json.loads(CHAT_JSON.read_text())
    assert keys == list(fixture)[10:]


def test_one_token_requests_have_no_tpot():
    rec = RequestRecord.from_events(0.0, [0.2], output_tokens=1)
    m = _bench.compute_metrics([rec], duration=1.0)
    assert m["mean_tpot_ms"] == 0.0
    assert m["mean_itl_ms"] == 0.0
    assert m["mean_ttft_ms"] == pytest.approx(200.0)


def test_without_usage_tokens_are_counted_and_the_method_said():
    rec = RequestRecord.from_events(0.0, [0.1, 0.2, 0.3])
    rec.text = "one two three four"
    m = _bench.compute_metrics([rec], duration=1.0)
    assert m["total_output_tokens"] == 3
    assert m["_output_tokens_counted_by"] == {"token_events": 1}
    m = _bench.compute_metrics([rec], duration=1.0, count_tokens=lambda text: len(text.split()))
    assert m["total_output_tokens"] == 4
    assert m["_output_tokens_counted_by"] == {"tokenizer": 1}
    # TPOT uses the count: (0.3 - 0.1) / (4 - 1)
    assert m["mean_tpot_ms"] == pytest.approx(200 / 3)


def test_zero_usage_counts_as_missing_like_vllm():
    rec = RequestRecord.from_events(0.0, [0.1, 0.2], output_tokens=0)
    assert _bench.output_lengths([rec])[0] == [2]


def test_peak_rates_by_hand():
    # A: 0.0 -> 1.5 with tokens at 0.5, 0.9, 1.2 ; B: 1.1 -> 2.4 with tokens at 1.3, 2.4
    a = RequestRecord.from_events(0.0, [0.5, 0.9, 1.2, 1.5])
    b = RequestRecord.from_events(1.1, [1.3, 2.4])
    tokens, concurrent = _bench.peak_rates([a, b])
    assert tokens == 3.0  # second 1 holds A's 1.2 and 1.5 and B's 1.3
    assert concurrent == 2  # both are running in second 1


def test_peak_tokens_bucket_count():
    a = RequestRecord.from_events(0.0, [0.1, 0.2, 0.3, 1.5])
    tokens, concurrent = _bench.peak_rates([a])
    assert tokens == 3.0
    assert concurrent == 1


# ---- token events --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        ({"role": "assistant", "content": ""}, None),  # the opening chunk is no token (vLLM 0.33)
        ({"content": ""}, ""),  # a token that decodes to nothing is one
        ({"content": "hi"}, "hi"),
        ({"reasoning": "hmm"}, "hmm"),
        ({"reasoning_content": "hmm"}, None),  # vLLM 0.33 does not look at the pre-0.10 field
        ({"tool_calls": [{"index": 0}]}, ""),
        ({"function_call": {"name": "f"}}, ""),
        ({}, None),
        ({"role": "assistant"}, None),
    ],
)
def test_chat_token_event_rule(delta, expected):
    assert _bench.chat_token_text({"delta": delta}) == expected


def test_chat_without_delta_is_no_event():
    assert _bench.chat_token_text({"message": {}}) is None


# ---- baseline ------------------------------------------------------------------------------------------------


def test_baseline_comparison_directions():
    metrics = {"output_throughput": 1000.0, "mean_ttft_ms": 3500.0, "mean_itl_ms": 30.0}
    baseline = {"output_throughput": 1157.35, "mean_ttft_ms": 3312.87, "mean_itl_ms": 26.03, "p99_tpot_ms": 31.07}
    cmp_ = _bench.compare_baseline(metrics, baseline, 0.1)
    # 1000 >= 1041.6? no. 3500 <= 3644.2 yes. 30 <= 28.63 no. p99_tpot_ms not measured.
    assert cmp_["failed"] == ["output_throughput", "mean_itl_ms", "p99_tpot_ms"]
    assert cmp_["ratios"]["output_throughput"] == pytest.approx(1000 / 1157.35)
    assert cmp_["ratios"]["p99_tpot_ms"] is None
    text = _bench.describe_failures(cmp_)
    assert "output_throughput 1000.00 is below the limit 1041.62" in text
    assert "mean_itl_ms 30.00 is above the limit 28.63" in text
    assert "p99_tpot_ms: not measured" in text
    assert "mean_ttft_ms" not in text


def test_per_metric_tolerance():
    cmp_ = _bench.compare_baseline({"p99_ttft_ms": 40000.0}, {"p99_ttft_ms": 29902.17}, 0.1, {"p99_ttft_ms": 0.5})
    assert cmp_["failed"] == []


def test_seed_workload_and_baseline():
    assert _bench.is_seed_workload(dict(_bench.SEED_WORKLOAD))
    assert not _bench.is_seed_workload(dict(_bench.SEED_WORKLOAD, input_len=1024))
    assert _bench.SEED_BASELINE["output_throughput"] == 1157.35
    assert _bench.SEED_BASELINE["p99_itl_ms"] == 369.65


def test_slo_and_best_concurrency():
    points = [
        {"max_concurrency": 1, "slo_missed": _bench.meets_slo({"p99_ttft_ms": 100.0}, {"p99_ttft_ms": 500})},
        {"max_concurrency": 8, "slo_missed": _bench.meets_slo({"p99_ttft_ms": 400.0}, {"p99_ttft_ms": 500})},
        {"max_concurrency": 32, "slo_missed": _bench.meets_slo({"p99_ttft_ms": 900.0}, {"p99_ttft_ms": 500})},
    ]
    assert points[2]["slo_missed"] == ["p99_ttft_ms"]
    assert _bench.best_under_slo(points) == 8
    assert _bench.meets_slo({"output_throughput": 10.0}, {"output_throughput": 20}) == ["output_throughput"]
    assert _bench.best_under_slo([dict(points[2])]) is None


# ---- the workload ----------------------------------------------------------------------------------------------


def test_length_ranges_follow_vllm():
    assert _bench.length_ranges(8192, 2048, 0.0) == ((8192, 8192), (2048, 2048))
    # floor(1000 * 0.9), ceil(1000 * 1.1); output low at least 1
    assert _bench.length_ranges(1000, 1, 0.5) == ((500, 1500), (1, 2))


def test_sample_lengths_seeded():
    a = _bench.sample_lengths(5, 100, 10, 0.2, random.Random(3))
    b = _bench.sample_lengths(5, 100, 10, 0.2, random.Random(3))
    assert a == b
    assert all(80 <= n <= 120 for n in a[0])
    assert all(8 <= n <= 12 for n in a[1])


def test_arrivals():
    assert _bench.arrival_offsets(3, float("inf"), 1.0, random.Random(0)) == [0.0, 0.0, 0.0]
    offs = _bench.arrival_offsets(100, 10.0, 1.0, random.Random(0))
    assert offs[-1] == pytest.approx(10.0)  # rescaled so the last is due at n / rate, as vLLM does
    assert offs == sorted(offs)
    assert _bench.arrival_offsets(4, 2.0, float("inf"), random.Random(0)) == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_token_run_is_vllms_consecutive_run():
    pool = [10, 11, 12, 13, 14]
    assert _bench.token_run(pool, 4, offset=2, index=1) == [13, 14, 10, 11]


def test_fit_prompt_truncates_and_extends():
    # A tokenizer where "ab" (id 1 then 2) re-encodes as one token 3: decode/encode changes the length.
    vocab = {1: "a", 2: "b", 3: "ab", 4: " "}

    async def decode(ids):
        return "".join(vocab[i] for i in ids)

    async def encode(text):
        out = []
        i = 0
        while i < len(text):
            if text.startswith("ab", i):
                out.append(3)
                i += 2
            else:
                out.append({"a": 1, "b": 2, " ": 4}[text[i]])
                i += 1
        return out

    prompt, count, mismatch = asyncio.run(_bench.fit_prompt([1, 2, 4, 1], 4, encode, decode, random.Random(0), [4]))
    assert count == 4
    assert mismatch == 0
    assert prompt == "ab a "  # "ab a" re-encoded to 3 tokens, so one pool token was added
    assert len(asyncio.run(encode(prompt))) == 4


def test_approximate_prompt_has_the_word_count():
    assert len(_bench.approximate_prompt(50, 7).split()) == 50


def test_request_bodies_are_vllms():
    chat = json.loads(_bench.request_body("chat", "m", "hello", 2048, True))
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        "max_completion_tokens": 2048,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    comp = json.loads(_bench.request_body("completions", "m", "hello", 16, False))
    assert comp == {
        "model": "m",
        "prompt": "hello",
        "repetition_penalty": 1.0,
        "max_tokens": 16,
        "logprobs": None,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# ---- real vllm bench serve output ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT_JSON, COMPLETIONS_JSON], ids=["chat", "completions"])
def test_recompute_real_result_files(path):
    doc = json.loads(path.read_text())
    dur = doc["duration"]
    assert doc["request_throughput"] == doc["completed"] / dur
    assert doc["output_throughput"] == doc["total_output_tokens"] / dur
    assert doc["total_token_throughput"] == (doc["total_input_tokens"] + doc["total_output_tokens"]) / dur
    # Concurrency buckets from each request's start (arrival at ~0 plus its wait for a slot) and E2EL.
    records = []
    for latency, queued in zip(doc["latencies"], doc["queue_times"]):
        rec = RequestRecord.from_events(queued, [queued + latency])
        records.append(rec)
    assert _bench.peak_rates(records)[1] == doc["max_concurrent_requests"]
    # And our document for the same numbers has vLLM's keys in vLLM's order.
    ours = _bench.result_document(
        _bench.compute_metrics(records, dur), {k: doc[k] for k in _bench.RESULT_HEAD_KEYS[:10]}, extra=None
    )
    assert list(ours) == list(doc)


def test_parse_real_result_file():
    doc = _bench.parse_vllm_result(CHAT_JSON.read_text())
    assert doc["total_output_tokens"] == 521
    assert doc["p99_itl_ms"] == pytest.approx(8.392368449870013)
    appended = CHAT_JSON.read_text().strip() + "\n" + COMPLETIONS_JSON.read_text().strip()
    assert _bench.parse_vllm_result(appended)["backend"] == "openai"
    with pytest.raises(ValueError, match="not JSON"):
        _bench.parse_vllm_result("Traceback (most recent call last):")
    with pytest.raises(ValueError, match="lacks"):
        _bench.parse_vllm_result('{"date": "x"}')


def test_parse_real_stdout_table_matches_the_file():
    table = _bench.parse_vllm_table(CHAT_STDOUT.read_text())
    doc = json.loads(CHAT_JSON.read_text())
    assert table["completed"] == doc["completed"] == 16
    assert table["total_output_tokens"] == doc["total_output_tokens"]
    for key in (
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "max_output_tokens_per_s",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "p99_tpot_ms",
        "mean_itl_ms",
        "median_itl_ms",
        "p99_itl_ms",
    ):
        assert table[key] == pytest.approx(doc[key], abs=0.006), key


def test_vllm_argv_is_the_seeds_command():
    params = {
        "endpoint": "chat",
        "model": "kimi-k2.7-code",
        "input_len": 8192,
        "output_len": 2048,
        "num_prompts": 512,
        "max_concurrency": 32,
        "request_rate": float("inf"),
        "burstiness": 1.0,
        "range_ratio": 0.0,
        "seed": 0,
        "warmup": 0,
        "percentiles": [99.0],
        "tokenizer": None,
    }
    argv = _bench.vllm_bench_argv(params, "/tmp", "r.json", "http://127.0.0.1:8000", "moonshotai/Kimi-K2.7-Code")
    seed_command = (
        "vllm bench serve --backend openai-chat --model moonshotai/Kimi-K2.7-Code --served-model-name kimi-k2.7-code "
        "--dataset-name random --random-input-len 8192 --random-output-len 2048 --num-prompts 512 "
        "--max-concurrency 32 --endpoint /v1/chat/completions"
    )
    seed = seed_command.split()
    assert argv[: len(seed)] == seed
    assert argv[len(seed) :] == [
        "--base-url",
        "http://127.0.0.1:8000",
        "--save-result",
        "--result-dir",
        "/tmp",
        "--result-filename",
        "r.json",
    ]
    params.update(request_rate=4.0, percentiles=[50.0, 99.9])
    argv = _bench.vllm_bench_argv(params, "/tmp", "r.json", "http://x", "m")
    assert argv[argv.index("--request-rate") + 1] == "4.0"
    assert argv[argv.index("--metric-percentiles") + 1] == "50,99.9"


# ---- one request, through a fake client ------------------------------------------------------------------------


class FakeClient:
    """Hands prepared ``(t, [(name, data)])`` reads on, as _openai.AsyncClient.stream_callback does."""

    def __init__(self, reads):
        self.reads = reads

    def redact(self, text):
        return text

    async def stream_callback(self, path, on_read, content=None, timeout=None):
        for t, datas in self.reads:
            on_read(t, [(b"", d) for d in datas])
        return True


def chunk(delta=None, choices=None, usage=None) -> bytes:
    doc = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    doc["choices"] = choices if choices is not None else [{"index": 0, "delta": delta, "logprobs": None}]
    if usage is not None:
        doc["usage"] = usage
    return json.dumps(doc, separators=(",", ":")).encode()


def measure(reads, chat=True):
    rec = RequestRecord()
    asyncio.run(_bench.measure_request(FakeClient(reads), "/v1/chat/completions", b"{}", rec, chat))
    return rec


def test_measure_request_follows_vllms_rule_and_read_times():
    now = time.perf_counter()
    reads = [
        (now + 0.100, [chunk({"role": "assistant", "content": ""}), chunk({"content": "a"})]),  # role chunk: no token
        (now + 0.120, [chunk({"reasoning": "r"})]),
        (now + 0.150, [chunk({"content": ""}), chunk({"content": "b"})]),  # two events in one read: ITL 0
        (now + 0.151, [chunk(choices=[], usage={"prompt_tokens": 9, "completion_tokens": 4}), b"[DONE]"]),
    ]
    rec = measure(reads)
    assert rec.success
    assert rec.events == 4
    assert rec.output_tokens == 4
    assert rec.prompt_len == 9
    assert rec.ttft == pytest.approx(0.100, abs=0.01)
    assert rec.itl == pytest.approx([0.020, 0.030, 0.0])
    assert rec.latency == pytest.approx(0.150, abs=0.01)  # the usage chunk does not end the request
    assert rec.text is None  # kept only without usage


def test_measure_request_without_usage_keeps_the_text():
    t = time.perf_counter()
    rec = measure([(t, [chunk({"content": "a"}), chunk({"reasoning": " b"}), chunk({"content": '"x'})])])
    assert rec.text == 'a b"x'
    assert rec.output_tokens is None


def test_fast_path_agrees_with_the_full_rule():
    # Deltas whose first key is content (fast path) and all others (decoded) must be judged as vLLM judges them.
    deltas = [
        {"content": "x"},
        {"content": '"'},
        {"content": ""},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "hi"},
        {"content": None, "reasoning": "r"},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]},
        {},
    ]
    for delta in deltas:
        expected = _bench.chat_token_text(delta and {"delta": delta}) is not None
        rec = measure([(time.perf_counter(), [chunk(delta)])])
        assert rec.success == expected, delta


def test_completions_events_are_any_choice():
    t = time.perf_counter()
    text_chunk = json.dumps({"id": "c", "choices": [{"index": 0, "text": ""}]}).encode()
    usage = json.dumps({"id": "c", "choices": [], "usage": {"completion_tokens": 1}}).encode()
    rec = measure([(t, [text_chunk, usage])], chat=False)
    assert rec.success
    assert rec.events == 1
    assert rec.output_tokens == 1


def test_malformed_chunk_fails_the_request():
    rec = measure([(time.perf_counter(), [b'{"choices": [oops'])])
    assert not rec.success
    assert "malformed chunk" in rec.error
