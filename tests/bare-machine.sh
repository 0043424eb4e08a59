#!/usr/bin/env bash
# Time `make demo` or `make test` on a bare machine: a fresh container that has only the README's
# prerequisites (Debian 13, git, make, Python 3, a docker CLI on this machine's engine), a fresh clone of HEAD,
# and an engine holding no image of this repository's (they are removed first, so debootstrap runs again).
#
# usage: tests/bare-machine.sh demo|test
#
# Why a container is a fair stand-in: the README's commands install what they need with apt-get and pip
# into that container, exactly as on a new machine; only the Docker engine is shared (through its socket).
# The clone lives at the same path inside and out (/var/tmp/kimi-bare/...), and so does /var/tmp/kimi-sim,
# because the engine resolves bind-mount paths on this machine. The container uses this machine's network
# (the local registry on 127.0.0.1:5000 must be the one the engine pulls from); the registry that a checkout
# here may run is stopped first. If this machine reaches PyPI through a TLS-inspecting proxy, its CA bundle
# is handed in (a real machine here would have it installed too). Leaves the simulated fleet of `make demo`
# running; `make sim-down` removes it.
set -euo pipefail
what=${1:-}
case "$what" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
bare_image=kimi-vllm/bare-machine:trixie
base=kimi-vllm/base:trixie

# The bare machine's image: Debian 13 from the repository's debootstrap base, plus git, make and a docker CLI.
# It is made before the images are removed and keeps no name that `make` looks for.
if ! docker image inspect "$bare_image" >/dev/null 2>&1; then
  docker image inspect "$base" >/dev/null 2>&1 || "$repo/tests/sim/build-base-image.sh" trixie "$base"
  context=$(mktemp -d)
  cat > "$context/Dockerfile" <<EOF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      git make docker-cli && rm -rf /var/lib/apt/lists/*
RUN printf '[global]\ncert = /etc/kimi-host-ca.crt\n' > /etc/pip.conf
EOF
  docker build -q -t "$bare_image" "$context" >/dev/null
  rm -rf "$context"
fi

echo "bare-machine: removing this repository's images and stopping its local registry"
bash "$repo/tests/registry/stop.sh" >/dev/null 2>&1 || true
docker ps -aq --filter label=kimi.vllm.sim | xargs -r docker rm -f >/dev/null
ours=$(docker image ls --format '{{.Repository}}:{{.Tag}}' \
  | grep -v ':<none>$' | grep -E '^(kimi-vllm/(base|sim-node|standin|compat-newest|vllm-cpu)|127\.0\.0\.1:5000/)' || true)
[ -z "$ours" ] || docker image rm -f $ours >/dev/null

work=/var/tmp/kimi-bare/$(date +%Y%m%d-%H%M%S)-$what
mkdir -p "$work" /var/tmp/kimi-sim
git clone -q "$repo" "$work/kimi-vllm"
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
ca_mount=()
[ -r "$ca" ] && ca_mount=(-v "$ca:/etc/kimi-host-ca.crt:ro" -e SSL_CERT_FILE=/etc/kimi-host-ca.crt
  -e PIP_CERT=/etc/kimi-host-ca.crt -e REQUESTS_CA_BUNDLE=/etc/kimi-host-ca.crt)

echo "bare-machine: make $what in a fresh container (log: $work/make-$what.log)"
start=$(date +%s)
rc=0
# debootstrap (the simulated nodes' base image) makes device nodes and mounts /proc in its chroot, as root may on
# a real machine: the container gets those two capabilities (--privileged cannot be used on every engine).
docker run --rm --init --network host -v /var/run/docker.sock:/var/run/docker.sock \
  --cap-add SYS_ADMIN --cap-add MKNOD --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  -v "$work:$work" -v /var/tmp/kimi-sim:/var/tmp/kimi-sim "${ca_mount[@]}" -w "$work/kimi-vllm" \
  "$bare_image" make "$what" > "$work/make-$what.log" 2>&1 || rc=$?
elapsed=$(( $(date +%s) - start ))
tail -n 25 "$work/make-$what.log"
printf 'bare-machine: make %s exited %d after %d min %02d s (%s, %s cores)\n' \
  "$what" "$rc" $((elapsed / 60)) $((elapsed % 60)) "$(git -C "$repo" rev-parse --short HEAD)" "$(nproc)"
exit "$rc"
