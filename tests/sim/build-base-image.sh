#!/usr/bin/env bash
# Build the base image of the simulated GPU nodes WITHOUT a container registry:
# debootstrap a minimal Debian into a folder under /var/tmp, clean it, `docker import` it.
#
# usage: tests/sim/build-base-image.sh [--force] [SUITE] [IMAGE]
#   SUITE  Debian suite (default: trixie). Debian stands in for Ubuntu 24.04: Ubuntu's archive is out of reach here.
#   IMAGE  image name (default: kimi-vllm/base:SUITE)
#   --force  rebuild even if IMAGE already exists (default: an existing image is kept: the build is cached by tag)
# env:
#   DEBIAN_MIRROR  mirror URL handed to debootstrap (default: debootstrap's default, deb.debian.org)
#   SIM_WORKDIR    parent of the temporary rootfs (default: /var/tmp)
#
# Needs root (debootstrap), debootstrap itself and a docker CLI that reaches the engine.
set -euo pipefail

FORCE=0
ARGS=()
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build-base-image.sh: unknown option $a" >&2; exit 2 ;;
    *) ARGS+=("$a") ;;
  esac
done
SUITE=${ARGS[0]:-trixie}
IMAGE=${ARGS[1]:-kimi-vllm/base:$SUITE}
MIRROR=${DEBIAN_MIRROR:-}
WORKPARENT=${SIM_WORKDIR:-/var/tmp}

# Everything community.docker/ansible modules and the simulated node need INSIDE the container:
# python3-requests for community.docker modules run on the node, python3-apt for ansible.builtin.apt,
# systemd as PID 1 (+ dbus), kmod for modprobe/lsmod, procps/iproute2 for facts and testinfra.
PKGS=python3,python3-requests,python3-apt,systemd,systemd-sysv,dbus,procps,iproute2,ca-certificates,kmod

if ! command -v docker >/dev/null 2>&1; then
  echo "build-base-image.sh: the docker CLI is not on PATH" >&2
  exit 1
fi

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build-base-image.sh: $IMAGE already exists, nothing to do (use --force to rebuild)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  cat >&2 <<'EOF'
build-base-image.sh: debootstrap is not installed.
  Install it with:   apt-get install -y debootstrap      (as root, Debian/Ubuntu)
It builds the simulated nodes' base image from Debian's mirror (no container registry is used).
EOF
  exit 1
fi
DEBOOTSTRAP=$(command -v debootstrap || echo /usr/sbin/debootstrap)

if [ "$(id -u)" -ne 0 ]; then
  echo "build-base-image.sh: debootstrap needs root (run as root or with sudo)" >&2
  exit 1
fi

WORK=$(mktemp -d "$WORKPARENT/kimi-vllm-rootfs-$SUITE.XXXXXX")
cleanup() { rm -rf --one-file-system "$WORK"; }
trap cleanup EXIT

start=$(date +%s)
echo "build-base-image.sh: debootstrap --variant=minbase $SUITE into $WORK ${MIRROR:+(mirror $MIRROR)}"
# Mirror: debootstrap's own default unless DEBIAN_MIRROR is set (4th positional argument).
"$DEBOOTSTRAP" --variant=minbase --include="$PKGS" "$SUITE" "$WORK/rootfs" ${MIRROR:+"$MIRROR"} \
  > "$WORK/debootstrap.log" 2>&1 || {
  echo "build-base-image.sh: debootstrap failed; last lines of its log:" >&2
  tail -n 30 "$WORK/debootstrap.log" >&2
  exit 1
}

R=$WORK/rootfs
rm -f  "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin
rm -rf "$R"/var/lib/apt/lists/* "$R"/tmp/* "$R"/var/log/*.log
: > "$R"/etc/resolv.conf            # docker bind-mounts its own
echo localhost > "$R"/etc/hostname  # docker bind-mounts its own
: > "$R"/etc/machine-id             # systemd makes one at first boot

# `docker import --change` rejects STOPSIGNAL: the node image (tests/sim/node/Dockerfile) sets SIGRTMIN+3.
tar --numeric-owner --xattrs -C "$R" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL kimi.vllm.sim.base=$SUITE" \
  - "$IMAGE" >/dev/null

echo "build-base-image.sh: built $IMAGE in $(( $(date +%s) - start )) s"
docker image ls "$IMAGE"
