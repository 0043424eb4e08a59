"""Run a `vllm bench serve`-style workload through the stand-in's timing engine on a virtual clock.

This is part of the TEST DOUBLE, not a benchmark of anything real: it drives the stand-in server's own ``Engine``
(the same code that times HTTP replies) from a simulated client, with asyncio's clock replaced by a virtual one, so
a 15-minute workload finishes in seconds. It computes the metrics the way `vllm bench serve` defines them (REFERENCE.md
section 4) and is how the ``b200`` profile constants were fitted to the seed's published HGX B200 result.

    python3 simulate.py                       # the seed's workload on the b200 profile
    python3 simulate.py --num-prompts 64 --output-len 256 --max-concurrency 8 --profile fast

Environment variables (STANDIN_ITL_MS, ...) override the profile as they do for the server. The client is ideal:
it costs no time, so real clients measure slightly more TTFT than this prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vllm_standin as standin  # the server module sits next to this file

# The seed's published HGX B200 result (vLLM, 8192 in / 2048 out, 512 prompts, 32 concurrent).
SEED_B200 = {
    "output_throughput": 1157.35, "total_token_throughput": 5786.74, "mean_ttft_ms": 3312.87, "p99_ttft_ms": 29902.17,
    "mean_tpot_ms": 26.03, "p99_tpot_ms": 31.07, "mean_itl_ms": 26.03, "p99_itl_ms": 369.65,
}  # fmt: skip


class _VirtualClock:
    now = 0.0


class _VirtualSelector(selectors.SelectSelector):
    """A selector that never waits: "sleeping" moves the virtual clock forward instead."""

    def __init__(self, clock: _VirtualClock) -> None:
        """Attach to ``clock``."""
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        """Advance the clock to the next timer and report no I/O."""
        if timeout is None:
            raise RuntimeError("simulation stalled: nothing is scheduled")
        self._clock.now += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time() is virtual; only timers (no real I/O) may be used on it."""

    def __init__(self) -> None:
        """Create the loop at virtual time zero."""
        self._clock = _VirtualClock()
        super().__init__(_VirtualSelector(self._clock))

    def time(self) -> float:
        """Return the virtual time."""
        return self._clock.now


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolation percentile (numpy's default, which `vllm bench serve` uses)."""
    ordered = sorted(values)
    rank = pct / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def run_workload(
    settings: standin.Settings, num_prompts: int, input_len: int, output_len: int, concurrency: int, max_num_seqs: int
) -> dict[str, Any]:
    """Send ``num_prompts`` chat requests, ``concurrency`` at a time, all queued at t=0; return bench metrics."""
    engine = standin.Engine(settings, max_num_seqs, standin.Metrics())
    loop = asyncio.get_running_loop()
    # One user message of input_len filler words, rendered through the same toy chat template as the server.
    prompt_tokens = len(standin.encode(standin.render_chat([{"role": "user", "content": " the" * input_len}], None)))
    plan = standin.plan_output(
        standin.PlanRequest(output_len, True, True, None, "", None, 0), settings
    )  # ignore_eos, reasoning parser on: the seed's server flags and bench request
    semaphore = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = []

    async def one() -> None:
        async with semaphore:
            start = loop.time()
            events: list[float] = []

            async def emit(group: list[standin.Tok], is_last: bool) -> None:
                if any(tok.kind != "hidden" for tok in group):
                    events.append(loop.time())

            await engine.generate(plan.tokens, prompt_tokens, start, emit)
            results.append({"start": start, "events": events, "output_tokens": len(plan.tokens)})

    await asyncio.gather(*(one() for _i in range(num_prompts)))
    duration = max(r["events"][-1] for r in results) - min(r["start"] for r in results)
    ttfts = [r["events"][0] - r["start"] for r in results]
    itls = [b - a for r in results for a, b in zip(r["events"], r["events"][1:], strict=False)]
    tpots = [(r["events"][-1] - r["events"][0]) / (r["output_tokens"] - 1) for r in results if r["output_tokens"] > 1]
    total_out = sum(r["output_tokens"] for r in results)
    return {
        "num_prompts": num_prompts,
        "max_concurrency": concurrency,
        "duration": duration,
        "completed": len(results),
        "total_input_tokens": input_len * num_prompts,
        "total_output_tokens": total_out,
        "request_throughput": len(results) / duration,
        "output_throughput": total_out / duration,
        "total_token_throughput": (input_len * num_prompts + total_out) / duration,
        "mean_ttft_ms": statistics.mean(ttfts) * 1000,
        "p99_ttft_ms": percentile(ttfts, 99) * 1000,
        "mean_tpot_ms": statistics.mean(tpots) * 1000,
        "p99_tpot_ms": percentile(tpots, 99) * 1000,
        "mean_itl_ms": statistics.mean(itls) * 1000,
        "p99_itl_ms": percentile(itls, 99) * 1000,
    }


def simulate(
    profile: str = "b200",
    num_prompts: int = 512,
    input_len: int = 8192,
    output_len: int = 2048,
    concurrency: int = 32,
    max_num_seqs: int = 256,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one simulated workload and return its metrics (keys as in `vllm bench serve --save-result`)."""
    settings = standin.Settings.from_env(dict(env if env is not None else os.environ, STANDIN_PROFILE=profile))
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(
            run_workload(settings, num_prompts, input_len, output_len, concurrency, max_num_seqs)
        )
    finally:
        loop.close()


def main() -> int:
    """Command line: print the simulated metrics next to the seed's B200 numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--profile", default="b200", choices=tuple(standin.PROFILES))
    parser.add_argument("--num-prompts", type=int, default=512)
    parser.add_argument("--input-len", type=int, default=8192)
    parser.add_argument("--output-len", type=int, default=2048)
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parser.parse_args()
    result = simulate(args.profile, args.num_prompts, args.input_len, args.output_len, args.max_concurrency,
                      args.max_num_seqs)  # fmt: skip
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    sys.stdout.write(f"SIMULATED (stand-in test double, profile {args.profile}); seed's B200 result for comparison\n")
    for key, value in result.items():
        seed = SEED_B200.get(key)
        sys.stdout.write(f"{key:24} {value:12.2f}" + (f"   seed {seed:10.2f}" if seed else "") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
