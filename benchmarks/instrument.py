# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmarks of the measuring instrument: vllm_bench's native client against ``vllm bench serve``, side by side.

Both clients run in the same invocation, one after the other, against the same stand-in server, each pinned to one
core (``taskset -c CLIENT_CPU``), the server pinned to another. The stand-in keeps a script (fixed TTFT and gap
between tokens) and logs, per request, when it wrote each chunk (STANDIN_TRUTH_LOG): that log is the truth.

Parts (``--part``, default all):
- ``accuracy``: scripted TTFT 100 ms, 20 ms between tokens, one token per chunk; concurrency 1, 32, 256. Mean TTFT,
  ITL, TPOT and output throughput of each client against the truth; each client's CPU seconds per million tokens
  over its measured phase (from "Starting main benchmark run..." to the result table, read from /proc/PID/stat).
- ``offered``: concurrency 256, one token per chunk, the gap shortened until the offered rate reaches 25k, 50k and
  100k tokens/s: each client's TPOT against the truth.
- ``ceiling``: 16 tokens per chunk, 2 ms gap, concurrency 256: tokens per second each client takes in on one core.

Writes a JSON file (``--out``) and prints Markdown tables for docs/benchmarks.md. Everything measured here is
SIMULATED (a stand-in server on this machine), which the tables say.

Run: ``make bench`` or ``python3 benchmarks/instrument.py --vllm .build/venv-vllm/bin/vllm``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "standin" / "vllm_standin.py"
PACER = REPO / "benchmarks" / "pacer.py"
NATIVE = REPO / "benchmarks" / "native_client.py"
TICKS = os.sysconf("SC_CLK_TCK")
START_MARK = "Starting main benchmark run"
END_MARK = "Serving Benchmark Result"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, live and exited), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    """The stand-in, scripted, pinned to one core, logging the truth."""

    def __init__(self, cpu: str, env: dict, log_dir: Path) -> None:
        """Start it and wait until it answers. ``env`` holds PACER_* for benchmarks/pacer.py, else STANDIN_*."""
        self.port = free_port()
        self.truth = log_dir / f"truth-{self.port}.jsonl"
        self.truth.write_text("")
        full_env = dict(os.environ, STANDIN_LOAD_SECONDS="0", STANDIN_TRUTH_LOG=str(self.truth), **env)
        if "PACER_GAP_MS" in env:
            argv = ["taskset", "-c", cpu, sys.executable, str(PACER), "--port", str(self.port)]
            argv += ["--truth-log", str(self.truth), "--gap-ms", env["PACER_GAP_MS"]]
            argv += ["--ttft-ms", env["PACER_TTFT_MS"], "--tokens-per-chunk", env["PACER_TOKENS_PER_CHUNK"]]
        else:
            argv = ["taskset", "-c", cpu, sys.executable, str(STANDIN), "serve", "--port", str(self.port)]
            argv += ["--disable-uvicorn-access-log", "--disable-log-stats"]
        self.log = open(log_dir / f"server-{self.port}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the stand-in did not start; see {self.log.name}") from None
                time.sleep(0.1)
        with urllib.request.urlopen(self.url + "/v1/models", timeout=5) as resp:
            self.model = json.load(resp)["data"][0]["id"]

    def lines(self) -> int:
        """How many truth records there are so far."""
        return len(self.truth.read_text().splitlines())

    def records_since(self, start: int, output_len: int) -> list:
        """Truth records after line ``start`` of measured requests (probes of one token left out)."""
        out = []
        for line in self.truth.read_text().splitlines()[start:]:
            rec = json.loads(line)
            if rec.get("status") == 200 and rec.get("completion_tokens") == output_len:
                out.append(rec)
        return out

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def truth_metrics(records: list) -> dict:
    """The truth, from the server's log: what an ideal client at the server's socket would report."""
    ttfts, itls, tpots = [], [], []
    t_first_recv = min(r["t_recv_mono"] for r in records)
    t_last = max(r["t_recv_mono"] + r["chunk_t_rel"][-1] for r in records)
    tokens = 0
    for r in records:
        ts = r["chunk_t_rel"]
        ttfts.append(ts[0])
        itls.extend(b - a for a, b in zip(ts, ts[1:]))
        n = r["completion_tokens"]
        tokens += n
        if n > 1:
            tpots.append((ts[-1] - ts[0]) / (n - 1))
    duration = t_last - t_first_recv
    first_byte = [r["t_recv_wall"] + r.get("t_first_byte_rel", 0) for r in records]
    return {
        "requests": len(records),
        "mean_ttft_ms": 1000 * sum(ttfts) / len(ttfts),
        "mean_itl_ms": 1000 * sum(itls) / len(itls),
        "mean_tpot_ms": 1000 * sum(tpots) / len(tpots),
        "output_throughput": tokens / duration,
        "total_output_tokens": tokens,
        "delivered_tokens_per_s": tokens / duration,
        "mean_first_byte_wall": sum(first_byte) / len(first_byte),
        "mean_first_chunk_wall": sum(r["chunk_t_wall"][0] for r in records) / len(records),
    }


def run_client(kind: str, args, server: Server, conc: int, prompts: int, in_len: int, out_len: int, tmp: Path):
    """Run one client pinned to the client core; return its result document and CPU seconds of the measured phase."""
    result = tmp / f"{kind}-{conc}-{time.monotonic_ns()}.json"
    common = [
        "--base-url",
        server.url,
        "--served-model-name",
        server.model,
        "--random-input-len",
        str(in_len),
        "--random-output-len",
        str(out_len),
        "--num-prompts",
        str(prompts),
        "--max-concurrency",
        str(conc),
        "--seed",
        "0",
    ]
    if kind == "vllm":
        argv = [args.vllm, "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions"]
        argv += ["--model", str(args.tokenizer), "--dataset-name", "random", "--ready-check-timeout-sec", "0"]
        argv += [*common, "--save-result", "--result-dir", str(tmp), "--result-filename", result.name]
    else:
        argv = [sys.executable, str(NATIVE), *common, "--result-file", str(result)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(
        ["taskset", "-c", args.client_cpu, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
    )
    cpu_start = cpu_end = None
    output = []
    for line in proc.stdout:
        output.append(line)
        if cpu_start is None and START_MARK in line:
            cpu_start = cpu_seconds(proc.pid)
        elif cpu_end is None and END_MARK in line:
            cpu_end = cpu_seconds(proc.pid)
    proc.wait()
    if proc.returncode != 0 or cpu_start is None or cpu_end is None:
        raise RuntimeError(f"{kind} client failed (rc {proc.returncode}):\n{''.join(output[-20:])}")
    doc = json.loads(result.read_text())
    return doc, cpu_end - cpu_start


def compare(doc: dict, truth: dict, cpu: float) -> dict:
    """A client's numbers, their error against the truth, and its CPU per million tokens."""
    row = {"cpu_s": cpu, "cpu_s_per_mtok": cpu / doc["total_output_tokens"] * 1e6, "failed": doc["failed"]}
    for key in ("mean_ttft_ms", "mean_itl_ms", "mean_tpot_ms", "output_throughput"):
        row[key] = doc[key]
        row[key + "_err"] = doc[key] - truth[key]
        row[key + "_rel"] = doc[key] / truth[key] - 1
    row["tokens_per_s"] = doc["output_throughput"]
    timing = (doc.get("kimi_vllm") or {}).get("timing")
    if timing:  # only the native client says when it wrote each request and read each first token
        row["send_to_server_read_ms"] = 1000 * (truth["mean_first_byte_wall"] - timing["mean_start_wall"])
        row["first_chunk_to_client_read_ms"] = 1000 * (timing["mean_first_token_wall"] - truth["mean_first_chunk_wall"])
    return row


def pair(args, env: dict, conc: int, prompts: int, in_len: int, out_len: int, tmp: Path) -> dict:
    """One server, both clients (vLLM first), each against the truth of its own requests."""
    server = Server(args.server_cpu, env, tmp)
    try:
        out = {"concurrency": conc, "prompts": prompts, "input_len": in_len, "output_len": out_len, "env": env}
        for kind in args.clients:
            mark = server.lines()
            doc, cpu = run_client(kind, args, server, conc, prompts, in_len, out_len, tmp)
            truth = truth_metrics(server.records_since(mark, out_len))
            out[kind] = compare(doc, truth, cpu)
            out[kind + "_truth"] = truth
            print(f"  {kind:6s} c={conc:<3d} {json.dumps(out[kind], default=float)[:300]}", flush=True)
        return out
    finally:
        server.stop()


def main() -> None:
    """Run the parts asked for; write the JSON and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", default=str(REPO / ".build" / "venv-vllm" / "bin" / "vllm"))
    ap.add_argument("--tokenizer", default=str(REPO / ".build" / "bench-tokenizer"))
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--part", action="append", choices=["accuracy", "offered", "ceiling"])
    ap.add_argument("--out", default=str(REPO / ".build" / "bench-instrument.json"))
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run; not for the docs)")
    ap.add_argument("--concurrency", type=int, action="append", help="accuracy: only these concurrencies")
    ap.add_argument("--clients", default="vllm,native", help="which clients, comma-separated (vllm,native)")
    args = ap.parse_args()
    parts = args.part or ["accuracy", "offered", "ceiling"]
    args.clients = args.clients.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="kimi-bench-"))
    report = {
        "simulated": True,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "client_cpu": args.client_cpu,
        "server_cpu": args.server_cpu,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    scale = 4 if args.quick else 1
    if "accuracy" in parts:
        env = {"STANDIN_SCRIPT_TTFT_MS": "100", "STANDIN_SCRIPT_ITL_MS": "20"}
        report["accuracy"] = []
        for conc, prompts in ((1, 12), (32, 128), (256, 512)):
            if args.concurrency and conc not in args.concurrency:
                continue
            print(f"accuracy: concurrency {conc}", flush=True)
            report["accuracy"].append(pair(args, env, conc, max(prompts // scale, conc), 128, 128, tmp))
    if "offered" in parts:
        report["offered"] = []
        for rate in (25000, 50000, 100000):
            itl_ms = 256 * 1000 / rate
            env = {"PACER_TTFT_MS": "100", "PACER_GAP_MS": f"{itl_ms:.3f}", "PACER_TOKENS_PER_CHUNK": "1"}
            print(f"offered: {rate} tokens/s (256 streams, {itl_ms:.2f} ms gap)", flush=True)
            row = pair(args, env, 256, 512 // scale, 128, 1024 // scale, tmp)
            row["offered_tokens_per_s"] = rate
            report["offered"].append(row)
    if "ceiling" in parts:
        env = {"PACER_TTFT_MS": "20", "PACER_GAP_MS": "1", "PACER_TOKENS_PER_CHUNK": "16"}
        print("ceiling: 16 tokens per chunk, 1 ms gap, 256 streams (4M tokens/s offered)", flush=True)
        report["ceiling"] = pair(args, env, 256, 512 // scale, 128, 2048 // scale, tmp)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    print(tables(report))


def tables(report: dict) -> str:
    """Markdown tables of a report (docs/benchmarks.md)."""
    lines = []
    if "accuracy" in report:
        lines += [
            "Accuracy (SIMULATED: scripted stand-in, TTFT 100 ms, 20 ms between tokens, one token per chunk). Error of",
            "each client's mean against the server's truth log, in ms (relative in brackets):",
            "",
            (
                "| concurrency | metric | truth (vLLM run) | vllm bench serve | error | truth (native run) "
                "| kimi.vllm native | error |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in report["accuracy"]:
            for key, unit in (
                ("mean_ttft_ms", "ms"),
                ("mean_itl_ms", "ms"),
                ("mean_tpot_ms", "ms"),
                ("output_throughput", "tok/s"),
            ):
                cells = [str(row["concurrency"]), key]
                for kind in ("vllm", "native"):
                    r = row[kind]
                    cells += [f"{row[kind + '_truth'][key]:.3f}", f"{r[key]:.3f}"]
                    cells.append(f"{r[key + '_err']:+.3f} {unit} ({r[key + '_rel']:+.2%})")
                lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Cost (same runs): client CPU seconds per million output tokens over the measured phase, one core:",
            "",
            "| concurrency | vllm bench serve | kimi.vllm native | native / vllm |",
            "|---|---|---|---|",
        ]
        for row in report["accuracy"]:
            v, n = row["vllm"]["cpu_s_per_mtok"], row["native"]["cpu_s_per_mtok"]
            lines.append(f"| {row['concurrency']} | {v:.1f} | {n:.1f} | {n / v:.2f} |")
        lines += [
            "",
            "Where the native client's TTFT error comes from (means, ms): request written -> the stand-in's loop",
            "reads it (server side: any client sees it); first chunk written -> the client's timestamp (client side):",
            "",
            "| concurrency | written -> server read | chunk written -> client read | total error |",
            "|---|---|---|---|",
        ]
        for row in report["accuracy"]:
            r = row["native"]
            lines.append(
                f"| {row['concurrency']} | {r['send_to_server_read_ms']:.2f} "
                f"| {r['first_chunk_to_client_read_ms']:.2f} | {r['mean_ttft_ms_err']:+.2f} |"
            )
    if "offered" in report:
        lines += [
            "",
            "TPOT under load (SIMULATED, benchmarks/pacer.py; 256 streams, one token per chunk): error of mean TPOT",
            "against the truth (the server's write times):",
            "",
            "| offered tok/s | delivered tok/s (truth) | vllm bench serve | kimi.vllm native |",
            "|---|---|---|---|",
        ]
        for row in report["offered"]:
            lines.append(
                f"| {row['offered_tokens_per_s']:,} | {row['native_truth']['delivered_tokens_per_s']:,.0f} | "
                f"{row['vllm']['mean_tpot_ms_rel']:+.2%} | {row['native']['mean_tpot_ms_rel']:+.2%} |"
            )
    if "ceiling" in report:
        c = report["ceiling"]
        v, n = c["vllm"]["tokens_per_s"], c["native"]["tokens_per_s"]
        lines += [
            "",
            "Ceiling (SIMULATED, benchmarks/pacer.py; 16 tokens per chunk, 4M tokens/s offered, 256 streams): tokens/s",
            "each client took in on one core:",
            "",
            "| vllm bench serve | kimi.vllm native | native / vllm | server delivered (truth, native run) |",
            "|---|---|---|---|",
            f"| {v:,.0f} | {n:,.0f} | {n / v:.2f} | {c['native_truth']['delivered_tokens_per_s']:,.0f} |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
