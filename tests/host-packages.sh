#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that `make demo` or `make test` need on this machine, and nothing else.
#
# usage: tests/host-packages.sh demo|test
#   demo  what `make demo` / `make sim-up` need: debootstrap (the simulated nodes' base image),
#         docker-registry (the local registry on 127.0.0.1:5000 the stand-in image is pulled from),
#         curl (the registry scripts), python3-venv (the .venv) and ca-certificates
#   test  the same, plus chromium (renders the benchmark report in a test), openssl (TLS unit tests) and tshark
#         (dumpcap and tshark: the benchmarks' wire truth, benchmarks/wire.py, checked by tests/unit/test_wire.py)
#
# As root, the missing packages are installed with apt-get. Otherwise the exact `sudo apt-get install ...`
# line is printed and the script exits 1, so that make stops before anything half-works.
# Already-installed packages cost nothing (dpkg is asked first). `.ci/run` calls this script too.
# Prerequisites it does not install: a running Docker engine, git, make and Python 3 (see README.md).
set -euo pipefail

what=${1:-}
case "$what" in
  demo) packages=(debootstrap docker-registry curl ca-certificates) ;;
  test) packages=(debootstrap docker-registry curl ca-certificates chromium openssl tshark) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
# `python3 -m venv` needs ensurepip, which Debian ships separately; a Python that has it (pyenv, a
# distribution that bundles it) needs no package.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "host-packages.sh: this is not a Debian/Ubuntu machine (no apt-get); install the equivalents of: ${missing[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  {
    echo "make $what needs these Debian packages, which are not installed: ${missing[*]}"
    echo "Install them, then run make $what again:"
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
  } >&2
  exit 1
fi
echo "host-packages.sh: apt-get install ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's docker-registry package enables its own service on systemd machines, listening on every interface
# with htpasswd auth; the tests start their own on 127.0.0.1 (tests/registry/start.sh). Keep the packaged one off.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
