#!/usr/bin/env bash
# lab.sh starts a local metalforge control plane (embedded SQLite) with the seed data of example/,
# prints what to try, and stops everything it started on Ctrl-C or exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${METALFORGE_CACHE:-$HOME/.cache/metalforge}"
data="${METALFORGE_LAB_DIR:-$cache/lab}"
listen="${METALFORGE_LAB_LISTEN:-127.0.0.1:8080}"
grpc="${METALFORGE_LAB_GRPC:-127.0.0.1:50051}"
mkdir -p "$data"

bin/metal-api --data-dir "$data" --listen "$listen" --grpc-listen "$grpc" >"$data/metal-api.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
	curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$data/metal-api.log"; echo "metal-api exited" >&2; exit 1; }
	sleep 0.1
done
curl -fsS "http://$listen/healthz" >/dev/null || { echo "metal-api did not become healthy" >&2; exit 1; }

export METALCTL_URL="http://$listen"
export METALCTL_TOKEN="$(cat "$data/admin-token")"
bin/metalctl apply -f example/seed.yaml

cat <<MSG

metalforge lab is running (metal-api pid $pid, data in $data, log $data/metal-api.log).

In another shell:
  export METALCTL_URL=$METALCTL_URL
  export METALCTL_TOKEN=\$(cat $data/admin-token)
  bin/metalctl partition ls
  bin/metalctl size ls -o wide
  bin/metalctl network ls
  bin/metalctl network allocate --project demo --partition lab --name demo-net
  bin/metalctl ip allocate --project demo --network internet
  bin/metalctl machine ls          # machines appear here once hammers register (boot service, gRPC $grpc)
  bin/metalctl token create --role owner --project demo

REST: http://$listen/v1  (spec: http://$listen/v1/openapi.json, metrics: http://$listen/metrics)
Ctrl-C stops the lab; the data directory stays for the next start.
MSG
wait "$pid"
