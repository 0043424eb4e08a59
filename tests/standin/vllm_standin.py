"""Stand-in for ``vllm serve``. This is a TEST DOUBLE: it is not vLLM and runs no model.

It accepts the ``vllm serve`` command line (and rejects unknown flags the way vLLM's parser does), pretends to load
for a configurable time, then serves the parts of vLLM's HTTP API that the kimi.vllm collection relies on:
``/health``, ``/version``, ``/v1/models``, ``/metrics``, ``/tokenize``, ``/detokenize``, ``/v1/chat/completions``,
``/v1/completions`` and the Anthropic ``/v1/messages``. Replies are deterministic filler text produced on a simulated
clock (a prefill pipeline and a per-token decode gap that grows with the number of streams), so clients can be
tested for framing, parsing, timing and failure handling without a GPU.

Simulation knobs are environment variables (``STANDIN_*``), never flags: the collection passes only real vLLM flags.
README.md next to this file documents the flags, the switches, the toy tokenizer and the timing model.

Standard library only (asyncio); Python 3.11+.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http
import json
import math
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

STANDIN_VERSION = "0.0.0"
DEFAULT_MODEL = "Qwen/Qwen3-0.6B"

# --------------------------------------------------------------------------------------------------------------------
# Logging: vLLM's format is "LEVEL MM-DD HH:MM:SS [file.py:line] message", prefixed since vLLM 0.10.2 with the
# process ("(APIServer pid=1) "); uvicorn's own lines look like "INFO:     Application startup complete.".
# The file:line tags below name the vLLM source files that print the same messages.
# --------------------------------------------------------------------------------------------------------------------


class Log:
    """Writes vLLM- and uvicorn-style log lines to stdout, flushing every line."""

    def __init__(self, stream: Any = None) -> None:
        """Log to ``stream`` (stdout by default)."""
        self._stream = stream if stream is not None else sys.stdout
        self._pid = os.getpid()
        self.uvicorn_level = 20  # info

    def vllm(self, level: str, where: str, message: str, proc: str | None = "APIServer") -> None:
        """Write one vLLM log line; ``where`` is the ``file.py:line`` tag."""
        stamp = time.strftime("%m-%d %H:%M:%S")
        prefix = f"({proc} pid={self._pid}) " if proc else ""
        self._write(f"{prefix}{level} {stamp} [{where}] {message}")

    def uvicorn(self, level: str, message: str) -> None:
        """Write one uvicorn log line (subject to ``--uvicorn-log-level``)."""
        if _UVICORN_LEVELS.get(level.lower(), 20) < self.uvicorn_level:
            return
        self._write(f"(APIServer pid={self._pid}) {(level.upper() + ':').ljust(9)} {message}")

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


_UVICORN_LEVELS = {"trace": 5, "debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

# --------------------------------------------------------------------------------------------------------------------
# Command line: mirrors `vllm serve` (vllm/entrypoints/openai/cli_args.py, vllm/engine/arg_utils.py).
# --------------------------------------------------------------------------------------------------------------------

# Parser names registered by vLLM (vllm/tool_parsers, vllm/reasoning). vLLM refuses unknown names at startup.
# fmt: off
TOOL_CALL_PARSERS = (
    "deepseek_v3", "deepseek_v31", "deepseek_v32", "ernie45", "functiongemma", "gigachat3", "glm45", "glm47",
    "granite", "granite-20b-fc", "hermes", "hunyuan_a13b", "internlm", "jamba", "kimi_k2", "llama3_json",
    "llama4_json", "llama4_pythonic", "longcat", "minimax", "minimax_m2", "mistral", "olmo3", "openai",
    "phi4_mini_json", "pythonic", "qwen3_coder", "qwen3_xml", "seed_oss", "step3", "xlam",
)
REASONING_PARSERS = (
    "deepseek_r1", "deepseek_v3", "ernie45", "glm45", "granite", "hunyuan_a13b", "kimi_k2", "minimax_m2",
    "minimax_m2_append_think", "mistral", "olmo3", "openai_gptoss", "qwen3", "seed_oss", "step3",
)
# fmt: on
SECRET_ARGS = ("api_key", "hf_token")


def human_int(value: str) -> int:
    """Parse an integer the way vLLM's ``human_readable_int`` does: ``262144``, ``256k`` (x1000), ``256K`` (x1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", value)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid human-readable integer: {value!r}")
    number, suffix = float(match.group(1)), match.group(2)
    scale = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "K": 1024, "M": 1024**2, "G": 1024**3}[suffix]
    return int(number * scale)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``vllm serve`` argument parser: the flags the collection uses plus common ones, all real."""
    parser = argparse.ArgumentParser(
        prog="vllm serve",
        usage="vllm serve [model_tag] [options]",
        description="Stand-in (TEST DOUBLE) for the vLLM OpenAI-compatible API server.",
    )
    add = parser.add_argument
    add("model_tag", nargs="?", default=None, help="The model tag to serve (optional if specified in config)")
    add("--model", default=DEFAULT_MODEL, help="Name or path of the Hugging Face model to use.")
    add("--served-model-name", nargs="+", default=None, help="The model name(s) used in the API.")
    add("--tensor-parallel-size", "-tp", type=int, default=1, help="Number of tensor parallel groups.")
    add("--pipeline-parallel-size", "-pp", type=int, default=1, help="Number of pipeline parallel groups.")
    add("--data-parallel-size", "-dp", type=int, default=1, help="Number of data parallel groups.")
    add("--enable-expert-parallel", "-ep", action="store_true", help="Use expert parallelism for MoE layers.")
    add("--trust-remote-code", action="store_true", help="Trust remote code from Hugging Face.")
    add(
        "--mm-encoder-tp-mode",
        choices=("data", "weights"),
        default="weights",
        help="How to optimize the multi-modal encoder under tensor parallelism.",
    )
    add(
        "--tool-call-parser",
        default=None,
        metavar="{" + ",".join(TOOL_CALL_PARSERS) + "}",
        help="Tool call parser; required for --enable-auto-tool-choice.",
    )
    add("--tool-parser-plugin", default="", help="Tool parser plugin.")
    add(
        "--reasoning-parser",
        default=None,
        metavar="{" + ",".join(REASONING_PARSERS) + "}",
        help="Reasoning parser: splits the model's thinking into the `reasoning` field.",
    )
    add("--enable-auto-tool-choice", action="store_true", help="Enable auto tool choice.")
    add("--host", default=None, help="Host name.")
    add("--port", type=int, default=8000, help="Port number.")
    add("--api-key", nargs="+", default=None, help="Require one of these keys in `Authorization: Bearer`.")
    add("--revision", default=None, help="Model revision (branch, tag or commit).")
    add("--code-revision", default=None, help="Revision of the model code on the Hugging Face Hub.")
    add("--tokenizer-revision", default=None, help="Revision of the tokenizer.")
    add("--tokenizer", default=None, help="Name or path of the tokenizer.")
    add("--tokenizer-mode", default="auto", help="Tokenizer mode.")
    add("--max-model-len", type=human_int, default=262144, help="Model context length (e.g. 262144, 256K).")
    add("--gpu-memory-utilization", type=float, default=0.9, help="Fraction of GPU memory for the model executor.")
    add("--download-dir", default=None, help="Directory to download and load the weights.")
    add("--load-format", default="auto", help="Format of the model weights to load.")
    add("--dtype", default="auto", help="Data type for model weights and activations.")
    add("--kv-cache-dtype", default="auto", help="Data type for KV cache storage.")
    add("--quantization", "-q", default=None, help="Method used to quantize the weights.")
    add("--hf-token", nargs="?", const=True, default=None, help="Hugging Face token.")
    add("--hf-overrides", default=None, help="JSON overrides for the Hugging Face config.")
    add("--uvicorn-log-level", choices=tuple(_UVICORN_LEVELS), default="info", help="Log level for uvicorn.")
    add("--disable-uvicorn-access-log", action="store_true", help="Disable uvicorn access log.")
    add("--disable-log-requests", action="store_true", help="Deprecated: request logging is off by default.")
    add("--enable-log-requests", action="store_true", help="Log each request.")
    add("--disable-log-stats", action="store_true", help="Disable the periodic engine statistics log line.")
    add("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=None, help="Prefix caching.")
    add("--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=None, help="Chunked prefill.")
    add("--max-num-seqs", type=int, default=256, help="Maximum number of sequences per iteration.")
    add("--max-num-batched-tokens", type=human_int, default=None, help="Maximum tokens per iteration.")
    add("--seed", type=int, default=0, help="Random seed.")
    add("--enforce-eager", action="store_true", help="Always use eager-mode PyTorch.")
    add("--swap-space", type=float, default=4, help="CPU swap space per GPU (GiB).")
    add("--block-size", type=int, default=None, help="Token block size.")
    add("--chat-template", default=None, help="Chat template path or inline template.")
    add("--response-role", default="assistant", help="Role name returned when add_generation_prompt is true.")
    add("--limit-mm-per-prompt", default=None, help="Maximum multimodal items per prompt (JSON).")
    add("--speculative-config", default=None, help="Speculative decoding configuration (JSON).")
    add("--compilation-config", "-O", default=None, help="torch.compile configuration.")
    add("--distributed-executor-backend", default=None, help="Backend for distributed model workers.")
    add("--disable-custom-all-reduce", action="store_true", help="Disable the custom all-reduce kernel.")
    add("--async-scheduling", action="store_true", help="Use asynchronous scheduling.")
    add("--generation-config", default="auto", help="Folder path to the generation config.")
    add("--override-generation-config", default=None, help="Overrides for the generation config (JSON).")
    add("--enable-force-include-usage", action="store_true", help="Include usage on every streamed request.")
    add("--enable-request-id-headers", action="store_true", help="Add an X-Request-Id header to responses.")
    add("--max-log-len", type=int, default=None, help="Maximum prompt characters printed in the log.")
    add("--root-path", default=None, help="FastAPI root_path behind a path-based proxy.")
    add("--allowed-origins", default=None, help="Allowed CORS origins (JSON).")
    add("--headless", action="store_true", help="Run in headless mode.")
    add("--api-server-count", "-asc", type=int, default=None, help="How many API server processes to run.")
    add("--config", default=None, help="Read CLI options from a YAML config file.")
    return parser


def normalize_argv(argv: list[str]) -> list[str]:
    """Drop a leading ``serve`` and turn ``--foo_bar`` into ``--foo-bar`` like vLLM's FlexibleArgumentParser."""
    if argv and argv[0] == "serve":
        argv = argv[1:]
    out = []
    for arg in argv:
        if arg.startswith("--") and not arg.startswith("---"):
            key, sep, value = arg.partition("=")
            out.append(key.replace("_", "-") + sep + value)
        else:
            out.append(arg)
    return out


def non_default_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Return the arguments that differ from their defaults, secrets masked (vLLM logs this dict at startup)."""
    defaults = {action.dest: action.default for action in parser._actions}
    result = {}
    for key, value in vars(args).items():
        if key == "help" or defaults.get(key) == value:
            continue
        result[key] = "***" if key in SECRET_ARGS and value is not None else value
    return result


class StartupError(Exception):
    """A configuration error that makes the real server exit before loading (printed like a traceback)."""

    def __init__(self, exc_type: str, message: str) -> None:
        """Remember the exception type name and message vLLM would print."""
        super().__init__(message)
        self.exc_type = exc_type
        self.message = message


def validate_args(args: argparse.Namespace) -> None:
    """Run the checks vLLM runs before loading (validate_parsed_serve_args and parser lookups)."""
    if args.enable_auto_tool_choice and not args.tool_call_parser:
        raise StartupError("TypeError", "Error: --enable-auto-tool-choice requires --tool-call-parser")
    if args.tool_call_parser and args.tool_call_parser not in TOOL_CALL_PARSERS and not args.tool_parser_plugin:
        raise StartupError(
            "KeyError",
            f"'invalid tool call parser: {args.tool_call_parser} (chose from {{ {','.join(TOOL_CALL_PARSERS)} }})'",
        )
    if args.reasoning_parser and args.reasoning_parser not in REASONING_PARSERS:
        raise StartupError(
            "KeyError",
            f"'invalid reasoning parser: {args.reasoning_parser} (chose from {{ {','.join(REASONING_PARSERS)} }})'",
        )
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_num_seqs"):
        if getattr(args, name) < 1:
            raise StartupError("ValueError", f"{name} must be a positive integer, got {getattr(args, name)}")
    if not 0 < args.gpu_memory_utilization <= 1:
        raise StartupError("ValueError", "GPU memory utilization must be within (0, 1].")
    if args.max_model_len < 1:
        raise StartupError("ValueError", f"max_model_len must be positive, got {args.max_model_len}")
    if "kimi" in args.model.lower() and not args.trust_remote_code:
        raise StartupError(
            "ValueError",
            f"The repository {args.model} contains custom code which must be executed to correctly load the model. "
            f"You can inspect the repository content at https://hf.co/{args.model} .\n"
            "Please pass the argument `trust_remote_code=True` to allow custom code to be run.",
        )


# --------------------------------------------------------------------------------------------------------------------
# Simulation settings (environment variables).
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Profile:
    """Timing constants of one simulated machine; README.md explains the model they feed."""

    name: str
    prefill_tokens_per_s: float  # prompt tokens per second through the single, shared prefill pipeline
    prefill_slowdown_per_stream: float  # prefill time grows by this fraction per stream decoding at the time
    itl_ms: float  # base gap between two tokens of one stream
    itl_per_stream_ms: float  # added to the gap per stream decoding at the time
    prefill_stall_ms: float  # each finished prefill delays every decoding stream's next token by this much
    kv_cache_tokens: int  # capacity reported in the log and used for vllm:kv_cache_usage_perc


PROFILES = {
    "fast": Profile("fast", 5_000_000.0, 0.0, 1.0, 0.0, 0.0, 1_048_576),
    # Fitted to the seed's HGX B200 table (8192 in / 2048 out, 32 concurrent, 512 prompts) with simulate.py.
    "b200": Profile("b200", 22_000.0, 0.1, 11.8, 0.3, 345.0, 1_309_440),
}

FAULTS = ("crash_on_load", "hang_on_load", "error_after")
BUGS = ("tool_markers_in_content", "truncated_tool_args", "reasoning_in_content")
# fmt: off
KNOWN_ENV = (
    "STANDIN_LOAD_SECONDS", "STANDIN_PROFILE", "STANDIN_PREFILL_TOKENS_PER_S", "STANDIN_PREFILL_SLOWDOWN_PER_STREAM",
    "STANDIN_ITL_MS", "STANDIN_ITL_PER_STREAM_MS", "STANDIN_PREFILL_STALL_MS", "STANDIN_KV_CACHE_TOKENS",
    "STANDIN_TOKENS_PER_CHUNK", "STANDIN_SCRIPT_TTFT_MS", "STANDIN_SCRIPT_ITL_MS", "STANDIN_TRUTH_LOG",
    "STANDIN_FAULT", "STANDIN_BUG", "STANDIN_REASONING_TOKENS", "STANDIN_REASONING_FIELD", "STANDIN_OUTPUT_TOKENS",
    "STANDIN_ERROR_STYLE", "STANDIN_ACCEPT_X_API_KEY", "STANDIN_VERSION", "STANDIN_STATS_INTERVAL",
)
# fmt: on


@dataclasses.dataclass
class Settings:
    """Everything the STANDIN_* environment variables control."""

    load_seconds: float = 5.0
    profile: Profile = PROFILES["fast"]
    tokens_per_chunk: int = 1
    script_ttft_s: float | None = None
    script_itl_s: float | None = None
    truth_log: str | None = None
    crash_on_load: bool = False
    hang_on_load: bool = False
    error_after: int | None = None
    bugs: frozenset[str] = frozenset()
    reasoning_tokens: int = 8
    reasoning_fraction: float | None = None
    reasoning_field: str = "reasoning"
    output_tokens: int = 16
    error_style: str = "openai"
    accept_x_api_key: bool = False
    version: str = STANDIN_VERSION + "+standin"
    stats_interval_s: float = 10.0
    unknown_env: tuple[str, ...] = ()

    @property
    def scripted(self) -> bool:
        """Whether token times follow the fixed script instead of the load model."""
        return self.script_ttft_s is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate the STANDIN_* variables; raise ValueError naming the bad variable."""
        s = cls()
        s.load_seconds = _env_float(env, "STANDIN_LOAD_SECONDS", 5.0, minimum=0.0)
        name = env.get("STANDIN_PROFILE", "fast")
        if name not in PROFILES:
            raise ValueError(f"STANDIN_PROFILE: unknown profile {name!r} (choose from {', '.join(PROFILES)})")
        base = PROFILES[name]
        s.profile = dataclasses.replace(
            base,
            prefill_tokens_per_s=_env_float(env, "STANDIN_PREFILL_TOKENS_PER_S", base.prefill_tokens_per_s, 1e-9),
            prefill_slowdown_per_stream=_env_float(
                env, "STANDIN_PREFILL_SLOWDOWN_PER_STREAM", base.prefill_slowdown_per_stream, 0.0
            ),
            itl_ms=_env_float(env, "STANDIN_ITL_MS", base.itl_ms, 0.0),
            itl_per_stream_ms=_env_float(env, "STANDIN_ITL_PER_STREAM_MS", base.itl_per_stream_ms, 0.0),
            prefill_stall_ms=_env_float(env, "STANDIN_PREFILL_STALL_MS", base.prefill_stall_ms, 0.0),
            kv_cache_tokens=int(_env_float(env, "STANDIN_KV_CACHE_TOKENS", base.kv_cache_tokens, 1.0)),
        )
        s.tokens_per_chunk = int(_env_float(env, "STANDIN_TOKENS_PER_CHUNK", 1, 1.0))
        ttft, itl = env.get("STANDIN_SCRIPT_TTFT_MS"), env.get("STANDIN_SCRIPT_ITL_MS")
        if (ttft is None) != (itl is None):
            raise ValueError("STANDIN_SCRIPT_TTFT_MS and STANDIN_SCRIPT_ITL_MS must be set together")
        if ttft is not None:
            s.script_ttft_s = _env_float(env, "STANDIN_SCRIPT_TTFT_MS", 0.0, 0.0) / 1000.0
            s.script_itl_s = _env_float(env, "STANDIN_SCRIPT_ITL_MS", 0.0, 0.0) / 1000.0
        s.truth_log = env.get("STANDIN_TRUTH_LOG") or None
        for item in _env_list(env, "STANDIN_FAULT"):
            fault, _sep, arg = item.partition(":")
            if fault == "crash_on_load":
                s.crash_on_load = True
            elif fault == "hang_on_load":
                s.hang_on_load = True
            elif fault == "error_after" and arg.isdigit():
                s.error_after = int(arg)
            else:
                raise ValueError(
                    f"STANDIN_FAULT: unknown fault {item!r} (choose from crash_on_load, hang_on_load, error_after:N)"
                )
        bugs = _env_list(env, "STANDIN_BUG")
        for bug in bugs:
            if bug not in BUGS:
                raise ValueError(f"STANDIN_BUG: unknown bug {bug!r} (choose from {', '.join(BUGS)})")
        s.bugs = frozenset(bugs)
        reasoning = env.get("STANDIN_REASONING_TOKENS", "8").strip()
        try:
            if "." in reasoning:
                s.reasoning_fraction = float(reasoning)
                if not 0.0 <= s.reasoning_fraction <= 1.0:
                    raise ValueError
            else:
                s.reasoning_tokens = int(reasoning)
                if s.reasoning_tokens < 0:
                    raise ValueError
        except ValueError:
            raise ValueError(
                f"STANDIN_REASONING_TOKENS: expected a count (8) or a fraction (0.25), got {reasoning!r}"
            ) from None
        s.reasoning_field = env.get("STANDIN_REASONING_FIELD", "reasoning")
        if s.reasoning_field not in ("reasoning", "reasoning_content"):
            raise ValueError("STANDIN_REASONING_FIELD: expected reasoning or reasoning_content")
        s.output_tokens = int(_env_float(env, "STANDIN_OUTPUT_TOKENS", 16, 1.0))
        s.error_style = env.get("STANDIN_ERROR_STYLE", "openai")
        if s.error_style not in ("openai", "legacy"):
            raise ValueError("STANDIN_ERROR_STYLE: expected openai or legacy")
        s.accept_x_api_key = env.get("STANDIN_ACCEPT_X_API_KEY", "0").lower() in ("1", "true", "yes")
        version = env.get("STANDIN_VERSION", STANDIN_VERSION)
        s.version = version if "standin" in version else version + "+standin"
        s.stats_interval_s = _env_float(env, "STANDIN_STATS_INTERVAL", 10.0, 0.1)
        s.unknown_env = tuple(sorted(k for k in env if k.startswith("STANDIN_") and k not in KNOWN_ENV))
        return s


def _env_float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}: expected a number >= {minimum:g}, got {raw!r}")
    return value


def _env_list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


# --------------------------------------------------------------------------------------------------------------------
# Toy tokenizer. Deterministic and reversible: a fixed word vocabulary costs one token per word (with or without one
# leading space), special tokens one each, anything else one token per UTF-8 byte. README.md has the details.
# --------------------------------------------------------------------------------------------------------------------

# fmt: off
ANSWER_WORDS = (
    "the", "code", "reads", "the", "file", "and", "returns", "a", "list", "of", "tokens", "so", "the", "test", "can",
    "check", "each", "value", "in", "order", "while", "the", "server", "keeps", "a", "queue", "of", "requests", "for",
    "every", "stream", "then", "writes", "one", "chunk", "per", "step", "until", "the", "batch", "is", "done", "with",
    "no", "error", "and", "the", "cache", "stays", "warm", "for", "the", "next", "call", "on", "this", "node",
)
THINK_WORDS = (
    "let", "me", "think", "about", "what", "the", "user", "wants", "here", "first", "I", "should", "check", "the",
    "request", "then", "plan", "a", "short", "answer", "maybe", "consider", "edge", "cases", "and", "verify", "each",
    "step", "before", "I", "reply",
)
# fmt: on
TEMPLATE_WORDS = ("system", "user", "assistant", "tool", "tool_declare")
VOCAB = tuple(dict.fromkeys(ANSWER_WORDS + THINK_WORDS + TEMPLATE_WORDS))
_VOCAB_INDEX = {word: i for i, word in enumerate(VOCAB)}
WORD_ID_BASE = 1000  # id = 1000 + 2*i for " word", 1001 + 2*i for "word"
SPECIAL_TOKENS = {
    text: 200000 + i
    for i, text in enumerate(
        (
            "<|im_end|>",
            "<|im_user|>",
            "<|im_assistant|>",
            "<|im_system|>",
            "<|im_middle|>",
            "<think>",
            "</think>",
            "<|tool_calls_section_begin|>",
            "<|tool_calls_section_end|>",
            "<|tool_call_begin|>",
            "<|tool_call_argument_begin|>",
            "<|tool_call_end|>",
            "<|media_pad|>",
        )
    )
}
_SPECIAL_BY_ID = {v: k for k, v in SPECIAL_TOKENS.items()}
_PIECE_RE = re.compile(
    "(" + "|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True)) + r")|( ?[^\s<]+)|(.)",
    re.DOTALL,
)


def encode(text: str) -> list[int]:
    """Tokenize ``text`` with the toy tokenizer."""
    ids: list[int] = []
    for match in _PIECE_RE.finditer(text):
        special, word, other = match.groups()
        if special:
            ids.append(SPECIAL_TOKENS[special])
            continue
        if word:
            bare = word[1:] if word[0] == " " else word
            index = _VOCAB_INDEX.get(bare)
            if index is not None:
                ids.append(WORD_ID_BASE + 2 * index + (0 if word[0] == " " else 1))
                continue
            ids.extend(word.encode("utf-8"))
            continue
        ids.extend(other.encode("utf-8"))
    return ids


def decode(ids: Iterable[int]) -> str:
    """Turn toy token ids back into text; an id outside the vocabulary decodes to nothing (as a Hugging Face tokenizer
    does); raise ValueError on a negative id or one that is not an integer."""
    out: list[str] = []
    pending = bytearray()
    for token in ids:
        if not isinstance(token, int) or isinstance(token, bool) or token < 0:
            raise ValueError(f"token ids must be non-negative integers, got {token!r}")
        if 0 <= token < 256:
            pending.append(token)
            continue
        if token in _SPECIAL_BY_ID:
            piece = _SPECIAL_BY_ID[token]
        elif WORD_ID_BASE <= token < WORD_ID_BASE + 2 * len(VOCAB):
            index, bare = divmod(token - WORD_ID_BASE, 2)
            piece = VOCAB[index] if bare else " " + VOCAB[index]
        else:
            continue  # outside the vocabulary: nothing
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
        out.append(piece)
    if pending:
        out.append(pending.decode("utf-8", errors="replace"))
    return "".join(out)


def _content_text(content: Any) -> str:
    """Flatten OpenAI or Anthropic message content (string or list of parts/blocks) into template text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, separators=(",", ":"))
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text"):
            parts.append(str(part.get("text", "")))
        elif kind in ("image_url", "image", "input_image", "video_url", "audio_url", "input_audio"):
            parts.append("<|media_pad|>")
        elif kind == "thinking":
            parts.append("<think>" + str(part.get("thinking", "")) + "</think>")
        elif kind == "tool_use":
            parts.append(_tool_call_text(str(part.get("name", "")), part.get("input", {}), str(part.get("id", ""))))
        elif kind == "tool_result":
            parts.append(_content_text(part.get("content")))
    return "".join(parts)


def _tool_call_text(name: str, arguments: Any, call_id: str) -> str:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
    return (
        f"<|tool_calls_section_begin|><|tool_call_begin|>{call_id or 'functions.' + name + ':0'}"
        f"<|tool_call_argument_begin|>{args}<|tool_call_end|><|tool_calls_section_end|>"
    )


def render_chat(messages: list[dict[str, Any]], tools: list[Any] | None, add_generation_prompt: bool = True) -> str:
    """Render messages with the toy chat template (Kimi-like markers, four template tokens per message)."""
    parts = []
    if tools:
        parts.append(f"<|im_system|>tool_declare<|im_middle|>{json.dumps(tools, separators=(',', ':'))}<|im_end|>")
    for message in messages:
        role = str(message.get("role", "user"))
        tag = {"user": "<|im_user|>", "assistant": "<|im_assistant|>"}.get(role, "<|im_system|>")
        body = _content_text(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            body += _tool_call_text(str(function.get("name", "")), function.get("arguments", ""), call.get("id", ""))
        parts.append(f"{tag}{role}<|im_middle|>{body}<|im_end|>")
    if add_generation_prompt:
        parts.append("<|im_assistant|>assistant<|im_middle|>")
    return "".join(parts)


def anthropic_to_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn an Anthropic request's ``system`` and ``messages`` into chat messages for the template."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _content_text(system)})
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            messages.append({"role": message.get("role", "user"), "content": _content_text(message.get("content"))})
    return messages


# --------------------------------------------------------------------------------------------------------------------
# Output planning: the token sequence one request produces, already split the way vLLM's parsers would split it.
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tok:
    """One generated token as the client sees it after parsing."""

    # "reasoning" | "content" | "hidden" (consumed by a parser) | "tool_head" | "tool_args" | "eos" (the end of a
    # reply that stops by itself: it makes vLLM's last chunk, with an empty delta; not counted in the usage here)
    kind: str
    text: str = ""
    tool_index: int = 0
    tool_id: str = ""
    tool_name: str = ""


@dataclasses.dataclass
class Plan:
    """What a request will produce: its tokens, why it stops, and the tool calls the parser reports."""

    tokens: list[Tok]
    finish_reason: str
    tool_calls: list[dict[str, str]]


@dataclasses.dataclass
class PlanRequest:
    """The inputs that decide a request's output."""

    max_tokens: int
    ignore_eos: bool
    reasoning_parser: bool
    tool: dict[str, Any] | None  # {"name", "parameters"} when the reply is a tool call
    tool_call_id: str
    exact_answer: str | None
    seed: int
    with_reasoning: bool = True


def filler(words: tuple[str, ...] | list[str], count: int, offset: int, first: bool) -> list[str]:
    """Return ``count`` deterministic filler words, each with a leading space unless it opens the text."""
    out = []
    for i in range(count):
        word = words[(offset + i) % len(words)]
        out.append(word if first and i == 0 else " " + word)
    return out


def example_value(schema: Any, name: str) -> Any:
    """Build a value that satisfies a JSON-schema fragment (enough for required tool parameters)."""
    if not isinstance(schema, dict):
        return f"example-{name}"
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], name)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        return [example_value(schema.get("items", {}), name)] if schema.get("items") else []
    if kind == "object":
        return example_arguments(schema)
    return f"example-{name}"


def example_arguments(schema: Any) -> dict[str, Any]:
    """Build tool-call arguments holding every required parameter of ``schema``."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: example_value(properties.get(name, {}), name) for name in required if isinstance(name, str)}


_TOOL_CLOSERS = ("<|tool_call_end|>", "<|tool_calls_section_end|>")


def plan_output(req: PlanRequest, settings: Settings) -> Plan:
    """Decide the tokens of one reply: thinking, then an answer or one tool call, cut at ``max_tokens``."""
    budget = req.max_tokens
    tokens: list[Tok] = []
    reasoning_as_field = req.reasoning_parser and "reasoning_in_content" not in settings.bugs
    if settings.reasoning_fraction is not None:
        thinking = round(settings.reasoning_fraction * (budget if req.ignore_eos else settings.output_tokens))
    else:
        thinking = settings.reasoning_tokens
    if not req.with_reasoning:
        thinking = 0
    if thinking > 0:
        words = filler(THINK_WORDS, thinking, req.seed, first=True)
        if reasoning_as_field:
            tokens.append(Tok("hidden", "<think>"))
            tokens.extend(Tok("reasoning", w) for w in words)
            tokens.append(Tok("hidden", "</think>"))
        else:
            tokens.append(Tok("content", "<think>"))
            tokens.extend(Tok("content", w) for w in words)
            tokens.append(Tok("content", "</think>"))
    tool_calls: list[dict[str, str]] = []
    finish = "stop"
    if req.tool is not None:
        name = str(req.tool.get("name", ""))
        arguments = json.dumps(example_arguments(req.tool.get("parameters")), ensure_ascii=False)
        if "truncated_tool_args" in settings.bugs:
            arguments = arguments[: max(1, len(arguments) * 3 // 5)]
        pieces = [arguments[i : i + 5] for i in range(0, len(arguments), 5)] or [""]
        if "tool_markers_in_content" in settings.bugs:
            raw = [
                "<|tool_calls_section_begin|>",
                "<|tool_call_begin|>",
                req.tool_call_id,
                "<|tool_call_argument_begin|>",
                *pieces,
                "<|tool_call_end|>",
                "<|tool_calls_section_end|>",
            ]
            tokens.extend(Tok("content", r) for r in raw)
        else:
            tokens.append(Tok("hidden", "<|tool_calls_section_begin|>"))
            tokens.append(Tok("hidden", "<|tool_call_begin|>"))
            tokens.append(Tok("tool_head", "", 0, req.tool_call_id, name))
            tokens.append(Tok("hidden", "<|tool_call_argument_begin|>"))
            tokens.extend(Tok("tool_args", p, 0, req.tool_call_id, name) for p in pieces)
            tokens.append(Tok("hidden", "<|tool_call_end|>"))
            tokens.append(Tok("hidden", "<|tool_calls_section_end|>"))
            tool_calls.append({"id": req.tool_call_id, "name": name, "arguments": arguments})
            finish = "tool_calls"
    else:
        if req.exact_answer is not None:
            words = re.findall(r"\s*\S+", req.exact_answer) or [req.exact_answer]
        else:
            first = not any(t.kind == "content" for t in tokens)
            words = filler(ANSWER_WORDS, settings.output_tokens, req.seed, first=first)
        tokens.extend(Tok("content", w) for w in words)
        if req.ignore_eos and len(tokens) < budget:
            tokens.extend(Tok("content", w) for w in filler(ANSWER_WORDS, budget - len(tokens), req.seed, False))
    if len(tokens) > budget:
        dropped = tokens[budget:]
        tokens = tokens[:budget]
        finish = "length"
        if any(t.kind in ("tool_head", "tool_args") or t.text in _TOOL_CLOSERS for t in dropped):
            tool_calls = []  # an unfinished tool call: the parser reports none (streamed fragments are already out)
    elif req.ignore_eos and req.tool is None:
        finish = "length"  # ignore_eos runs to max_tokens, which vLLM reports as "length"
    if finish == "stop":
        tokens.append(Tok("eos", "<|im_end|>"))
    return Plan(tokens, finish, tool_calls)


def counted(group: list[Tok]) -> int:
    """The tokens of a group that count in usage and metrics (all but the end-of-sequence marker)."""
    return sum(1 for tok in group if tok.kind != "eos")


def chat_delta(group: list[Tok], reasoning_field: str) -> dict[str, Any]:
    """Merge a group of tokens into one OpenAI ``delta`` (reasoning, content and tool-call fragments)."""
    delta: dict[str, Any] = {}
    calls: dict[int, dict[str, Any]] = {}
    for tok in group:
        if tok.kind == "reasoning":
            delta[reasoning_field] = delta.get(reasoning_field, "") + tok.text
        elif tok.kind == "content":
            delta["content"] = delta.get("content", "") + tok.text
        elif tok.kind == "tool_head":
            calls[tok.tool_index] = {
                "index": tok.tool_index,
                "type": "function",
                "id": tok.tool_id,
                "function": {"name": tok.tool_name},
            }
        elif tok.kind == "tool_args":
            call = calls.setdefault(tok.tool_index, {"index": tok.tool_index, "function": {}})
            call["function"]["arguments"] = call["function"].get("arguments", "") + tok.text
    if calls:
        delta["tool_calls"] = [calls[i] for i in sorted(calls)]
    return delta


# --------------------------------------------------------------------------------------------------------------------
# Metrics (Prometheus text, vLLM's names; vllm/v1/metrics/loggers.py).
# --------------------------------------------------------------------------------------------------------------------

# fmt: off
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)
# fmt: on


class Histogram:
    """A Prometheus histogram with fixed buckets."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        """Create an empty histogram."""
        self.name, self.help_text, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def render(self, engine: str, model_name: str) -> list[str]:
        """Return the exposition lines (cumulative buckets, count, sum), labels sorted by name as prometheus_client
        writes them (``engine``, ``le``, ``model_name``)."""
        labels = f'engine="{engine}",model_name="{model_name}"'
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            lines.append(
                f'{self.name}_bucket{{engine="{engine}",le="{bound}",model_name="{model_name}"}} {float(running)}'
            )
        lines.append(f'{self.name}_bucket{{engine="{engine}",le="+Inf",model_name="{model_name}"}} {float(self.count)}')
        lines.append(f"{self.name}_count{{{labels}}} {float(self.count)}")
        lines.append(f"{self.name}_sum{{{labels}}} {self.total}")
        return lines


class Metrics:
    """Counters and histograms exposed on /metrics."""

    def __init__(self) -> None:
        """Start every counter at zero."""
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success: dict[str, int] = {"stop": 0, "length": 0, "abort": 0, "error": 0, "repetition": 0}
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS
        )
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", E2E_BUCKETS
        )

    def render(self, model_name: str, engine: Engine) -> str:
        """Render the Prometheus text exposition."""
        labels = f'engine="0",model_name="{model_name}"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {float(engine.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{labels}}} {float(engine.waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{labels}}} {engine.kv_usage()}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{labels}}} {float(self.prompt_tokens)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{labels}}} {float(self.generation_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason, n in self.success.items():  # prometheus_client writes the labels sorted by name
            lines.append(
                f'vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="{model_name}"}} '
                f"{float(n)}"
            )
        for hist in (self.ttft, self.itl, self.e2e):
            lines.extend(hist.render("0", model_name))
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# Timing engine.
# --------------------------------------------------------------------------------------------------------------------


class ClientGoneError(Exception):
    """The client went away while its request was being generated."""


class Engine:
    """Simulated scheduler: sequence slots, one shared prefill pipeline, per-stream decode gaps."""

    def __init__(self, settings: Settings, max_num_seqs: int, metrics: Metrics) -> None:
        """Create an idle engine."""
        self.settings = settings
        self.metrics = metrics
        self.max_num_seqs = max_num_seqs
        self.waiting = 0
        self.running = 0
        self.decoding = 0
        self.kv_tokens = 0
        self.prefills_done = 0
        self._slots_used = 0
        self._slot_queue: deque[asyncio.Future[None]] = deque()
        self._prefill_free_at = 0.0

    def kv_usage(self) -> float:
        """Fraction of the simulated KV cache held by running requests."""
        return min(1.0, self.kv_tokens / self.settings.profile.kv_cache_tokens)

    async def _acquire_slot(self) -> None:
        if self._slots_used < self.max_num_seqs and not self._slot_queue:
            self._slots_used += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release_slot()
            else:
                with contextlib.suppress(ValueError):
                    self._slot_queue.remove(future)
            raise

    def _release_slot(self) -> None:
        while self._slot_queue:
            future = self._slot_queue.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                return
        self._slots_used -= 1

    def _gap(self) -> float:
        p = self.settings.profile
        return (p.itl_ms + p.itl_per_stream_ms * self.decoding) / 1000.0

    async def generate(
        self,
        tokens: list[Tok],
        prompt_tokens: int,
        t_recv: float,
        emit: Callable[[list[Tok], bool], Awaitable[None]],
    ) -> None:
        """Produce ``tokens`` on the simulated clock, calling ``emit(group, is_last)`` per chunk of tokens."""
        k = self.settings.tokens_per_chunk
        groups = [tokens[i : i + k] for i in range(0, len(tokens), k)] or [[]]
        if self.settings.scripted:
            await self._generate_scripted(groups, prompt_tokens, t_recv, emit)
        else:
            await self._generate_modelled(groups, prompt_tokens, t_recv, emit)

    async def _generate_scripted(
        self, groups: list[list[Tok]], prompt_tokens: int, t_recv: float, emit: Callable[..., Awaitable[None]]
    ) -> None:
        # Every token time is an absolute deadline from the moment the request was received, so a late wake-up
        # never shifts the tokens after it: the script holds under load.
        # Tokens a parser swallows (think and tool-call markers) take no scripted time, so every chunk the client
        # sees lands exactly on the script: chunk n at TTFT + (n - 1) * ITL.
        ttft, itl = self.settings.script_ttft_s or 0.0, self.settings.script_itl_s or 0.0
        self.running += 1
        self.kv_tokens += prompt_tokens
        state = "prefill"
        emitted = 0
        visible = 0
        try:
            self.metrics.prompt_tokens += prompt_tokens
            for gi, group in enumerate(groups):
                emitted += len(group)
                visible += 1 if any(t.kind not in ("hidden", "eos") for t in group) else 0
                await _sleep_until(t_recv + ttft + max(0, visible - 1) * itl)
                if gi == 0:
                    self.decoding += 1
                    state = "decode"
                self.kv_tokens += len(group)
                await emit(group, gi == len(groups) - 1)
        finally:
            self.running -= 1
            self.kv_tokens -= prompt_tokens + emitted
            if state == "decode":
                self.decoding -= 1

    async def _generate_modelled(
        self, groups: list[list[Tok]], prompt_tokens: int, t_recv: float, emit: Callable[..., Awaitable[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        profile = self.settings.profile
        state = "queued"
        self.waiting += 1
        emitted = 0
        has_slot = False
        try:
            await self._acquire_slot()
            has_slot = True
            # One prefill pipeline, first come first served: a request's prefill starts when the previous one ends.
            now = loop.time()
            duration = prompt_tokens / profile.prefill_tokens_per_s
            duration *= 1.0 + profile.prefill_slowdown_per_stream * self.decoding
            start = max(now, self._prefill_free_at)
            end = start + duration
            self._prefill_free_at = end
            await _sleep_until(start)
            self.waiting -= 1
            self.running += 1
            self.kv_tokens += prompt_tokens
            state = "prefill"
            await _sleep_until(end)
            self.prefills_done += 1
            self.metrics.prompt_tokens += prompt_tokens
            self.decoding += 1
            state = "decode"
            seen_prefills = self.prefills_done
            deadline = end
            stall = profile.prefill_stall_ms / 1000.0
            for gi, group in enumerate(groups):
                steps = len(group) - 1 if gi == 0 else len(group)
                deadline += steps * self._gap()
                await _sleep_until(deadline)
                if stall > 0 and self.prefills_done != seen_prefills:
                    # Another request's prefill ran in this step: its chunk delays everyone's next token.
                    seen_prefills = self.prefills_done
                    deadline += stall
                    await _sleep_until(deadline)
                now = loop.time()
                if now - deadline > self._gap():
                    deadline = now  # far behind (an overloaded stand-in): resync instead of bursting to catch up
                emitted += len(group)
                self.kv_tokens += len(group)
                await emit(group, gi == len(groups) - 1)
        finally:
            if state == "queued":
                self.waiting -= 1
            else:
                self.running -= 1
                self.kv_tokens -= prompt_tokens + emitted
            if state == "decode":
                self.decoding -= 1
            if has_slot:
                self._release_slot()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


# --------------------------------------------------------------------------------------------------------------------
# HTTP/1.1 plumbing.
# --------------------------------------------------------------------------------------------------------------------

MAX_BODY = 64 * 1024 * 1024


class HttpError(Exception):
    """A request that cannot be served: an error status with vLLM's error fields, or a raw JSON body."""

    def __init__(
        self,
        status: int,
        message: str = "",
        err_type: str = "BadRequestError",
        param: str | None = None,
        raw: Any = None,
    ) -> None:
        """Describe the error response."""
        super().__init__(message or status)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param
        self.raw = raw
        self.validation = False


def validation_error(detail: str, param: str | None) -> HttpError:
    """A request body that fails validation, as vLLM's RequestValidationError handler answers it: 400, type
    ``Bad Request``, the pydantic location as ``param``, and the OpenAI error shape on every path (also on
    ``/v1/messages``, where other errors have Anthropic's shape)."""
    exc = HttpError(400, f"1 validation error:\n  {detail}", err_type="Bad Request", param=param)
    exc.validation = True
    return exc


@dataclasses.dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes
    t_first_byte: float
    t_recv: float
    t_recv_wall: float
    peer: str

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the response."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def json(self) -> dict[str, Any]:
        """Decode the JSON body (an object), or raise HttpError 400."""
        try:
            value = json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # pydantic's json_invalid error: the location is the character offset where decoding failed
            reason, where = (
                (exc.msg, f"body.{exc.pos}") if isinstance(exc, json.JSONDecodeError) else (str(exc), "body")
            )
            detail = {"type": "json_invalid", "loc": where, "msg": "JSON decode error", "input": "<dict of 0 items>",
                      "ctx": {"error": reason}}  # fmt: skip
            raise validation_error(repr(detail), where) from None
        if not isinstance(value, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        return value


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> Request | None:
    """Read one request from the connection; None at a clean end of stream."""
    line = await reader.readline()
    if not line:
        return None
    loop = asyncio.get_running_loop()
    t_first = loop.time()
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    except ValueError:
        raise HttpError(400, "Invalid HTTP request line") from None
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _sep, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
        if len(headers) > 256:
            raise HttpError(431, "Too many headers")
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        size_total = 0
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            size_total += size
            if size_total > MAX_BODY:
                raise HttpError(413, "Request body too large")
            parts.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(parts)
    elif headers.get("content-length"):
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise HttpError(413, "Request body too large")
        body = await reader.readexactly(length)
    path, _sep, query = target.partition("?")
    return Request(method.upper(), path, query, version, headers, body, t_first, loop.time(), time.time(), peer)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines.append("date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    lines.append("server: uvicorn")
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def random_id() -> str:
    """A random id as vLLM 0.32 makes them (16 hex digits: chatcmpl-..., cmpl-..., modelperm-...)."""
    return uuid.uuid4().hex[:16]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Connection:
    """Response writer for one HTTP connection."""

    def __init__(self, writer: asyncio.StreamWriter, log: Log, access_log: bool) -> None:
        """Wrap ``writer``."""
        self.writer = writer
        self.log = log
        self.access_log = access_log
        self.extra_headers: list[tuple[str, str]] = []
        self.started = False

    def _access(self, req: Request, status: int) -> None:
        if self.access_log:
            phrase = http.HTTPStatus(status).phrase
            target = req.path + ("?" + req.query if req.query else "")
            self.log.uvicorn("info", f'{req.peer} - "{req.method} {target} {req.version}" {status} {phrase}')

    async def send(self, req: Request, status: int, body: bytes, content_type: str) -> None:
        """Send a complete response with Content-Length."""
        headers = [("content-length", str(len(body)))]
        if content_type:
            headers.append(("content-type", content_type))
        if not req.keep_alive:
            headers.append(("connection", "close"))
        self._access(req, status)
        self.writer.write(_head(status, headers + self.extra_headers) + body)
        await self._drain()

    async def send_json(self, req: Request, status: int, obj: Any) -> None:
        """Send a JSON response."""
        await self.send(req, status, _dumps(obj).encode("utf-8"), "application/json")

    async def start_stream(self, req: Request) -> None:
        """Send the headers of a server-sent-events response (chunked transfer encoding)."""
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("transfer-encoding", "chunked")]
        if not req.keep_alive:
            headers.append(("connection", "close"))
        self._access(req, 200)
        self.started = True
        self.writer.write(_head(200, headers + self.extra_headers))
        await self._drain()

    async def event(self, data: str) -> float:
        """Write one SSE event as one HTTP chunk; return the loop time it was handed to the socket."""
        payload = data.encode("utf-8")
        self.writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        t = asyncio.get_running_loop().time()
        await self._drain()
        return t

    async def end_stream(self) -> None:
        """Write the final zero-length chunk."""
        self.writer.write(b"0\r\n\r\n")
        await self._drain()

    async def _drain(self) -> None:
        if self.writer.transport.is_closing():
            raise ClientGoneError
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGoneError from exc


# --------------------------------------------------------------------------------------------------------------------
# The application.
# --------------------------------------------------------------------------------------------------------------------

GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")  # vLLM's --api-key guard (released versions)
JSON_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/tokenize",
    "/detokenize",
)
ROUTES = (
    ("/health", "GET"),
    ("/ping", "GET, POST"),
    ("/load", "GET"),
    ("/version", "GET"),
    ("/metrics", "GET"),
    ("/tokenize", "POST"),
    ("/detokenize", "POST"),
    ("/v1/models", "GET"),
    ("/v1/chat/completions", "POST"),
    ("/v1/completions", "POST"),
    ("/v1/messages", "POST"),
    ("/v1/messages/count_tokens", "POST"),
)
ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."
_EXACT_RE = re.compile(r"reply\s+(?:with\s+)?exactly\s*[:\-]?\s*(.+)", re.IGNORECASE)


Handler = Callable[["Connection", "Request", str], Awaitable[int]]


@dataclasses.dataclass
class Trace:
    """Server-side truth about one generation request, written to STANDIN_TRUTH_LOG."""

    request_id: str
    path: str
    stream: bool
    req: Request
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    finish_reason: str | None = None
    role_chunk_t: float | None = None
    chunk_t: list[float] = dataclasses.field(default_factory=list)
    chunk_tokens: list[int] = dataclasses.field(default_factory=list)
    done_t: float | None = None


class App:
    """Routes requests to endpoint handlers and holds the server state."""

    def __init__(self, args: argparse.Namespace, settings: Settings, log: Log) -> None:
        """Create the application from parsed flags and settings."""
        self.args = args
        self.settings = settings
        self.log = log
        self.model = args.model
        self.served = list(args.served_model_name or [args.model])
        self.api_keys = list(args.api_key or ([os.environ["VLLM_API_KEY"]] if os.environ.get("VLLM_API_KEY") else []))
        # vLLM's default --fingerprint-mode full: vllm-<version>[-tp<N>...]-<8 hex of the config hash>, fixed per server
        parallel = "".join(
            f"-{tag}{size}"
            for tag, size in (
                ("tp", args.tensor_parallel_size), ("pp", args.pipeline_parallel_size), ("dp", args.data_parallel_size)
            )
            if size > 1
        )  # fmt: skip
        self.system_fingerprint = f"vllm-{settings.version}{parallel}-{uuid.uuid4().hex[:8]}"
        self.metrics = Metrics()
        self.engine = Engine(settings, args.max_num_seqs, self.metrics)
        self.successes = 0
        self.in_flight = 0
        self.access_log = not args.disable_uvicorn_access_log
        self.tasks: set[asyncio.Task[None]] = set()
        self._last_stats = (time.monotonic(), 0, 0)
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self.health,
            ("GET", "/ping"): self.health,
            ("POST", "/ping"): self.health,
            ("GET", "/load"): self.load,
            ("GET", "/version"): self.version,
            ("GET", "/metrics"): self.prometheus,
            ("GET", "/v1/models"): self.models,
            ("POST", "/tokenize"): self.tokenize,
            ("POST", "/detokenize"): self.detokenize,
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/messages"): self.messages,
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
        }

    # ---- connection loop -------------------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one keep-alive connection until it closes."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        peername = writer.get_extra_info("peername") or ("-", 0)
        peer = f"{peername[0]}:{peername[1]}"
        conn = Connection(writer, self.log, self.access_log)
        try:
            while True:
                try:
                    req = await read_request(reader, writer, peer)
                except HttpError as exc:
                    await self._send_error_raw(conn, exc)
                    break
                if req is None:
                    break
                await self.dispatch(conn, req)
                if not req.keep_alive:
                    break
        except (ClientGoneError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if task is not None:
                self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await writer.wait_closed()

    async def _send_error_raw(self, conn: Connection, exc: HttpError) -> None:
        body = _dumps(self.error_body(exc.status, exc.message, exc.err_type)).encode()
        conn.writer.write(
            _head(
                exc.status,
                [("content-length", str(len(body))), ("connection", "close"), ("content-type", "application/json")],
            )
            + body
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.writer.drain()

    def error_body(self, status: int, message: str, err_type: str, param: str | None = None) -> dict[str, Any]:
        """Build vLLM's error JSON (nested since vLLM 0.10.2; STANDIN_ERROR_STYLE=legacy for the flat shape)."""
        if self.settings.error_style == "legacy":
            return {"object": "error", "message": message, "type": err_type, "param": param, "code": status}
        return {"error": {"message": message, "type": err_type, "param": param, "code": status}}

    async def dispatch(self, conn: Connection, req: Request) -> None:
        """Authenticate, route and answer one request."""
        # vLLM takes a client's X-Request-Id as the request id (the response id is then chatcmpl-<it>); without one,
        # the id is 16 random hex digits and --enable-request-id-headers answers a separate uuid4 (32 digits).
        client_id = req.headers.get("x-request-id")
        request_id = client_id or random_id()
        conn.started = False
        header_id = client_id or uuid.uuid4().hex
        conn.extra_headers = [("x-request-id", header_id)] if self.args.enable_request_id_headers else []
        anthropic = req.path.startswith("/v1/messages")
        try:
            if req.method != "OPTIONS" and req.path.startswith(GUARDED_PREFIXES) and not self._authorized(req):
                await conn.send_json(req, 401, {"error": "Unauthorized"})
                return
            handler = self._route(req)
            if req.method == "POST" and req.path in JSON_ENDPOINTS:
                media_type = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if media_type != "application/json":
                    raise validation_error("Unsupported Media Type: Only 'application/json' is allowed", None)
            if (
                self.settings.error_after is not None
                and req.method == "POST"
                and req.path.startswith("/v1/")
                and self.successes >= self.settings.error_after
            ):
                self.metrics.success["error"] += 1
                self._trace_error(req, request_id, 500)
                raise HttpError(500, ENGINE_DEAD_MESSAGE, err_type="InternalServerError")
            self.in_flight += 1
            try:
                status = await handler(conn, req, request_id)
            except (HttpError, ClientGoneError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a stand-in bug must answer 500 like vLLM does, not kill the connection
                self.log.vllm("ERROR", "api_server.py:1120", f"Error in {req.path}: {exc!r}")
                if conn.started:
                    raise ClientGoneError from exc
                raise HttpError(500, str(exc), err_type="InternalServerError") from exc
            finally:
                self.in_flight -= 1
            if status == 200 and req.method == "POST" and req.path.startswith("/v1/"):
                self.successes += 1
        except HttpError as exc:
            if exc.raw is not None:
                body: Any = exc.raw
            elif anthropic and not exc.validation:
                body = {"type": "error", "error": {"type": exc.err_type, "message": exc.message}}
            else:
                body = self.error_body(exc.status, exc.message, exc.err_type, exc.param)
            await conn.send_json(req, exc.status, body)

    def _authorized(self, req: Request) -> bool:
        if not self.api_keys:
            return True
        scheme, _sep, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token in self.api_keys:
            return True
        return self.settings.accept_x_api_key and req.headers.get("x-api-key", "") in self.api_keys

    def _route(self, req: Request) -> Handler:
        handler = self.routes.get((req.method, req.path))
        if handler is not None:
            return handler
        if any(path == req.path for _method, path in self.routes):
            raise HttpError(405, raw={"detail": "Method Not Allowed"})
        raise HttpError(404, raw={"detail": "Not Found"})

    # ---- simple endpoints ------------------------------------------------------------------------------------------

    async def health(self, conn: Connection, req: Request, request_id: str) -> int:
        """GET /health: 200 with an empty body while the engine is up."""
        await conn.send(req, 200, b"", "")
        return 200

    async def load(self, conn: Connection, req: Request, request_id: str) -> int:
        """GET /load: in-flight requests."""
        await conn.send_json(req, 200, {"server_load": self.in_flight - 1})
        return 200

    async def version(self, conn: Connection, req: Request, request_id: str) -> int:
        """GET /version: the stand-in's version, marked as a stand-in."""
        await conn.send_json(req, 200, {"version": self.settings.version, "standin": True})
        return 200

    async def prometheus(self, conn: Connection, req: Request, request_id: str) -> int:
        """GET /metrics: Prometheus text exposition."""
        text = self.metrics.render(self.served[0], self.engine)
        await conn.send(req, 200, text.encode(), "text/plain; version=1.0.0; charset=utf-8")
        return 200

    async def models(self, conn: Connection, req: Request, request_id: str) -> int:
        """GET /v1/models: one model card per served name."""
        created = int(time.time())
        cards = []
        for name in self.served:
            permission = {
                "id": f"modelperm-{random_id()}",
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
            cards.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": self.model,
                    "parent": None,
                    "max_model_len": self.args.max_model_len,
                    "permission": [permission],
                }
            )
        await conn.send_json(req, 200, {"object": "list", "data": cards})
        return 200

    def _check_model(self, body: dict[str, Any]) -> str:
        """Return the model name to answer with (vLLM echoes the requested alias); 404 for unknown names."""
        model = body.get("model")
        if not model:
            return self.served[0]
        if model not in self.served:
            raise HttpError(
                404,
                f"The model `{model}` does not exist. Valid aliases: {', '.join(self.served)}.",
                err_type="NotFoundError",
                param="model",
            )
        return str(model)

    async def tokenize(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /tokenize: ``prompt`` or chat ``messages`` to toy token ids."""
        body = req.json()
        self._check_model(body)
        if "messages" in body:
            messages = body.get("messages")
            if not isinstance(messages, list):
                raise HttpError(400, "messages must be a list")
            text = render_chat(messages, body.get("tools"), bool(body.get("add_generation_prompt", True)))
        elif isinstance(body.get("prompt"), str):
            text = body["prompt"]
        else:
            raise HttpError(400, "Either `prompt` (a string) or `messages` is required")
        ids = encode(text)
        reply: dict[str, Any] = {
            "count": len(ids),
            "max_model_len": self.args.max_model_len,
            "tokens": ids,
            "token_strs": None,
        }
        if body.get("return_token_strs"):
            reply["token_strs"] = [decode([i]) for i in ids]
        await conn.send_json(req, 200, reply)
        return 200

    async def detokenize(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /detokenize: toy token ids back to text."""
        body = req.json()
        self._check_model(body)
        tokens = body.get("tokens")
        if not isinstance(tokens, list):
            raise HttpError(400, "`tokens` must be a list of token ids")
        try:
            text = decode(tokens)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        await conn.send_json(req, 200, {"prompt": text})
        return 200

    # ---- generation helpers ----------------------------------------------------------------------------------------

    def _max_tokens(self, requested: Any, prompt_tokens: int, name: str = "max_tokens") -> int:
        limit = self.args.max_model_len
        # vLLM checks the request's maximum first (request validation), then the prompt's length.
        if requested is not None:
            if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
                raise HttpError(
                    400,
                    f"{name} must be at least 1, got {requested}. (parameter={name}, value={requested})",
                    param=name,
                )
            if requested > limit:
                raise HttpError(
                    400,
                    (
                        f"{name}={requested} cannot be greater than max_model_len={limit}. Please request fewer "
                        f"output tokens. (parameter={name}, value={requested})"
                    ),
                    param=name,
                )
        if prompt_tokens >= limit:
            shown = min(prompt_tokens, limit + 1)  # vLLM tokenizes at most one token beyond the limit
            raise HttpError(
                400,
                (
                    f"This model's maximum context length is {limit} tokens. However, your prompt contains at least "
                    f"{shown} input tokens, which exceeds this limit even without any output tokens. Please reduce "
                    f"the length of the input prompt. (parameter=input_tokens, value={shown})"
                ),
                param="input_tokens",
            )
        # vLLM 0.32's get_max_tokens: the maximum is what the context leaves when the request asks for more (or for
        # nothing); prompt + maximum beyond the context is served, not refused (older vLLM answered 400).
        return limit - prompt_tokens if requested is None else min(requested, limit - prompt_tokens)

    def _seed(self, body: dict[str, Any]) -> int:
        seed = body.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else self.args.seed

    def _tool_call_id(self, name: str, history_calls: int) -> str:
        if self.args.tool_call_parser == "kimi_k2":
            return f"functions.{name}:{history_calls}"  # vLLM's kimi_k2 id scheme: name plus calls so far
        return f"chatcmpl-tool-{uuid.uuid4().hex[:16]}"

    def _pick_tool(self, tools: Any, tool_choice: Any, last_role: str, anthropic: bool) -> dict[str, Any] | None:
        """Return the tool to call ({name, parameters}) or None for a text answer; raise vLLM's 400s."""
        if not tools:
            return None
        if not isinstance(tools, list):
            raise HttpError(400, "tools must be a list")
        specs = []
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            if anthropic:
                specs.append({"name": tool.get("name", ""), "parameters": tool.get("input_schema") or {}})
            else:
                function = tool.get("function") or {}
                specs.append({"name": function.get("name", ""), "parameters": function.get("parameters") or {}})
        if not specs:
            return None
        choice = tool_choice
        if anthropic:
            kind = choice.get("type") if isinstance(choice, dict) else None
            choice = {"auto": "auto", "any": "required", "none": "none", None: "auto"}.get(kind, choice)
            if isinstance(tool_choice, dict) and kind == "tool":
                choice = {"type": "function", "function": {"name": tool_choice.get("name")}}
        elif choice is None:
            choice = "auto"
        if choice == "none":
            return None
        if choice == "auto":
            if not (self.args.enable_auto_tool_choice and self.args.tool_call_parser):
                raise HttpError(
                    400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
                )
            return None if last_role == "tool" else specs[0]
        if choice == "required":
            return specs[0]
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            for spec in specs:
                if spec["name"] == wanted:
                    return spec
            raise HttpError(400, f"Tool '{wanted}' has not been passed in `tools`.", param="tool_choice")
        raise HttpError(400, f"Invalid tool_choice: {tool_choice!r}", param="tool_choice")

    def _write_truth(self, trace: Trace) -> None:
        if not self.settings.truth_log:
            return
        base = trace.req.t_recv
        wall0 = trace.req.t_recv_wall
        record = {
            "request_id": trace.request_id,
            "path": trace.path,
            "status": trace.status,
            "stream": trace.stream,
            "scripted": self.settings.scripted,
            "t_first_byte_rel": round(trace.req.t_first_byte - base, 6),
            "t_recv_mono": round(base, 6),
            "t_recv_wall": round(wall0, 6),
            "prompt_tokens": trace.prompt_tokens,
            "completion_tokens": trace.completion_tokens,
            "finish_reason": trace.finish_reason,
            "role_chunk_t_rel": None if trace.role_chunk_t is None else round(trace.role_chunk_t - base, 6),
            "chunk_t_rel": [round(t - base, 6) for t in trace.chunk_t],
            "chunk_t_wall": [round(wall0 + t - base, 6) for t in trace.chunk_t],
            "chunk_tokens": trace.chunk_tokens,
            "done_t_rel": None if trace.done_t is None else round(trace.done_t - base, 6),
        }
        with open(self.settings.truth_log, "a", encoding="utf-8") as handle:
            handle.write(_dumps(record) + "\n")

    def _trace_error(self, req: Request, request_id: str, status: int) -> None:
        trace = Trace(request_id, req.path, False, req, status=status)
        trace.done_t = asyncio.get_running_loop().time()
        self._write_truth(trace)

    async def _run(
        self,
        trace: Trace,
        plan: Plan,
        emit: Callable[[list[Tok], bool], Awaitable[None]],
    ) -> None:
        """Generate ``plan`` on the simulated clock, keeping metrics and the truth log."""
        loop = asyncio.get_running_loop()
        t_recv = trace.req.t_recv
        last = [None]  # time of the previous token chunk

        async def timed_emit(group: list[Tok], is_last: bool) -> None:
            tokens = counted(group)
            if tokens:
                now = loop.time()
                if last[0] is None:
                    self.metrics.ttft.observe(now - t_recv)
                else:
                    self.metrics.itl.observe(now - last[0])
                last[0] = now
            self.metrics.generation_tokens += tokens
            trace.completion_tokens += tokens
            await emit(group, is_last)

        try:
            await self.engine.generate(plan.tokens, trace.prompt_tokens, t_recv, timed_emit)
        except (ClientGoneError, asyncio.CancelledError):
            trace.status = 499
            self.metrics.success["abort"] += 1
            if self.args.enable_log_requests:
                self.log.vllm("INFO", "async_llm.py:442", f"ClientGoneError request {trace.request_id}.")
            raise
        finally:
            trace.done_t = loop.time()
            self._write_truth(trace)
        trace.finish_reason = plan.finish_reason
        self.metrics.e2e.observe(trace.done_t - t_recv)
        self.metrics.success["stop" if plan.finish_reason in ("stop", "tool_calls") else "length"] += 1

    # ---- OpenAI chat completions -----------------------------------------------------------------------------------

    async def chat_completions(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /v1/chat/completions."""
        body = req.json()
        model_name = self._check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise HttpError(400, "`messages` must be a list", param="messages")
        if not messages:
            raise HttpError(400, "Cannot apply chat template to an empty conversation. Provide at least one message.")
        if isinstance(body.get("n"), int) and body["n"] > 1:
            raise HttpError(400, "n > 1 is not supported by the vLLM stand-in", param="n")
        tools = body.get("tools")
        prompt_ids = encode(render_chat(messages, tools, bool(body.get("add_generation_prompt", True))))
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        name = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
        max_tokens = self._max_tokens(requested, len(prompt_ids), name)
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        tool = self._pick_tool(tools, body.get("tool_choice"), str(last.get("role", "")), anthropic=False)
        history = sum(len(m.get("tool_calls") or []) for m in messages if isinstance(m, dict))
        plan = plan_output(self._plan_request(body, max_tokens, tool, history, last), self.settings)
        stream = bool(body.get("stream"))
        trace = Trace(f"chatcmpl-{request_id}", req.path, stream, req, prompt_tokens=len(prompt_ids))
        self._log_request(trace.request_id, messages)
        created = int(time.time())
        reasoning_field = self.settings.reasoning_field
        # vLLM counts the thinking tokens (also when include_reasoning hides them) only with a reasoning parser.
        reasoning_tokens = sum(1 for t in plan.tokens if t.kind == "reasoning")
        details = {"reasoning_tokens": reasoning_tokens} if self.args.reasoning_parser else None
        is_reasoning = [t.kind == "reasoning" for t in plan.tokens]  # before include_reasoning: false hides them
        if body.get("include_reasoning") is False:
            plan.tokens = [Tok("hidden", t.text) if t.kind == "reasoning" else t for t in plan.tokens]
        tool_choice = body.get("tool_choice")
        forced = tool is not None and (tool_choice == "required" or isinstance(tool_choice, dict))
        finish_reason = plan.finish_reason
        if isinstance(tool_choice, dict) and finish_reason == "tool_calls":
            finish_reason = "stop"  # as in OpenAI's API: "stop" for a named tool call
        if not stream:
            collected: list[Tok] = []

            async def collect(group: list[Tok], is_last: bool) -> None:
                collected.extend(group)

            await self._run(trace, plan, collect)
            delta = chat_delta(collected, reasoning_field)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": delta.get("content") or ("" if forced else None),
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
            }
            if plan.tool_calls:  # vLLM's ChatMessage leaves an empty tool_calls list out
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in plan.tool_calls
                ]
            message[reasoning_field] = delta.get(reasoning_field)
            usage = {
                "prompt_tokens": trace.prompt_tokens,
                "total_tokens": trace.prompt_tokens + trace.completion_tokens,
                "completion_tokens": trace.completion_tokens,
                "prompt_tokens_details": None,
                "completion_tokens_details": details,
            }
            reply = {
                "id": trace.request_id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                        "stop_reason": None,
                        "token_ids": None,
                        "routed_experts": None,
                    }
                ],
                "service_tier": None,
                "system_fingerprint": self.system_fingerprint,
                "usage": usage,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "prompt_text": None,
                "kv_transfer_params": None,
                "ec_transfer_params": None,
                "metrics": None,
            }
            await conn.send_json(req, 200, reply)
            return 200

        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) or self.args.enable_force_include_usage
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        head = {"id": trace.request_id, "object": "chat.completion.chunk", "created": created, "model": model_name}
        await conn.start_stream(req)

        # vLLM counts the reasoning tokens generated so far for continuous usage stats, all of them at the end.
        reasoning_seen = [0, 0]  # plan tokens emitted, reasoning tokens among them

        def usage_now(completion: int, reasoning: int, final: bool = False) -> dict[str, Any]:
            usage: dict[str, Any] = {
                "prompt_tokens": trace.prompt_tokens,
                "total_tokens": trace.prompt_tokens + completion,
                "completion_tokens": completion,
            }
            # Continuous usage chunks always carry the key (null without a reasoning parser); vLLM writes the final
            # usage chunk without null fields, so there it is only with a parser.
            if self.args.reasoning_parser:
                usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
            elif not final:
                usage["completion_tokens_details"] = None
            return usage

        pending = [0]  # swallowed tokens since the last chunk, reported with the next one in the truth log

        async def emit(group: list[Tok], is_last: bool) -> None:
            if trace.role_chunk_t is None:
                # vLLM sends the role-only chunk with the first engine output, i.e. at first-token time; only that
                # chunk carries prompt_token_ids and prompt_text (null unless asked for).
                chunk: dict[str, Any] = dict(
                    head,
                    choices=[
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                    prompt_token_ids=None,
                    prompt_text=None,
                )
                if continuous:
                    chunk["usage"] = usage_now(0, 0)  # as vLLM's role chunk: nothing generated yet
                trace.role_chunk_t = await conn.event("data: " + _dumps(chunk) + "\n\n")
            seen = reasoning_seen[0]
            reasoning_seen[0] += len(group)
            reasoning_seen[1] += sum(is_reasoning[seen : seen + len(group)])
            delta = chat_delta(group, reasoning_field)
            if not delta and not is_last:
                pending[0] += counted(group)
                return  # tokens a parser swallowed (markers) produce no chunk
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason if is_last else None,
            }
            if is_last:
                choice["stop_reason"] = None
            choice["token_ids"] = None
            chunk = dict(head, choices=[choice])
            if is_last and not include_usage:
                chunk["system_fingerprint"] = self.system_fingerprint  # on the last chunk before [DONE]
            if continuous:
                chunk["usage"] = usage_now(trace.completion_tokens, reasoning_seen[1])
            t = await conn.event("data: " + _dumps(chunk) + "\n\n")
            tokens = counted(group) + pending[0]
            if tokens:  # the end-of-sequence chunk alone carries no token
                trace.chunk_t.append(t)
                trace.chunk_tokens.append(tokens)
            pending[0] = 0

        await self._run(trace, plan, emit)
        if include_usage:
            last_chunk = dict(
                head,
                choices=[],
                usage=usage_now(trace.completion_tokens, reasoning_tokens, final=True),
                system_fingerprint=self.system_fingerprint,
            )
            await conn.event("data: " + _dumps(last_chunk) + "\n\n")
        await conn.event("data: [DONE]\n\n")
        await conn.end_stream()
        return 200

    def _plan_request(
        self, body: dict[str, Any], max_tokens: int, tool: dict[str, Any] | None, history: int, last: dict[str, Any]
    ) -> PlanRequest:
        exact = None
        if last.get("role") == "user":
            match = _EXACT_RE.search(_content_text(last.get("content")))
            if match:
                exact = match.group(1).strip().strip("\"'`").strip()
        return PlanRequest(
            max_tokens=max_tokens,
            ignore_eos=bool(body.get("ignore_eos")),
            reasoning_parser=bool(self.args.reasoning_parser),
            tool=tool,
            tool_call_id=self._tool_call_id(str(tool["name"]), history) if tool else "",
            exact_answer=exact,
            seed=self._seed(body),
            # Kimi's chat template reads `thinking`: false leaves the thinking out (vLLM then answers reasoning: null).
            with_reasoning=not (
                isinstance(body.get("chat_template_kwargs"), dict)
                and body["chat_template_kwargs"].get("thinking") is False
            ),
        )

    def _log_request(self, request_id: str, prompt: Any) -> None:
        if self.args.enable_log_requests:
            text = _dumps(prompt)
            if self.args.max_log_len is not None:
                text = text[: self.args.max_log_len]
            self.log.vllm("INFO", "logger.py:40", f"Received request {request_id}: prompt: {text!r}")

    # ---- OpenAI completions ----------------------------------------------------------------------------------------

    async def completions(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /v1/completions (what `vllm bench serve --backend openai` uses)."""
        body = req.json()
        model_name = self._check_model(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_ids = encode(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(i, int) for i in prompt):
            prompt_ids = list(prompt)
        else:
            raise HttpError(
                400,
                (
                    "`prompt` must be one string or one list of token ids "
                    "(batched prompts are not supported by the vLLM stand-in)"
                ),
                param="prompt",
            )
        max_tokens = self._max_tokens(body.get("max_tokens", 16), len(prompt_ids))
        plan = plan_output(
            PlanRequest(
                max_tokens, bool(body.get("ignore_eos")), False, None, "", None, self._seed(body), with_reasoning=False
            ),
            self.settings,
        )
        stream = bool(body.get("stream"))
        trace = Trace(f"cmpl-{request_id}", req.path, stream, req, prompt_tokens=len(prompt_ids))
        self._log_request(trace.request_id, prompt)
        created = int(time.time())
        head = {"id": trace.request_id, "object": "text_completion", "created": created, "model": model_name}
        if not stream:
            texts: list[str] = []

            async def collect(group: list[Tok], is_last: bool) -> None:
                texts.extend(t.text for t in group if t.kind != "eos")

            await self._run(trace, plan, collect)
            usage = {
                "prompt_tokens": trace.prompt_tokens,
                "total_tokens": trace.prompt_tokens + trace.completion_tokens,
                "completion_tokens": trace.completion_tokens,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            }
            reply = dict(
                head,
                choices=[
                    {
                        "index": 0,
                        "text": "".join(texts),
                        "logprobs": None,
                        "finish_reason": plan.finish_reason,
                        "stop_reason": None,
                        "token_ids": None,
                        "prompt_logprobs": None,
                        "prompt_token_ids": None,
                        "routed_experts": None,
                    }
                ],
                service_tier=None,
                system_fingerprint=self.system_fingerprint,
                usage=usage,
                kv_transfer_params=None,
                ec_transfer_params=None,
                metrics=None,
            )
            await conn.send_json(req, 200, reply)
            return 200

        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) or self.args.enable_force_include_usage
        await conn.start_stream(req)

        async def emit(group: list[Tok], is_last: bool) -> None:
            choice = {
                "index": 0,
                "text": "".join(t.text for t in group if t.kind != "eos"),
                "logprobs": None,
                "finish_reason": plan.finish_reason if is_last else None,
                "stop_reason": None,
                "prompt_token_ids": None,
                "token_ids": None,
            }
            chunk = dict(head, choices=[choice])
            if is_last and not include_usage:
                chunk["system_fingerprint"] = self.system_fingerprint
            t = await conn.event("data: " + _dumps(chunk) + "\n\n")
            if counted(group):
                trace.chunk_t.append(t)
                trace.chunk_tokens.append(counted(group))

        await self._run(trace, plan, emit)
        if include_usage:
            usage = {
                "prompt_tokens": trace.prompt_tokens,
                "total_tokens": trace.prompt_tokens + trace.completion_tokens,
                "completion_tokens": trace.completion_tokens,
            }
            last_chunk = dict(head, choices=[], usage=usage, system_fingerprint=self.system_fingerprint)
            await conn.event("data: " + _dumps(last_chunk) + "\n\n")
        await conn.event("data: [DONE]\n\n")
        await conn.end_stream()
        return 200

    # ---- Anthropic messages ----------------------------------------------------------------------------------------

    async def count_tokens(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /v1/messages/count_tokens."""
        body = req.json()
        self._check_model(body)
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("input_schema"),
                },
            }
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        ids = encode(render_chat(anthropic_to_chat(body), tools or None))
        reply = {"input_tokens": len(ids), "context_management": {"original_input_tokens": len(ids)}}
        await conn.send_json(req, 200, reply)
        return 200

    async def messages(self, conn: Connection, req: Request, request_id: str) -> int:
        """POST /v1/messages: the Anthropic Messages API as vLLM serves it."""
        body = req.json()
        if "max_tokens" not in body:  # the request model's validation comes before everything else
            detail = {"type": "missing", "loc": "body.max_tokens", "msg": "Field required",
                      "input": f"<dict of {len(body)} items>"}  # fmt: skip
            raise validation_error(repr(detail), "body.max_tokens")
        model_name = self._check_model(body)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise HttpError(400, "`messages` must be a non-empty list")
        chat = anthropic_to_chat(body)
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("input_schema"),
                },
            }
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        prompt_ids = encode(render_chat(chat, tools or None))
        # vLLM turns the request into a chat completion with max_completion_tokens, and its errors name that
        max_tokens = self._max_tokens(body.get("max_tokens"), len(prompt_ids), "max_completion_tokens")
        raw_last = body["messages"][-1] if isinstance(body["messages"][-1], dict) else {}
        last_role = str(raw_last.get("role", ""))
        last_content = raw_last.get("content")
        if isinstance(last_content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last_content
        ):
            last_role = "tool"
        tool = self._pick_tool(body.get("tools"), body.get("tool_choice"), last_role, anthropic=True)
        history = sum(
            1
            for m in body["messages"]
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_use"
        )
        last_chat = {"role": raw_last.get("role"), "content": _content_text(last_content)}
        plan = plan_output(self._plan_request(body, max_tokens, tool, history, last_chat), self.settings)
        stream = bool(body.get("stream"))
        trace = Trace(f"chatcmpl-{request_id}", req.path, stream, req, prompt_tokens=len(prompt_ids))
        self._log_request(trace.request_id, chat)
        stop_reason = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[plan.finish_reason]
        if not stream:
            collected: list[Tok] = []

            async def collect(group: list[Tok], is_last: bool) -> None:
                collected.extend(group)

            await self._run(trace, plan, collect)
            delta = chat_delta(collected, "reasoning")
            content: list[dict[str, Any]] = []
            if delta.get("reasoning"):
                content.append({"type": "thinking", "thinking": delta["reasoning"], "signature": uuid.uuid4().hex})
            if delta.get("content"):
                content.append({"type": "text", "text": delta["content"]})
            for call in plan.tool_calls:
                try:
                    tool_input = json.loads(call["arguments"])
                except json.JSONDecodeError as exc:
                    # vLLM's converter calls json.loads on the arguments and answers 500 when they are broken.
                    raise HttpError(500, str(exc), err_type="internal_error") from None
                content.append({"type": "tool_use", "id": call["id"], "name": call["name"], "input": tool_input})
            if not content:
                content.append({"type": "text", "text": ""})  # vLLM's shape for an empty completion
            # vLLM serializes this reply without its null fields: no stop_sequence
            reply = {
                "id": trace.request_id,
                "type": "message",
                "role": "assistant",
                "content": content,
                "model": model_name,
                "stop_reason": stop_reason,
                "usage": {"input_tokens": trace.prompt_tokens, "output_tokens": trace.completion_tokens},
            }
            await conn.send_json(req, 200, reply)
            return 200

        await conn.start_stream(req)
        block = {"type": None, "index": -1, "tool_id": None}

        def sse(event: str, data: dict[str, Any]) -> str:
            return f"event: {event}\ndata: {_dumps(data)}\n\n"

        def stop_block() -> list[str]:
            out = []
            if block["type"] is None:
                return out
            if block["type"] == "thinking":
                out.append(
                    sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": block["index"],
                            "delta": {"type": "signature_delta", "signature": uuid.uuid4().hex},
                        },
                    )
                )
            out.append(sse("content_block_stop", {"type": "content_block_stop", "index": block["index"]}))
            block["type"] = None
            return out

        def start_block(kind: str, content_block: dict[str, Any]) -> list[str]:
            out = stop_block()
            block["type"] = kind
            block["index"] += 1
            out.append(
                sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": block["index"], "content_block": content_block},
                )
            )
            return out

        pending = [0]

        async def emit(group: list[Tok], is_last: bool) -> None:
            events: list[str] = []
            if trace.role_chunk_t is None:
                events.append(
                    sse(
                        "message_start",
                        {
                            "type": "message_start",
                            "message": {
                                "id": trace.request_id,
                                "type": "message",
                                "role": "assistant",
                                "content": [],
                                "model": model_name,
                                "stop_reason": None,
                                "stop_sequence": None,
                                "usage": {"input_tokens": trace.prompt_tokens, "output_tokens": 0},
                            },
                        },
                    )
                )
            for tok in group:
                if tok.kind == "reasoning":
                    if block["type"] != "thinking":
                        events += start_block("thinking", {"type": "thinking", "thinking": ""})
                    events.append(
                        sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": block["index"],
                                "delta": {"type": "thinking_delta", "thinking": tok.text},
                            },
                        )
                    )
                elif tok.kind == "content":
                    if block["type"] != "text":
                        events += start_block("text", {"type": "text", "text": ""})
                    events.append(
                        sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": block["index"],
                                "delta": {"type": "text_delta", "text": tok.text},
                            },
                        )
                    )
                elif tok.kind == "tool_head":
                    events += start_block(
                        "tool_use", {"type": "tool_use", "id": tok.tool_id, "name": tok.tool_name, "input": {}}
                    )
                elif tok.kind == "tool_args":
                    events.append(
                        sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": block["index"],
                                "delta": {"type": "input_json_delta", "partial_json": tok.text},
                            },
                        )
                    )
            if not events:
                pending[0] += counted(group)
                return
            t = await conn.event("".join(events))
            if trace.role_chunk_t is None:
                trace.role_chunk_t = t
            if any(tok.kind not in ("hidden", "eos") for tok in group):
                trace.chunk_t.append(t)
                trace.chunk_tokens.append(counted(group) + pending[0])
                pending[0] = 0
            else:
                pending[0] += counted(group)

        await self._run(trace, plan, emit)
        tail = stop_block()
        tail.append(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"input_tokens": trace.prompt_tokens, "output_tokens": trace.completion_tokens},
                },
            )
        )
        tail.append(sse("message_stop", {"type": "message_stop"}))
        await conn.event("".join(tail))
        await conn.end_stream()
        return 200

    # ---- periodic stats line (vllm/v1/metrics/loggers.py LoggingStatLogger) ---------------------------------------

    def log_stats(self) -> None:
        """Log throughput and queue state since the last call, like vLLM's periodic engine line."""
        now = time.monotonic()
        then, prompt0, gen0 = self._last_stats
        elapsed = max(now - then, 1e-9)
        prompt = self.metrics.prompt_tokens - prompt0
        gen = self.metrics.generation_tokens - gen0
        self._last_stats = (now, self.metrics.prompt_tokens, self.metrics.generation_tokens)
        if prompt == 0 and gen == 0 and self.engine.running == 0 and self.engine.waiting == 0:
            return
        self.log.vllm(
            "INFO",
            "loggers.py:127",
            f"Engine 000: Avg prompt throughput: {prompt / elapsed:.1f} tokens/s, Avg generation throughput: "
            f"{gen / elapsed:.1f} tokens/s, Running: {self.engine.running} reqs, Waiting: {self.engine.waiting} reqs, "
            f"GPU KV cache usage: {self.engine.kv_usage() * 100:.1f}%, Prefix cache hit rate: 0.0%",
        )


# --------------------------------------------------------------------------------------------------------------------
# Startup, load simulation, shutdown.
# --------------------------------------------------------------------------------------------------------------------

OOM_LINE = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.75 GiB. GPU 0 has a total capacity of "
    "178.35 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 177.32 GiB memory in use. "
    "Of the allocated memory 171.88 GiB is allocated by PyTorch, and 3.61 GiB is reserved by PyTorch but unallocated. "
    "If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to "
    "avoid fragmentation.  See documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)


class Server:
    """Runs the load phase, then the HTTP server, until SIGTERM/SIGINT."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> None:
        """Prepare a server for the parsed flags and settings."""
        self.parser = parser
        self.args = args
        self.settings = settings
        self.log = Log()
        self.log.uvicorn_level = _UVICORN_LEVELS[args.uvicorn_log_level]
        self.stop = asyncio.Event()

    async def _pause(self, seconds: float) -> bool:
        """Sleep, returning True early if a stop signal arrived."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    def _engine_line(self, where: str, message: str, level: str = "INFO") -> None:
        self.log.vllm(level, where, message, proc="EngineCore_DP0")

    def _worker_line(self, where: str, message: str) -> None:
        self.log.vllm("INFO", where, message, proc="Worker_TP0")

    async def run(self) -> int:
        """Simulate loading, serve, and return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        args, settings, log = self.args, self.settings, self.log
        total = settings.load_seconds
        t0 = time.monotonic()
        log.vllm("INFO", "__init__.py:216", "Automatically detected platform cuda.", proc=None)
        log.vllm(
            "INFO",
            "api_server.py:1839",
            f"vLLM API server version {settings.version} (stand-in TEST DOUBLE: no model, no GPU; timings are "
            f"simulated, profile={settings.profile.name}{', scripted' if settings.scripted else ''})",
        )
        log.vllm("INFO", "utils.py:233", f"non-default args: {non_default_args(self.parser, args)}")
        if args.disable_log_requests:
            log.vllm(
                "WARNING",
                "arg_utils.py:1891",
                "--disable-log-requests is deprecated; request logging is off unless --enable-log-requests.",
            )
        if settings.unknown_env:
            log.vllm(
                "WARNING", "vllm_standin.py:0", f"Unknown STANDIN_* variables ignored: {list(settings.unknown_env)}"
            )
        try:
            sock = self._bind()
        except OSError as exc:
            print(f"OSError: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr, flush=True)
            return 1
        log.vllm("INFO", "model.py:1510", f"Using max model len {args.max_model_len}")
        world = args.tensor_parallel_size * args.pipeline_parallel_size
        self._engine_line(
            "core.py:93",
            f"Initializing a V1 LLM engine (v{settings.version}) with config: model='{args.model}', "
            f"tokenizer='{args.tokenizer or args.model}', trust_remote_code={args.trust_remote_code}, "
            f"revision={args.revision}, tokenizer_revision={args.tokenizer_revision}, "
            f"max_seq_len={args.max_model_len}, tensor_parallel_size={args.tensor_parallel_size}, "
            f"pipeline_parallel_size={args.pipeline_parallel_size}, seed={args.seed}, "
            f"served_model_name={(args.served_model_name or [args.model])[0]}",
        )
        self._engine_line("multiproc_executor.py:720", f"Starting {world} worker processes (simulated)")
        self._worker_line("gpu_model_runner.py:2602", f"Starting to load model {args.model}...")
        if settings.hang_on_load:
            await self.stop.wait()  # never listen, never print again; only a signal ends it
            sock.close()
            return 0
        if settings.crash_on_load:
            if await self._pause(total * 0.5):
                return 0
            self._engine_line("core.py:708", "EngineCore failed to start.", level="ERROR")
            sys.stdout.flush()
            print(
                "Traceback (most recent call last):\n"
                '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", line 699, in '
                "run_engine_core\n"
                "    engine_core = EngineCoreProc(*args, **kwargs)\n"
                '  File "/usr/local/lib/python3.12/dist-packages/vllm/model_executor/model_loader/'
                'default_loader.py", line 305, in load_weights\n'
                "    loaded_weights = model.load_weights(self.get_all_weights(model_config, model))\n" + OOM_LINE,
                file=sys.stderr,
                flush=True,
            )
            sock.close()
            return 1
        if await self._pause(total * 0.55):
            return 0
        elapsed = time.monotonic() - t0
        self._worker_line("default_loader.py:267", f"Loading weights took {elapsed:.2f} seconds")
        self._worker_line(
            "gpu_model_runner.py:2653", f"Model loading took 0.00 GiB and {time.monotonic() - t0:.6f} seconds"
        )
        if await self._pause(total * 0.15):
            return 0
        kv = settings.profile.kv_cache_tokens
        self._engine_line("kv_cache_utils.py:1087", f"GPU KV cache size: {kv:,} tokens")
        self._engine_line(
            "kv_cache_utils.py:1091",
            f"Maximum concurrency for {args.max_model_len:,} tokens per request: {kv / args.max_model_len:.2f}x",
        )
        if await self._pause(total * 0.25):
            return 0
        self._worker_line(
            "gpu_model_runner.py:3480", f"Graph capturing finished in {total * 0.25:.0f} secs, took 0.00 GiB"
        )
        self._engine_line(
            "core.py:210",
            f"init engine (profile, create kv cache, warmup model) took {time.monotonic() - t0:.2f} seconds",
        )
        if await self._pause(total - (time.monotonic() - t0)):
            return 0
        app = App(args, settings, log)
        host = args.host or "0.0.0.0"  # vLLM binds all interfaces when --host is not given
        log.vllm("INFO", "api_server.py:1634", "Supported_tasks: ['generate']")
        if args.tool_call_parser:
            log.vllm(
                "INFO",
                "serving_chat.py:136",
                f'"auto" tool choice has been enabled, using tool parser {args.tool_call_parser}',
            )
        log.vllm("INFO", "api_server.py:1912", f"Starting vLLM API server 0 on http://{host}:{args.port}")
        log.vllm("INFO", "launcher.py:34", "Available routes are:")
        for path, methods in ROUTES:
            log.vllm("INFO", "launcher.py:42", f"Route: {path}, Methods: {methods}")
        server = await asyncio.start_server(app.handle, sock=sock, backlog=2048, limit=1 << 20)
        log.uvicorn("info", f"Started server process [{os.getpid()}]")
        log.uvicorn("info", "Waiting for application startup.")
        log.uvicorn("info", "Application startup complete.")
        stats = None
        if not args.disable_log_stats:
            stats = asyncio.create_task(self._stats_loop(app))
        await self.stop.wait()
        log.vllm("INFO", "launcher.py:110", "Shutting down FastAPI HTTP server.")
        log.uvicorn("info", "Shutting down")
        server.close()
        if stats is not None:
            stats.cancel()
        for task in list(app.tasks):
            task.cancel()
        await asyncio.gather(*app.tasks, return_exceptions=True)
        log.uvicorn("info", "Waiting for application shutdown.")
        log.uvicorn("info", "Application shutdown complete.")
        log.uvicorn("info", f"Finished server process [{os.getpid()}]")
        return 0

    def _bind(self) -> socket.socket:
        """Bind the port now (a conflict fails fast, as in vLLM) but listen only once loading is done."""
        host = self.args.host
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets that say they are
        # TCP. Without it, Nagle and delayed ACKs hold streamed chunks ~40 ms on reused connections (uvicorn, which
        # vLLM runs on, sets TCP_NODELAY), which would skew every client timing measured against this server.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "", self.args.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def _stats_loop(self, app: App) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval_s)
            app.log_stats()


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``vllm serve`` arguments and the STANDIN_* environment, then run."""
    # Until the event loop takes over, SIGTERM (docker stop) ends the process cleanly instead of with -15.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    argv = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with "vllm serve: error: ..." like vLLM
    if args.model_tag:
        args.model = args.model_tag
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as exc:
        print(f"vllm-standin: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        validate_args(args)
    except StartupError as exc:
        print(
            "Traceback (most recent call last):\n"
            '  File "/usr/local/bin/vllm", line 10, in <module>\n    sys.exit(main())\n'
            f"{exc.exc_type}: {exc.message}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return asyncio.run(Server(parser, args, settings).run())


if __name__ == "__main__":
    sys.exit(main())
