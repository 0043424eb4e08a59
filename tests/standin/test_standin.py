"""Tests for the stand-in vLLM server (a test double): every endpoint, flag check and STANDIN_* switch.

Each server runs as a real subprocess on a free 127.0.0.1 port with a short load time, exactly as the collection's
tests will run it, and is spoken to over HTTP with the standard library.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SERVER = HERE / "vllm_standin.py"
LOAD_SECONDS = 0.5
KEY = "test-key-123"
SEED_FLAGS = [
    "--model", "moonshotai/Kimi-K2.7-Code", "--served-model-name", "kimi-k2.7-code", "my-kimi2.7-code",
    "--tensor-parallel-size", "8", "--trust-remote-code", "--mm-encoder-tp-mode", "data",
    "--tool-call-parser", "kimi_k2", "--reasoning-parser", "kimi_k2", "--enable-auto-tool-choice",
]  # fmt: skip
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "verbose": {"type": "boolean"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}


Event = tuple[float, str, Any]  # arrival time, SSE event name, decoded data


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Standin:
    """One stand-in server subprocess with its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, serve_word: bool = True) -> None:
        """Start the server; ``--host``/``--port`` are added unless ``args`` has a port."""
        self.port = free_port()
        full = [sys.executable, str(SERVER)] + (["serve"] if serve_word else []) + args
        if "--port" not in args:
            full += ["--host", "127.0.0.1", "--port", str(self.port)]
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("STANDIN_", "VLLM_"))}
        environ.update({"STANDIN_LOAD_SECONDS": str(LOAD_SECONDS), "PYTHONUNBUFFERED": "1"})
        environ.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(full, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if "Application startup complete." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Wait for uvicorn's startup line; return seconds since the process started."""
        assert self._ready.wait(timeout), f"server not ready: {self.stdout[-5:]} {self.stderr[-5:]}"
        return time.monotonic() - self.started

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to end and its output to be read; return the exit code."""
        rc = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return rc

    def stop(self) -> int:
        """Send SIGTERM (what `docker stop` sends) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def conn(self) -> http.client.HTTPConnection:
        """A new keep-alive connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, key: str | None = KEY
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return status, lower-cased headers and body."""
        conn = self.conn()
        try:
            send_headers = {"Content-Type": "application/json"} if body is not None else {}
            if key:
                send_headers["Authorization"] = f"Bearer {key}"
            send_headers.update(headers or {})
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers=send_headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def ok(self, path: str, body: Any, key: str | None = KEY) -> Any:
        """POST JSON, expect 200 and return the decoded reply."""
        status, reply = self.post(path, body, key=key)
        assert status == 200, reply
        return reply

    def events(self, path: str, body: Any, key: str | None = KEY) -> list[Event]:
        """POST a streaming request and return its SSE events (see ``stream``)."""
        return self.stream(path, body, key=key)[1]

    def post(self, path: str, body: Any, key: str | None = KEY) -> tuple[int, Any]:
        """POST JSON and decode the JSON reply."""
        status, _headers, data = self.request("POST", path, body, key=key)
        return status, json.loads(data)

    def stream(self, path: str, body: Any, key: str | None = KEY) -> tuple[dict[str, str], list[Event]]:
        """POST a streaming request; return headers and (arrival time, event name, data) per SSE event."""
        conn = self.conn()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        start = time.monotonic()
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        events: list[Event] = [(start, "start", None)]
        name, data = "", None
        while True:
            line = resp.readline()
            if not line:
                break
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                name = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and data is not None:
                events.append((time.monotonic(), name, data if data == "[DONE]" else json.loads(data)))
                name, data = "", None
        conn.close()
        return {k.lower(): v for k, v in resp.getheaders()}, events


@pytest.fixture(scope="module")
def main_server() -> Iterator[Standin]:
    """The seed's configuration plus an API key."""
    server = Standin([*SEED_FLAGS, "--api-key", KEY])
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Standin]:
    """No reasoning or tool parser; key from VLLM_API_KEY; x-api-key accepted through the switch."""
    server = Standin(
        ["moonshotai/Kimi-K2.7-Code", "--trust_remote_code", "--max_model_len", "128k", "--max-num-seqs", "2"],
        env={"VLLM_API_KEY": KEY, "STANDIN_ACCEPT_X_API_KEY": "1", "STANDIN_ITL_MS": "2"},
        serve_word=False,
    )
    server.wait_ready()
    yield server
    server.stop()


def chat(model: str = "kimi-k2.7-code", content: str = "hello", **extra: Any) -> dict[str, Any]:
    """Build a chat completion request."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def token_events(events: list[Event]) -> list[tuple[float, dict[str, Any]]]:
    """The chunks vLLM's bench counts as tokens: a delta with content, reasoning or tool calls (not the role chunk)."""
    out = []
    for t, _name, data in events[1:]:
        if not isinstance(data, dict) or not data.get("choices"):
            continue
        delta = data["choices"][0].get("delta") or {}
        if "role" in delta:
            continue
        if any(k in delta for k in ("content", "reasoning", "reasoning_content", "tool_calls")):
            out.append((t, delta))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Startup, shutdown, command line.
# ---------------------------------------------------------------------------------------------------------------------


def test_port_refused_until_loaded_then_log_markers_and_sigterm() -> None:
    server = Standin([*SEED_FLAGS, "--api-key", KEY])
    time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    elapsed = server.wait_ready()
    assert elapsed >= LOAD_SECONDS
    assert server.request("GET", "/health", key=None)[0] == 200
    assert server.stop() == 0
    out = "\n".join(server.stdout)
    markers = ["Loading weights took", "Model loading took", "GPU KV cache size", "Graph capturing finished",
               "Starting vLLM API server 0 on http://127.0.0.1:", "Application startup complete."]  # fmt: skip
    positions = [out.index(m) for m in markers]
    assert positions == sorted(positions)
    assert "TEST DOUBLE" in out and "non-default args: {" in out
    assert KEY not in out and "'api_key': '***'" in out
    assert "Application shutdown complete." in out
    vllm_lines = [line for line in server.stdout if "[" in line and "] " in line]
    assert vllm_lines and all(" INFO " in line or line.startswith("INFO ") for line in vllm_lines[:5])


def test_sigterm_during_load_exits_cleanly() -> None:
    server = Standin(["--model", "m"], env={"STANDIN_LOAD_SECONDS": "30"})
    while not server.stdout:
        time.sleep(0.01)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("bad", [["--bogus"], ["--model", "m", "--bogus=1", "--tensor-parallel-size", "8"]])
def test_unknown_flag_rejected_like_vllm(bad: list[str]) -> None:
    server = Standin(bad)
    assert server.wait_exit() == 2
    assert server.stderr[-1] == "vllm serve: error: unrecognized arguments: " + bad[2 if len(bad) > 1 else 0]
    assert server.stderr[0].startswith("usage: vllm serve [model_tag] [options]")


def test_invalid_choice_rejected() -> None:
    server = Standin(["--mm-encoder-tp-mode", "sideways"])
    assert server.wait_exit() == 2
    assert "argument --mm-encoder-tp-mode: invalid choice: 'sideways'" in server.stderr[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "m", "--enable-auto-tool-choice"],
         "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser"),
        (["--model", "m", "--tool-call-parser", "nope"], "KeyError: 'invalid tool call parser: nope"),
        (["--model", "moonshotai/Kimi-K2.7-Code"], "Please pass the argument `trust_remote_code=True`"),
    ],
)  # fmt: skip
def test_startup_validation_fails_before_loading(args: list[str], message: str) -> None:
    server = Standin(args)
    assert server.wait_exit() == 1
    assert message in "\n".join(server.stderr)
    assert time.monotonic() - server.started < LOAD_SECONDS + 2


def test_bad_switch_is_reported() -> None:
    server = Standin(["--model", "m"], env={"STANDIN_FAULT": "explode"})
    assert server.wait_exit() == 2
    assert "STANDIN_FAULT: unknown fault 'explode'" in server.stderr[-1]


def test_crash_on_load_prints_oom_and_exits_1() -> None:
    server = Standin(SEED_FLAGS, env={"STANDIN_FAULT": "crash_on_load", "STANDIN_LOAD_SECONDS": "1"})
    assert server.wait_exit() == 1
    assert server.stderr[-1].startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.75 GiB. "
                                        "GPU 0 has a total capacity of 178.35 GiB")  # fmt: skip
    assert 0.4 < time.monotonic() - server.started < 3
    assert "Application startup complete." not in "\n".join(server.stdout)
    assert any("EngineCore failed to start." in line for line in server.stdout)


def test_hang_on_load_never_listens() -> None:
    server = Standin(["--model", "m"], env={"STANDIN_FAULT": "hang_on_load"})
    time.sleep(LOAD_SECONDS + 0.7)
    lines = len(server.stdout)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    time.sleep(0.3)
    assert len(server.stdout) == lines  # prints nothing more
    assert server.proc.poll() is None
    assert server.stop() == 0


# ---------------------------------------------------------------------------------------------------------------------
# Plain endpoints and auth.
# ---------------------------------------------------------------------------------------------------------------------


def test_health_version_models(main_server: Standin) -> None:
    status, headers, body = main_server.request("GET", "/health", key=None)
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    status, _headers, body = main_server.request("GET", "/version", key=None)
    assert status == 200 and json.loads(body) == {"version": "0.0.0+standin", "standin": True}
    status, _headers, body = main_server.request("GET", "/v1/models")
    cards = json.loads(body)
    assert status == 200 and cards["object"] == "list"
    assert [c["id"] for c in cards["data"]] == ["kimi-k2.7-code", "my-kimi2.7-code"]
    for card in cards["data"]:
        assert card["object"] == "model" and card["owned_by"] == "vllm" and card["parent"] is None
        assert card["root"] == "moonshotai/Kimi-K2.7-Code" and card["max_model_len"] == 262144
        assert isinstance(card["created"], int) and card["permission"][0]["object"] == "model_permission"


def test_keep_alive_serves_several_requests_on_one_connection(main_server: Standin) -> None:
    conn = main_server.conn()
    for _i in range(3):
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
    conn.request("GET", "/version")
    assert json.loads(conn.getresponse().read())["standin"] is True
    conn.close()


def test_auth_guards_v1_only(main_server: Standin) -> None:
    for key in (None, "wrong"):
        status, _headers, body = main_server.request("GET", "/v1/models", key=key)
        assert (status, json.loads(body)) == (401, {"error": "Unauthorized"})
    status, _headers, _body = main_server.request(
        "POST", "/v1/messages", {"model": "x"}, key=None, headers={"x-api-key": KEY}
    )
    assert status == 401  # real vLLM reads only `Authorization: Bearer`
    open_endpoints = [("GET", "/health", None), ("GET", "/metrics", None), ("GET", "/version", None),
                      ("POST", "/tokenize", {"prompt": "hi"}), ("POST", "/detokenize", {"tokens": [104]})]  # fmt: skip
    for method, path, body in open_endpoints:
        assert main_server.request(method, path, body, key=None)[0] == 200, path


def test_vllm_api_key_env_and_x_api_key_switch(plain_server: Standin) -> None:
    assert plain_server.request("GET", "/v1/models", key=None)[0] == 401
    assert plain_server.request("GET", "/v1/models", key=None, headers={"x-api-key": KEY})[0] == 200
    assert plain_server.request("GET", "/v1/models")[0] == 200


def test_positional_model_underscore_flags_and_human_ints(plain_server: Standin) -> None:
    _status, _headers, body = plain_server.request("GET", "/v1/models")
    card = json.loads(body)["data"][0]
    assert card["id"] == "moonshotai/Kimi-K2.7-Code" and card["max_model_len"] == 128000


def test_unknown_path_and_method(main_server: Standin) -> None:
    assert main_server.request("GET", "/nope", key=None)[:1] == (404,)
    assert main_server.request("GET", "/tokenize", key=None)[0] == 405


def test_json_content_type_required(main_server: Standin) -> None:
    plain = {"Content-Type": "text/plain"}
    status, _headers, body = main_server.request("POST", "/v1/chat/completions", chat(), headers=plain)
    assert status == 400 and "Only 'application/json' is allowed" in json.loads(body)["error"]["message"]


def test_tokenize_detokenize_and_chat_count_agree(main_server: Standin) -> None:
    status, reply = main_server.post("/tokenize", {"prompt": "the cache is warm <|im_end|> héllo"}, key=None)
    assert status == 200 and reply["count"] == len(reply["tokens"]) and reply["max_model_len"] == 262144
    assert main_server.post("/detokenize", {"tokens": reply["tokens"]}, key=None)[1] == {
        "prompt": "the cache is warm <|im_end|> héllo"
    }
    assert main_server.post("/tokenize", {"prompt": " the" * 100}, key=None)[1]["count"] == 100
    messages = [{"role": "system", "content": "the"}, {"role": "user", "content": " ".join(["the code"] * 50)}]
    counted = main_server.ok("/tokenize", {"model": "kimi-k2.7-code", "messages": messages}, key=None)
    answer = main_server.ok("/v1/chat/completions", {"model": "kimi-k2.7-code", "messages": messages, "max_tokens": 1})
    assert counted["count"] == answer["usage"]["prompt_tokens"] == 2 * 4 + 3 + 1 + 100  # template: 4/message + 3
    status, error = main_server.post("/tokenize", {"model": "nope", "prompt": "x"}, key=None)
    assert status == 404 and error["error"]["type"] == "NotFoundError"
    # An id outside the vocabulary decodes to nothing, as in vLLM 0.32 (its Hugging Face tokenizer skips it).
    assert main_server.post("/detokenize", {"tokens": [999999]}, key=None) == (200, {"prompt": ""})
    assert main_server.post("/detokenize", {"tokens": [104, 999999, 105]}, key=None) == (200, {"prompt": "hi"})


# ---------------------------------------------------------------------------------------------------------------------
# Chat completions.
# ---------------------------------------------------------------------------------------------------------------------


def test_chat_stream_framing_reasoning_and_usage(main_server: Standin) -> None:
    body = chat("my-kimi2.7-code", "hi", max_completion_tokens=30, ignore_eos=True, stream=True,
                stream_options={"include_usage": True})  # fmt: skip
    headers, events = main_server.stream("/v1/chat/completions", body)
    assert headers["content-type"].startswith("text/event-stream") and headers["transfer-encoding"] == "chunked"
    datas = [d for _t, _name, d in events[1:]]
    assert datas[-1] == "[DONE]"
    first = datas[0]
    assert first["object"] == "chat.completion.chunk" and first["model"] == "my-kimi2.7-code"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    usage_chunk = datas[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == {
        "prompt_tokens": 9, "total_tokens": 39, "completion_tokens": 30,  # "hi" is two byte tokens, template 7
        "completion_tokens_details": {"reasoning_tokens": 8},  # with a reasoning parser, as vLLM 0.32's
    }  # fmt: skip
    final = datas[-3]["choices"][0]
    assert final["finish_reason"] == "length"
    assert all(d["choices"][0]["finish_reason"] is None for d in datas[:-3])
    deltas = [d for _t, d in token_events(events)]
    kinds = ["reasoning" if "reasoning" in d else "content" for d in deltas]
    assert kinds == ["reasoning"] * 8 + ["content"] * 20  # 30 tokens: <think> and </think> are swallowed
    assert not any("reasoning_content" in d for d in deltas)
    assert "".join(d.get("reasoning", "") for d in deltas).startswith("let me think")
    assert len({d["id"] for d in datas[:-1]}) == 1


def test_chat_nonstream_reasoning_and_exact_reply(main_server: Standin) -> None:
    status, reply = main_server.post("/v1/chat/completions", chat(content="Reply exactly: ok"))
    assert status == 200 and reply["object"] == "chat.completion"
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == "ok"
    assert choice["message"]["reasoning"].startswith("let me think") and "tool_calls" not in choice["message"]
    usage = reply["usage"]
    assert usage["completion_tokens"] == 8 + 2 + 1 and usage["total_tokens"] == usage["prompt_tokens"] + 11


def test_ignore_eos_false_stops_early_and_max_tokens_cuts(main_server: Standin) -> None:
    natural = main_server.ok("/v1/chat/completions", chat(max_tokens=100))
    assert natural["choices"][0]["finish_reason"] == "stop" and natural["usage"]["completion_tokens"] == 8 + 2 + 16
    cut = main_server.ok("/v1/chat/completions", chat(max_tokens=5))
    assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 5
    assert cut["choices"][0]["message"]["content"] is None


def test_chat_errors(main_server: Standin) -> None:
    status, error = main_server.post("/v1/chat/completions", chat("gpt-4"))
    assert status == 404 and error == {"error": {
        "message": "The model `gpt-4` does not exist. Valid aliases: kimi-k2.7-code, my-kimi2.7-code.",
        "type": "NotFoundError", "param": "model", "code": 404}}  # fmt: skip
    status, error = main_server.post("/v1/chat/completions", chat(max_tokens=262145))
    assert status == 400 and error["error"]["param"] == "max_tokens"
    assert error["error"]["message"].startswith("max_tokens=262145 cannot be greater than max_model_len=262144.")
    status, error = main_server.post("/v1/chat/completions", chat(content=" the" * 262144, max_tokens=10))
    assert status == 400 and error["error"]["param"] == "input_tokens"
    assert "maximum context length is 262144 tokens" in error["error"]["message"]
    # vLLM 0.32 serves prompt + maximum beyond the context: the maximum becomes what the context leaves.
    status, reply = main_server.post("/v1/chat/completions", chat(max_tokens=262144))
    assert status == 200 and reply["choices"][0]["finish_reason"] == "stop"
    nearly_full = chat(content=" the" * (262144 - 7 - 5), max_tokens=100, ignore_eos=True)  # 5 tokens left
    status, reply = main_server.post("/v1/chat/completions", nearly_full)
    assert status == 200 and reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["prompt_tokens"] == 262144 - 5 and reply["usage"]["completion_tokens"] == 5
    status, error = main_server.post("/v1/chat/completions", {"model": "kimi-k2.7-code", "messages": []})
    assert status == 400 and error["error"]["type"] == "BadRequestError"


def test_tool_call_nonstream_valid_json_and_kimi_ids(main_server: Standin) -> None:
    reply = main_server.ok("/v1/chat/completions", chat(content="weather?", tools=[WEATHER_TOOL]))
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "functions.get_weather:0" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "example-city", "unit": "celsius", "days": 1}
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    with_tools = {"model": "kimi-k2.7-code", "tools": [WEATHER_TOOL]}
    after_tool = main_server.ok("/v1/chat/completions", dict(with_tools, messages=history))
    assert after_tool["choices"][0]["finish_reason"] == "stop" and after_tool["choices"][0]["message"]["content"]
    history.append({"role": "user", "content": "and tomorrow?"})
    again = main_server.ok("/v1/chat/completions", dict(with_tools, messages=history))
    assert again["choices"][0]["message"]["tool_calls"][0]["id"] == "functions.get_weather:1"


def test_tool_call_stream_reassembles(main_server: Standin) -> None:
    events = main_server.events("/v1/chat/completions", chat(tools=[WEATHER_TOOL], stream=True))
    tool_deltas = [d["tool_calls"][0] for _t, d in token_events(events) if "tool_calls" in d]
    head = tool_deltas[0]
    assert head["id"] == "functions.get_weather:0" and head["type"] == "function"
    assert head["function"] == {"name": "get_weather"} and head["index"] == 0
    assert len(tool_deltas) > 3 and all(set(d) == {"index", "function"} for d in tool_deltas[1:])
    arguments = "".join(d["function"].get("arguments", "") for d in tool_deltas)
    assert json.loads(arguments)["unit"] == "celsius"
    finals = [d["choices"][0]["finish_reason"] for _t, _name, d in events[1:] if isinstance(d, dict) and d["choices"]]
    assert finals[-1] == "tool_calls"


def test_tool_choice_variants(main_server: Standin) -> None:
    other = {"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}}
    none = main_server.ok("/v1/chat/completions", chat(tools=[WEATHER_TOOL], tool_choice="none"))
    assert "tool_calls" not in none["choices"][0]["message"] and none["choices"][0]["finish_reason"] == "stop"
    named = {"type": "function", "function": {"name": "ls"}}
    reply = main_server.ok("/v1/chat/completions", chat(tools=[WEATHER_TOOL, other], tool_choice=named))
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "ls", "arguments": "{}"}
    status, error = main_server.post("/v1/chat/completions", chat(tools=[WEATHER_TOOL], tool_choice={
        "type": "function", "function": {"name": "missing"}}))  # fmt: skip
    assert status == 400 and "missing" in error["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------------
# Completions and Anthropic messages.
# ---------------------------------------------------------------------------------------------------------------------


def test_completions_plain_and_stream(main_server: Standin) -> None:
    body = {"model": "kimi-k2.7-code", "prompt": "the code", "max_tokens": 7, "ignore_eos": True}
    reply = main_server.ok("/v1/completions", body)
    assert reply["object"] == "text_completion" and reply["usage"]["completion_tokens"] == 7
    assert reply["choices"][0]["finish_reason"] == "length" and len(reply["choices"][0]["text"].split()) == 7
    body = {"model": "kimi-k2.7-code", "prompt": "the code", "max_tokens": 5, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    events = main_server.events("/v1/completions", body)
    datas = [d for _t, _name, d in events[1:]]
    assert datas[-1] == "[DONE]" and datas[-2]["usage"]["prompt_tokens"] == 2 and datas[-2]["choices"] == []
    texts = [d["choices"][0]["text"] for d in datas[:-2]]
    assert len(texts) == 5 and datas[-3]["choices"][0]["finish_reason"] == "length"


def test_anthropic_plain_and_count_tokens(main_server: Standin) -> None:
    body = {"model": "kimi-k2.7-code", "max_tokens": 64, "system": [{"type": "text", "text": "be brief"}],
            "messages": [{"role": "user", "content": "Reply exactly: ok"}]}  # fmt: skip
    status, reply = main_server.post("/v1/messages?beta=true", body)
    assert status == 200 and reply["type"] == "message" and reply["stop_reason"] == "end_turn"
    assert [b["type"] for b in reply["content"]] == ["thinking", "text"] and reply["content"][1]["text"] == "ok"
    assert reply["content"][0]["signature"] and reply["usage"]["output_tokens"] == 11
    counted = main_server.ok("/v1/messages/count_tokens", {k: v for k, v in body.items() if k != "max_tokens"})
    tokens = reply["usage"]["input_tokens"]
    assert counted == {"input_tokens": tokens, "context_management": {"original_input_tokens": tokens}}
    status, error = main_server.post("/v1/messages", dict(body, model="claude-opus"))
    assert status == 404 and error["type"] == "error" and error["error"]["type"] == "NotFoundError"


def test_anthropic_stream_events(main_server: Standin) -> None:
    body = {"model": "kimi-k2.7-code", "max_tokens": 40, "stream": True,
            "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    events = main_server.events("/v1/messages", body)
    names = [name for _t, name, _data in events[1:]]
    assert all(name == data["type"] for _t, name, data in events[1:])
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks = [d["content_block"]["type"] for _t, n, d in events if n == "content_block_start"]
    assert blocks == ["thinking", "text"]
    delta_types = [d["delta"]["type"] for _t, n, d in events if n == "content_block_delta"]
    assert delta_types[:8] == ["thinking_delta"] * 8 and delta_types[8] == "signature_delta"
    assert set(delta_types[9:]) == {"text_delta"}
    assert names.count("content_block_stop") == 2
    message_delta = next(d for _t, n, d in events if n == "message_delta")
    assert message_delta["delta"]["stop_reason"] == "end_turn" and message_delta["usage"]["output_tokens"] == 26
    assert events[1][2]["message"]["usage"]["input_tokens"] > 0


def test_anthropic_tool_use_stream_and_plain(main_server: Standin) -> None:
    tool = {"name": "get_weather", "description": "w", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    body = {"model": "kimi-k2.7-code", "max_tokens": 200, "tools": [tool],
            "messages": [{"role": "user", "content": "weather?"}]}  # fmt: skip
    reply = main_server.ok("/v1/messages", body)
    assert reply["stop_reason"] == "tool_use"
    use = reply["content"][-1]
    assert use["type"] == "tool_use" and use["id"] == "functions.get_weather:0" and use["input"]["days"] == 1
    events = main_server.events("/v1/messages", dict(body, stream=True))
    start = next(d for _t, n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
    assert start["content_block"] == {"type": "tool_use", "id": "functions.get_weather:0", "name": "get_weather",
                                      "input": {}}  # fmt: skip
    partial = "".join(d["delta"]["partial_json"] for _t, n, d in events
                      if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")  # fmt: skip
    assert json.loads(partial) == use["input"]
    assert next(d for _t, n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"
    followup = dict(body, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]},
    ])  # fmt: skip
    assert main_server.post("/v1/messages", followup)[1]["stop_reason"] == "end_turn"


def test_metrics_count_real_traffic(main_server: Standin) -> None:
    main_server.post("/v1/chat/completions", chat(max_tokens=3, ignore_eos=True))
    status, headers, body = main_server.request("GET", "/metrics", key=None)
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    label = 'engine="0",model_name="kimi-k2.7-code"'
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert f"{gauge}{{{label}}}" in values
    assert values[f"vllm:prompt_tokens_total{{{label}}}"] > 0
    assert values[f"vllm:generation_tokens_total{{{label}}}"] >= 3
    for hist in ("time_to_first_token", "inter_token_latency", "e2e_request_latency"):
        name = f"vllm:{hist}_seconds"
        count = values[f"{name}_count{{{label}}}"]
        # prometheus_client writes labels sorted by name: le between engine and model_name
        assert count > 0 and values[f'{name}_bucket{{engine="0",le="+Inf",model_name="kimi-k2.7-code"}}'] == count
        assert f"{name}_sum{{{label}}}" in values
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text


# ---------------------------------------------------------------------------------------------------------------------
# No parsers, queueing, chunking.
# ---------------------------------------------------------------------------------------------------------------------


def test_without_parsers_thinking_is_inline_and_auto_tools_refused(plain_server: Standin) -> None:
    model = "moonshotai/Kimi-K2.7-Code"
    reply = plain_server.ok("/v1/chat/completions", chat(model, max_tokens=50))
    message = reply["choices"][0]["message"]
    assert message["content"].startswith("<think>let me think") and "</think>" in message["content"]
    assert message["reasoning"] is None
    status, error = plain_server.post("/v1/chat/completions", chat(model, tools=[WEATHER_TOOL]))
    assert status == 400 and error["error"]["message"] == (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    messages = [{"role": "user", "content": "x"}]
    status, error = plain_server.post("/v1/messages", {"model": model, "max_tokens": 10, "tools": tools,
                                                       "messages": messages})  # fmt: skip
    assert status == 400 and error["type"] == "error" and "auto" in error["error"]["message"]
    forced = plain_server.ok("/v1/chat/completions", chat(model, tools=[WEATHER_TOOL], tool_choice="required"))
    call = forced["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("chatcmpl-tool-") and json.loads(call["function"]["arguments"])["days"] == 1


def test_requests_beyond_max_num_seqs_wait(plain_server: Standin) -> None:
    model = "moonshotai/Kimi-K2.7-Code"
    results: list[int] = []

    def one() -> None:
        results.append(plain_server.post("/v1/chat/completions", chat(model, max_tokens=150, ignore_eos=True))[0])

    threads = [threading.Thread(target=one) for _i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.15)
    _status, _headers, body = plain_server.request("GET", "/metrics")
    text = body.decode()
    running = next(line for line in text.splitlines() if line.startswith("vllm:num_requests_running{"))
    waiting = next(line for line in text.splitlines() if line.startswith("vllm:num_requests_waiting{"))
    for thread in threads:
        thread.join()
    assert running.endswith(" 2.0") and waiting.endswith(" 2.0")
    assert results == [200] * 4


def test_tokens_per_chunk_and_per_stream_gap() -> None:
    env = {"STANDIN_TOKENS_PER_CHUNK": "4", "STANDIN_ITL_MS": "2", "STANDIN_ITL_PER_STREAM_MS": "8",
           "STANDIN_REASONING_TOKENS": "0"}  # fmt: skip
    server = Standin(["--model", "m"], env=env)
    server.wait_ready()
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 24, "ignore_eos": True,
                "stream": True}  # fmt: skip
        events = server.events("/v1/chat/completions", body)
        chunks = token_events(events)
        assert [len(d["content"].split()) for _t, d in chunks] == [4] * 6
        alone = statistics.mean(b[0] - a[0] for a, b in zip(chunks, chunks[1:], strict=False))
        pair: list[list[tuple[float, dict[str, Any]]]] = []
        threads = [threading.Thread(target=lambda: pair.append(token_events(server.stream("/v1/chat/completions",
                                                                                          body)[1])))
                   for _i in range(2)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together = statistics.mean(b[0] - a[0] for a, b in zip(pair[0], pair[0][1:], strict=False))
    finally:
        server.stop()
    assert 0.030 < alone < 0.055  # 4 tokens x (2 + 8 x 1 stream) ms = 40 ms
    assert 0.060 < together < 0.095  # 4 tokens x (2 + 8 x 2 streams) ms = 72 ms


# ---------------------------------------------------------------------------------------------------------------------
# Scripted timing and the truth log.
# ---------------------------------------------------------------------------------------------------------------------


def test_scripted_timing_and_truth_log(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    env = {"STANDIN_SCRIPT_TTFT_MS": "100", "STANDIN_SCRIPT_ITL_MS": "20", "STANDIN_TRUTH_LOG": str(truth)}
    server = Standin(SEED_FLAGS, env=env)
    server.wait_ready()
    body = chat(max_completion_tokens=20, ignore_eos=True, stream=True, stream_options={"include_usage": True})
    try:
        runs = [server.stream("/v1/chat/completions", body)[1] for _i in range(3)]
        parallel: list[list[Event]] = []
        threads = [threading.Thread(target=lambda: parallel.append(server.stream("/v1/chat/completions", body)[1]))
                   for _i in range(4)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    for i, events in enumerate(runs + parallel):
        # What a client sees: within a few ms at concurrency 1, looser with 4 client threads sharing the GIL (the
        # bounds also leave room for a busy CI machine; the truth log below is the exact record).
        slack = 0.004 if i < len(runs) else 0.008
        tokens = token_events(events)
        assert len(tokens) == 18  # 20 tokens, <think> and </think> swallowed by the parser
        ttft = tokens[0][0] - events[0][0]
        gaps = [b[0] - a[0] for a, b in zip(tokens, tokens[1:], strict=False)]
        assert 0.099 < ttft < 0.100 + 5 * slack, ttft
        assert abs(statistics.mean(gaps) - 0.020) < 0.001
        assert statistics.median(abs(g - 0.020) for g in gaps) < slack
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(records) == 7
    script = [0.100 + 0.020 * i for i in range(18)]
    for record in records:
        assert record["status"] == 200 and record["stream"] and record["scripted"]
        assert record["completion_tokens"] == 20 and len(record["chunk_t_rel"]) == 18
        assert record["chunk_tokens"] == [2] + [1] * 7 + [2] + [1] * 9  # swallowed <think>, </think> ride along
        errors = [t - want for t, want in zip(record["chunk_t_rel"], script, strict=True)]
        # Sub-millisecond on an idle machine; the bounds leave room for a loaded CI runner.
        assert min(errors) >= 0 and statistics.median(errors) < 0.003 and max(errors) < 0.015
        assert errors[-1] < 0.008  # absolute deadlines: lateness does not accumulate over the stream
        assert record["role_chunk_t_rel"] <= record["chunk_t_rel"][0]
        assert abs(record["chunk_t_wall"][0] - record["t_recv_wall"] - record["chunk_t_rel"][0]) < 1e-5
        assert record["t_first_byte_rel"] <= 0


# ---------------------------------------------------------------------------------------------------------------------
# Faults and broken-parser switches.
# ---------------------------------------------------------------------------------------------------------------------


def test_error_after_n_requests_legacy_shape(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    env = {"STANDIN_FAULT": "error_after:2", "STANDIN_ERROR_STYLE": "legacy", "STANDIN_TRUTH_LOG": str(truth)}
    server = Standin(["--model", "m"], env=env)
    server.wait_ready()
    try:
        statuses = [server.post("/v1/chat/completions", chat("m", max_tokens=2))[0] for _i in range(2)]
        assert server.request("GET", "/v1/models")[0] == 200
        status, error = server.post("/v1/chat/completions", chat("m"))
        assert server.request("GET", "/health")[0] == 200
    finally:
        server.stop()
    assert statuses == [200, 200] and status == 500
    assert error["object"] == "error" and error["type"] == "InternalServerError" and error["code"] == 500
    assert error["message"]
    assert [json.loads(line)["status"] for line in truth.read_text().splitlines()] == [200, 200, 500]


def test_bug_tool_markers_in_content() -> None:
    server = Standin(SEED_FLAGS, env={"STANDIN_BUG": "tool_markers_in_content"})
    server.wait_ready()
    try:
        reply = server.ok("/v1/chat/completions", chat(tools=[WEATHER_TOOL]))
    finally:
        server.stop()
    message = reply["choices"][0]["message"]
    assert "tool_calls" not in message and reply["choices"][0]["finish_reason"] == "stop"
    assert "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0" in message["content"]


def test_bug_truncated_args_and_reasoning_in_content() -> None:
    server = Standin(SEED_FLAGS, env={"STANDIN_BUG": "truncated_tool_args,reasoning_in_content",
                                      "STANDIN_REASONING_FIELD": "reasoning_content"})  # fmt: skip
    server.wait_ready()
    try:
        reply = server.ok("/v1/chat/completions", chat(tools=[WEATHER_TOOL]))
        events = server.events("/v1/chat/completions", chat(tools=[WEATHER_TOOL], stream=True))
        anthropic = server.post("/v1/messages", {"model": "kimi-k2.7-code", "max_tokens": 100, "tools": [
            {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}],
            "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    finally:
        server.stop()
    message = reply["choices"][0]["message"]
    assert message["content"].startswith("<think>") and message["reasoning_content"] is None
    arguments = message["tool_calls"][0]["function"]["arguments"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)
    streamed = "".join(d["tool_calls"][0]["function"].get("arguments", "")
                       for _t, d in token_events(events) if "tool_calls" in d)  # fmt: skip
    assert streamed == arguments
    assert anthropic[0] == 500 and anthropic[1]["error"]["type"] == "internal_error"


def test_b200_profile_single_stream() -> None:
    server = Standin(SEED_FLAGS, env={"STANDIN_PROFILE": "b200", "STANDIN_REASONING_TOKENS": "0"})
    server.wait_ready()
    try:
        prompt = " ".join(["the"] * 8192)
        body = chat(content=prompt, max_completion_tokens=40, ignore_eos=True, stream=True)
        events = server.events("/v1/chat/completions", body)
    finally:
        server.stop()
    tokens = token_events(events)
    ttft = tokens[0][0] - events[0][0]
    gap = statistics.mean(b[0] - a[0] for a, b in zip(tokens, tokens[1:], strict=False))
    assert 8199 / 22000 < ttft < 8199 / 22000 + 0.1, ttft  # prompt tokens / prefill rate (+ parsing 40 kB)
    assert abs(gap - 0.0121) < 0.0015, gap  # 11.8 ms + 0.3 ms x 1 stream


# ---------------------------------------------------------------------------------------------------------------------
# The b200 calibration (simulate.py drives the server's own Engine on a virtual clock).
# ---------------------------------------------------------------------------------------------------------------------


def test_simulation_follows_the_engine() -> None:
    sys.path.insert(0, str(HERE))
    import simulate

    env = {"STANDIN_REASONING_TOKENS": "0"}  # no swallowed <think> tokens: every gap is one token
    result = simulate.simulate("fast", num_prompts=16, input_len=64, output_len=32, concurrency=4, env=env)
    assert result["completed"] == 16 and result["total_output_tokens"] == 16 * 32
    assert abs(result["mean_itl_ms"] - 1.0) < 0.01  # fast profile: 1 ms per token, nothing else
    assert result["output_throughput"] == pytest.approx(16 * 32 / result["duration"])


@pytest.mark.skipif(not os.environ.get("KIMI_VLLM_SLOW_TESTS"), reason="15 s of simulation; KIMI_VLLM_SLOW_TESTS=1")
def test_b200_profile_reproduces_the_seed_table() -> None:
    sys.path.insert(0, str(HERE))
    import simulate

    result = simulate.simulate("b200", env={})
    seed = simulate.SEED_B200
    for key in ("output_throughput", "total_token_throughput", "mean_ttft_ms", "mean_itl_ms", "mean_tpot_ms",
                "p99_itl_ms"):  # fmt: skip
        assert result[key] == pytest.approx(seed[key], rel=0.05), key
    assert result["p99_ttft_ms"] == pytest.approx(seed["p99_ttft_ms"], rel=0.15)


def test_remaining_switches_stall_slowdown_abort(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    env = {
        "STANDIN_VERSION": "0.19.1", "STANDIN_STATS_INTERVAL": "0.2", "STANDIN_OUTPUT_TOKENS": "3",
        "STANDIN_REASONING_TOKENS": "0.5", "STANDIN_KV_CACHE_TOKENS": "1000", "STANDIN_ITL_MS": "5",
        "STANDIN_PREFILL_TOKENS_PER_S": "10000", "STANDIN_PREFILL_SLOWDOWN_PER_STREAM": "1",
        "STANDIN_PREFILL_STALL_MS": "100", "STANDIN_TRUTH_LOG": str(truth), "STANDIN_TYPO": "1",
    }  # fmt: skip
    server = Standin([*SEED_FLAGS, "--enable-request-id-headers"], env=env)
    server.wait_ready()
    try:
        assert json.loads(server.request("GET", "/version")[2])["version"] == "0.19.1+standin"
        assert server.request("GET", "/ping")[0] == 200 and server.request("POST", "/ping")[0] == 200
        assert json.loads(server.request("GET", "/load")[2]) == {"server_load": 0}
        status, headers, body = server.request("POST", "/v1/chat/completions", chat(max_tokens=50))
        reply = json.loads(body)
        assert status == 200
        assert len(headers["x-request-id"]) == 32
        # fraction 0.5 of the 3-token natural answer -> 2 thinking tokens, then 3 answer tokens (+2 markers)
        assert reply["usage"]["completion_tokens"] == 2 + 2 + 3
        hidden = server.ok("/v1/chat/completions", chat(max_tokens=50, include_reasoning=False))
        assert hidden["choices"][0]["message"]["reasoning"] is None

        # A decodes alone; B (a 1007-token prompt) arrives: B's prefill is slowed by A (x2), and when it ends
        # A's next token is stalled by 100 ms.
        long_a = chat(max_tokens=120, ignore_eos=True, stream=True,
                      stream_options={"include_usage": True, "continuous_usage_stats": True})  # fmt: skip
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(a=server.stream("/v1/chat/completions", long_a)[1]))
        thread.start()
        time.sleep(0.15)
        kv = [line for line in server.request("GET", "/metrics")[2].decode().splitlines()
              if line.startswith("vllm:kv_cache_usage_perc{")]  # fmt: skip
        server.post("/v1/chat/completions", chat(content=" ".join(["the"] * 1000), max_tokens=1))
        thread.join()
        a_events = box["a"]
        assert all("usage" in d for _t, _name, d in a_events[1:-1])  # continuous usage stats on every chunk
        # with the reasoning tokens so far (0.5 of 120), from 0 in the role chunk
        thought = [d["usage"]["completion_tokens_details"]["reasoning_tokens"] for _t, _name, d in a_events[1:-1]]
        assert thought[0] == 0 and thought == sorted(thought) and thought[-1] == 60
        gaps = [b[0] - a[0] for a, b in zip(token_events(a_events), token_events(a_events)[1:], strict=False)]
        assert 0.095 < max(gaps) < 0.140  # one stalled token: 100 ms + its gap
        assert float(kv[0].rsplit(" ", 1)[1]) > 0

        # A client that disconnects mid-stream is recorded as aborted.
        conn = server.conn()
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat(max_tokens=400, ignore_eos=True,
                                                                          stream=True)),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})  # fmt: skip
        resp = conn.getresponse()
        resp.readline()
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        time.sleep(0.3)
    finally:
        server.stop()
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    b_record = next(r for r in records if r["prompt_tokens"] == 1007)
    assert 0.19 < b_record["done_t_rel"] < 0.27  # 1007 tokens / 10000 per s x (1 + 1 x 1 decoding stream)
    assert records[-1]["status"] == 499 and 0 < records[-1]["completion_tokens"] < 400
    out = "\n".join(server.stdout)
    assert (
        "Engine 000: Avg prompt throughput:" in out and "Unknown STANDIN_* variables ignored: ['STANDIN_TYPO']" in out
    )
