#!/usr/bin/env python3
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tiny Kimi-shaped models for the real vLLM server, generated here and never downloaded.

They are written in the Hugging Face hub cache layout, so that ``vllm serve moonshotai/Kimi-K2.7-Code`` with
``HF_HOME=<cache> HF_HUB_OFFLINE=1`` finds them exactly where it would find the real weights::

    <cache>/hub/models--<org>--<name>/refs/main                        the revision below
    <cache>/hub/models--<org>--<name>/blobs/<git sha1 | sha256>        the file contents
    <cache>/hub/models--<org>--<name>/snapshots/<revision>/<file>      relative symlinks into blobs/

Two kinds; both carry the same byte-level tokenizer with Kimi's special tokens and a Kimi-style chat template:

``kimi-k25-random``
    ``KimiK25ForConditionalGeneration``, the production architecture: a 1-layer MoonViT vision tower and a
    2-layer DeepSeek-V3 text model (MLA, one dense layer, one MoE layer with 8 experts, top-2, 1 shared), seeded
    random weights in bfloat16. It proves that the production command line loads the production architecture.
    One hand-set channel keeps it from ever writing ``</think>`` or a tool marker, so its answers are all reasoning
    (random text, up to EOS or max_tokens): expected.

``scripted``
    A 1-layer Llama in float32 whose weights are set by hand, so that its output is fixed at any temperature:
    a short reasoning, ``</think>``, a fixed answer and ``<|im_end|>``; or, when the request offers tools, a short
    reasoning, ``</think>``, a native Kimi tool-call section calling ``get_weather({"city": "Paris"})`` and
    ``<|im_end|>``. Once a tool result is in the conversation it answers in text again. It exercises the kimi_k2
    reasoning and tool parsers end to end.

How the scripted model works (why the weights are what they are): the MLP is zero, so a token's logits are its
embedding through the final RMSNorm and ``lm_head``: a next-token table, one "state" dimension per group of tokens
that share a successor. Both branches pass through the same ``</think>``, so the branch needs context: the template
writes ``tool_declare`` when tools are offered and ``## Return of`` before a tool result, both single tokens. One
attention head has a constant query and a key only on those two tokens, so every position attends to them when they
are present (and uniformly to values of zero when not); its value is +1 for ``tool_declare`` and -1 for a result,
written to a "tools" dimension that tips the branching states towards the tool call. Without the marker the plain
answer wins the tie by a set margin. The key and query sit in the RoPE pair with the lowest frequency and
``rope_theta`` is 1e10, so the score does not depend on the distance (it turns by 1e-4 rad over 262,144 positions).
The chain never ends: ``<|im_end|>`` leads back to the start, so ``ignore_eos`` (``vllm bench serve``) just repeats it.

Only torch, transformers (not needed to generate), tokenizers, safetensors, huggingface_hub (not needed either) and
the standard library: the script runs on the host and inside tests/realvllm's image alike.

    make_models.py --kind scripted --repo-id moonshotai/Kimi-K2.7-Code --cache /tmp/hf
    HF_HOME=/tmp/hf HF_HUB_OFFLINE=1 vllm serve moonshotai/Kimi-K2.7-Code ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

KINDS = ("scripted", "kimi-k25-random")
DEFAULT_REPO_ID = "moonshotai/Kimi-K2.7-Code"
# Marks a repo folder as ours: a folder without it (real weights, perhaps hundreds of GB) is never removed.
MARKER = ".kimi-vllm-generated"

# ---- the tokenizer -------------------------------------------------------------------------------------------------

THINK_START, THINK_END = "<think>", "</think>"
IM_END = "<|im_end|>"
SECTION_BEGIN, SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL_BEGIN, ARG_BEGIN, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
MEDIA_PAD = "<|media_pad|>"
# Kimi's special tokens (names as in Kimi K2 / K2.5's tokenizer). The tool markers are special, so that without
# a tool parser they vanish from the text like the real ones; vLLM's kimi_k2 tool parser asks for them to be kept.
SPECIAL_TOKENS = (
    "[BOS]",
    "[EOS]",
    "[UNK]",
    "[PAD]",
    IM_END,
    "<|im_user|>",
    "<|im_assistant|>",
    "<|im_system|>",
    "<|im_middle|>",
    SECTION_BEGIN,
    SECTION_END,
    CALL_BEGIN,
    ARG_BEGIN,
    CALL_END,
    "<|media_begin|>",
    "<|media_content|>",
    "<|media_end|>",
    MEDIA_PAD,
    "<|kimi_k25_video_placeholder|>",
)
# The context markers the chat template writes; plain added tokens, so the text reads the same with or without them.
TOOLS_MARKER = "tool_declare"
RESULT_MARKER = "## Return of"
# <think> and </think> are not special: without a reasoning parser they stay in the text, where the checks see them.
PLAIN_ADDED_TOKENS = (THINK_START, THINK_END, TOOLS_MARKER, RESULT_MARKER)

# ---- what the scripted model writes ------------------------------------------------------------------------------
# Every piece is one token. A piece may be in both branches (a token then follows the context), never twice in one.
PLAIN_REASONING = ("A", " short,", " direct", " reply", " will", " do.")
PLAIN_ANSWER = ("Hello!", " This", " is", " the", " scripted", " test", " model.")
TOOL_REASONING = ("Weather", " needs", " live", " data,", " so", " I", " call", " get_weather", " for", " Paris.")
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = ('{"city', '": "', 'Paris"}')
TOOL_CALL = (SECTION_BEGIN, CALL_BEGIN, f"functions.{TOOL_NAME}:0", ARG_BEGIN, *TOOL_ARGUMENTS, CALL_END, SECTION_END)
# The replies as text: what tests and the README compare with.
SCRIPTED = {
    "plain_reasoning": "".join(PLAIN_REASONING),
    "answer": "".join(PLAIN_ANSWER),
    "tool_reasoning": "".join(TOOL_REASONING),
    "tool_id": f"functions.{TOOL_NAME}:0",
    "tool_name": TOOL_NAME,
    "tool_arguments": "".join(TOOL_ARGUMENTS),
}
SCRIPT_PIECES = (*PLAIN_REASONING, *PLAIN_ANSWER, *TOOL_REASONING, TOOL_CALL[2], *TOOL_ARGUMENTS)

DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."

# Kimi K2's chat format: <|im_system|>tool_declare<|im_middle|>[tools]<|im_end|>, a default system message,
# <|im_ROLE|>ROLE<|im_middle|>...<|im_end|> per message, tool results as "## Return of <id>\n<content>", tool calls
# in Kimi's native section, and the generation prompt opening <think> (or closing it at once with thinking=false).
# message.content is only ever printed, never looped over: vLLM then hands it over as one string (its "string"
# content format) and puts its own media placeholders into it.
CHAT_TEMPLATE = (
    "{%- if tools -%}"
    "<|im_system|>tool_declare<|im_middle|>{{ tools | tojson(separators=(',', ':')) }}<|im_end|>"
    "{%- endif -%}"
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "<|im_system|>system<|im_middle|>" + DEFAULT_SYSTEM + "<|im_end|>"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = message['role'] -%}"
    "{%- if role == 'system' -%}"
    "<|im_system|>system<|im_middle|>{{ message['content'] or '' }}<|im_end|>"
    "{%- elif role == 'user' -%}"
    "<|im_user|>user<|im_middle|>{{ message['content'] or '' }}<|im_end|>"
    "{%- elif role == 'assistant' -%}"
    "<|im_assistant|>assistant<|im_middle|><think>"
    "{{ message.get('reasoning') or message.get('reasoning_content') or '' }}</think>"
    "{{ message['content'] or '' }}"
    "{%- if message.get('tool_calls') -%}"
    "<|tool_calls_section_begin|>"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set arguments = call['function']['arguments'] -%}"
    "<|tool_call_begin|>{{ call['id'] }}<|tool_call_argument_begin|>"
    "{%- if arguments is string -%}{{ arguments }}{%- else -%}{{ arguments | tojson }}{%- endif -%}"
    "<|tool_call_end|>"
    "{%- endfor -%}"
    "<|tool_calls_section_end|>"
    "{%- endif -%}"
    "<|im_end|>"
    "{%- elif role == 'tool' -%}"
    "<|im_system|>{{ message.get('name') or 'tool' }}<|im_middle|>## Return of "
    "{{ message.get('tool_call_id') or '' }}\n{{ message['content'] or '' }}<|im_end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "<|im_assistant|>assistant<|im_middle|>"
    "{%- if thinking is defined and not thinking -%}<think></think>{%- else -%}<think>{%- endif -%}"
    "{%- endif -%}"
)


def _bytes_to_unicode():
    """GPT-2's byte-to-character table: every byte becomes one printable character, so byte-level BPE can cover
    any text with 256 base tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def build_tokenizer():
    """Byte-level tokenizer: ids 0-255 are the bytes, then one token per scripted piece (never produced by
    encoding: there are no merges, so prompts are bytes), then the added and special tokens."""
    byte_chars = _bytes_to_unicode()
    vocab = {byte_chars[byte]: byte for byte in range(256)}
    for piece in SCRIPT_PIECES:
        vocab.setdefault("".join(byte_chars[b] for b in piece.encode()), len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_tokens([AddedToken(text, special=False, normalized=False) for text in PLAIN_ADDED_TOKENS])
    tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in SPECIAL_TOKENS])
    return tokenizer


def piece_id(tokenizer, piece):
    """The id of one scripted piece or added token."""
    token = tokenizer.token_to_id(piece)
    if token is None:
        byte_chars = _bytes_to_unicode()
        token = tokenizer.token_to_id("".join(byte_chars[b] for b in piece.encode()))
    if token is None:
        raise KeyError(piece)
    return token


def tokenizer_files(tokenizer, model_max_length):
    """tokenizer.json, tokenizer_config.json and chat_template.jinja as bytes."""
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "[BOS]",
        "eos_token": IM_END,
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }
    return {
        "tokenizer.json": tokenizer.to_str(pretty=True).encode() + b"\n",
        "tokenizer_config.json": _json(config),
        "chat_template.jinja": CHAT_TEMPLATE.encode() + b"\n",
    }


def _json(doc):
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _vocab_size(tokenizer):
    return -(-tokenizer.get_vocab_size(with_added_tokens=True) // 64) * 64


# ---- scripted: a Llama with hand-set weights -----------------------------------------------------------------------

HIDDEN = 128
HEADS = 4
HEAD_DIM = 32
ROPE_THETA = 1e10
MAX_POSITIONS = 262144  # Kimi-K2.7-Code's context
# Logit design, before the final RMSNorm multiplies by sqrt(128 / 2) = 8 (sqrt(128 / 3) with the tools dimension
# set): the right token's weight, the handicap of the tool branch when no tools are offered, and the pull of the
# tools dimension. Smallest margins: 8 * 6 = 48 without tools, 6.5 * ((20 - 6 + 6) - (20 - 6)) = 39 with them.
WEIGHT = 20.0
TIE_BREAK = 6.0
PULL = 6.0
ATTENTION_SCORE = 40.0  # e^40 outweighs 262,144 positions of score 0 by e^27


def transitions(tokenizer):
    """``{token: (next without tools, next with tools)}`` for every token the script passes through, plus the start
    state (every other token, ``<think>`` and ``<|im_end|>``) under the key None."""

    def ids(pieces):
        return [piece_id(tokenizer, piece) for piece in pieces]

    end = piece_id(tokenizer, IM_END)
    plain = [*ids(PLAIN_REASONING), piece_id(tokenizer, THINK_END), *ids(PLAIN_ANSWER), end]
    tools = [*ids(TOOL_REASONING), piece_id(tokenizer, THINK_END), *ids(TOOL_CALL), end]
    table = {None: [plain[0], tools[0]]}
    for branch, path in enumerate((plain, tools)):
        for here, after in zip(path, path[1:]):
            if here == end:
                continue
            pair = table.setdefault(here, [None, None])
            if pair[branch] not in (None, after):
                raise ValueError(f"token {here} has two successors in one branch: the script repeats a piece")
            pair[branch] = after
    for pair in table.values():  # a token met in one branch only goes on the same way in the other
        pair[0] = pair[1] if pair[0] is None else pair[0]
        pair[1] = pair[0] if pair[1] is None else pair[1]
    return {token: tuple(pair) for token, pair in table.items()}


def scripted_weights(tokenizer):
    """The state dict of the scripted Llama (float32) and the dimensions it uses."""
    vocab = _vocab_size(tokenizer)
    table = transitions(tokenizer)
    pairs = sorted(set(table.values()))
    state_of_pair = {pair: index for index, pair in enumerate(pairs)}
    bias_dim, declare_dim, result_dim, tools_dim = HIDDEN - 4, HIDDEN - 3, HIDDEN - 2, HIDDEN - 1
    if len(pairs) > bias_dim:
        raise ValueError(f"{len(pairs)} states do not fit in {HIDDEN} dimensions")
    start = state_of_pair[table[None]]

    embed = torch.zeros(vocab, HIDDEN)
    embed[:, start] = 1.0
    embed[:, bias_dim] = 1.0
    for token, pair in table.items():
        if token is not None:
            embed[token, start] = 0.0
            embed[token, state_of_pair[pair]] = 1.0
    embed[piece_id(tokenizer, TOOLS_MARKER), declare_dim] = 1.0
    embed[piece_id(tokenizer, RESULT_MARKER), result_dim] = 1.0

    # RMSNorm scales a token of two unit components by sqrt(HIDDEN / 2), a marker (three) by sqrt(HIDDEN / 3).
    plain_scale, marker_scale = math.sqrt(HIDDEN / 2), math.sqrt(HIDDEN / 3)
    # Head 0 only: query and key in dimension 15, paired by RoPE with 31 at the lowest frequency.
    q_proj = torch.zeros(HEADS * HEAD_DIM, HIDDEN)
    k_proj = torch.zeros(HEADS * HEAD_DIM, HIDDEN)
    v_proj = torch.zeros(HEADS * HEAD_DIM, HIDDEN)
    o_proj = torch.zeros(HIDDEN, HEADS * HEAD_DIM)
    slow = HEAD_DIM // 2 - 1
    qk = math.sqrt(ATTENTION_SCORE * math.sqrt(HEAD_DIM) / (plain_scale * marker_scale))
    q_proj[slow, bias_dim] = qk
    k_proj[slow, declare_dim] = qk
    k_proj[slow, result_dim] = qk
    v_proj[0, declare_dim] = 1.0 / marker_scale
    v_proj[0, result_dim] = -1.0 / marker_scale
    o_proj[tools_dim, 0] = 1.0

    lm_head = torch.zeros(vocab, HIDDEN)
    for (plain, tools), state in state_of_pair.items():
        lm_head[plain, state] += WEIGHT
        if tools != plain:
            lm_head[tools, state] += WEIGHT - TIE_BREAK
            if lm_head[tools, tools_dim] < 0 or lm_head[plain, tools_dim] > 0:
                raise ValueError("a token follows a branch in one context and another branch in the other")
            lm_head[tools, tools_dim] = PULL
            lm_head[plain, tools_dim] = -PULL

    layer = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": embed,
        layer + "input_layernorm.weight": torch.ones(HIDDEN),
        layer + "post_attention_layernorm.weight": torch.ones(HIDDEN),
        layer + "self_attn.q_proj.weight": q_proj,
        layer + "self_attn.k_proj.weight": k_proj,
        layer + "self_attn.v_proj.weight": v_proj,
        layer + "self_attn.o_proj.weight": o_proj,
        layer + "mlp.gate_proj.weight": torch.zeros(HIDDEN * 2, HIDDEN),
        layer + "mlp.up_proj.weight": torch.zeros(HIDDEN * 2, HIDDEN),
        layer + "mlp.down_proj.weight": torch.zeros(HIDDEN, HIDDEN * 2),
        "model.norm.weight": torch.ones(HIDDEN),
        "lm_head.weight": lm_head,
    }
    return tensors


def scripted_files(tokenizer):
    vocab = _vocab_size(tokenizer)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": HIDDEN * 2,
        "num_hidden_layers": 1,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rms_norm_eps": 1e-06,
        "rope_theta": ROPE_THETA,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "max_position_embeddings": MAX_POSITIONS,
        "vocab_size": vocab,
        "bos_token_id": piece_id(tokenizer, "[BOS]"),
        "eos_token_id": piece_id(tokenizer, IM_END),
        "pad_token_id": piece_id(tokenizer, "[PAD]"),
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    files = {
        "config.json": _json(config),
        "generation_config.json": _json(
            {"bos_token_id": config["bos_token_id"], "eos_token_id": [config["eos_token_id"]]}
        ),
        "model.safetensors": safetensors_bytes(scripted_weights(tokenizer), metadata={"format": "pt"}),
        **tokenizer_files(tokenizer, MAX_POSITIONS),
    }
    return files


# ---- kimi-k25-random: the production architecture, tiny ---------------------------------------------------------

TEXT = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 2,
    "first_k_dense_replace": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "q_lora_rank": 64,
    "kv_lora_rank": 512,  # vLLM's CPU MLA needs 512 and a rope head of 64 (Kimi K2's own sizes)
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 64,
    "v_head_dim": 64,
}
VISION = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1}
PATCH = 14
POS_EMB = (64, 64, 4)  # height, width, time


def k25_config(tokenizer):
    vocab = _vocab_size(tokenizer)
    media_pad = piece_id(tokenizer, MEDIA_PAD)
    text = {
        "model_type": "kimi_k2",
        "architectures": ["DeepseekV3ForCausalLM"],
        "vocab_size": vocab,
        **TEXT,
        "n_group": 1,
        "topk_group": 1,
        "topk_method": "noaux_tc",  # else vLLM wants no e_score_correction_bias: KeyError on load
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.827,
        "moe_layer_freq": 1,
        "num_nextn_predict_layers": 0,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "max_position_embeddings": MAX_POSITIONS,
        "rope_theta": 50000.0,
        "rope_scaling": {
            "type": "yarn",
            "factor": 64.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        "bos_token_id": piece_id(tokenizer, "[BOS]"),
        "eos_token_id": piece_id(tokenizer, IM_END),
        "pad_token_id": piece_id(tokenizer, "[PAD]"),
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "dtype": "bfloat16",
    }
    vision = {
        "model_type": "kimi_k25_vision",
        **VISION,
        "patch_size": PATCH,
        "pos_emb_height": POS_EMB[0],
        "pos_emb_width": POS_EMB[1],
        "pos_emb_time": POS_EMB[2],
        "merge_kernel_size": [2, 2],
        "merge_type": "sd2_tpool",
        "pos_emb_type": "divided_fixed",
        "video_attn_type": "spatial_temporal",
        "mm_projector_type": "patchmerger",
        "projector_hidden_act": "gelu",
        "projector_ln_eps": 1e-05,
        "hidden_act": "gelu_pytorch_tanh",
    }
    return {
        "architectures": ["KimiK25ForConditionalGeneration"],
        "model_type": "kimi_k25",
        "text_config": text,
        "vision_config": vision,
        "projection_hidden_size": VISION["hidden_size"],
        "image_token_id": media_pad,
        "media_placeholder_token_id": media_pad,
        "use_unified_vision_chunk": True,  # else vLLM takes no image ("At most 0 image(s)")
        "video_placeholder": "<|kimi_k25_video_placeholder|>",
        "pad_token_id": piece_id(tokenizer, "[PAD]"),
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "dtype": "bfloat16",
    }


def k25_shapes(vocab):
    """``(name, shape, init)`` of every tensor, named as Kimi K2.5's checkpoint names them (what vLLM's loader reads:
    transformers' own Kimi_K25 classes name and fuse them differently). init: normal, ones or zeros."""
    t, v = TEXT, VISION
    hidden, heads = t["hidden_size"], t["num_attention_heads"]
    qk_head = t["qk_nope_head_dim"] + t["qk_rope_head_dim"]
    vh, merged = v["hidden_size"], v["hidden_size"] * 4
    shapes = [
        ("vision_tower.patch_embed.proj.weight", (vh, 3, PATCH, PATCH), "normal"),
        ("vision_tower.patch_embed.proj.bias", (vh,), "zeros"),
        ("vision_tower.patch_embed.pos_emb.weight", (POS_EMB[0], POS_EMB[1], vh), "normal"),
    ]
    for block in range(v["num_hidden_layers"]):
        p = f"vision_tower.encoder.blocks.{block}."
        shapes += [
            (p + "norm0.weight", (vh,), "ones"),
            (p + "norm0.bias", (vh,), "zeros"),
            (p + "norm1.weight", (vh,), "ones"),
            (p + "norm1.bias", (vh,), "zeros"),
            (p + "wqkv.weight", (3 * vh, vh), "normal"),
            (p + "wqkv.bias", (3 * vh,), "zeros"),
            (p + "wo.weight", (vh, vh), "normal"),
            (p + "wo.bias", (vh,), "zeros"),
            (p + "mlp.fc0.weight", (v["intermediate_size"], vh), "normal"),
            (p + "mlp.fc0.bias", (v["intermediate_size"],), "zeros"),
            (p + "mlp.fc1.weight", (vh, v["intermediate_size"]), "normal"),
            (p + "mlp.fc1.bias", (vh,), "zeros"),
        ]
    shapes += [
        ("vision_tower.encoder.final_layernorm.weight", (vh,), "ones"),
        ("vision_tower.encoder.final_layernorm.bias", (vh,), "zeros"),
        ("mm_projector.pre_norm.weight", (vh,), "ones"),
        ("mm_projector.pre_norm.bias", (vh,), "zeros"),
        ("mm_projector.proj.0.weight", (merged, merged), "normal"),
        ("mm_projector.proj.0.bias", (merged,), "zeros"),
        ("mm_projector.proj.2.weight", (hidden, merged), "normal"),
        ("mm_projector.proj.2.bias", (hidden,), "zeros"),
        ("language_model.model.embed_tokens.weight", (vocab, hidden), "normal"),
    ]
    for layer in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{layer}."
        shapes += [
            (p + "input_layernorm.weight", (hidden,), "ones"),
            (p + "post_attention_layernorm.weight", (hidden,), "ones"),
            (p + "self_attn.q_a_proj.weight", (t["q_lora_rank"], hidden), "normal"),
            (p + "self_attn.q_a_layernorm.weight", (t["q_lora_rank"],), "ones"),
            (p + "self_attn.q_b_proj.weight", (heads * qk_head, t["q_lora_rank"]), "normal"),
            (p + "self_attn.kv_a_proj_with_mqa.weight", (t["kv_lora_rank"] + t["qk_rope_head_dim"], hidden), "normal"),
            (p + "self_attn.kv_a_layernorm.weight", (t["kv_lora_rank"],), "ones"),
            (
                p + "self_attn.kv_b_proj.weight",
                (heads * (t["qk_nope_head_dim"] + t["v_head_dim"]), t["kv_lora_rank"]),
                "normal",
            ),
            (p + "self_attn.o_proj.weight", (hidden, heads * t["v_head_dim"]), "normal"),
        ]
        if layer < t["first_k_dense_replace"]:
            size = t["intermediate_size"]
            shapes += [
                (p + "mlp.gate_proj.weight", (size, hidden), "normal"),
                (p + "mlp.up_proj.weight", (size, hidden), "normal"),
                (p + "mlp.down_proj.weight", (hidden, size), "normal"),
            ]
            continue
        size = t["moe_intermediate_size"]
        shapes += [
            (p + "mlp.gate.weight", (t["n_routed_experts"], hidden), "normal"),
            (p + "mlp.gate.e_score_correction_bias", (t["n_routed_experts"],), "zeros"),
        ]
        for expert in [f"experts.{e}" for e in range(t["n_routed_experts"])] + ["shared_experts"]:
            width = size * (t["n_shared_experts"] if expert == "shared_experts" else 1)
            shapes += [
                (p + f"mlp.{expert}.gate_proj.weight", (width, hidden), "normal"),
                (p + f"mlp.{expert}.up_proj.weight", (width, hidden), "normal"),
                (p + f"mlp.{expert}.down_proj.weight", (hidden, width), "normal"),
            ]
    shapes += [
        ("language_model.model.norm.weight", (hidden,), "ones"),
        ("language_model.lm_head.weight", (vocab, hidden), "normal"),
    ]
    return shapes


# Tokens the random model must never write. With a vocabulary of 320, random weights write each token about once in
# 320 (with Kimi's 163,840 almost never): </think> would end the thinking at random and put noise in the answer,
# stray tool markers would reach the content.
NEVER_WRITTEN = (THINK_START, THINK_END, SECTION_BEGIN, SECTION_END, CALL_BEGIN, ARG_BEGIN, CALL_END)


def k25_weights(tokenizer, seed):
    """Seeded random weights, but for one hand-set channel: hidden dimension 0 is 1 in every embedding and no layer
    writes to it, so after the final RMSNorm it is always large and positive, and a weight of -10 on it in the
    lm_head rows of NEVER_WRITTEN holds those logits near -100: the model thinks on until EOS or max_tokens."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape, init in k25_shapes(_vocab_size(tokenizer)):
        if init == "normal":
            tensor = torch.randn(shape, generator=generator) * 0.02
        else:
            tensor = torch.ones(shape) if init == "ones" else torch.zeros(shape)
        tensors[name] = tensor
    tensors["language_model.model.embed_tokens.weight"][:, 0] = 1.0
    for name, tensor in tensors.items():
        if name.endswith(("self_attn.o_proj.weight", "down_proj.weight", "mm_projector.proj.2.weight")):
            tensor[0] = 0.0
    tensors["mm_projector.proj.2.bias"][0] = 1.0  # image positions carry the channel too
    for token in NEVER_WRITTEN:
        tensors["language_model.lm_head.weight"][piece_id(tokenizer, token), 0] = -10.0
    return {name: tensor.to(torch.bfloat16) for name, tensor in tensors.items()}


def k25_files(tokenizer, seed):
    config = k25_config(tokenizer)
    media = {
        "patch_size": PATCH,
        "merge_kernel_size": 2,
        "temporal_merge_kernel_size": 4,
        "in_patch_limit": 16384,
        "in_patch_limit_each_frame": 4096,
        "in_patch_limit_video": 40000,
        "patch_limit_on_one_side": 512,
        "fixed_output_tokens": None,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "sample_fps": 2.0,
        "max_num_frames_each_video": None,
        "timestamp_mode": "hh:mm:ss.fff",
    }
    text = config["text_config"]
    return {
        "config.json": _json(config),
        "generation_config.json": _json({"bos_token_id": text["bos_token_id"], "eos_token_id": [text["eos_token_id"]]}),
        "preprocessor_config.json": _json({"media_proc_cfg": media}),
        "model.safetensors": safetensors_bytes(k25_weights(tokenizer, seed), metadata={"format": "pt"}),
        **tokenizer_files(tokenizer, MAX_POSITIONS),
    }


# ---- the hub cache layout ------------------------------------------------------------------------------------------

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


def blob_name(filename, data):
    """What the hub names a blob: the sha256 of an LFS file, the git blob sha1 of any other."""
    if filename.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def readme(kind, repo_id, seed, files):
    lines = [
        f"# {repo_id}: a GENERATED TEST MODEL, not Kimi",
        "",
        f"Written by kimi.vllm's tests/realvllm/make_models.py (--kind {kind}"
        + (f", --seed {seed}" if kind == "kimi-k25-random" else "")
        + "), never downloaded. Same arguments, same bytes.",
        "",
        "| file | bytes |",
        "|---|---|",
        *[f"| {name} | {len(data)} |" for name, data in sorted(files.items())],
        "",
    ]
    if kind == "scripted":
        lines += [
            "Hand-set weights; the output is fixed at any temperature:",
            f"- no tools: reasoning {SCRIPTED['plain_reasoning']!r}, `</think>`, answer {SCRIPTED['answer']!r};",
            (
                f"- tools offered: reasoning {SCRIPTED['tool_reasoning']!r}, `</think>`, a Kimi tool call "
                f"`{SCRIPTED['tool_id']}` with `{SCRIPTED['tool_arguments']}`;"
            ),
            "- after a tool result: the plain answer again. Then `<|im_end|>`, and round again under ignore_eos.",
            "",
        ]
    else:
        lines += ["KimiK25ForConditionalGeneration with seeded random weights: it loads, it never stops thinking.", ""]
    return "\n".join(lines).encode()


def revision_of(files):
    """A 40-hex revision that names the contents: same files, same revision."""
    manifest = "".join(f"{name}\0{blob_name(name, data)}\n" for name, data in sorted(files.items()))
    return hashlib.sha1(manifest.encode()).hexdigest()


def repo_folder(cache, repo_id):
    """Where huggingface_hub looks for a model: <HF_HOME>/hub/models--<org>--<name>."""
    if not re.fullmatch(r"\w[\w.-]*/\w[\w.-]*", repo_id):
        raise ValueError(f"--repo-id must be ORG/NAME, got {repo_id!r}")
    return Path(cache) / "hub" / ("models--" + repo_id.replace("/", "--"))


def write_hub_cache(cache, repo_id, files, force=False):
    """Replace the repo's folder in the cache by these files; return (snapshot folder, revision)."""
    folder = repo_folder(cache, repo_id)
    if folder.exists():
        if not (folder / MARKER).exists() and not force:
            raise SystemExit(
                f"{folder} exists and was not written by make_models.py (no {MARKER}): it may hold real weights. "
                "Remove it yourself, or pass --force."
            )
        shutil.rmtree(folder)
    revision = revision_of(files)
    snapshot = folder / "snapshots" / revision
    (folder / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    for name, data in sorted(files.items()):
        blob = blob_name(name, data)
        (folder / "blobs" / blob).write_bytes(data)
        os.symlink(Path("..", "..", "blobs", blob), snapshot / name)
    (folder / "refs" / "main").write_text(revision)  # no newline: huggingface_hub writes it so
    (folder / MARKER).write_text(f"{revision}\n")
    return snapshot, revision


def generate(kind, seed=0):
    """The files of one model, as ``{filename: bytes}``."""
    tokenizer = build_tokenizer()
    if kind == "scripted":
        return scripted_files(tokenizer)
    if kind == "kimi-k25-random":
        return k25_files(tokenizer, seed)
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID, help="hub name vLLM is given (default %(default)s)")
    parser.add_argument("--cache", required=True, help="the HF_HOME vLLM runs with; the model goes under DIR/hub/")
    parser.add_argument("--seed", type=int, default=0, help="random weights of kimi-k25-random (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace a repo folder this script did not write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    files = generate(args.kind, args.seed)
    files["README.md"] = readme(args.kind, args.repo_id, args.seed, files)
    snapshot, revision = write_hub_cache(args.cache, args.repo_id, files, force=args.force)
    total = sum(len(data) for data in files.values())
    print(
        f"{args.kind}: {args.repo_id} revision {revision}, {len(files)} files, {total} bytes, "
        f"{time.perf_counter() - started:.1f} s\n{snapshot}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
