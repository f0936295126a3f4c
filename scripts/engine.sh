#!/usr/bin/env bash
# Make a Docker engine reachable: use one that answers, else (as root) install Debian's docker.io
# and start dockerd in the background. Idempotent; safe to call before every job.
set -euo pipefail
sock=${MILABOX_DOCKER_SOCKET:-/var/run/docker.sock}
log=${MILABOX_DOCKERD_LOG:-/var/log/milabox-dockerd.log}

answers() { docker -H "unix://$sock" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then echo "engine: Docker $(docker -H "unix://$sock" version --format '{{.Server.Version}}') answers on $sock"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "engine: no Docker engine answers on $sock, and only root may install or start one here." >&2
  echo "engine: start your Docker engine (e.g. 'sudo systemctl start docker') and run this again." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "engine: installing Debian's docker.io (dockerd, containerd, runc) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
# Machines without bridge networking or iptables (containers, CI sandboxes) need these flags; milabox
# itself only uses network_mode none (runs) and host (builds).
echo "engine: starting dockerd (log: $log)"
setsid nohup dockerd --storage-driver overlay2 --iptables=false --bridge=none \
  --host "unix://$sock" >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if answers; then echo "engine: Docker $(docker -H "unix://$sock" version --format '{{.Server.Version}}') started"; exit 0; fi
  sleep 1
done
echo "engine: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
