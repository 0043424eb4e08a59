#!/usr/bin/env bash
# Stop the registry tests/registry/start.sh started (its data stays in .build/registry/data).
set -u
pidfile=$(cd "$(dirname "$0")/../.." && pwd)/.build/registry/registry.pid
[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && rm -f "$pidfile" && echo "registry stopped"
exit 0
