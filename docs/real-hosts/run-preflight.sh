#!/usr/bin/env bash
# Run gpu_facts and the preflight role on the machine this runs on (local connection), three ways:
# defaults, the H200 overrides, and the overrides with the disk check skipped. Prints everything.
# Needs ansible-core and community.docker importable; see docs/real-hosts/README.md for how they travel.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$repo/.build/collections}"
export ANSIBLE_CONFIG="$repo/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
cd "$repo"

section() { printf '\n===== %s\n$ %s\n' "$1" "$2"; }

section "host" "uname -r; head -2 /etc/os-release; nvidia-smi --query-gpu=name,driver_version --format=csv"
uname -r; head -2 /etc/os-release; nvidia-smi --query-gpu=name,driver_version --format=csv

section "gpu_facts" "ansible localhost -i localhost, -c local -m kimi.vllm.gpu_facts"
ansible localhost -i localhost, -c local -m kimi.vllm.gpu_facts
echo "rc=$?"

section "preflight, defaults" "ansible-playbook -i localhost, -c local playbooks/preflight.yml"
ansible-playbook -i localhost, -c local playbooks/preflight.yml
echo "rc=$?"

section "preflight, H200 overrides" \
  "ansible-playbook -i localhost, -c local playbooks/preflight.yml -e @docs/real-hosts/h200-overrides.yml"
ansible-playbook -i localhost, -c local playbooks/preflight.yml -e @docs/real-hosts/h200-overrides.yml
echo "rc=$?"

section "preflight, H200 overrides, all rows shown, check mode" \
  "ansible-playbook -i localhost, -c local playbooks/preflight.yml -e @docs/real-hosts/h200-overrides.yml -e preflight_show_all=true --check"
ansible-playbook -i localhost, -c local playbooks/preflight.yml -e @docs/real-hosts/h200-overrides.yml \
  -e preflight_show_all=true --check
echo "rc=$?"
