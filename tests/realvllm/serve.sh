#!/usr/bin/env bash
# Start the REAL vLLM 0.32.0 server (CPU build, tiny generated models; not the production image) on this machine,
# with the seed's flags adapted for a CPU, and wait until /v1/models answers.
#
# usage: tests/realvllm/serve.sh MODEL_CACHE_DIR [PORT] [vllm serve args ...]
#        tests/realvllm/serve.sh --stop
#   MODEL_CACHE_DIR  a Hugging Face cache (holding hub/models--moonshotai--Kimi-K2.7-Code/...), mounted at
#                    /root/.cache/huggingface; a hub folder itself (holding models--*) is mounted at .../hub
#   PORT             default 8000; the server listens on 127.0.0.1:PORT (host network)
#   args             appended to the seed's flags (vLLM lets a later flag override an earlier one)
#   --stop           stop and remove the server this script started
# Prints the time to ready. One server at a time: a server this script started before is replaced.
# env: REALVLLM_IMAGE (default: tests/realvllm/build.sh's image, built if missing), REALVLLM_NAME (kimi-realvllm),
#      REALVLLM_TIMEOUT (900 s), REALVLLM_COMPILE_CACHE (.build/realvllm/vllm-cache, mounted at /root/.cache/vllm
#      to keep vLLM's compile cache; empty: none), VLLM_API_KEY (passed on, and used for the wait),
#      REALVLLM_CPUS (docker --cpuset-cpus, e.g. 0: the server's cores; benchmarks keep the client off them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
name=${REALVLLM_NAME:-kimi-realvllm}
label=kimi.vllm.realvllm.serve
timeout=${REALVLLM_TIMEOUT:-900}
compile_cache=${REALVLLM_COMPILE_CACHE-$repo/.build/realvllm/vllm-cache}

say() { echo "realvllm/serve.sh: $*" >&2; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

# Ours: the container carries our label. A container of that name without it is someone else's.
ours() { [ "$(docker container inspect -f "{{index .Config.Labels \"$label\"}}" "$name" 2>/dev/null)" = "$name" ]; }
exists() { docker container inspect "$name" >/dev/null 2>&1; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
  --stop)
    if ! exists; then say "no container $name"; exit 0; fi
    ours || { say "$name was not started by this script (no $label label): left alone"; exit 1; }
    docker rm -f "$name" >/dev/null
    say "stopped and removed $name"
    exit 0 ;;
esac

cache=$(realpath "$1"); shift
if [ -d "$cache/hub" ]; then
  mount=$cache:/root/.cache/huggingface
elif compgen -G "$cache/models--*" >/dev/null; then
  mount=$cache:/root/.cache/huggingface/hub
else
  say "$cache holds neither hub/ nor models--*: not a Hugging Face cache"
  exit 2
fi
port=8000
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then port=$1; shift; fi

if exists; then
  ours || { say "a container named $name exists and was not started by this script: set REALVLLM_NAME"; exit 1; }
  say "replacing the server this script started before ($name)"
  docker rm -f "$name" >/dev/null
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  say "something already listens on 127.0.0.1:$port: pick another PORT"
  exit 1
fi

image=${REALVLLM_IMAGE:-$("$here/build.sh")}
run=(--name "$name" --label "$label=$name" --network host --ipc host -v "$mount")
# vLLM's compile cache outlives the container: a restart is ~15 s shorter (55-66 s against 73-75 s here; its AOT
# cache still fails to load on 0.32.0 CPU, "'function' object has no attribute 'finalize_loading'", and recompiles).
if [ -n "$compile_cache" ]; then mkdir -p "$compile_cache"; run+=(-v "$compile_cache:/root/.cache/vllm"); fi
if [ -n "${REALVLLM_CPUS:-}" ]; then run+=(--cpuset-cpus "$REALVLLM_CPUS"); fi
# The key goes by name into the container and through stdin to curl: never onto a command line.
if [ -n "${VLLM_API_KEY:-}" ]; then run+=(-e VLLM_API_KEY); fi
models_answer() {
  if [ -n "${VLLM_API_KEY:-}" ]; then printf 'Authorization: Bearer %s\n' "$VLLM_API_KEY"; fi |
    curl -fsS --max-time 5 -H @- "http://127.0.0.1:$port/v1/models" 2>/dev/null
}

# The seed's `vllm serve` flags; a CPU has one tensor-parallel rank, and the host network wants a loopback bind.
flags=(--model moonshotai/Kimi-K2.7-Code --served-model-name kimi-k2.7-code --tensor-parallel-size 1
  --trust-remote-code --mm-encoder-tp-mode data --tool-call-parser kimi_k2 --reasoning-parser kimi_k2
  --enable-auto-tool-choice --host 127.0.0.1 --port "$port")

start=$(date +%s)
docker run -d "${run[@]}" "$image" "${flags[@]}" "$@" >/dev/null
say "started $name ($image) on 127.0.0.1:$port; waiting for /v1/models (up to $timeout s)"
next=30
while :; do
  elapsed=$(( $(date +%s) - start ))
  if [ "$(docker container inspect -f '{{.State.Running}}' "$name")" != true ]; then
    say "$name exited ($(docker container inspect -f '{{.State.ExitCode}}' "$name")) after $elapsed s; its last 50 lines:"
    docker logs --tail 50 "$name" >&2
    exit 1
  fi
  if models=$(models_answer); then break; fi
  if [ "$elapsed" -ge "$timeout" ]; then
    say "not ready after $elapsed s; still running ($name: serve.sh --stop removes it); its last 50 lines:"
    docker logs --tail 50 "$name" >&2
    exit 1
  fi
  if [ "$elapsed" -ge "$next" ]; then
    say "$elapsed s: $(docker logs --tail 1 "$name" 2>&1 | cut -c1-160)"
    next=$(( next + 30 ))
  fi
  sleep 1
done
say "ready in $(( $(date +%s) - start )) s: http://127.0.0.1:$port/v1/models -> $models"
say "benchmark: docker exec $name vllm bench serve --backend openai-chat --endpoint /v1/chat/completions" \
  "--model kimi-k2.7-code --tokenizer moonshotai/Kimi-K2.7-Code --base-url http://127.0.0.1:$port ..."
stop="tests/realvllm/serve.sh --stop"
[ "$name" = kimi-realvllm ] || stop="REALVLLM_NAME=$name $stop"
say "stop: $stop"
echo "$name"
