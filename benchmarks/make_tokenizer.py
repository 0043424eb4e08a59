# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a Hugging Face tokenizer of the stand-in's vocabulary, for ``vllm bench serve`` (it needs a local one).

One token per vocabulary word, split on whitespace: the same count the stand-in's /tokenize gives for text made of
those words, so vLLM's prompts need no re-alignment. Run with the Python of the vLLM venv (it has ``tokenizers``):
``.build/venv-vllm/bin/python benchmarks/make_tokenizer.py .build/bench-tokenizer``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

REPO = Path(__file__).resolve().parents[1]


def standin_vocab() -> tuple:
    """The stand-in's word vocabulary (tests/standin/vllm_standin.py VOCAB)."""
    spec = importlib.util.spec_from_file_location("vllm_standin", REPO / "tests" / "standin" / "vllm_standin.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vllm_standin"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.VOCAB


def main(out: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json into ``out``."""
    vocab = {"[UNK]": 0}
    for word in standin_vocab():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with one space
    tok.add_special_tokens(["[UNK]"])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 262144}
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    print(f"wrote {out} ({len(vocab)} tokens)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else REPO / ".build" / "bench-tokenizer"))
