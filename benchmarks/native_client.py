# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The vllm_bench module's measuring path (engine: native) as a command line shaped like ``vllm bench serve``.

Same steps as the module (probe, prompts through the server's /tokenize, connections opened, the load, the
metrics), with vLLM's phase lines on stdout ("Starting main benchmark run...", "Serving Benchmark Result") so that
``instrument.py`` reads both clients' CPU time at the same points. Not part of the collection's build.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_collection():
    """Import the collection from this checkout (it must sit at ansible_collections/kimi/vllm)."""
    link = REPO / ".build" / "collections"
    target = link / "ansible_collections" / "kimi" / "vllm"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(REPO)
    sys.path.insert(0, str(link))
    from ansible_collections.kimi.vllm.plugins.module_utils import _bench, _openai

    return _bench, _openai


async def main_async(args) -> dict:
    """Run one benchmark; return vLLM's result document."""
    _bench, _openai = import_collection()
    client = _openai.AsyncClient(args.base_url, timeout=600, max_idle=4096)
    try:
        models = (await client.request("GET", "/v1/models")).raise_for_status().json()["data"]
        model = args.served_model_name or models[0]["id"]
        rng = random.Random(args.seed)
        inputs, outputs, offsets = _bench.sample_lengths(
            args.num_prompts, args.random_input_len, args.random_output_len, 0.0, rng
        )
        tok = _bench.ServerTokenizer(client, model)
        try:
            await tok.encode("hello")
        except _openai.ClientError:
            tok = None  # no /tokenize (benchmarks/pacer.py): approximate prompts, as the module does
        prompts, counts, _mismatch = await _bench.build_prompts(tok, inputs, offsets, rng)
        bodies = [_bench.request_body("chat", model, p, n, True) for p, n in zip(prompts, outputs)]
        arrivals = [0.0] * args.num_prompts
        wall = time.time() - time.perf_counter()  # to line the client's times up with the server's log
        await _bench.open_connections(client, min(args.max_concurrency, args.num_prompts))
        print("Starting main benchmark run...", flush=True)
        records, duration = await _bench.run_load(
            client, "chat", bodies, counts, max_concurrency=args.max_concurrency, arrivals=arrivals
        )
        metrics = _bench.compute_metrics(records, duration, [99])
        done = [r for r in records if r.success]
        timing = {
            "mean_start_wall": wall + sum(r.start for r in done) / len(done),
            "mean_first_token_wall": wall + sum(r.start + r.ttft for r in done) / len(done),
        }
        print("=========== Serving Benchmark Result ============", flush=True)
    finally:
        await client.aclose()
    setup = {
        "date": "",
        "endpoint_type": "openai-chat",
        "backend": "openai-chat",
        "label": "kimi.vllm native",
        "model_id": model,
        "tokenizer_id": "server",
        "num_prompts": args.num_prompts,
        "request_rate": "inf",
        "burstiness": 1.0,
        "max_concurrency": args.max_concurrency,
    }
    metrics.pop("_distributions")
    extra = {
        "output_tokens_counted_by": metrics.pop("_output_tokens_counted_by"),
        "e2el_ms": metrics.pop("_e2el"),
        "timestamps": metrics.pop("_timestamps"),
        "timing": timing,
    }
    return _bench.result_document(metrics, setup, extra)


def main() -> None:
    """Parse the command line (a subset of vllm bench serve's) and run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--served-model-name")
    ap.add_argument("--random-input-len", type=int, default=128)
    ap.add_argument("--random-output-len", type=int, default=128)
    ap.add_argument("--num-prompts", type=int, default=100)
    ap.add_argument("--max-concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result-file", required=True)
    args = ap.parse_args()
    doc = asyncio.run(main_async(args))
    Path(args.result_file).write_text(json.dumps(doc), encoding="utf-8")


if __name__ == "__main__":
    main()
