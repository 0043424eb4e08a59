# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests for module_utils._verify: the judges on canned replies, and the runner on a fake client."""

from __future__ import annotations

import json

import pytest
from ansible_collections.kimi.vllm.plugins.module_utils._openai import (
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    Response,
    StreamResult,
)
from ansible_collections.kimi.vllm.plugins.module_utils._verify import (
    CHECKS,
    DEFAULT_CHECKS,
    HINTS,
    CheckFailed,
    StillThinking,
    judge_chat,
    judge_messages,
    judge_messages_stream,
    judge_metrics,
    judge_models,
    judge_reasoning,
    judge_stream,
    judge_tool_reply,
    parse_version,
    reply_from_completion,
    reply_from_stream,
    report_lines,
    run_checks,
    summary_message,
)

MARKERS = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>'
)


def events(*docs, names=None):
    """SSE events ``(t, name, data)`` from JSON documents (strings are sent as they are)."""
    out = []
    for index, doc in enumerate(docs):
        data = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
        out.append((float(index), names[index] if names else "", data))
    return out


def chunk(delta=None, finish=None, usage=None, choices=True):
    doc = {"object": "chat.completion.chunk", "choices": []}
    if choices:
        doc["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage:
        doc["usage"] = usage
    return doc


def completion(message, finish="stop"):
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": {"completion_tokens": 9}}


def failure(call, *args):
    with pytest.raises(CheckFailed) as caught:
        call(*args)
    return caught.value


def test_default_checks_leave_smoke_out():
    assert tuple(name for name in CHECKS if name != "smoke") == DEFAULT_CHECKS


@pytest.mark.parametrize(
    ("text", "version"),
    [("0.11.1", (0, 11, 1)), ("v0.19.1rc1.dev12+g1234", (0, 19, 1)), ("1.2", (1, 2, 0)), ("dev", None), (None, None)],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


# ---- models -------------------------------------------------------------------------------------------------------

MODELS = {
    "object": "list",
    "data": [
        {"id": "kimi-k2.7-code", "max_model_len": 262144},
        {"id": "my-kimi2.7-code", "max_model_len": 262144},
    ],
}


def test_models_pass():
    detail, ids, cards = judge_models(MODELS, ["my-kimi2.7-code"], 262144, "kimi-k2.7-code")
    assert detail == "listed: kimi-k2.7-code, my-kimi2.7-code; max_model_len 262144"
    assert ids == ["kimi-k2.7-code", "my-kimi2.7-code"]
    assert cards["kimi-k2.7-code"]["max_model_len"] == 262144


def test_models_missing_name_names_the_flag():
    failed = failure(judge_models, MODELS, ["kimi-k2.7-code", "other"])
    assert failed.detail == "not listed: other; /v1/models lists: kimi-k2.7-code, my-kimi2.7-code"
    assert failed.hint == HINTS["models_names"].format(names="kimi-k2.7-code other")


def test_models_model_option_must_be_listed():
    failed = failure(judge_models, MODELS, [], None, "nope")
    assert failed.detail.startswith("not listed: nope")
    assert "--served-model-name nope" in failed.hint


def test_models_context_length():
    failed = failure(judge_models, MODELS, ["kimi-k2.7-code"], 131072)
    assert failed.detail == "max_model_len is kimi-k2.7-code 262144, expected 131072"
    assert "--max-model-len 131072" in failed.hint
    no_length = {"data": [{"id": "m"}]}
    assert failure(judge_models, no_length, [], 4096).hint == HINTS["models_len_missing"]
    assert judge_models(no_length)[0] == "listed: m"


@pytest.mark.parametrize("doc", [{"data": []}, {"object": "list"}, [], {"data": [{"object": "model"}]}])
def test_models_bad_shapes(doc):
    assert failure(judge_models, doc).detail


# ---- chat and stream ----------------------------------------------------------------------------------------------


def test_chat_pass_and_empty():
    reply = reply_from_completion(completion({"role": "assistant", "content": "Hello!", "reasoning": "hm"}))
    assert judge_chat(reply) == "answered 'Hello!' (finish_reason stop, 9 completion tokens)"
    empty = reply_from_completion(completion({"content": None, "reasoning": None}, "stop"))
    failed = failure(judge_chat, empty)
    assert failed.detail == "no answer text (finish_reason stop)"
    assert failed.hint == HINTS["chat_empty"]


def test_chat_still_thinking_is_not_blamed_on_the_parser():
    thinking = reply_from_completion(completion({"content": None, "reasoning": "thinking..."}, "length"))
    failed = failure(judge_chat, thinking, 512)
    assert isinstance(failed, StillThinking)
    assert failed.detail == (
        "still thinking when the probe's budget of 512 tokens ran out (11 chars of reasoning, no end of thinking yet)"
    )
    assert failed.hint == HINTS["chat_budget"]


@pytest.mark.parametrize(
    ("message", "finish", "detail"),
    [
        (
            {"content": None, "reasoning": "Let me see.</think>Hello there!"},
            "stop",
            (
                "no answer text: `reasoning` holds the thinking, a literal </think> and then 'Hello there!' "
                "(finish_reason stop)"
            ),
        ),
        (
            {"content": "", "reasoning": "Let me see.</think>Hello there! And on and on"},
            "length",
            (
                "no answer text: `reasoning` holds the thinking, a literal </think> and then "
                "'Hello there! And on and on' (finish_reason length)"
            ),
        ),
        (
            {"content": None, "reasoning": "Hello there!"},
            "stop",
            "no answer text: the model finished (finish_reason stop) with all 12 chars in `reasoning`",
        ),
    ],
)
def test_chat_answer_in_the_wrong_field(message, finish, detail):
    failed = failure(judge_chat, reply_from_completion(completion(message, finish)))
    assert not isinstance(failed, StillThinking)
    assert (failed.detail, failed.hint) == (detail, HINTS["chat_wrong_field"])


def test_chat_bad_shapes():
    assert failure(reply_from_completion, {"choices": []}).hint == HINTS["protocol"]
    assert failure(reply_from_completion, {"choices": [{"index": 0}]}).hint == HINTS["protocol"]


GOOD_STREAM = events(
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning": "let me"}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}, "stop"),
    chunk(choices=False, usage={"prompt_tokens": 5, "completion_tokens": 4}),
    "[DONE]",
)


def test_stream_pass():
    reply = reply_from_stream(GOOD_STREAM)
    assert (reply["content"], reply["reasoning"], reply["reasoning_field"]) == ("Hello", "let me", "reasoning")
    assert judge_stream(reply) == "4 chunks, finish_reason stop, usage 5 prompt + 4 completion tokens, [DONE]"


def test_stream_without_usage_names_include_usage():
    reply = reply_from_stream(GOOD_STREAM[:4] + GOOD_STREAM[5:])
    failed = failure(judge_stream, reply)
    assert failed.detail == "4 chunks and [DONE], but no final usage chunk"
    assert failed.hint == HINTS["stream_usage"]


def test_stream_without_done():
    failed = failure(judge_stream, reply_from_stream(GOOD_STREAM[:5]))
    assert failed.hint == HINTS["stream_done"]


def test_stream_events_after_done():
    failed = failure(judge_stream, reply_from_stream([*GOOD_STREAM, *events(chunk({"content": "x"}))]))
    assert failed.detail == "1 events after `data: [DONE]`"


def test_stream_without_finish_reason():
    failed = failure(judge_stream, reply_from_stream(events(chunk({"content": "x"}), "[DONE]")))
    assert failed.detail == "1 chunks, none with a finish_reason"


def test_stream_non_json_and_error_events():
    failed = failure(reply_from_stream, events(chunk({"content": "x"}), "<html>oops"))
    assert failed.detail == "streamed: event 2 is not JSON: '<html>oops'"
    assert failed.hint == HINTS["protocol"]
    failed = failure(reply_from_stream, events({"error": {"message": "engine dead", "code": 500}}))
    assert failed.detail == "streamed: the stream carried an error: engine dead"
    assert failed.hint == HINTS["server_error"]
    assert failure(reply_from_stream, events("[1, 2]")).detail == "streamed: event 1 is not a JSON object"


# ---- reasoning ----------------------------------------------------------------------------------------------------


def test_reasoning_pass_with_either_field():
    reply = reply_from_completion(completion({"content": "Hi", "reasoning_content": "thinking"}))
    assert judge_reasoning(reply, "plain") == "plain: 8 chars in `reasoning_content`, answer clean"
    streamed = reply_from_stream(events(chunk({"reasoning_content": "a"}), chunk({"content": "b"}, "stop")))
    assert judge_reasoning(streamed, "streamed") == "streamed: 1 chars in `reasoning_content`, answer clean"


def test_reasoning_in_content_names_the_parser():
    reply = reply_from_completion(completion({"content": "<think>hmm</think> Hi"}))
    failed = failure(judge_reasoning, reply, "plain")
    assert failed.detail == "plain: no reasoning field; the answer carries <think>, </think>: '<think>hmm</think> Hi'"
    assert failed.hint == HINTS["reasoning_parser"]
    assert "--reasoning-parser kimi_k2" in failed.hint


def test_reasoning_missing_and_leaking():
    plain = reply_from_completion(completion({"content": "Hi"}))
    assert failure(judge_reasoning, plain, "plain").hint == HINTS["reasoning_missing"]
    leaking = reply_from_completion(completion({"content": "Hi </think>", "reasoning": "hmm"}))
    failed = failure(judge_reasoning, leaking, "plain")
    assert failed.hint == HINTS["reasoning_markers"]
    assert "upgrade the image" in failed.hint


# ---- tools --------------------------------------------------------------------------------------------------------

CALL = {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


def tool_reply(content=None, calls=(), reasoning=None, finish="tool_calls"):
    return reply_from_completion(
        completion({"content": content, "tool_calls": list(calls), "reasoning": reasoning}, finish)
    )


def test_tools_pass_plain_and_streamed():
    call = dict(CALL, function={"name": "get_weather", "arguments": '{"city": "Paris"}'})
    assert judge_tool_reply(tool_reply(calls=[call]), "plain") == (
        'plain: get_weather({"city": "Paris"}) id functions.get_weather:0'
    )
    streamed = reply_from_stream(
        events(
            chunk({"role": "assistant", "content": ""}),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
            chunk({}, "tool_calls"),
            "[DONE]",
        )
    )
    assert judge_tool_reply(streamed, "streamed") == 'streamed: get_weather({"city": "Paris"}) id c1'


def test_tools_markers_in_content():
    failed = failure(judge_tool_reply, tool_reply(content=MARKERS, finish="stop"), "plain")
    assert failed.detail.startswith("plain: no tool_calls (finish_reason stop); the content carries tool-call markers")
    assert failed.hint == HINTS["tools_markers"]
    both = failure(judge_tool_reply, tool_reply(content=MARKERS, calls=[CALL]), "plain")
    assert both.detail == "plain: tool_calls present, but the content also carries tool-call markers"


def test_tools_call_inside_reasoning():
    failed = failure(judge_tool_reply, tool_reply(reasoning="I will call " + MARKERS, finish="stop"), "plain")
    assert failed.hint == HINTS["tools_in_reasoning"]


def test_tools_text_answer():
    failed = failure(judge_tool_reply, tool_reply(content="It is sunny.", finish="stop"), "plain")
    assert failed.detail == "plain: no tool_calls (finish_reason stop); content 'It is sunny.'"
    assert "--enable-auto-tool-choice --tool-call-parser kimi_k2" in failed.hint


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1]", "", None])
def test_tools_bad_arguments(arguments):
    call = dict(CALL, function={"name": "get_weather", "arguments": arguments})
    failed = failure(judge_tool_reply, tool_reply(calls=[call]), "plain")
    assert failed.hint == HINTS["tools_args"]
    assert "are not a JSON object" in failed.detail


def test_tools_wrong_name_and_missing_id():
    wrong = dict(CALL, function={"name": "rm_rf", "arguments": "{}"})
    assert failure(judge_tool_reply, tool_reply(calls=[wrong]), "plain").hint == HINTS["tools_name"]
    assert "has no id" in failure(judge_tool_reply, tool_reply(calls=[dict(CALL, id="")]), "plain").detail


def test_tools_finish_reason_is_noted_not_failed():
    assert judge_tool_reply(tool_reply(calls=[CALL], finish="stop"), "plain").endswith("(finish_reason stop)")


# ---- anthropic ----------------------------------------------------------------------------------------------------

MESSAGE = {
    "type": "message",
    "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
}
MESSAGE_STREAM = [
    {"type": "message_start", "message": {}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
    {"type": "message_stop"},
]


def named(docs):
    return events(*docs, names=[doc["type"] for doc in docs])


def test_messages_pass():
    assert judge_messages(MESSAGE) == "plain: blocks thinking, text, stop_reason end_turn"
    assert judge_messages_stream(named(MESSAGE_STREAM)) == (
        "streamed: 6 events, message_start ... message_stop, stop_reason end_turn"
    )
    assert judge_messages_stream(events(*MESSAGE_STREAM))  # event names are optional


def test_messages_bad():
    assert failure(judge_messages, {"choices": []}).hint == HINTS["anthropic_shape"]
    assert failure(judge_messages, dict(MESSAGE, content=[])).hint == HINTS["chat_empty"]
    assert failure(judge_messages, dict(MESSAGE, stop_reason=None)).detail == "plain: no stop_reason"


def test_messages_stream_bad():
    docs = MESSAGE_STREAM
    mislabelled = events(*docs, names=["message_start", "content_block_start", "ping", "oops", "a", "b", "c"])
    assert "is named 'oops'" in failure(judge_messages_stream, mislabelled).detail
    assert failure(judge_messages_stream, named(docs[:-1])).hint == HINTS["stream_done"]
    assert "message_start" in failure(judge_messages_stream, named(docs[1:])).detail
    error = failure(judge_messages_stream, named([{"type": "error", "error": {"message": "overloaded"}}]))
    assert error.detail == "streamed: error event: overloaded"
    assert failure(judge_messages_stream, events("nope")).hint == HINTS["protocol"]


# ---- metrics ------------------------------------------------------------------------------------------------------

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="kimi-k2.7-code"} 3.0
vllm:num_requests_waiting{engine="0",model_name="kimi-k2.7-code"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="kimi-k2.7-code"} 0.25
vllm:prompt_tokens_total{engine="0",model_name="kimi-k2.7-code"} 396.0
"""


def test_metrics():
    assert judge_metrics(METRICS) == (
        "vllm:num_requests_running 3, vllm:num_requests_waiting 1, vllm:kv_cache_usage_perc 0.25"
    )
    older = METRICS.replace("kv_cache_usage_perc", "gpu_cache_usage_perc")
    assert "vllm:gpu_cache_usage_perc 0.25" in judge_metrics(older)
    failed = failure(judge_metrics, "python_info 1\n")
    assert failed.detail.startswith("/metrics lacks vllm:num_requests_running, vllm:num_requests_waiting")
    assert failed.hint == HINTS["metrics_gauges"]


# ---- the runner, on a fake client -----------------------------------------------------------------------------------

URL = "http://127.0.0.1:8000"
KEY = "sk-unit-verify-77"


def response(path, status=200, body=b"", method="GET"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(method, URL + path, status, "R", {}, raw, 0.0, 0.001, lambda text: text.replace(KEY, "***"))


class FakeClient:
    """Answers from a dict of path -> Response / exception / StreamResult, and records the calls."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def url(self, path):
        return URL + path

    def redact(self, text):
        return text.replace(KEY, "***")

    def _answer(self, key):
        self.calls.append(key)
        answer = self.answers.get(key) or self.answers.get(key[1])
        if answer is None:
            return response(key[1], 404, {"detail": "Not Found"})
        if isinstance(answer, Exception):
            raise answer
        return answer

    def get(self, path, **kwargs):
        return self._answer(("GET", path))

    def post(self, path, json_body, **kwargs):
        return self._answer(("POST", path))

    def stream(self, path, json_body=None, **kwargs):
        return self._answer(("STREAM", path))


def test_unreachable_server_stops_after_the_first_connection():
    refused = ConnectError(f"GET {URL}/version: cannot connect: Connection refused", URL + "/version")
    client = FakeClient({"/version": refused})
    result = run_checks(client, ["chat", "health", "smoke"], api_key_set=True)
    assert client.calls == [("GET", "/version")]
    assert list(result["checks"]) == ["health", "chat", "smoke"]
    assert result["failed"] == ["health", "chat", "smoke"]
    for check in result["checks"].values():
        assert check["detail"] == f"not run: {refused}"
        assert check["hint"] == HINTS["unreachable"].format(url=URL)


def test_auth_skipped_without_a_key_and_the_detail_is_redacted():
    leak = HTTPStatusError(f"GET {URL}/v1/models: HTTP 500 R: key {KEY}", URL + "/v1/models", 500, "R", b"", {})
    client = FakeClient({"/version": response("/version", body={"version": "0.19.1"}), "/v1/models": leak})
    result = run_checks(client, ["auth", "models"], api_key_set=False)
    assert result["checks"]["auth"]["skipped"] and result["checks"]["auth"]["ok"]
    assert result["checks"]["models"]["detail"] == f"GET {URL}/v1/models: HTTP 500 R: key ***"
    assert result["checks"]["models"]["hint"] == HINTS["server_error"]
    assert result["server"]["version"] == "0.19.1"
    assert KEY not in json.dumps(result)


def test_model_defaults_to_the_first_listed_name():
    client = FakeClient(
        {
            "/version": response("/version", body={"version": "0.0.0+standin", "standin": True}),
            "/v1/models": response("/v1/models", body=MODELS),
            ("POST", "/v1/chat/completions"): response(
                "/v1/chat/completions", body=completion({"content": "ok"}), method="POST"
            ),
        }
    )
    result = run_checks(client, ["smoke"])
    assert result["ok"]
    assert result["server"] == {
        "url": URL,
        "version": "0.0.0+standin",
        "stand_in": True,
        "models": ["kimi-k2.7-code", "my-kimi2.7-code"],
        "model": "kimi-k2.7-code",
        "max_model_len": 262144,
    }
    lines = report_lines(result)
    assert (
        lines[0] == f"vLLM at {URL} (0.0.0+standin, a stand-in TEST DOUBLE); model kimi-k2.7-code, max_model_len 262144"
    )
    assert lines[2].startswith("smoke      ok")
    assert summary_message(result) == f"all 1 checks passed at {URL}"


def test_smoke_wrong_answer():
    client = FakeClient(
        {
            ("POST", "/v1/chat/completions"): response(
                "/v1/chat/completions", body=completion({"content": "Sure! ok."}), method="POST"
            )
        }
    )
    result = run_checks(client, ["smoke"], model="m")
    assert result["checks"]["smoke"]["detail"] == "asked `Reply exactly: ok`, got 'Sure! ok.' (finish_reason stop)"
    assert result["checks"]["smoke"]["hint"] == HINTS["smoke"]
    assert summary_message(result).startswith(f"1 of 1 checks failed at {URL} (smoke). smoke: asked")
    assert report_lines(result)[-1].strip().startswith("fix: The model did not reply `ok`")


def test_stream_rejected_stream_options():
    rejected = HTTPStatusError(
        "POST .../v1/chat/completions: HTTP 400",
        URL + "/v1/chat/completions",
        400,
        "Bad Request",
        b'{"error": {"message": "Extra inputs are not permitted: stream_options"}}',
        {},
    )
    result = run_checks(FakeClient({("STREAM", "/v1/chat/completions"): rejected}), ["stream"], model="m")
    assert result["checks"]["stream"]["hint"] == HINTS["stream_usage_400"]


def test_anthropic_missing_on_a_new_enough_server_suspects_a_proxy():
    client = FakeClient({"/version": response("/version", body={"version": "0.19.1"})})
    result = run_checks(client, ["anthropic"], model="m")
    hint = result["checks"]["anthropic"]["hint"]
    assert hint == HINTS["anthropic_missing"].format(
        version="; this server reports 0.19.1 (new enough: a proxy may hide the path)"
    )


def test_stream_protocol_errors_become_details():
    cut = ProtocolError(f"POST {URL}/v1/chat/completions: stream cut after 10 bytes", URL)
    result = run_checks(FakeClient({("STREAM", "/v1/chat/completions"): cut}), ["stream"], model="m")
    assert result["checks"]["stream"]["detail"] == str(cut)
    assert result["checks"]["stream"]["hint"] == HINTS["protocol"]


def test_first_token_latency_in_the_stream_detail():
    stream = StreamResult(URL, -0.5, GOOD_STREAM, 1.0)
    result = run_checks(FakeClient({("STREAM", "/v1/chat/completions"): stream}), ["stream"], model="m")
    assert result["checks"]["stream"]["detail"].endswith("; first chunk after 1500 ms")
