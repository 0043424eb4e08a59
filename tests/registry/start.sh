#!/usr/bin/env bash
# Start a local image registry on 127.0.0.1:5000 (Debian's docker-registry), unless one answers already.
# The test images are pushed here under their real names, so the roles' real pull path runs in tests.
# Data and log live in .build/registry; `tests/registry/stop.sh` stops it.
set -euo pipefail
addr=${REGISTRY_ADDR:-127.0.0.1:5000}
root=$(cd "$(dirname "$0")/../.." && pwd)/.build/registry

if curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then
  echo "registry already answering at $addr"
  exit 0
fi
command -v docker-registry >/dev/null || {
  echo "docker-registry is not installed: sudo apt-get install -y docker-registry" >&2
  exit 1
}
mkdir -p "$root/data"
# The packaged config wants htpasswd auth and listens on every interface: use our own.
cat > "$root/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $root/data
  delete:
    enabled: true
http:
  addr: $addr
YAML
nohup docker-registry serve "$root/config.yml" > "$root/registry.log" 2>&1 &
echo $! > "$root/registry.pid"
for _ in $(seq 1 50); do
  curl -fsS "http://$addr/v2/" >/dev/null 2>&1 && { echo "registry started at $addr (pid $(cat "$root/registry.pid"))"; exit 0; }
  sleep 0.2
done
echo "the registry did not answer at $addr; see $root/registry.log" >&2
exit 1
