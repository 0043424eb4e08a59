#!/usr/bin/env bash
# Put a tiny generated model (tests/realvllm/make_models.py; never downloaded) into a Hugging Face cache folder.
#
# usage: tests/realvllm/models.sh KIND CACHE_DIR [REPO_ID]
#   KIND       scripted | kimi-k25-random (make_models.py --help says what each is)
#   CACHE_DIR  the folder a server mounts at /root/.cache/huggingface (HF_HOME); the model goes under hub/
#   REPO_ID    the hub name it is served under (default moonshotai/Kimi-K2.7-Code, the seed's)
#
# The model is generated once, inside the real-vLLM image (it has torch; tests/realvllm/build.sh builds it if
# missing), into .build/realvllm/models/<kind>-<hash of make_models.py and REPO_ID>, and copied from there (the
# hub layout's relative symlinks kept). A CACHE_DIR that already holds that model is left as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kind=${1:?usage: models.sh KIND CACHE_DIR [REPO_ID]}
cache=${2:?usage: models.sh KIND CACHE_DIR [REPO_ID]}
repo_id=${3:-moonshotai/Kimi-K2.7-Code}
case "$kind" in scripted|kimi-k25-random) ;; *)
  echo "realvllm/models.sh: unknown KIND '$kind' (expected scripted or kimi-k25-random)" >&2; exit 2 ;;
esac

key=$( { cat "$here/make_models.py"; echo "$kind $repo_id"; } | sha256sum | cut -c1-12)
store=$repo/.build/realvllm/models/$kind-$key
folder=hub/models--${repo_id//\//--}
if [ ! -d "$store/$folder" ]; then
  image=$("$here/build.sh")
  rm -rf "$store.tmp" && mkdir -p "$store.tmp"
  start=$(date +%s)
  docker run --rm --network none --entrypoint python3 -v "$here:/src:ro" -v "$store.tmp:/out" "$image" \
    /src/make_models.py --kind "$kind" --repo-id "$repo_id" --cache /out >&2
  rm -rf "$store" && mv "$store.tmp" "$store"
  echo "realvllm/models.sh: generated $kind as $repo_id in $(( $(date +%s) - start )) s" >&2
fi
mkdir -p "$cache/hub"
# The same bytes already there: nothing to do (the model is the cache's; it is never removed here).
if [ -d "$cache/$folder" ] && diff -rq "$store/$folder" "$cache/$folder" >/dev/null 2>&1; then
  exit 0
fi
# Only a model this repository generated is replaced (make_models.py leaves .kimi-vllm-generated in it): real
# weights in that folder stay, and the run stops.
if [ -d "$cache/$folder" ] && [ ! -e "$cache/$folder/.kimi-vllm-generated" ]; then
  echo "realvllm/models.sh: $cache/$folder holds a model this repository did not generate; left alone." >&2
  echo "  Point CACHE_DIR at another folder, or move that one away yourself." >&2
  exit 1
fi
rm -rf "${cache:?}/$folder"
cp -a "$store/$folder" "$cache/$folder"
echo "realvllm/models.sh: $kind copied into $cache/hub as $repo_id" >&2
