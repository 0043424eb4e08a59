#!/usr/bin/env bash
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The instrument to beat: `vllm bench serve` 0.33.0 from PyPI in its own venv (.build/venv-vllm), as a CPU-only client,
# plus a tokenizer of the stand-in's vocabulary for it (.build/bench-tokenizer).
#
# vllm is installed without its dependencies, then only what `vllm bench serve` imports is added. Its GPU kernels
# (flashinfer, tilelang, quack, cutlass-dsl, ...) are left out. torch cannot be: the CLI imports it at start
# (vllm/env_override.py), and PyPI's torch 2.14.0 wheel brings its CUDA libraries, so the venv is about 6.5 GB.
# The GPU is never touched. `Failed to import from vllm._C` is printed and harmless for the client.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.build/venv-vllm
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/vllm" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps vllm==0.33.0
  # What the CLI imports, from vllm 0.33.0's own requirement list less its GPU-only kernels.
  "$VENV/bin/pip" install -q torch==2.14.0 'transformers>=5.16.1,<5.21.0' 'tokenizers>=0.23.2' \
    aiohttp numpy tqdm regex pillow pyyaml psutil cachetools pydantic msgspec cloudpickle watchfiles \
    sentencepiece 'requests>=2.33.0' blake3 py-cpuinfo 'huggingface_hub>=1.31.0' safetensors protobuf \
    'fastapi[standard]>=0.133.0,<0.137.0' openai orjson prometheus_client prometheus-fastapi-instrumentator \
    tiktoken lark==1.2.2 partial-json-parser jsonschema pyzmq einops python-json-logger ninja pybase64 cbor2 \
    ijson setproctitle oss-harmony anthropic 'model-hosting-container-standards>=0.1.14,<1.0.0' 'mcp>=2.2.0,<3.0.0' \
    opentelemetry-sdk opentelemetry-api opentelemetry-exporter-otlp opentelemetry-semantic-conventions-ai uvloop \
    xgrammar==0.2.8 'llguidance>=1.7.0,<1.8.0'
fi
"$VENV/bin/vllm" bench serve --help > /dev/null
"$VENV/bin/python" benchmarks/make_tokenizer.py .build/bench-tokenizer
echo "vllm bench serve is $VENV/bin/vllm"
