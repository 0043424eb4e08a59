# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""vllm_verify against the stand-in vLLM server (a test double) and against deliberately bad servers.

Every check passes on a server started with the seed's flags; each one fails, with its hint, on a server started
without the flag it depends on (or with the stand-in's switch for a known kimi_k2 parser bug). Bad servers (refusing,
hanging, 404, 500, malformed JSON, cut or non-JSON streams) give clear details and never a traceback. The API key
never appears in a result.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kimi.vllm.plugins.module_utils._verify import CHECKS, DEFAULT_CHECKS, HINTS
from ansible_collections.kimi.vllm.plugins.modules import vllm_verify

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-integration-5f1c0a77d2"
SEED_NAMES = ["kimi-k2.7-code", "my-kimi2.7-code"]
SEED_FLAGS = [
    "--model", "moonshotai/Kimi-K2.7-Code", "--served-model-name", *SEED_NAMES,
    "--tensor-parallel-size", "8", "--trust-remote-code", "--mm-encoder-tp-mode", "data",
    "--tool-call-parser", "kimi_k2", "--reasoning-parser", "kimi_k2", "--enable-auto-tool-choice",
]  # fmt: skip


@pytest.fixture(scope="module")
def seed_server(standin_module):
    """One stand-in with the seed's flags and an API key, shared by this module's tests."""
    return standin_module([*SEED_FLAGS, "--api-key", API_KEY])


def http_response(status: int, body: bytes = b"", content_type: str = "application/json") -> bytes:
    """A complete response with Content-Length; the connection stays open."""
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def json_response(status: int, doc) -> bytes:
    """A JSON response."""
    return http_response(status, json.dumps(doc).encode())


def sse_head() -> bytes:
    """The head of a chunked event stream."""
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def sse_chunk(data: str, event: str | None = None) -> bytes:
    """One SSE event as one HTTP chunk."""
    raw = ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()
    return f"{len(raw):x}\r\n".encode() + raw + b"\r\n"


SSE_END = b"0\r\n\r\n"


class ModuleExit(Exception):  # noqa: N818 - it carries a result, not an error
    """Raised instead of exit_json, carrying the module's result."""

    def __init__(self, result: dict) -> None:
        super().__init__(result)
        self.result = result


def _exit_json(_module, **result):
    raise ModuleExit(dict(result, failed=False))


def _fail_json(_module, **result):
    raise ModuleExit(dict(result, failed=True))


def run_module(args: dict) -> dict:
    """Run vllm_verify.main() in-process with ``args``; return what it passed to exit_json or fail_json."""
    with patch_module_args(args), mock.patch.multiple(AnsibleModule, exit_json=_exit_json, fail_json=_fail_json):
        try:
            vllm_verify.main()
        except ModuleExit as exc:
            return exc.result
    pytest.fail("the module returned without exit_json or fail_json")
    return {}


def assert_clean(result: dict) -> None:
    """No traceback and no API key anywhere in the result."""
    text = json.dumps(result)
    assert "Traceback" not in text
    assert API_KEY not in text


def failed(result: dict) -> set:
    """Names of the failed checks."""
    return {name for name, check in result["checks"].items() if not check["ok"]}


def verify(url: str, **args) -> dict:
    """Run the module against ``url`` and check the result's invariants."""
    result = run_module({"url": url, **args})
    assert_clean(result)
    assert result["changed"] is False
    assert result["failed"] is (not result["ok"])
    if "checks" in result:
        assert result["failed_checks"] == [name for name in result["checks"] if not result["checks"][name]["ok"]]
        for name in result["failed_checks"]:
            assert name in result["msg"]
            assert result["checks"][name]["hint"]
    return result


# ---- a correctly started server ------------------------------------------------------------------------------------


def test_seed_server_passes_every_check(seed_server):
    result = verify(
        seed_server.url,
        api_key=API_KEY,
        expect_models=SEED_NAMES,
        expect_max_model_len=262144,
        checks=list(CHECKS),
    )
    assert result["ok"], result["msg"]
    assert list(result["checks"]) == list(CHECKS)
    for name, check in result["checks"].items():
        assert check["ok"] and not check["skipped"] and check["hint"] is None, (name, check)
        assert check["latency_ms"] >= 0
    assert result["server"] == {
        "url": seed_server.url,
        "version": "0.0.0+standin",
        "stand_in": True,
        "models": SEED_NAMES,
        "model": "kimi-k2.7-code",
        "max_model_len": 262144,
    }
    assert "functions.get_weather:0" in result["checks"]["tools"]["detail"]
    assert "ANTHROPIC_AUTH_TOKEN" in result["checks"]["auth"]["detail"]
    assert result["msg"] == f"all {len(CHECKS)} checks passed at {seed_server.url}"
    assert result["report"][0].startswith(f"vLLM at {seed_server.url} (0.0.0+standin, a stand-in TEST DOUBLE)")


def test_default_checks_leave_smoke_out_and_check_mode_runs_them(seed_server):
    result = verify(seed_server.url, api_key=API_KEY, model="my-kimi2.7-code", _ansible_check_mode=True)
    assert result["ok"], result["msg"]
    assert list(result["checks"]) == list(DEFAULT_CHECKS)
    assert result["server"]["model"] == "my-kimi2.7-code"


def test_reasoning_content_field_of_older_builds_passes(standin):
    server = standin(SEED_FLAGS, {"STANDIN_REASONING_FIELD": "reasoning_content"})
    result = verify(server.url, checks=["reasoning"])
    assert result["ok"], result["msg"]
    assert "`reasoning_content`" in result["checks"]["reasoning"]["detail"]


def test_plain_openai_compatible_server_passes_the_checks_it_supports(standin):
    server = standin(["--model", "Qwen/Qwen3-0.6B"])
    result = verify(server.url, checks=["health", "models", "chat", "stream", "metrics", "auth"])
    assert result["ok"], result["msg"]
    assert result["checks"]["auth"]["skipped"]
    assert result["checks"]["auth"]["detail"].startswith("skipped:")
    assert result["server"]["models"] == ["Qwen/Qwen3-0.6B"]


def test_ansible_cli_end_to_end_never_prints_the_key(seed_server, tmp_path):
    """One real run through ansible (AnsiballZ, no_log, -vvvv), the key passed from the environment."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        KIMI_VERIFY_KEY=API_KEY,
    )
    args = {
        "url": seed_server.url,
        "api_key": "{{ lookup('ansible.builtin.env', 'KIMI_VERIFY_KEY') }}",
        "expect_models": SEED_NAMES,
        "checks": ["health", "models", "tools", "auth"],
    }
    ansible = Path(sys.executable).with_name("ansible")
    module_args = ["-m", "kimi.vllm.vllm_verify", "-a", json.dumps(args)]
    proc = subprocess.run(
        [str(ansible), "localhost", "-vvvv", "-e", f"ansible_python_interpreter={sys.executable}", *module_args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "all 4 checks passed" in output
    assert API_KEY not in output


# ---- each check fails, with its hint, without the flag it depends on ------------------------------------------------


def without(*flags: str) -> list:
    """The seed's flags minus ``flags`` and their values."""
    out, dropping = [], False
    for arg in SEED_FLAGS:
        if arg.startswith("--"):
            dropping = arg in flags
        if not dropping:
            out.append(arg)
    return out


@pytest.mark.parametrize(
    ("flags", "env", "check", "hint"),
    [
        pytest.param(without("--reasoning-parser"), {}, "reasoning", "reasoning_parser", id="no-reasoning-parser"),
        pytest.param(without("--enable-auto-tool-choice"), {}, "tools", "tools_flags", id="no-auto-tool-choice"),
        pytest.param(
            without("--enable-auto-tool-choice", "--tool-call-parser"), {}, "tools", "tools_flags", id="no-tool-parser"
        ),
        pytest.param(
            SEED_FLAGS, {"STANDIN_BUG": "tool_markers_in_content"}, "tools", "tools_markers", id="bug-tool-markers"
        ),
        pytest.param(
            SEED_FLAGS, {"STANDIN_BUG": "truncated_tool_args"}, "tools", "tools_args", id="bug-truncated-args"
        ),
        pytest.param(
            SEED_FLAGS, {"STANDIN_BUG": "reasoning_in_content"}, "reasoning", "reasoning_parser", id="bug-reasoning"
        ),
    ],
)
def test_check_fails_without_its_flag(standin, flags, env, check, hint):
    server = standin(flags, env)
    result = verify(server.url)
    assert failed(result) == {check}, result["msg"]
    assert result["checks"][check]["hint"] == HINTS[hint]
    assert result["msg"].startswith(f"1 of {len(DEFAULT_CHECKS)} checks failed at {server.url} ({check})")


def test_chat_tells_a_long_thinking_from_a_misplaced_answer(standin):
    """An always-thinking model out of budget: 'still thinking', with the answer it gives with thinking off."""
    server = standin(SEED_FLAGS, {"STANDIN_REASONING_TOKENS": "300"})
    result = verify(server.url, checks=["chat"], probe_max_tokens=200)
    chat = result["checks"]["chat"]
    assert chat["hint"] == HINTS["chat_budget"]
    assert chat["detail"].startswith("still thinking when the probe's budget of 200 tokens ran out (")
    assert "; with thinking off it answered '" in chat["detail"]
    # The same server with a budget the thinking fits in answers.
    assert verify(server.url, checks=["chat"], probe_max_tokens=400)["ok"]


@pytest.mark.parametrize("budget", [0, 15])
def test_probe_budget_below_16_is_refused(budget):
    result = run_module({"url": "http://127.0.0.1:9", "probe_max_tokens": budget})
    assert result["failed"] and result["msg"] == f"probe_max_tokens must be at least 16, got {budget}"


def test_hints_name_the_flags():
    assert "--enable-auto-tool-choice --tool-call-parser kimi_k2" in HINTS["tools_flags"]
    assert "--reasoning-parser kimi_k2" in HINTS["reasoning_parser"]
    assert "upgrade the image" in HINTS["tools_markers"]
    assert "0.11.1" in HINTS["anthropic_missing"]
    assert "--api-key" in HINTS["auth_open"]
    assert "include_usage" in HINTS["stream_usage"]


def test_auth_fails_when_the_server_has_no_key(standin):
    server = standin(SEED_FLAGS)
    result = verify(server.url, api_key=API_KEY)
    assert failed(result) == {"auth"}, result["msg"]
    assert result["checks"]["auth"]["hint"] == HINTS["auth_open"]
    assert "without a key answered 200" in result["checks"]["auth"]["detail"]


def test_auth_is_skipped_without_a_key(standin):
    server = standin(SEED_FLAGS)
    result = verify(server.url)
    assert result["ok"], result["msg"]
    assert result["checks"]["auth"] == {
        "ok": True,
        "skipped": True,
        "latency_ms": result["checks"]["auth"]["latency_ms"],
        "detail": "skipped: no api_key given, so there is no key to enforce",
        "hint": None,
    }
    assert result["msg"].endswith("(auth skipped)")


def test_missing_key_is_named(seed_server):
    result = verify(seed_server.url, checks=["health", "models", "chat", "metrics", "auth"])
    assert failed(result) == {"models", "chat"}
    for name in ("models", "chat"):
        assert result["checks"][name]["hint"] == HINTS["need_key"]
        assert "HTTP 401" in result["checks"][name]["detail"]


def test_wrong_key_is_named(seed_server):
    result = verify(seed_server.url, api_key="sk-not-the-key", checks=["models", "auth"])
    assert failed(result) == {"models", "auth"}
    assert result["checks"]["models"]["hint"] == HINTS["bad_key"]
    assert "sk-not-the-key" not in json.dumps(result)


def test_models_names_and_context_length(standin):
    server = standin([*without("--served-model-name"), "--max-model-len", "131072"])
    result = verify(server.url, expect_models=SEED_NAMES, expect_max_model_len=262144, checks=["models"])
    assert failed(result) == {"models"}
    check = result["checks"]["models"]
    assert check["detail"] == (
        "not listed: kimi-k2.7-code, my-kimi2.7-code; /v1/models lists: moonshotai/Kimi-K2.7-Code"
    )
    assert "--served-model-name kimi-k2.7-code my-kimi2.7-code" in check["hint"]
    result = verify(server.url, expect_max_model_len=262144, checks=["models"])
    assert "max_model_len is moonshotai/Kimi-K2.7-Code 131072, expected 262144" in result["checks"]["models"]["detail"]
    assert "--max-model-len 262144" in result["checks"]["models"]["hint"]


def test_unknown_model_is_named(seed_server):
    result = verify(seed_server.url, api_key=API_KEY, model="nope", checks=["models", "chat"])
    assert failed(result) == {"models", "chat"}
    assert result["checks"]["chat"]["hint"] == HINTS["model_404"]
    assert "The model `nope` does not exist" in result["checks"]["chat"]["detail"]


@pytest.mark.parametrize("style", ["openai", "legacy"])
def test_engine_errors_fail_the_generation_checks(standin, style):
    server = standin(SEED_FLAGS, {"STANDIN_FAULT": "error_after:0", "STANDIN_ERROR_STYLE": style})
    result = verify(server.url)
    assert failed(result) == {"chat", "stream", "reasoning", "tools", "anthropic"}
    for name in failed(result):
        assert result["checks"][name]["hint"] == HINTS["server_error"], name
        assert "HTTP 500" in result["checks"][name]["detail"]
        assert "EngineCore encountered an issue" in result["checks"][name]["detail"]


# ---- bad servers: clear failures, never a traceback ---------------------------------------------------------------

CHAT_REPLY = {
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 4096}]}


def chunk_doc(delta: dict, finish=None) -> str:
    """One chat.completion.chunk as JSON."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"object": "chat.completion.chunk", "choices": [choice]})


def old_vllm(request, conn):
    """Answers like an OpenAI-compatible server from before stream usage, /v1/messages and vLLM's gauges."""
    routes = {
        "/version": lambda: json_response(200, {"version": "0.10.0"}),
        "/health": lambda: http_response(200),
        "/v1/models": lambda: json_response(200, MODELS),
        "/v1/chat/completions": lambda: json_response(200, CHAT_REPLY),
        "/metrics": lambda: http_response(200, b"# HELP python_info x\npython_info 1.0\n", "text/plain"),
    }
    if request.path == "/v1/chat/completions" and request.json().get("stream"):
        conn.sendall(sse_head() + sse_chunk(chunk_doc({"role": "assistant", "content": ""})))
        conn.sendall(sse_chunk(chunk_doc({"content": "hello"}, "stop")) + sse_chunk("[DONE]") + SSE_END)
        return True
    conn.sendall(routes.get(request.path, lambda: json_response(404, {"detail": "Not Found"}))())
    return True


def test_old_server_gets_version_hints(bad_server):
    server = bad_server(old_vllm)
    result = verify(server.url, checks=["health", "models", "chat", "stream", "anthropic", "metrics"])
    assert failed(result) == {"stream", "anthropic", "metrics"}
    assert result["checks"]["stream"]["hint"] == HINTS["stream_usage"]
    assert result["checks"]["anthropic"]["hint"] == HINTS["anthropic_missing"].format(
        version="; this server reports 0.10.0"
    )
    assert result["checks"]["metrics"]["hint"] == HINTS["metrics_gauges"]
    assert result["server"]["version"] == "0.10.0"


def test_refused_connection():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
    started = time.monotonic()
    result = verify(url, api_key=API_KEY)
    assert time.monotonic() - started < 5
    assert failed(result) == set(DEFAULT_CHECKS)
    first = result["checks"]["health"]
    assert first["detail"].startswith(f"not run: GET {url}/version: cannot connect")
    assert first["hint"] == HINTS["unreachable"].format(url=url)


def test_hanging_server_times_out(bad_server):
    server = bad_server(hang=True)
    started = time.monotonic()
    result = verify(server.url, timeout=0.3)
    assert time.monotonic() - started < 3
    assert failed(result) == set(DEFAULT_CHECKS)
    assert "no answer within 0.3 s" in result["checks"]["chat"]["detail"]
    assert result["checks"]["chat"]["hint"] == HINTS["timeout"].format(timeout=0.3)


def test_404_everywhere(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(json_response(404, {"detail": "Not Found"})))
    result = verify(server.url)
    assert failed(result) == set(DEFAULT_CHECKS) - {"auth"}
    assert result["checks"]["health"]["hint"] == HINTS["not_found"].format(path="/health")
    assert result["checks"]["chat"]["hint"] == HINTS["not_found"].format(path="/v1/chat/completions")
    assert result["checks"]["anthropic"]["hint"] == HINTS["anthropic_missing"].format(version="")
    assert result["checks"]["metrics"]["hint"] == HINTS["metrics_missing"].format(url=server.url)
    assert "HTTP 404 X: Not Found" in result["checks"]["chat"]["detail"]


def test_500_everywhere(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(http_response(500, b"Internal Server Error", "text/plain")))
    result = verify(server.url, api_key=API_KEY)
    assert failed(result) == set(DEFAULT_CHECKS)
    for name in DEFAULT_CHECKS:
        assert result["checks"][name]["hint"] == HINTS["server_error"], name
    assert result["checks"]["chat"]["detail"].endswith("HTTP 500 X: Internal Server Error")


def test_malformed_json(bad_server):
    def handler(request, conn):
        if request.path in ("/health", "/metrics"):
            conn.sendall(http_response(200))
        else:
            conn.sendall(http_response(200, b'{"object": "list", "data": [', "application/json"))

    server = bad_server(handler)
    result = verify(server.url, checks=["health", "models", "chat", "tools", "anthropic"])
    assert failed(result) == {"models", "chat", "tools", "anthropic"}
    for name in failed(result):
        assert "answer is not JSON" in result["checks"][name]["detail"], name
        assert result["checks"][name]["hint"] == HINTS["protocol"]


def streaming(events_then: bytes):
    """A server that answers every request with a stream of one role chunk, one token and then ``events_then``."""

    def handler(request, conn):
        if request.path == "/version":
            conn.sendall(json_response(200, {"version": "0.19.1"}))
            return True
        if request.path == "/v1/models":
            conn.sendall(json_response(200, MODELS))
            return True
        conn.sendall(sse_head() + sse_chunk(chunk_doc({"role": "assistant", "content": ""})))
        conn.sendall(sse_chunk(chunk_doc({"content": "hel"})) + events_then)
        return False  # close the connection after it

    return handler


def test_stream_cut_in_the_middle(bad_server):
    cut = b'40\r\ndata: {"choices": [{"index": 0, "del'  # a chunk announced as 64 bytes, cut after 38
    server = bad_server(streaming(cut))
    result = verify(server.url, checks=["stream", "reasoning", "tools"])
    assert failed(result) == {"stream", "reasoning", "tools"}
    detail = result["checks"]["stream"]["detail"]
    assert "POST " + server.url + "/v1/chat/completions: the server closed the stream after" in detail
    assert "mid-body (2 events received before)" in detail
    assert result["checks"]["stream"]["hint"] == HINTS["protocol"]


def test_stream_ends_without_done(bad_server):
    server = bad_server(streaming(sse_chunk(chunk_doc({"content": "lo"}, "stop")) + SSE_END))
    result = verify(server.url, checks=["stream"])
    assert result["checks"]["stream"]["detail"] == "3 chunks, no `data: [DONE]` at the end"
    assert result["checks"]["stream"]["hint"] == HINTS["stream_done"]


def test_stream_with_non_json_data(bad_server):
    server = bad_server(streaming(sse_chunk("this is not json") + sse_chunk("[DONE]") + SSE_END))
    result = verify(server.url, checks=["stream", "anthropic"])
    assert failed(result) == {"stream", "anthropic"}
    assert result["checks"]["stream"]["detail"] == "streamed: event 3 is not JSON: 'this is not json'"
    assert result["checks"]["stream"]["hint"] == HINTS["protocol"]


def test_key_echoed_by_a_server_is_masked(bad_server):
    def echo(request, conn):
        doc = {"error": {"message": f"bad header {request.headers.get('authorization')}"}}
        conn.sendall(json_response(401, doc))

    server = bad_server(echo)
    result = verify(server.url, api_key=API_KEY, checks=["models", "chat", "stream"])
    assert failed(result) == {"models", "chat", "stream"}
    assert "bad header Bearer ********" in result["checks"]["chat"]["detail"]
    assert any(request.headers.get("authorization") == f"Bearer {API_KEY}" for request in server.requests)


# ---- invalid arguments ------------------------------------------------------------------------------------------


def test_unknown_check_lists_the_choices():
    result = run_module({"checks": ["health", "vibes"]})
    assert result["failed"]
    assert "vibes" in result["msg"]
    assert "anthropic" in result["msg"] and "smoke" in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "ftp://host"}, "url must be http://host[:port] or https://host[:port]"),
        ({"url": "http://user:pw@host"}, "url must not carry credentials"),
        ({"timeout": 0}, "timeout must be more than 0 seconds"),
        ({"checks": []}, "checks is empty"),
    ],
)
def test_bad_arguments(args, message):
    result = run_module(args)
    assert result["failed"]
    assert message in result["msg"]
    assert "pw" not in json.dumps(result)
