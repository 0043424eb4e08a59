#!/usr/bin/env bash
# Runs inside the newest-Ansible controller container (tests/compat/run.sh starts it): each PART on this
# container's Ansible, then one line per part with the versions it ran on and how it ended.
set -uo pipefail
make_args=(VENV=/opt/kimi-newest REQUIREMENTS=tests/compat/requirements-newest.txt)
export ANSIBLE_CONFIG=$PWD/ansible.cfg

# The image's venv is made from this same requirements file (the image tag hashes it): never reinstall it here.
touch /opt/kimi-newest/.installed
versions=$(make -s --no-print-directory "${make_args[@]}" versions)
echo "compat: $versions"
declare -A ended
status=0
for part in "$@"; do
  echo; echo "== compat $part (newest Ansible)"
  start=$SECONDS
  case "$part" in
    unit) make --no-print-directory "${make_args[@]}" unit ;;
    sanity) make --no-print-directory "${make_args[@]}" sanity ;;
    molecule) molecule test -s server ;;
    installed) pytest -q tests/integration/test_installed_collection.py ;;
  esac
  rc=$?
  ended[$part]="$([ $rc -eq 0 ] && echo passed || echo "FAILED (rc $rc)") in $((SECONDS - start)) s"
  [ $rc -eq 0 ] || status=1
done
echo
for part in "$@"; do echo "compat $part: ${ended[$part]} on $versions"; done
exit $status
