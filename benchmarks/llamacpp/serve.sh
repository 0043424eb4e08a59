#!/usr/bin/env bash
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# usage: benchmarks/llamacpp/serve.sh PORT [EXTRA SERVER OPTIONS...]
#   e.g. taskset -c 1 benchmarks/llamacpp/serve.sh 8090 --disable_ping_events True
#
# Runs llama-cpp-python's OpenAI-compatible server (built by setup.sh; through server.py, which only widens what
# requests it accepts) in the foreground on 127.0.0.1:PORT with the tiny generated model as "tiny-llama", on one
# thread; SIGTERM stops it. The server holds one model context and serves one request at a time:
# --interrupt_requests False makes concurrent requests wait their turn (by default a new request ends the running
# stream and its connection closes without the last chunk, which clients count as a failure). Context 2048:
# random prompts of 512 tokens can come back a little longer once re-encoded, plus 128 output tokens.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '6,7p' "$0" >&2
  exit 2
fi
PORT=$1
shift
cd "$(dirname "$0")/../.."
MODEL=.build/llamacpp/model/tiny.gguf
[ -f "$MODEL" ] || { echo "serve.sh: $MODEL is missing; run benchmarks/llamacpp/setup.sh" >&2; exit 1; }
exec .build/venv-llamacpp/bin/python benchmarks/llamacpp/server.py \
  --model "$MODEL" --model_alias tiny-llama --host 127.0.0.1 --port "$PORT" \
  --n_threads 1 --n_threads_batch 1 --n_ctx 2048 --logits_all False \
  --interrupt_requests False --verbose False "$@"
