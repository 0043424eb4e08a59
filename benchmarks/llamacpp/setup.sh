#!/usr/bin/env bash
# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# usage: benchmarks/llamacpp/setup.sh
#
# A second real server to benchmark against: llama-cpp-python's OpenAI-compatible server, built from its sdist
# (llama.cpp compiled here, CPU only) into .build/venv-llamacpp, and a tiny generated model in .build/llamacpp/model.
# Idempotent: the build is skipped while the venv's stamp matches the pins and CMAKE_ARGS below, the model while
# its stamp matches make_gguf.py. JOBS (default 2) sets the compiler's parallelism; the build runs under nice.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benchmarks/llamacpp
VENV=.build/venv-llamacpp
MODEL=.build/llamacpp/model
PY=${PYTHON:-python3}
# A plain CPU build: no BLAS, no OpenMP (one thread needs no worker pool), no HTTPS, no multimodal library (the
# server imports it only for vision chat handlers), no llama.cpp tests/tools/examples (off by default as a
# subproject; said again so the build stays small).
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAMA_OPENSSL=OFF -DLLAVA_BUILD=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"

venv_stamp() {
  cat "$HERE/requirements.txt" "$HERE/requirements-build.txt" | sha256sum | cut -c1-16
  echo "$CMAKE_ARGS"
}

step_started=$SECONDS
if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$(venv_stamp)" ]; then
  echo "venv: $VENV is up to date ($("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)'))"
else
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --require-hashes -r "$HERE/requirements-build.txt"
  # --no-cache-dir: pip's wheel cache does not know CMAKE_ARGS, so a cached build could come back with other flags.
  CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} nice -n 10 \
    "$VENV/bin/pip" install -q --no-cache-dir --require-hashes --no-build-isolation -r "$HERE/requirements.txt"
  venv_stamp > "$VENV/.stamp"
  echo "venv: built $VENV in $((SECONDS - step_started)) s"
fi

step_started=$SECONDS
generator=$(sha256sum "$HERE/make_gguf.py" | cut -c1-16)
if [ -f "$MODEL/.stamp" ] && [ "$(cat "$MODEL/.stamp")" = "$generator" ]; then
  echo "model: $MODEL is up to date (make_gguf.py $generator)"
else
  rm -rf "$MODEL"
  "$VENV/bin/python" "$HERE/make_gguf.py" "$MODEL"
  echo "$generator" > "$MODEL/.stamp"
  echo "model: generated $MODEL in $((SECONDS - step_started)) s"
fi
