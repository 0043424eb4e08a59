# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for the vllm_bench module: bad input fails before any load; engine vllm against a fake docker."""

from __future__ import annotations

import json
import shlex
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kimi.vllm.plugins.modules import vllm_bench

FIXTURES = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "vllm-bench-serve"


class ModuleExit(Exception):  # noqa: N818 - it carries a result, not an error
    """Raised instead of exit_json."""

    def __init__(self, result: dict) -> None:
        super().__init__(result)
        self.result = result


def _exit_json(_module, **result):
    raise ModuleExit(result)


def _fail_json(_module, **result):
    raise ModuleExit(dict(result, failed=True))


def run_module(args: dict, check_mode: bool = False) -> dict:
    """Run vllm_bench.main() and return what it passed to exit_json or fail_json."""
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), mock.patch.multiple(AnsibleModule, exit_json=_exit_json, fail_json=_fail_json):
        try:
            vllm_bench.main()
        except ModuleExit as exc:
            return exc.result
    pytest.fail("the module returned without exit_json or fail_json")


class Handler(BaseHTTPRequestHandler):
    """/v1/models and /version of a server; counts generation requests (there must be none)."""

    generation_requests = 0

    def log_message(self, *args):
        pass

    def _json(self, doc, status=200):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            card = {
                "id": "kimi-k2.7-code",
                "object": "model",
                "root": "moonshotai/Kimi-K2.7-Code",
                "max_model_len": 4096,
            }
            self._json({"object": "list", "data": [card]})
        elif self.path == "/version":
            self._json({"version": "0.33.0"})
        else:
            self._json({"detail": "Not Found"}, 404)

    def do_POST(self):
        if self.path.startswith("/v1/"):
            Handler.generation_requests += 1
        self._json({"detail": "Not Found"}, 404)


@pytest.fixture
def server():
    Handler.generation_requests = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"input_len": -1}, "input_len must be at least 1, got -1"),
        ({"output_len": 0}, "output_len must be at least 1, got 0"),
        ({"num_prompts": 0}, "num_prompts must be at least 1, got 0"),
        ({"max_concurrency": 0}, "max_concurrency must be at least 1"),
        ({"request_rate": 0}, "request_rate must be more than 0"),
        ({"range_ratio": 1.0}, "range_ratio must be in [0, 1)"),
        ({"percentiles": [0]}, "percentiles must be in (0, 100]"),
        ({"baseline": {"output_throughput": "fast"}}, "baseline.output_throughput must be a number above 0"),
        ({"engine": "vllm"}, "engine=vllm needs vllm_container"),
        ({"url": "ftp://x"}, "url must be http://host[:port]"),
    ],
)
def test_bad_input_fails_before_any_load(server, args, message):
    result = run_module({"url": server, **args})
    assert result["failed"]
    assert message in result["msg"]
    assert "No load was sent" in result["msg"]
    assert Handler.generation_requests == 0


def test_several_bad_inputs_are_named_together(server):
    result = run_module({"url": server, "input_len": -5, "num_prompts": 0})
    assert "input_len must be at least 1, got -5" in result["msg"]
    assert "num_prompts must be at least 1, got 0" in result["msg"]


def test_unreachable_url_fails_clearly():
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_module({"url": url, "input_len": 16, "output_len": 4, "num_prompts": 2})
    assert result["failed"]
    assert f"GET {url}/v1/models: cannot connect" in result["msg"]
    assert "No load was sent" in result["msg"]
    assert result["metrics"] == {}


def test_unknown_model_and_context_fail_before_load(server):
    result = run_module({"url": server, "model": "other"})
    assert "does not serve model 'other'; it serves kimi-k2.7-code" in result["msg"]
    # The fake server's context is 4096 tokens: the seed's 8192 + 2048 do not fit.
    result = run_module({"url": server})
    assert "more than the server's context (max_model_len 4096)" in result["msg"]
    assert Handler.generation_requests == 0


def test_check_mode_probes_and_sends_no_load(server):
    result = run_module({"url": server, "input_len": 100, "output_len": 10}, check_mode=True)
    assert not result.get("failed")
    assert result["changed"] is False
    assert result["metrics"] == {}
    assert result["server"]["model"] == "kimi-k2.7-code"
    assert "no load sent" in result["msg"]
    assert Handler.generation_requests == 0


def fake_docker(tmp_path: Path, stdout: Path, result_json: Path, rc: int = 0) -> Path:
    """A docker executable: `exec C vllm ...` logs its argv and prints vLLM's table; `exec C cat F` the result file."""
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {shlex.quote(str(log))}\n'
        'case " $* " in\n'
        f'  *" vllm bench serve "*) cat {shlex.quote(str(stdout))}; exit {rc} ;;\n'
        f'  *" cat "*) cat {shlex.quote(str(result_json))} ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_engine_vllm_parses_vllms_result_and_gates(server, tmp_path):
    docker = fake_docker(
        tmp_path, FIXTURES / "openai-chat-16x64in32out-c4.stdout.txt", FIXTURES / "openai-chat-16x64in32out-c4.json"
    )
    out = tmp_path / "out" / "result.json"
    args = {
        "url": server,
        "engine": "vllm",
        "vllm_container": "kimi-vllm",
        "docker": str(docker),
        "input_len": 1024,
        "output_len": 1024,
        "baseline": {"output_throughput": 1000.0, "mean_ttft_ms": 600.0},
        "result_file": str(out),
        "api_key": "s3cret-key",
    }
    result = run_module(args)
    # vLLM's own numbers, parsed from its result file
    assert result["metrics"]["output_throughput"] == pytest.approx(158.0150970644568)
    assert result["metrics"]["mean_ttft_ms"] == pytest.approx(594.8259945000132)
    # 158 tok/s is far below 1000 x 0.9; a TTFT of 595 ms is within 600 x 1.1
    assert result["failed"]
    assert result["failed_metrics"] == ["output_throughput"]
    assert "output_throughput 158.02 is below the limit 900.00" in result["msg"]
    assert result["baseline_ratio"]["mean_ttft_ms"] == pytest.approx(594.8259945000132 / 600)
    # the seed's arguments, in the server's container, with the key handed over but never shown
    argv = (tmp_path / "docker.log").read_text().splitlines()[0].split()
    assert argv[:4] == ["exec", "-e", "OPENAI_API_KEY=s3cret-key", "kimi-vllm"]
    assert argv[4:8] == ["vllm", "bench", "serve", "--backend"]
    assert "--model moonshotai/Kimi-K2.7-Code --served-model-name kimi-k2.7-code" in " ".join(argv)
    assert "s3cret-key" not in json.dumps(result)
    # the result file is vLLM's schema
    doc = json.loads(out.read_text())
    fixture = json.loads((FIXTURES / "openai-chat-16x64in32out-c4.json").read_text())
    assert [k for k in doc if k != "kimi_vllm"] == list(fixture)
    assert Handler.generation_requests == 0


def test_engine_vllm_failure_is_reported(server, tmp_path):
    stdout = tmp_path / "boom.txt"
    stdout.write_text("ValueError: Initial test run failed\n")
    docker = fake_docker(tmp_path, stdout, stdout, rc=1)
    result = run_module(
        {"url": server, "engine": "vllm", "vllm_container": "c", "docker": str(docker), "input_len": 8, "output_len": 8}
    )
    assert result["failed"]
    assert "exited with rc 1" in result["msg"]
    assert "Initial test run failed" in result["msg"]
