# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a tiny random Llama as GGUF for llama.cpp, and the same tokenizer for Hugging Face, without a download.

usage: make_gguf.py OUT_DIR [--seed N]  ->  OUT_DIR/tiny.gguf, OUT_DIR/tokenizer/{tokenizer.json,tokenizer_config.json}

The vocabulary is GPT-2 byte-level BPE: the 256 byte tokens, " a".." z", " aa".." zz" and three ChatML special
tokens. The only merges are "Ġ x" and then "Ġx y", so any text tokenizes one way, and a run of the two-letter words
the model writes (" qf kz ...") comes back as exactly as many tokens: a client that counts output tokens by
re-tokenizing the text (``vllm bench serve`` when no usage chunk comes) counts what llama.cpp generated.

Weights are seeded random (float32), but for one hand-set channel: hidden dimension 0 is 1 in every embedding and
no layer writes to it, so after the final RMSNorm it is large and positive (about sqrt(HIDDEN)), and a weight of
-10 on it in the output rows of every token but the two-letter words holds those logits near -80. The model never
writes an end-of-sequence token and keeps going to max_tokens, whether or not the server honours ``ignore_eos``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import string
import sys
import time
from pathlib import Path

import gguf
import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

HIDDEN = 64
LAYERS = 2
HEADS = 2
HEAD_DIM = HIDDEN // HEADS
FFN = 128
CONTEXT = 4096
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS = "<|im_end|>"
# ChatML; content may be a string or a list of parts (vllm bench serve and our client send [{"type": "text", ...}]).
# No whitespace control: llama-cpp-python and transformers both render with trim_blocks and lstrip_blocks.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_chars():
    """GPT-2's byte -> printable character table, the alphabet of byte-level BPE (llama.cpp's "gpt2" model too)."""
    kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in kept}
    for offset, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + offset)
    return table


def vocabulary():
    """(tokens in id order, merges, ids of the two-letter words)."""
    chars = byte_chars()
    space = chars[ord(" ")]
    letters = string.ascii_lowercase
    tokens = [chars[b] for b in range(256)]
    merges = [(space, x) for x in letters] + [(space + x, y) for x, y in itertools.product(letters, repeat=2)]
    tokens += ["".join(pair) for pair in merges]
    words = range(256 + len(letters), len(tokens))
    return [*tokens, *SPECIAL], merges, words


def hf_tokenizer(tokens, merges):
    vocab = {token: index for index, token in enumerate(tokens) if token not in SPECIAL}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in SPECIAL])
    if [tokenizer.token_to_id(token) for token in tokens] != list(range(len(tokens))):
        raise AssertionError("the Hugging Face ids differ from the GGUF ids")
    return tokenizer


def weights(vocab_size, words, seed):
    """``{gguf tensor name: float32 array}`` in llama.cpp's names, numpy shapes as convert_hf_to_gguf writes them."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(HIDDEN, dtype=np.float32)
    embed = normal(vocab_size, HIDDEN)
    embed[:, 0] = 1.0
    tensors = {"token_embd.weight": embed}
    for layer in range(LAYERS):
        block = {
            "attn_norm.weight": ones,
            "attn_q.weight": normal(HEADS * HEAD_DIM, HIDDEN),
            "attn_k.weight": normal(HEADS * HEAD_DIM, HIDDEN),
            "attn_v.weight": normal(HEADS * HEAD_DIM, HIDDEN),
            "attn_output.weight": normal(HIDDEN, HEADS * HEAD_DIM),
            "ffn_norm.weight": ones,
            "ffn_gate.weight": normal(FFN, HIDDEN),
            "ffn_up.weight": normal(FFN, HIDDEN),
            "ffn_down.weight": normal(HIDDEN, FFN),
        }
        block["attn_output.weight"][0] = 0.0  # the channel stays 1: nothing adds to it
        block["ffn_down.weight"][0] = 0.0
        tensors.update({f"blk.{layer}.{name}": tensor for name, tensor in block.items()})
    output = normal(vocab_size, HIDDEN)
    output[:, 0] = -10.0
    output[list(words), 0] = 0.0
    tensors["output_norm.weight"] = ones
    tensors["output.weight"] = output
    return tensors


def write_gguf(path, tokens, merges, tensors, seed):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"tiny-llama random seed {seed} (generated by kimi.vllm benchmarks/llamacpp/make_gguf.py)")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if token in SPECIAL else normal for token in tokens])
    writer.add_token_merges([f"{left} {right}" for left, right in merges])
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_hf_tokenizer(folder, tokenizer):
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": CONTEXT,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out", type=Path, help="folder for tiny.gguf and tokenizer/")
    parser.add_argument("--seed", type=int, default=0, help="random weights (default %(default)s)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tokens, merges, words = vocabulary()
    args.out.mkdir(parents=True, exist_ok=True)
    write_hf_tokenizer(args.out / "tokenizer", hf_tokenizer(tokens, merges))
    write_gguf(args.out / "tiny.gguf", tokens, merges, weights(len(tokens), words, args.seed), args.seed)
    size = (args.out / "tiny.gguf").stat().st_size
    print(
        f"wrote {args.out}/tiny.gguf ({size} bytes, vocab {len(tokens)}, hidden {HIDDEN}, {LAYERS} layers, "
        f"{HEADS} heads of {HEAD_DIM}) and {args.out}/tokenizer/ in {time.perf_counter() - started:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
