# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""vllm_bench against the stand-in server (a test double), the fleet report, and the report in a real browser.

No timing is asserted here (timing is what benchmarks/ measures): the tests check counts, which are exact, the
result schema, the gate and the report. Small workloads keep each test to a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import jinja2
import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kimi.vllm.plugins.filter import bench_report
from ansible_collections.kimi.vllm.plugins.modules import vllm_bench

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "vllm-bench-serve"
TEMPLATES = REPO / "playbooks" / "templates"
SCRIPT = {"STANDIN_SCRIPT_TTFT_MS": "30", "STANDIN_SCRIPT_ITL_MS": "2"}
SMALL = {"input_len": 64, "output_len": 16, "num_prompts": 12, "max_concurrency": 4}
# The stand-in's chat template: <|im_user|>user<|im_middle|>...<|im_end|> and <|im_assistant|>assistant<|im_middle|>
TEMPLATE_TOKENS = 7


class ModuleExit(Exception):  # noqa: N818 - it carries a result
    """Raised instead of exit_json / fail_json."""

    def __init__(self, result: dict) -> None:
        super().__init__(result)
        self.result = result


def run_module(args: dict) -> dict:
    """Run vllm_bench.main() in this process and return its result."""

    def _exit(_module, **result):
        raise ModuleExit(result)

    def _fail(_module, **result):
        raise ModuleExit(dict(result, failed=True))

    with patch_module_args(args), mock.patch.multiple(AnsibleModule, exit_json=_exit, fail_json=_fail):
        try:
            vllm_bench.main()
        except ModuleExit as exc:
            return exc.result
    pytest.fail("the module returned without exit_json or fail_json")


@pytest.fixture
def scripted(standin, tmp_path):
    truth = tmp_path / "truth.jsonl"
    server = standin(["--model", "Qwen/Qwen3-0.6B"], {**SCRIPT, "STANDIN_TRUTH_LOG": str(truth)})
    server.truth = truth
    return server


def test_benchmark_counts_schema_and_simulated_label(scripted, tmp_path):
    out = tmp_path / "result.json"
    result = run_module({"url": scripted.url, **SMALL, "result_file": str(out), "gate": True})
    assert not result.get("failed"), result["msg"]
    m = result["metrics"]
    assert m["completed"] == 12
    assert m["failed"] == 0
    assert m["total_output_tokens"] == 12 * 16  # usage.completion_tokens, ignore_eos
    assert m["total_input_tokens"] == 12 * (64 + TEMPLATE_TOKENS)  # usage.prompt_tokens, as vLLM counts
    assert m["max_concurrent_requests"] >= 4
    assert result["simulated"] is True
    assert result["msg"].startswith("SIMULATED")
    assert result["dataset"]["method"] == "server"
    assert result["dataset"]["token_mismatch"] == 0
    assert result["dataset"]["output_tokens_counted_by"] == {"usage": 12}
    assert result["baseline"]["metrics"] == {}  # not the seed's workload: no default baseline
    assert result["passed"] is True
    # vLLM's keys in vLLM's order, plus ours under one key
    doc = json.loads(out.read_text())
    fixture = json.loads((FIXTURES / "openai-chat-16x64in32out-c4.json").read_text())
    assert [k for k in doc if k != "kimi_vllm"] == list(fixture)
    assert doc["backend"] == "openai-chat"
    assert doc["request_rate"] == "inf"
    assert len(doc["latencies"]) == 12
    assert doc["kimi_vllm"]["simulated"] is True
    # The server saw exactly the requests: one probe of one token, then the 12 with the exact prompt length.
    truth = [json.loads(line) for line in scripted.truth.read_text().splitlines()]
    measured = [t for t in truth if t["completion_tokens"] == 16]
    assert len(measured) == 12
    assert {t["prompt_tokens"] for t in measured} == {64 + TEMPLATE_TOKENS}
    assert len(truth) == 13


def test_every_token_event_is_counted_once(scripted):
    result = run_module({"url": scripted.url, **SMALL, "max_concurrency": 1, "num_prompts": 2})
    # 16 tokens a request, one per chunk: 15 gaps each, pooled
    dist = result["distributions"]
    assert dist["itl_ms"]
    assert result["metrics"]["completed"] == 2
    truth = [json.loads(line) for line in scripted.truth.read_text().splitlines()]
    assert all(len(t["chunk_t_rel"]) == 16 for t in truth if t["completion_tokens"] == 16)


def test_completions_endpoint(scripted):
    result = run_module({"url": scripted.url, **SMALL, "endpoint": "completions"})
    assert result["metrics"]["completed"] == 12
    assert result["metrics"]["total_output_tokens"] == 12 * 16
    assert result["result"]["backend"] == "openai"


def test_gate_names_each_metric_below_tolerance(scripted):
    baseline = {"output_throughput": 1e9, "mean_ttft_ms": 0.001, "mean_itl_ms": 1e9}
    result = run_module({"url": scripted.url, **SMALL, "baseline": baseline, "tolerance": 0.05})
    assert result["failed"]
    assert result["failed_metrics"] == ["output_throughput", "mean_ttft_ms"]
    assert "output_throughput" in result["msg"] and "is below the limit" in result["msg"]
    assert "mean_ttft_ms" in result["msg"] and "is above the limit" in result["msg"]
    assert "mean_itl_ms" not in result["msg"].split("outside tolerance:")[1]
    assert result["metrics"]["completed"] == 12  # the numbers come back with the failure
    result = run_module({"url": scripted.url, **SMALL, "baseline": baseline, "gate": False})
    assert not result.get("failed")
    assert result["passed"] is False


def test_failed_requests_fail_the_gate(standin):
    server = standin(["--model", "Qwen/Qwen3-0.6B"], {**SCRIPT, "STANDIN_FAULT": "error_after:6"})
    result = run_module({"url": server.url, **SMALL})
    assert result["failed"]
    m = result["metrics"]
    assert m["failed"] > 0
    assert m["completed"] + m["failed"] == 12
    assert f"{m['failed']} requests failed" in result["msg"]
    assert "HTTP 500" in result["msg"]


def test_sweep_finds_the_highest_concurrency_under_the_slo(scripted):
    # Limits every point meets, or none does, so that the test asserts no timing.
    args = {"url": scripted.url, **SMALL, "sweep": [1, 2, 4], "gate": False}
    result = run_module({**args, "slo": {"mean_ttft_ms": 1e9, "output_throughput": 0.001}})
    assert [p["max_concurrency"] for p in result["sweep"]] == [1, 2, 4]
    assert all(p["metrics"]["completed"] == 12 for p in result["sweep"])
    assert all(p["slo_missed"] == [] for p in result["sweep"])
    assert result["slo_max_concurrency"] == 4
    assert result["metrics"] == result["sweep"][2]["metrics"]  # max_concurrency 4 is in the sweep
    result = run_module({**args, "slo": {"mean_ttft_ms": 1e-6}})
    assert result["slo_max_concurrency"] is None
    assert all(p["slo_missed"] == ["mean_ttft_ms"] for p in result["sweep"])


# ---- the report ------------------------------------------------------------------------------------------------


def render_report(fleet: dict, out_dir: Path) -> Path:
    """Render both templates as the playbook does (its filters, registered under their FQCNs)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False, trim_blocks=True)
    for name, func in bench_report.FilterModule().filters().items():
        env.filters[f"kimi.vllm.{name}"] = func
    env.filters["dict2items"] = lambda d: [{"key": k, "value": v} for k, v in d.items()]
    for ext in ("md", "html"):
        (out_dir / f"report.{ext}").write_text(env.get_template(f"bench_report.{ext}.j2").render(fleet=fleet))
    return out_dir / "report.html"


def fleet_from(standin_results: dict) -> dict:
    hostvars = {host: {"vllm_bench_result": res} for host, res in standin_results.items()}
    return bench_report.bench_fleet([*hostvars, "node-down"], hostvars, generated="20261129T000000Z")


def test_report_renders_with_plots(scripted, tmp_path):
    a = run_module({"url": scripted.url, **SMALL, "baseline": {"output_throughput": 10.0}, "gate": False})
    b = run_module({"url": scripted.url, **SMALL, "baseline": {"output_throughput": 1e6}, "gate": False})
    fleet = fleet_from({"node-a": a, "node-b": b})
    assert fleet["simulated"] is True
    assert fleet["summary"]["passed"] == 1
    assert fleet["summary"]["failed"] == ["node-b", "node-down"]
    html = render_report(fleet, tmp_path).read_text()
    assert "SIMULATED" in html
    assert html.count("<svg") == 3
    md = (tmp_path / "report.md").read_text()
    assert "(SIMULATED)" in md
    assert "| node-b | FAIL |" in md
    assert "| node-down | NO RESULT |" in md


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(chromium() is None, reason="no chromium on this machine (apt-get install chromium)")
def test_report_html_in_a_real_browser(scripted, tmp_path):
    a = run_module({"url": scripted.url, **SMALL, "baseline": {"output_throughput": 10.0}, "gate": False})
    b = run_module({"url": scripted.url, **SMALL, "sweep": [1, 4], "slo": {"max_concurrent_requests": 3}})
    report = render_report(fleet_from({"node-a": a, "node-b": b}), tmp_path)
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "prof")]
    env = dict(os.environ, HOME=str(tmp_path))
    dom = subprocess.run(
        [*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120, env=env, check=True
    ).stdout
    # The browser parsed the page and its inline SVG: the plots' elements are in its DOM.
    assert 'id="simulated"' in dom
    assert dom.count("<svg") == 5  # throughput, TTFT, ITL, two sweep plots
    assert dom.count('class="bar"') == 2
    assert dom.count('class="cdf"') == 4
    assert dom.count('class="point"') == 4  # two sweep points in each of the two sweep plots
    shot = tmp_path / "report.png"
    subprocess.run(
        [*base, "--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
        env=env,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20000  # a page with tables and plots, not a blank one
    keep = os.environ.get("KIMI_VLLM_KEEP_REPORT")
    if keep:
        shutil.copy(shot, keep)


# ---- the playbook on the simulated fleet -----------------------------------------------------------------------

DEMO_INVENTORY = REPO / "inventories" / "demo" / "hosts.yml"


@pytest.mark.skipif(
    not (os.environ.get("KIMI_VLLM_SIM_FLEET") and DEMO_INVENTORY.exists()),
    reason="needs the simulated fleet (make sim-up NODES=2 && make demo) and KIMI_VLLM_SIM_FLEET=1",
)
def test_benchmark_playbook_on_the_simulated_fleet(tmp_path):
    """playbooks/benchmark.yml on every simulated node writes the report; the HTML renders in a browser.

    With KIMI_VLLM_SIM_PROFILE=b200 the servers are first redeployed with the stand-in's b200 timing profile (the seed's
    table, fitted) and put back as the inventory has them afterwards.
    """
    profile = os.environ.get("KIMI_VLLM_SIM_PROFILE")
    if profile:
        deploy({"vllm_server_env": {"STANDIN_PROFILE": profile, "STANDIN_LOAD_SECONDS": "3"}})
    try:
        check_benchmark_playbook(tmp_path)
    finally:
        if profile:
            deploy({})


def ansible_env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def deploy(extra: dict) -> None:
    argv = ["ansible-playbook", "-i", str(DEMO_INVENTORY), str(REPO / "playbooks" / "deploy.yml"), "--tags", "server"]
    run = subprocess.run(
        [*argv, "-e", json.dumps(extra)], check=False, capture_output=True, text=True, timeout=600, env=ansible_env()
    )
    assert run.returncode == 0, run.stdout[-3000:]


def check_benchmark_playbook(tmp_path: Path) -> None:
    """Run the playbook with a small workload and check what it wrote."""
    extra = {
        "vllm_bench_input_len": 256,
        "vllm_bench_output_len": 32,
        "vllm_bench_num_prompts": 16,
        "vllm_bench_max_concurrency": 4,
        "vllm_bench_report_dir": str(tmp_path),
    }
    env = ansible_env()
    run = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(DEMO_INVENTORY),
            str(REPO / "playbooks" / "benchmark.yml"),
            "-e",
            json.dumps(extra),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    (report_dir,) = list(tmp_path.iterdir())
    fleet = json.loads((report_dir / "fleet.json").read_text())
    hosts = [n["host"] for n in fleet["nodes"]]
    assert fleet["summary"]["passed"] == len(hosts) >= 1
    assert fleet["simulated"] is True
    for host in hosts:
        doc = json.loads((report_dir / f"{host}.json").read_text())
        assert doc["completed"] == 16
        assert doc["kimi_vllm"]["simulated"] is True
    assert "SIMULATED" in (report_dir / "report.md").read_text()
    # The demo fleet's servers want an API key: it reached the module and appears nowhere in what was written.
    key = "kimi-demo-key-not-a-secret"
    assert key not in run.stdout + run.stderr
    assert not [f.name for f in report_dir.iterdir() if key in f.read_text()]
    if chromium():
        dom = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'p'}",
                "--dump-dom",
                (report_dir / "report.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, HOME=str(tmp_path)),
            check=True,
        ).stdout
        assert dom.count('class="bar"') == len(hosts)


# ---- the client's low-overhead stream (module_utils._openai.AsyncClient.stream_callback) -----------------------


def sse_answer(conn, events) -> None:
    """Write a chunked SSE answer of ``events`` (bytes payloads) to ``conn``."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for payload in events:
        event = b"data: " + payload + b"\n\n"
        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
    conn.sendall(b"0\r\n\r\n")


def test_stream_callback_retries_a_closed_pooled_connection_and_stamps_reads(bad_server):
    from ansible_collections.kimi.vllm.plugins.module_utils import _bench, _openai

    token = json.dumps({"choices": [{"index": 0, "delta": {"content": "x"}}]}).encode()
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()

    def handler(request, conn):
        if request.path == "/health":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return False  # and close: the pooled connection is dead when the benchmark uses it
        sse_answer(conn, [token, token, usage, b"[DONE]"])
        return True

    server = bad_server(handler)

    async def run():
        client = _openai.AsyncClient(server.url, timeout=10)
        await _bench.open_connections(client, 2)
        rec = _bench.RequestRecord()
        body = _bench.request_body("chat", "m", "hi", 2, True)
        await _bench.measure_request(client, "/v1/chat/completions", body, rec, True, 10)
        stamped = await client.stream_callback("/v1/chat/completions", lambda t, e: None, content=body)
        await client.aclose()
        return rec, stamped

    rec, stamped = asyncio.run(run())
    assert rec.success, rec.error
    assert rec.events == 2
    assert rec.output_tokens == 2
    assert stamped is True  # plain http on Linux: kernel receive times


def test_stream_callback_reports_status_and_cut_streams(bad_server):
    from ansible_collections.kimi.vllm.plugins.module_utils import _bench, _openai

    def handler(request, conn):
        if request.json().get("model") == "missing":
            body = b'{"error": {"message": "The model `missing` does not exist."}}'
            conn.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            return True
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b'10\r\ndata: {"choi')  # cut mid-chunk
        return False

    server = bad_server(handler)

    async def run(model):
        client = _openai.AsyncClient(server.url, timeout=10)
        rec = _bench.RequestRecord()
        await _bench.measure_request(
            client, "/v1/chat/completions", _bench.request_body("chat", model, "hi", 2, True), rec, True, 10
        )
        await client.aclose()
        return rec

    rec = asyncio.run(run("missing"))
    assert not rec.success
    assert rec.error == "HTTP 404 Not Found: The model `missing` does not exist."
    rec = asyncio.run(run("m"))
    assert not rec.success
    assert "closed the connection" in rec.error and "mid-body" in rec.error


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_stream_callback_over_https_reads_through_the_transport(tmp_path):
    import socket
    import ssl
    import threading

    from ansible_collections.kimi.vllm.plugins.module_utils import _bench, _openai

    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(tmp_path / "k.pem"),
            "-out",
            str(tmp_path / "c.pem"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    token = json.dumps({"choices": [{"index": 0, "delta": {"content": "x"}}]}).encode()
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}).encode()

    def serve():
        raw, _addr = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn, conn.makefile("rb") as rfile:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += rfile.readline()
            length = int(
                next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")).split(b":")[1]
            )
            rfile.read(length)
            sse_answer(conn, [token, token, token, usage, b"[DONE]"])

    threading.Thread(target=serve, daemon=True).start()

    async def run():
        client = _openai.AsyncClient(f"https://127.0.0.1:{listener.getsockname()[1]}", timeout=10, validate_certs=False)
        rec = _bench.RequestRecord()
        await _bench.measure_request(
            client, "/v1/chat/completions", _bench.request_body("chat", "m", "hi", 3, True), rec, True, 10
        )
        await client.aclose()
        return rec

    rec = asyncio.run(run())
    listener.close()
    assert rec.success, rec.error
    assert rec.events == 3
    assert rec.output_tokens == 3
