# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Client-visible checks of a vLLM server: does it do what Claude Code, ncode and a benchmark need?

No Ansible imports: the ``vllm_verify`` module hands a :class:`~._openai.Client` to :func:`run_checks` and returns
what comes back. The judges (``judge_*``) are pure functions of what the server sent and are unit-tested directly.

Every failed check carries a hint naming the flag or version to look at. The failure modes are the ones the kimi_k2
parsers have shipped with (tool markers leaking into content, truncated tool arguments, reasoning mixed into the
answer; REFERENCE.md section 3) and the usual deployment mistakes (missing flags, wrong names, no key).
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.kimi.vllm.plugins.module_utils._openai import (
    ClientError,
    ConnectError,
    HTTPStatusError,
    RequestDeadlineError,
    RequestTimeoutError,
    snippet,
)

CHECKS = ("health", "models", "chat", "stream", "reasoning", "tools", "anthropic", "metrics", "auth", "smoke")
# smoke asks for an exact reply, which only a real model gives.
DEFAULT_CHECKS = tuple(name for name in CHECKS if name != "smoke")

# Thinking markers: Kimi K2's <think>...</think>, and the ◁think▷ form of Kimi's earlier thinking models.
THINK_MARKERS = ("<think>", "</think>", "\u25c1think\u25b7", "\u25c1/think\u25b7")
# Kimi K2's tool-call section and call markers all start so (<|tool_calls_section_begin|>, <|tool_call_begin|>,
# <|tool_call_argument_begin|>, <|tool_call_end|>, and the singular <|tool_call_section_begin|> variant).
TOOL_MARKER = "<|tool_call"
# Probes ask for this much so that an always-thinking model finishes its thinking and still answers.
PROBE_MAX_TOKENS = 2048
# Oldest vLLM with a native /v1/messages (Anthropic Messages API).
ANTHROPIC_MIN_VERSION = (0, 11, 1)
# A check's requests together (at most two generations, or four small answers for auth) get this many times
# `timeout`: a generation streamed takes about as long as the same one answered at once, which `timeout` bounds.
CHECK_DEADLINE_FACTOR = 3
# vLLM's gauges; the KV-cache one was vllm:gpu_cache_usage_perc before V1.
METRIC_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")
METRIC_KV_GAUGES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")

TOOL_FLAGS = "--enable-auto-tool-choice --tool-call-parser kimi_k2"
REASONING_FLAG = "--reasoning-parser kimi_k2"

HINTS = {
    "unreachable": (
        "Nothing answers at {url}: is the server running (`docker ps`, the container log)? While the model loads "
        "(minutes) the port refuses connections; check the port too."
    ),
    "timeout": (
        "No answer within {timeout:g} s: the engine may be hung or saturated (read the container log), or a first "
        "request is slow; raise `timeout` if the server is just busy."
    ),
    "deadline": (
        "The check was not done within {deadline:g} s (three times `timeout`) although the server kept sending: it "
        "is very slow or saturated (read the container log), or a proxy trickles the answer; raise `timeout` if the "
        "server is just busy."
    ),
    "protocol": (
        "The answer is not what vLLM sends: does url point at vLLM itself (not another service or a proxy page)? "
        "A proxy that buffers or cuts streams, or a server that crashed mid-answer, also does this."
    ),
    "server_error": (
        "The server failed the request: read the container log (`docker logs`) for the EngineCore error; an engine "
        "that died needs the container restarted."
    ),
    "need_key": "The server requires an API key (it runs with `--api-key`): pass api_key (vllm_server_api_key).",
    "bad_key": "The server refused api_key: it must equal the key the server was started with (`--api-key`).",
    "model_404": (
        "The model is not served under that name: set `model` to a name /v1/models lists, or add it to the server's "
        "`--served-model-name`."
    ),
    "not_found": "{path} is missing: url does not point at vLLM's OpenAI-compatible server, or the server is too old.",
    "health_503": (
        "/health says the engine is dead (503): read the container log for the EngineCore error and restart the "
        "container."
    ),
    "models_names": (
        "Start the server with `--served-model-name {names}` (one /v1/models card per name; responses and metrics "
        "use the first)."
    ),
    "models_len": "Start the server with `--max-model-len {length}` (Kimi-K2.7-Code's full context is 262144).",
    "models_len_missing": "The model cards carry no max_model_len: this server is not vLLM (or a very old one).",
    "chat_empty": (
        "The reply carried no answer text: check the chat template (`--chat-template`, `--trust-remote-code`) and "
        "the reasoning parser (`--reasoning-parser kimi_k2`)."
    ),
    "chat_budget": (
        "Kimi-K2.7-Code thinks before it answers, and this thinking had not ended when the probe's token budget ran "
        "out. Give the probe more (vllm_verify's `probe_max_tokens`). A model that never ends its thinking (random "
        "or damaged weights, a chat template that never lets it answer) looks the same: the reply with thinking "
        "off shows whether the server's answer path works."
    ),
    "chat_wrong_field": (
        "The answer arrived inside `reasoning`: the reasoning parser did not see the end of the thinking. Check "
        "`--reasoning-parser kimi_k2`, that the tokenizer has `</think>` as a single token (`--trust-remote-code`, "
        "`--tokenizer-revision`), and the chat template."
    ),
    "stream_usage": (
        "No final usage chunk: `stream_options.include_usage` is not supported by this server (old vLLM): upgrade "
        "the image. vllm_bench counts output tokens from that chunk."
    ),
    "stream_usage_400": (
        "The server rejected `stream_options.include_usage` (old vLLM, or not vLLM): upgrade the image. vllm_bench "
        "counts output tokens from the final usage chunk."
    ),
    "stream_done": (
        "The stream ended without `data: [DONE]`: a proxy cut it, or the server closed it early (container log)."
    ),
    "reasoning_parser": (
        "Start the server with `--reasoning-parser kimi_k2`: without it the thinking arrives in the answer."
    ),
    "reasoning_missing": (
        "No reasoning field: start the server with `--reasoning-parser kimi_k2` (Kimi-K2.7-Code always thinks). "
        "A model that does not think has nothing to separate: leave this check out for it."
    ),
    "reasoning_markers": (
        "The reasoning parser left thinking markers in the answer: a kimi_k2 reasoning-parser bug fixed in later "
        "vLLM; upgrade the image (and keep `--reasoning-parser kimi_k2`)."
    ),
    "tools_flags": (
        "Start the server with `--enable-auto-tool-choice --tool-call-parser kimi_k2` so that `tool_choice: auto` "
        "works."
    ),
    "tools_markers": (
        "Tool-call markers leaked into the content instead of `tool_calls`: check `--tool-call-parser kimi_k2` "
        "(other parsers do not know Kimi's markers); with kimi_k2 set it is a parser bug fixed in later vLLM: "
        "upgrade the image."
    ),
    "tools_in_reasoning": (
        "The tool call ended up inside the reasoning: a kimi_k2 parser bug fixed in later vLLM; upgrade the image."
    ),
    "tools_text": (
        "The model answered in text instead of calling the tool: check `--enable-auto-tool-choice "
        "--tool-call-parser kimi_k2` and the chat template (`--trust-remote-code`)."
    ),
    "tools_args": (
        "The tool arguments are not valid JSON (truncated): a known kimi_k2 tool-parser bug, seen with speculative "
        "decoding (`--speculative-config`), fixed in later vLLM: upgrade the image, or turn speculative decoding off."
    ),
    "tools_name": "The reply called a tool that was not offered: check the chat template (`--trust-remote-code`).",
    "anthropic_missing": (
        "No /v1/messages: vLLM serves the Anthropic Messages API (what Claude Code talks to) natively since "
        "0.11.1{version}: upgrade the image."
    ),
    "anthropic_shape": (
        "/v1/messages does not answer in the Anthropic Messages shape Claude Code expects: upgrade the image "
        "(vLLM >= 0.11.1)."
    ),
    "metrics_missing": (
        "No /metrics at {url}: another service answers on this port, or a proxy hides the path: check the port."
    ),
    "metrics_gauges": (
        "/metrics has none of vLLM's gauges: vLLM's metrics are off (`--disable-log-stats` turns them off; remove "
        "it), or another service answers on this port."
    ),
    "auth_open": (
        "The server answers /v1 without a key: `--api-key` was not passed to the server (nor VLLM_API_KEY set). "
        "Start it with `--api-key` (vllm_server_api_key)."
    ),
    "auth_wrong_key": (
        "The server accepts a wrong key: something in front of vLLM (a proxy) handles auth; check that `--api-key` "
        "reaches the server."
    ),
    "smoke": (
        "The model did not reply `ok` to `Reply exactly: ok` (the seed's ncode check): check the weights and their "
        "revision (`--revision`, `--code-revision`), `--trust-remote-code`, and the container log."
    ),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, for example Paris"}},
            "required": ["city"],
        },
    },
}
TOOL_PROMPT = "What is the weather in Paris right now? Use the get_weather tool."
CHAT_PROMPT = "Say hello in one short sentence."
SMOKE_PROMPT = "Reply exactly: ok"


class CheckFailed(Exception):  # noqa: N818 - a verdict, raised to leave a check early
    """A check's verdict: what was found (``detail``) and what to look at (``hint``)."""

    def __init__(self, detail: str, hint: str) -> None:
        """Keep the detail and the hint."""
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


class CheckSkipped(Exception):  # noqa: N818 - a verdict, raised to leave a check early
    """The check cannot run against this server or these options; it counts as passed."""


def parse_version(text):
    """``(major, minor, patch)`` from a version string such as ``0.11.1``, ``0.19.1rc1.dev12+g1234``; or None."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


# ---- judges: pure functions of what the server sent --------------------------------------------------------------


def judge_models(doc, expect_models=(), expect_max_model_len=None, model=None):
    """Judge a /v1/models answer; return ``(detail, ids, cards_by_id)``."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not all(isinstance(card, dict) and card.get("id") for card in data):
        raise CheckFailed(f"/v1/models has no list of model cards: {snippet(json.dumps(doc), 200)}", HINTS["protocol"])
    cards = {card["id"]: card for card in data}
    ids = list(cards)
    wanted = list(expect_models or [])
    if model and model not in wanted:
        wanted.append(model)
    missing = [name for name in wanted if name not in cards]
    if missing:
        names = " ".join(list(expect_models or []) or wanted)
        raise CheckFailed(
            f"not listed: {', '.join(missing)}; /v1/models lists: {', '.join(ids) or 'nothing'}",
            HINTS["models_names"].format(names=names),
        )
    if not ids:
        raise CheckFailed("/v1/models lists no model", HINTS["models_names"].format(names="NAME"))
    lengths = {name: cards[name].get("max_model_len") for name in (wanted or ids)}
    if expect_max_model_len is not None:
        if any(length is None for length in lengths.values()):
            raise CheckFailed("the model cards carry no max_model_len", HINTS["models_len_missing"])
        wrong = {name: length for name, length in lengths.items() if length != expect_max_model_len}
        if wrong:
            found = ", ".join(f"{name} {length}" for name, length in wrong.items())
            raise CheckFailed(
                f"max_model_len is {found}, expected {expect_max_model_len}",
                HINTS["models_len"].format(length=expect_max_model_len),
            )
    shown = sorted({length for length in lengths.values() if length is not None})
    context = f"; max_model_len {', '.join(str(x) for x in shown)}" if shown else ""
    return f"listed: {', '.join(ids)}{context}", ids, cards


def _message_of(doc, what):
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise CheckFailed(f"{what}: no choices in the reply: {snippet(json.dumps(doc), 200)}", HINTS["protocol"])
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise CheckFailed(f"{what}: the first choice has no message", HINTS["protocol"])
    return message, choices[0].get("finish_reason")


def reasoning_of(container):
    """``(text, field)`` of the reasoning in a message or delta: ``reasoning``, else the older
    ``reasoning_content``."""
    for field in ("reasoning", "reasoning_content"):
        value = container.get(field)
        if isinstance(value, str) and value:
            return value, field
    return "", None


def reply_from_completion(doc, what="plain"):
    """The parts of a non-streamed chat completion the judges look at."""
    message, finish = _message_of(doc, what)
    reasoning, field = reasoning_of(message)
    content = message.get("content")
    return {
        "content": content if isinstance(content, str) else "",
        "reasoning": reasoning,
        "reasoning_field": field,
        "tool_calls": message.get("tool_calls") or [],
        "finish_reason": finish,
        "usage": doc.get("usage"),
    }


def reply_from_stream(events, what="streamed"):
    """Fold the events of a streamed chat completion into the same parts, plus stream bookkeeping.

    ``events`` are ``(t, event_name, data_bytes)``. Non-JSON data and error events fail the check.
    """
    content, reasoning = [], []
    field = None
    calls = {}
    finish = None
    usage = None
    chunks = 0
    done_at = None
    after_done = 0
    for position, (_t, _name, data) in enumerate(events):
        if done_at is not None:
            after_done += 1
            continue
        if data.strip() == b"[DONE]":
            done_at = position
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            raise CheckFailed(
                f"{what}: event {position + 1} is not JSON: {snippet(data.decode('utf-8', 'replace'), 120)!r}",
                HINTS["protocol"],
            ) from None
        if not isinstance(doc, dict):
            raise CheckFailed(f"{what}: event {position + 1} is not a JSON object", HINTS["protocol"])
        if "error" in doc:
            err = doc["error"]
            text = err.get("message") if isinstance(err, dict) else err
            raise CheckFailed(f"{what}: the stream carried an error: {snippet(str(text), 200)}", HINTS["server_error"])
        if isinstance(doc.get("usage"), dict):
            usage = doc["usage"]
        for choice in doc.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            chunks += 1
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            text, name = reasoning_of(delta)
            if text:
                reasoning.append(text)
                field = field or name
            for piece in delta.get("tool_calls") or []:
                call = calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": []})
                call["id"] = call["id"] or piece.get("id") or ""
                function = piece.get("function") or {}
                call["name"] = call["name"] or function.get("name") or ""
                if isinstance(function.get("arguments"), str):
                    call["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    tool_calls = [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
        }
        for _index, call in sorted(calls.items())
    ]
    return {
        "content": "".join(content),
        "reasoning": "".join(reasoning),
        "reasoning_field": field,
        "tool_calls": tool_calls,
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
        "done": done_at is not None,
        "after_done": after_done,
    }


class StillThinking(CheckFailed):
    """No answer yet because the thinking used the whole budget (not because a parser misplaced the answer)."""


def judge_chat(reply, budget=PROBE_MAX_TOKENS):
    """A plain completion must carry answer text and a finish reason.

    With no answer text, tell apart: the answer sitting in ``reasoning`` after a literal end-of-thinking marker, or
    a model that stopped with everything in ``reasoning`` (the parser misplaced it); and a model still thinking
    when ``budget`` tokens ran out (:class:`StillThinking`).
    """
    if not reply["content"].strip():
        reasoning = reply["reasoning"]
        finish = reply["finish_reason"]
        if not reasoning:
            raise CheckFailed(f"no answer text (finish_reason {finish})", HINTS["chat_empty"])
        closed = [marker for marker in THINK_MARKERS[1::2] if marker in reasoning]
        if closed:
            after = reasoning.split(closed[0], 1)[1]
            raise CheckFailed(
                f"no answer text: `reasoning` holds the thinking, a literal {closed[0]} and then "
                f"{snippet(after, 40)!r} (finish_reason {finish})",
                HINTS["chat_wrong_field"],
            )
        if finish == "length":
            raise StillThinking(
                f"still thinking when the probe's budget of {budget} tokens ran out ({len(reasoning)} chars of "
                f"reasoning, no end of thinking yet)",
                HINTS["chat_budget"],
            )
        raise CheckFailed(
            f"no answer text: the model finished (finish_reason {finish}) with all {len(reasoning)} chars in "
            f"`reasoning`",
            HINTS["chat_wrong_field"],
        )
    if not reply["finish_reason"]:
        raise CheckFailed("the reply has no finish_reason", HINTS["protocol"])
    usage = reply.get("usage") or {}
    tokens = f", {usage['completion_tokens']} completion tokens" if "completion_tokens" in usage else ""
    return f"answered {snippet(reply['content'], 60)!r} (finish_reason {reply['finish_reason']}{tokens})"


def judge_stream(reply):
    """A streamed completion must deliver chunks, a finish reason, a final usage chunk and ``[DONE]``."""
    if not reply["chunks"]:
        raise CheckFailed("the stream delivered no chunks", HINTS["protocol"])
    if not (reply["content"] or reply["reasoning"] or reply["tool_calls"]):
        raise CheckFailed(f"{reply['chunks']} chunks but no text in them", HINTS["chat_empty"])
    if not reply["finish_reason"]:
        raise CheckFailed(f"{reply['chunks']} chunks, none with a finish_reason", HINTS["stream_done"])
    if not reply["done"]:
        raise CheckFailed(f"{reply['chunks']} chunks, no `data: [DONE]` at the end", HINTS["stream_done"])
    if reply["after_done"]:
        raise CheckFailed(f"{reply['after_done']} events after `data: [DONE]`", HINTS["protocol"])
    usage = reply["usage"]
    if not usage or "completion_tokens" not in usage:
        raise CheckFailed(f"{reply['chunks']} chunks and [DONE], but no final usage chunk", HINTS["stream_usage"])
    return (
        f"{reply['chunks']} chunks, finish_reason {reply['finish_reason']}, usage "
        f"{usage.get('prompt_tokens')} prompt + {usage['completion_tokens']} completion tokens, [DONE]"
    )


def judge_reasoning(reply, what):
    """Reasoning must arrive in its own field and the answer must carry no thinking markers."""
    markers = [marker for marker in THINK_MARKERS if marker in reply["content"]]
    if not reply["reasoning"]:
        if markers:
            raise CheckFailed(
                f"{what}: no reasoning field; the answer carries {', '.join(markers)}: "
                f"{snippet(reply['content'], 80)!r}",
                HINTS["reasoning_parser"],
            )
        raise CheckFailed(
            f"{what}: neither `reasoning` nor `reasoning_content` in the reply", HINTS["reasoning_missing"]
        )
    if markers:
        raise CheckFailed(
            f"{what}: reasoning arrived in `{reply['reasoning_field']}`, but the answer still carries "
            f"{', '.join(markers)}",
            HINTS["reasoning_markers"],
        )
    return f"{what}: {len(reply['reasoning'])} chars in `{reply['reasoning_field']}`, answer clean"


def judge_tool_reply(reply, what, tool_name="get_weather"):
    """The reply must call the offered tool with JSON-object arguments and no markers in content or reasoning."""
    in_content = TOOL_MARKER in reply["content"]
    in_reasoning = TOOL_MARKER in reply["reasoning"]
    calls = reply["tool_calls"]
    if not calls:
        found = f"no tool_calls (finish_reason {reply['finish_reason']})"
        if in_content:
            raise CheckFailed(
                f"{what}: {found}; the content carries tool-call markers: {snippet(reply['content'], 100)!r}",
                HINTS["tools_markers"],
            )
        if in_reasoning:
            raise CheckFailed(f"{what}: {found}; the tool call is inside the reasoning", HINTS["tools_in_reasoning"])
        raise CheckFailed(f"{what}: {found}; content {snippet(reply['content'], 100)!r}", HINTS["tools_text"])
    shown = []
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name")
        if name != tool_name:
            raise CheckFailed(f"{what}: called {name!r}, offered only {tool_name!r}", HINTS["tools_name"])
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise CheckFailed(
                f"{what}: {name} arguments are not a JSON object: {snippet(str(arguments), 100)!r}",
                HINTS["tools_args"],
            )
        if not call.get("id"):
            raise CheckFailed(f"{what}: the tool call has no id", HINTS["tools_markers"])
        shown.append(f"{name}({json.dumps(parsed)}) id {call['id']}")
    if in_content:
        raise CheckFailed(
            f"{what}: tool_calls present, but the content also carries tool-call markers", HINTS["tools_markers"]
        )
    note = "" if reply["finish_reason"] == "tool_calls" else f" (finish_reason {reply['finish_reason']})"
    return f"{what}: {'; '.join(shown)}{note}"


def judge_messages(doc):
    """A non-streamed /v1/messages reply: a ``message`` with a text block and a stop reason."""
    if not isinstance(doc, dict) or doc.get("type") != "message" or not isinstance(doc.get("content"), list):
        raise CheckFailed(f"plain: not an Anthropic message: {snippet(json.dumps(doc), 200)}", HINTS["anthropic_shape"])
    kinds = [block.get("type") for block in doc["content"] if isinstance(block, dict)]
    text = "".join(
        block.get("text") or "" for block in doc["content"] if isinstance(block, dict) and block.get("type") == "text"
    )
    if not text.strip():
        raise CheckFailed(f"plain: no text block (blocks: {', '.join(map(str, kinds)) or 'none'})", HINTS["chat_empty"])
    if not doc.get("stop_reason"):
        raise CheckFailed("plain: no stop_reason", HINTS["anthropic_shape"])
    return f"plain: blocks {', '.join(kinds)}, stop_reason {doc['stop_reason']}"


def judge_messages_stream(events):
    """A streamed /v1/messages reply: Anthropic's event sequence, each event named after its data's type."""
    names = []
    text = []
    stop_reason = None
    for position, (_t, name, data) in enumerate(events):
        try:
            doc = json.loads(data)
        except ValueError:
            raise CheckFailed(
                f"streamed: event {position + 1} is not JSON: {snippet(data.decode('utf-8', 'replace'), 120)!r}",
                HINTS["protocol"],
            ) from None
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "error" or (isinstance(doc, dict) and "error" in doc and kind is None):
            err = doc.get("error")
            message = err.get("message") if isinstance(err, dict) else err
            raise CheckFailed(f"streamed: error event: {snippet(str(message), 200)}", HINTS["server_error"])
        if name and name != kind:
            raise CheckFailed(
                f"streamed: event {position + 1} is named {name!r} but its data has type {kind!r}",
                HINTS["anthropic_shape"],
            )
        if kind == "ping":
            continue
        names.append(kind)
        delta = doc.get("delta") or {}
        if kind == "content_block_delta" and delta.get("type") == "text_delta":
            text.append(delta.get("text") or "")
        if kind == "message_delta":
            stop_reason = delta.get("stop_reason") or stop_reason
    if not names or names[0] != "message_start":
        raise CheckFailed(f"streamed: does not open with message_start ({names[:3]})", HINTS["anthropic_shape"])
    if names[-1] != "message_stop":
        raise CheckFailed(f"streamed: does not end with message_stop ({names[-3:]})", HINTS["stream_done"])
    if not "".join(text).strip():
        raise CheckFailed("streamed: no text_delta with text", HINTS["chat_empty"])
    if not stop_reason:
        raise CheckFailed("streamed: no message_delta with a stop_reason", HINTS["anthropic_shape"])
    return f"streamed: {len(names)} events, message_start ... message_stop, stop_reason {stop_reason}"


def judge_metrics(text):
    """/metrics must expose vLLM's scheduler and KV-cache gauges; return the detail."""
    values = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in METRIC_GAUGES or name in METRIC_KV_GAUGES:
            try:
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    kv = next((name for name in METRIC_KV_GAUGES if name in values), None)
    missing = [name for name in METRIC_GAUGES if name not in values] + ([] if kv else [METRIC_KV_GAUGES[0]])
    if missing:
        raise CheckFailed(f"/metrics lacks {', '.join(missing)}", HINTS["metrics_gauges"])
    shown = [*METRIC_GAUGES, kv]
    return ", ".join(f"{name} {values[name]:g}" for name in shown)


# ---- the probes ------------------------------------------------------------------------------------------------


class CheckBudget:
    """The client as one check sees it: its requests share one total deadline of ``seconds``, counted from now.

    A server that keeps sending a byte now and then never trips the client's idle timeout; this bounds the check.
    """

    def __init__(self, client, seconds):
        """Wrap ``client`` (a :class:`~._openai.Client`, or anything with its get/post/stream/url/redact)."""
        self._client = client
        self.seconds = seconds
        self._until = time.monotonic() + seconds

    def url(self, path):
        """The full URL of ``path``."""
        return self._client.url(path)

    def redact(self, text):
        """``text`` with the API key replaced."""
        return self._client.redact(text)

    def _left(self, method, path):
        left = self._until - time.monotonic()
        if left <= 0:
            url = self.url(path)
            msg = f"{method} {url}: not sent, the check's total deadline ({self.seconds:g} s) had passed"
            raise RequestDeadlineError(self.redact(msg), url)
        return left

    def get(self, path, **kwargs):
        """GET within what is left of the deadline."""
        return self._client.get(path, deadline=self._left("GET", path), **kwargs)

    def post(self, path, json_body, **kwargs):
        """POST within what is left of the deadline."""
        return self._client.post(path, json_body, deadline=self._left("POST", path), **kwargs)

    def stream(self, path, json_body=None, **kwargs):
        """A whole SSE stream within what is left of the deadline."""
        return self._client.stream(path, json_body, deadline=self._left("POST", path), **kwargs)


class Verifier:
    """Runs the selected checks against one server through a blocking :class:`~._openai.Client`."""

    def __init__(
        self,
        client,
        *,
        api_key_set=False,
        model=None,
        expect_models=(),
        expect_max_model_len=None,
        timeout=60.0,
        probe_max_tokens=PROBE_MAX_TOKENS,
    ):
        """Keep the client and what the operator expects."""
        self.client = client
        self.probe_max_tokens = probe_max_tokens
        self.api_key_set = api_key_set
        self.model = model
        self.expect_models = list(expect_models or [])
        self.expect_max_model_len = expect_max_model_len
        self.timeout = timeout
        self.check_seconds = CHECK_DEADLINE_FACTOR * timeout
        self.server = {
            "url": client.url(""),
            "version": None,
            "stand_in": False,
            "models": [],
            "model": model,
            "max_model_len": None,
        }
        self._unreachable = None

    # -- running -------------------------------------------------------------------------------------------------

    def run(self, checks):
        """Run ``checks`` (names from :data:`CHECKS`) in the canonical order; return the module's result keys."""
        selected = [name for name in CHECKS if name in set(checks)]
        self._discover()
        results = {}
        for name in selected:
            results[name] = self._run_one(name)
        failed = [name for name, result in results.items() if not result["ok"]]
        return {"ok": not failed, "failed": failed, "checks": results, "server": self.server}

    def _run_one(self, name):
        start = time.perf_counter()
        result = {"ok": False, "skipped": False, "latency_ms": 0.0, "detail": "", "hint": None}
        whole = self.client
        try:
            if self._unreachable is not None:
                raise CheckFailed(f"not run: {self._unreachable}", self._hint_for(self._unreachable))
            self.client = CheckBudget(whole, self.check_seconds)  # the check's requests share its deadline
            result["detail"] = getattr(self, "check_" + name)()
            result["ok"] = True
        except CheckSkipped as skip:
            result.update(ok=True, skipped=True, detail=f"skipped: {skip}")
        except CheckFailed as failed:
            result.update(detail=failed.detail, hint=failed.hint)
        except ClientError as exc:
            if isinstance(exc, ConnectError):
                self._unreachable = exc
            result.update(detail=str(exc), hint=self._hint_for(exc))
        finally:
            self.client = whole
        result["latency_ms"] = round((time.perf_counter() - start) * 1000.0, 1)
        result["detail"] = self.client.redact(result["detail"])
        if result["hint"]:
            result["hint"] = self.client.redact(result["hint"])
        return result

    def _hint_for(self, exc):
        """The hint for an error that no check handled itself."""
        if isinstance(exc, ConnectError):
            return HINTS["unreachable"].format(url=self.server["url"])
        if isinstance(exc, RequestDeadlineError):
            return HINTS["deadline"].format(deadline=self.check_seconds)
        if isinstance(exc, RequestTimeoutError):
            return HINTS["timeout"].format(timeout=self.timeout)
        if isinstance(exc, HTTPStatusError):
            if exc.status == 401:
                return HINTS["bad_key"] if self.api_key_set else HINTS["need_key"]
            if exc.status == 404:
                if "model" in exc.error_message().lower():
                    return HINTS["model_404"]
                path = exc.url[len(self.server["url"]) :] or "/"
                return HINTS["not_found"].format(path=path)
            if exc.status >= 500:
                return HINTS["server_error"]
        return HINTS["protocol"]

    def _discover(self):
        """Read /version and /v1/models once: the server's identity and the default model."""
        client = CheckBudget(self.client, self.check_seconds)
        try:
            doc = client.get("/version", auth=False).raise_for_status().json()
        except (ConnectError, RequestTimeoutError) as exc:
            # /version never touches the engine: when even it hangs, every other request would wait as long.
            self._unreachable = exc
            return
        except ClientError:
            doc = None
        if isinstance(doc, dict):
            self.server["version"] = str(doc.get("version")) if doc.get("version") is not None else None
            self.server["stand_in"] = doc.get("standin") is True
        try:
            _detail, ids, cards = judge_models(client.get("/v1/models").raise_for_status().json())
        except ConnectError as exc:
            self._unreachable = exc
            return
        except (ClientError, CheckFailed):
            return  # the models check, or the first request that needs a model, reports it
        self.server["models"] = ids
        if not self.model and ids:
            self.model = ids[0]
            self.server["model"] = ids[0]
        card = cards.get(self.model) or {}
        self.server["max_model_len"] = card.get("max_model_len")

    def _body(self, **fields):
        body = {"model": self.model} if self.model else {}
        body.update(fields)
        return body

    def _chat(self, prompt, **fields):
        return self._body(messages=[{"role": "user", "content": prompt}], max_tokens=self.probe_max_tokens, **fields)

    # -- checks: each returns its detail, or raises CheckFailed / CheckSkipped / ClientError ---------------------

    def check_health(self):
        response = self.client.get("/health", auth=False)
        if response.status == 200:
            return "/health answered 200"
        if response.status == 503:
            raise CheckFailed("/health answered 503", HINTS["health_503"])
        response.raise_for_status()
        raise CheckFailed(f"/health answered {response.status} {response.reason}", HINTS["protocol"])

    def check_models(self):
        doc = self.client.get("/v1/models").raise_for_status().json()
        detail, _ids, _cards = judge_models(doc, self.expect_models, self.expect_max_model_len, self.model)
        return detail

    def check_chat(self):
        doc = self.client.post("/v1/chat/completions", self._chat(CHAT_PROMPT)).raise_for_status().json()
        try:
            return judge_chat(reply_from_completion(doc), self.probe_max_tokens)
        except StillThinking as exc:
            # The same question with thinking off (Kimi's chat template reads `thinking`): an answer then says that
            # the server's answer path works and only the thinking is long; none says more is wrong.
            body = self._chat(CHAT_PROMPT, chat_template_kwargs={"thinking": False})
            try:
                off = reply_from_completion(self.client.post("/v1/chat/completions", body).raise_for_status().json())
            except (ClientError, CheckFailed) as second:
                raise CheckFailed(f"{exc.detail}; with thinking off: {second}", exc.hint) from None
            if off["content"].strip():
                raise CheckFailed(
                    f"{exc.detail}; with thinking off it answered {snippet(off['content'], 40)!r}", exc.hint
                ) from None
            raise CheckFailed(
                f"{exc.detail}; with thinking off it gave no answer either", HINTS["chat_empty"]
            ) from None

    def check_stream(self):
        body = self._chat(CHAT_PROMPT, stream=True, stream_options={"include_usage": True})
        try:
            stream = self.client.stream("/v1/chat/completions", body)
        except HTTPStatusError as exc:
            if exc.status == 400 and "stream_options" in exc.error_message():
                raise CheckFailed(str(exc), HINTS["stream_usage_400"]) from None
            raise
        detail = judge_stream(reply_from_stream(stream.events))
        first = _first_token_ms(stream)
        return detail + (f"; first chunk after {first:.0f} ms" if first is not None else "")

    def check_reasoning(self):
        doc = self.client.post("/v1/chat/completions", self._chat(CHAT_PROMPT)).raise_for_status().json()
        plain = judge_reasoning(reply_from_completion(doc), "plain")
        stream = self.client.stream("/v1/chat/completions", self._chat(CHAT_PROMPT, stream=True))
        streamed = judge_reasoning(reply_from_stream(stream.events), "streamed")
        return f"{plain}; {streamed}"

    def check_tools(self):
        fields = {"tools": [WEATHER_TOOL], "tool_choice": "auto"}
        try:
            doc = self.client.post("/v1/chat/completions", self._chat(TOOL_PROMPT, **fields)).raise_for_status().json()
        except HTTPStatusError as exc:
            text = exc.error_message().lower()
            if exc.status == 400 and ("tool" in text and ("auto" in text or "parser" in text)):
                raise CheckFailed(f"plain: {exc}", HINTS["tools_flags"]) from None
            raise
        plain = judge_tool_reply(reply_from_completion(doc), "plain")
        stream = self.client.stream("/v1/chat/completions", self._chat(TOOL_PROMPT, stream=True, **fields))
        streamed = judge_tool_reply(reply_from_stream(stream.events), "streamed")
        return f"{plain}; {streamed}"

    def check_anthropic(self):
        headers = {"anthropic-version": "2023-06-01"}
        body = self._body(max_tokens=self.probe_max_tokens, messages=[{"role": "user", "content": CHAT_PROMPT}])
        try:
            response = self.client.post("/v1/messages", body, headers=headers).raise_for_status()
        except HTTPStatusError as exc:
            if exc.status in (404, 405) and "model" not in exc.error_message().lower():
                version = self.server["version"]
                known = parse_version(version)
                said = f"; this server reports {version}" if version else ""
                if known and known >= ANTHROPIC_MIN_VERSION:
                    said += " (new enough: a proxy may hide the path)"
                raise CheckFailed(f"plain: {exc}", HINTS["anthropic_missing"].format(version=said)) from None
            raise
        plain = judge_messages(response.json())
        stream = self.client.stream("/v1/messages", dict(body, stream=True), headers=headers)
        streamed = judge_messages_stream(stream.events)
        return f"{plain}; {streamed}"

    def check_metrics(self):
        response = self.client.get("/metrics", auth=False)
        if response.status == 404:
            raise CheckFailed(f"GET {response.url}: 404", HINTS["metrics_missing"].format(url=self.server["url"]))
        return judge_metrics(response.raise_for_status().text())

    def check_auth(self):
        if not self.api_key_set:
            raise CheckSkipped("no api_key given, so there is no key to enforce")
        anonymous = self.client.get("/v1/models", auth=False)
        if anonymous.status < 400:
            raise CheckFailed(f"GET /v1/models without a key answered {anonymous.status}", HINTS["auth_open"])
        if anonymous.status not in (401, 403):
            anonymous.raise_for_status()
        wrong = self.client.get("/v1/models", auth=False, headers={"Authorization": "Bearer kimi-vllm-wrong-key"})
        if wrong.status < 400:
            raise CheckFailed(f"GET /v1/models with a wrong key answered {wrong.status}", HINTS["auth_wrong_key"])
        self.client.get("/v1/models").raise_for_status()
        detail = f"/v1/models refuses no key ({anonymous.status}) and a wrong key ({wrong.status}), accepts api_key"
        # Claude Code sends ANTHROPIC_API_KEY as x-api-key, which vLLM does not read.
        as_x_api_key = self.client.get("/v1/models", auth=False, headers={"x-api-key": "placeholder"})
        if as_x_api_key.status in (401, 403):
            detail += "; x-api-key is not accepted: Claude Code must send the key as ANTHROPIC_AUTH_TOKEN"
        return detail

    def check_smoke(self):
        doc = self.client.post("/v1/chat/completions", self._chat(SMOKE_PROMPT)).raise_for_status().json()
        reply = reply_from_completion(doc)
        answer = reply["content"].strip()
        if answer.rstrip(".!").strip().lower() != "ok":
            raise CheckFailed(
                f"asked `{SMOKE_PROMPT}`, got {snippet(answer, 80)!r} (finish_reason {reply['finish_reason']})",
                HINTS["smoke"],
            )
        return f"`{SMOKE_PROMPT}` -> {answer!r}"


def _first_token_ms(stream):
    """Milliseconds from the request to the first chunk that carries text (the opening role chunk does not)."""
    for t, _name, data in stream.events:
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        for choice in doc.get("choices") or [] if isinstance(doc, dict) else []:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            if delta.get("content") or reasoning_of(delta)[0] or delta.get("tool_calls"):
                return (t - stream.t_start) * 1000.0
    return None


def run_checks(client, checks, **options):
    """Run ``checks`` against ``client``'s server; ``options`` as :class:`Verifier` takes them."""
    return Verifier(client, **options).run(checks)


def summary_message(result):
    """One line for the task: which checks failed, each with its detail and hint."""
    url = result["server"]["url"]
    total = len(result["checks"])
    if result["ok"]:
        skipped = [name for name, check in result["checks"].items() if check["skipped"]]
        extra = f" ({', '.join(skipped)} skipped)" if skipped else ""
        return f"all {total} checks passed at {url}{extra}"
    parts = [
        f"{name}: {result['checks'][name]['detail']} -> {result['checks'][name]['hint']}" for name in result["failed"]
    ]
    return f"{len(result['failed'])} of {total} checks failed at {url} ({', '.join(result['failed'])}). " + " | ".join(
        parts
    )


def report_lines(result):
    """A table for people: one row per check, the hint under each failure."""
    server = result["server"]
    version = server["version"] or "unknown version"
    if server["stand_in"]:
        version += ", a stand-in TEST DOUBLE"
    title = f"vLLM at {server['url']} ({version}); model {server['model'] or '?'}, "
    title += f"max_model_len {server['max_model_len'] or '?'}"
    lines = [title, f"{'check':<10} {'result':<6} {'ms':>8}  detail"]
    for name, check in result["checks"].items():
        verdict = "skip" if check["skipped"] else "ok" if check["ok"] else "FAIL"
        lines.append(f"{name:<10} {verdict:<6} {check['latency_ms']:>8.1f}  {check['detail']}")
        if check["hint"]:
            lines.append(f"{'':<10} {'':<6} {'':>8}  fix: {check['hint']}")
    return lines
