# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of make_models.py without vLLM: the hub cache layout, determinism, the tokenizer and its template, and
(with transformers on CPU) that the scripted model writes its script and the random one never closes its thinking.

Needs torch, transformers, tokenizers, safetensors and huggingface_hub (the vLLM venv or tests/realvllm's image has
them); skipped elsewhere: ``python -m pytest tests/realvllm/test_make_models.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file, save_file  # noqa: E402 - after the skips

_spec = importlib.util.spec_from_file_location("make_models", Path(__file__).with_name("make_models.py"))
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)

REPO = "moonshotai/Kimi-K2.7-Code"
WEATHER_TOOL = {  # as plugins/module_utils/_verify.py offers it
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
CHAT = [{"role": "user", "content": "Say hello in one short sentence."}]
TOOL_ASK = [{"role": "user", "content": "What is the weather in Paris right now? Use the get_weather tool."}]
AFTER_RESULT = [
    *TOOL_ASK,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "functions.get_weather:0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny, 21 C"},
]
PLAIN_REPLY = f"{mm.SCRIPTED['plain_reasoning']}</think>{mm.SCRIPTED['answer']}<|im_end|>"
TOOL_SECTION = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|><|im_end|>'
)
TOOL_REPLY = f"{mm.SCRIPTED['tool_reasoning']}</think>{TOOL_SECTION}"


def make(cache, kind, *extra):
    assert mm.main(["--kind", kind, "--repo-id", REPO, "--cache", str(cache), *extra]) == 0
    folder = mm.repo_folder(cache, REPO)
    revision = (folder / "refs" / "main").read_text()
    return folder / "snapshots" / revision


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return make(tmp_path_factory.mktemp("scripted"), "scripted")


@pytest.fixture(scope="module")
def k25(tmp_path_factory):
    return make(tmp_path_factory.mktemp("k25"), "kimi-k25-random")


@pytest.fixture(scope="module")
def tokenizer(scripted):
    return transformers.AutoTokenizer.from_pretrained(scripted)


@pytest.fixture(scope="module")
def model(scripted):
    return transformers.AutoModelForCausalLM.from_pretrained(scripted, dtype=torch.float32).eval()


def files_of(snapshot):
    return {path.name: path.read_bytes() for path in sorted(snapshot.iterdir())}


# ---- layout ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", mm.KINDS)
def test_hub_cache_layout(tmp_path, kind):
    snapshot = make(tmp_path, kind)
    folder = tmp_path / "hub" / "models--moonshotai--Kimi-K2.7-Code"
    revision = (folder / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", revision)
    assert snapshot == folder / "snapshots" / revision
    assert [path.name for path in (folder / "snapshots").iterdir()] == [revision]
    wanted = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    wanted |= {"chat_template.jinja", "README.md"}
    if kind == "kimi-k25-random":
        wanted.add("preprocessor_config.json")
    assert {path.name for path in snapshot.iterdir()} == wanted
    for path in snapshot.iterdir():  # relative symlinks into blobs/, named as the hub names them
        assert path.is_symlink()
        target = Path(os.readlink(path))
        assert target.parts[:3] == ("..", "..", "blobs")
        assert target.name == mm.blob_name(path.name, path.read_bytes())
    assert len(mm.blob_name("model.safetensors", b"x")) == 64  # sha256: an LFS file
    assert len(mm.blob_name("config.json", b"x")) == 40  # git blob sha1
    # Where huggingface_hub (and so vLLM with HF_HUB_OFFLINE=1) looks for the repo.
    found = huggingface_hub.snapshot_download(REPO, cache_dir=tmp_path / "hub", local_files_only=True)
    assert Path(found) == snapshot
    cached = huggingface_hub.try_to_load_from_cache(REPO, "config.json", cache_dir=tmp_path / "hub")
    assert Path(cached) == snapshot / "config.json"


@pytest.mark.parametrize("kind", mm.KINDS)
def test_same_arguments_same_bytes(tmp_path, kind):
    first = files_of(make(tmp_path / "a", kind))
    second = files_of(make(tmp_path / "b", kind))
    assert first == second
    again = files_of(make(tmp_path / "a", kind))  # regenerating in place replaces our own folder
    assert again == first


def test_seed_changes_only_the_random_weights(tmp_path):
    zero = files_of(make(tmp_path / "a", "kimi-k25-random"))
    one = files_of(make(tmp_path / "b", "kimi-k25-random", "--seed", "1"))
    assert zero["model.safetensors"] != one["model.safetensors"]
    assert zero["config.json"] == one["config.json"]
    assert zero["tokenizer.json"] == one["tokenizer.json"]


def test_never_replaces_a_folder_it_did_not_write(tmp_path):
    folder = mm.repo_folder(tmp_path, REPO)
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / "real-weights").write_text("595 GB")
    with pytest.raises(SystemExit, match=r"not written by make_models\.py"):
        mm.main(["--kind", "scripted", "--repo-id", REPO, "--cache", str(tmp_path)])
    assert (folder / "blobs" / "real-weights").exists()
    make(tmp_path, "scripted", "--force")
    assert not (folder / "blobs" / "real-weights").exists()


def test_repo_id_must_be_org_and_name(tmp_path):
    with pytest.raises(ValueError, match="ORG/NAME"):
        mm.repo_folder(tmp_path, "../escape")


# ---- tokenizer and chat template ---------------------------------------------------------------------------------

KIMI_TOKENS = [
    "<think>",
    "</think>",
    "<|tool_calls_section_begin|>",
    "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>",
    "<|tool_call_end|>",
    "<|tool_calls_section_end|>",
    "<|im_system|>",
    "<|im_user|>",
    "<|im_assistant|>",
    "<|im_middle|>",
    "<|im_end|>",
    "<|media_pad|>",
]


def test_kimi_tokens_are_single_tokens(tokenizer):
    for text in KIMI_TOKENS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == 1, text
        assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == "<|im_end|>"
    special = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    assert {"<|tool_call_begin|>", "<|tool_calls_section_begin|>", "<|im_end|>", "<|im_middle|>"} <= special
    assert "<think>" not in special  # visible in the text when no reasoning parser takes it out


def test_any_text_round_trips(tokenizer):
    text = 'naïve café ☕ {"a": [1, 2]}\n\ttabs and  spaces <|im_end|> tool_declare ## Return of x'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_template_renders_kimi_format(tokenizer):
    plain = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert plain == (
        "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>"
        "<|im_user|>user<|im_middle|>Say hello in one short sentence.<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|><think>"
    )
    tools = tokenizer.apply_chat_template(
        AFTER_RESULT, tools=[WEATHER_TOOL], add_generation_prompt=True, tokenize=False
    )
    declared = json.dumps([WEATHER_TOOL], separators=(",", ":"))
    assert tools.startswith(f"<|im_system|>tool_declare<|im_middle|>{declared}<|im_end|><|im_system|>system")
    assert (
        "<|im_assistant|>assistant<|im_middle|><think></think><|tool_calls_section_begin|><|tool_call_begin|>"
        'functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>'
        "<|tool_calls_section_end|><|im_end|>"
    ) in tools
    assert "<|im_system|>tool<|im_middle|>## Return of functions.get_weather:0\nsunny, 21 C<|im_end|>" in tools
    system = [{"role": "system", "content": "Be brief."}, *CHAT]
    own = tokenizer.apply_chat_template(system, add_generation_prompt=True, tokenize=False, thinking=False)
    assert own.startswith("<|im_system|>system<|im_middle|>Be brief.<|im_end|><|im_user|>")
    assert "You are Kimi" not in own
    assert own.endswith("<|im_assistant|>assistant<|im_middle|><think></think>")


def test_template_never_loops_over_content():
    # vLLM then detects the "string" content format and puts its media placeholders into the text itself.
    assert not re.search(r"for \w+ in message\[?'?\.?content", mm.CHAT_TEMPLATE)


# ---- the scripted model (transformers on CPU) --------------------------------------------------------------------


def generate(model, tokenizer, messages, steps=60, stop=True, temperature=None, seed=0, **template):
    """Token-by-token decoding; returns (text, smallest margin of the top logit over the next)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **template)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    sequence = torch.tensor([ids])
    generator = torch.Generator().manual_seed(seed)
    written, margins = [], []
    with torch.no_grad():
        for _step in range(steps):
            logits = model(sequence).logits[0, -1]
            top = torch.topk(logits, 2).values
            margins.append(float(top[0] - top[1]))
            if temperature is None:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            written.append(token)
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
            if stop and token == tokenizer.eos_token_id:
                break
    return tokenizer.decode(written), min(margins)


def test_plain_prompt_gives_reasoning_then_the_answer(model, tokenizer):
    text, margin = generate(model, tokenizer, CHAT)
    assert text == PLAIN_REPLY
    assert margin > 30


def test_tools_prompt_gives_a_native_kimi_tool_call(model, tokenizer):
    text, margin = generate(model, tokenizer, TOOL_ASK, tools=[WEATHER_TOOL])
    assert text == TOOL_REPLY
    assert margin > 30
    arguments = text.split("<|tool_call_argument_begin|>")[1].split("<|tool_call_end|>")[0]
    assert json.loads(arguments) == {"city": "Paris"}


def test_thinking_off_answers_at_once(model, tokenizer):
    assert generate(model, tokenizer, CHAT, thinking=False)[0] == f"{mm.SCRIPTED['answer']}<|im_end|>"
    assert generate(model, tokenizer, TOOL_ASK, tools=[WEATHER_TOOL], thinking=False)[0] == TOOL_SECTION


def test_after_a_tool_result_it_answers_in_text(model, tokenizer):
    assert generate(model, tokenizer, AFTER_RESULT, tools=[WEATHER_TOOL])[0] == PLAIN_REPLY


def test_long_prompt_keeps_the_branch(model, tokenizer):
    padded = [{"role": "user", "content": "word " * 2000 + TOOL_ASK[0]["content"]}]
    assert generate(model, tokenizer, padded, tools=[WEATHER_TOOL])[0] == TOOL_REPLY
    assert generate(model, tokenizer, padded)[0] == PLAIN_REPLY


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_at_temperature_one_gives_the_same_text(model, tokenizer, seed):
    assert generate(model, tokenizer, CHAT, temperature=1.0, seed=seed)[0] == PLAIN_REPLY
    assert generate(model, tokenizer, TOOL_ASK, tools=[WEATHER_TOOL], temperature=1.0, seed=seed)[0] == TOOL_REPLY


def test_past_eos_it_goes_round_again(model, tokenizer):
    # vllm bench serve forces ignore_eos: the chain must go on after <|im_end|>.
    steps = len(tokenizer.encode(PLAIN_REPLY, add_special_tokens=False)) + 3
    text, _margin = generate(model, tokenizer, CHAT, steps=steps, stop=False)
    assert text.startswith(PLAIN_REPLY + mm.SCRIPTED["plain_reasoning"][:7])


def test_scripted_config_is_what_vllm_cpu_runs(scripted):
    config = json.loads((scripted / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] >= 32  # vLLM's CPU attention needs a head size of at least 32
    assert config["max_position_embeddings"] == 262144
    generation = json.loads((scripted / "generation_config.json").read_text())
    tokenizer = mm.build_tokenizer()
    assert generation["eos_token_id"] == [tokenizer.token_to_id("<|im_end|>")]


# ---- kimi-k25-random ---------------------------------------------------------------------------------------------


def test_k25_config_is_the_production_architecture(k25):
    config = transformers.AutoConfig.from_pretrained(k25)
    assert type(config).__name__ == "Kimi_K25Config"
    assert config.architectures == ["KimiK25ForConditionalGeneration"]
    assert config.use_unified_vision_chunk is True
    text = config.text_config
    assert type(text).__name__ == "DeepseekV3Config"  # from model_type kimi_k2, as in Kimi's own config
    assert (text.kv_lora_rank, text.qk_rope_head_dim, text.topk_method) == (512, 64, "noaux_tc")
    assert text.n_routed_experts == 8 and text.num_experts_per_tok == 2 and text.n_shared_experts == 1
    assert text.first_k_dense_replace == 1 < text.num_hidden_layers
    assert config.vision_config.num_hidden_layers == 1
    tokenizer = transformers.AutoTokenizer.from_pretrained(k25)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|media_pad|>")
    media = json.loads((k25 / "preprocessor_config.json").read_text())["media_proc_cfg"]
    assert {"patch_size", "merge_kernel_size", "temporal_merge_kernel_size", "in_patch_limit"} <= set(media)


def test_k25_weights_are_named_for_vllms_loader(k25):
    tensors = load_file(k25 / "model.safetensors")
    shapes = {name: shape for name, shape, _init in mm.k25_shapes(mm._vocab_size(mm.build_tokenizer()))}
    assert {name: tuple(tensor.shape) for name, tensor in tensors.items()} == shapes
    assert {tensor.dtype for tensor in tensors.values()} == {torch.bfloat16}
    assert "language_model.model.layers.1.mlp.experts.7.down_proj.weight" in tensors
    assert "language_model.model.layers.1.mlp.gate.e_score_correction_bias" in tensors
    assert "vision_tower.encoder.blocks.0.wqkv.weight" in tensors
    assert "mm_projector.proj.2.weight" in tensors


def test_k25_random_model_never_closes_its_thinking(k25, tmp_path):
    # The text half as a DeepSeek-V3 checkpoint: transformers fuses the per-expert weights itself on load.
    tensors = load_file(k25 / "model.safetensors")
    text = {name.removeprefix("language_model."): t for name, t in tensors.items() if name.startswith("language_")}
    save_file(text, tmp_path / "model.safetensors", metadata={"format": "pt"})
    config = dict(json.loads((k25 / "config.json").read_text())["text_config"], model_type="deepseek_v3")
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = transformers.DeepseekV3ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(k25)
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=True)
    torch.manual_seed(0)
    with torch.no_grad():
        written = model.generate(
            torch.tensor([prompt["input_ids"]]),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            max_new_tokens=200,
            min_new_tokens=200,
            pad_token_id=tokenizer.pad_token_id,
        )
        logits = model(written).logits[0]
    never = [tokenizer.convert_tokens_to_ids(token) for token in mm.NEVER_WRITTEN]
    assert not set(written[0, len(prompt["input_ids"]) :].tolist()) & set(never)
    assert float(logits[:, never].max()) < -30
    assert len(set(written[0].tolist())) > 50  # otherwise random: many different tokens
