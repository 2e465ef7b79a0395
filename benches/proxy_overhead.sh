#!/usr/bin/env bash
# Proxy overhead: `wrk -c 64` over HTTPS keep-alive through seawall, and in the same run directly to
# the backend (nginx on plain HTTP answering a small fixed body). The ratio is what the proxy costs.
#
#   benches/proxy_overhead.sh [duration, default 10s]
#
# Needs wrk and nginx (installed from Debian when missing). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}

. benches/common.sh
need wrk wrk
need nginx nginx-light

cargo build --release --quiet
work=$(mktemp -d)
cleanup() { kill "$sw_pid" "$ng_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

backend_port=$(free_port); https_port=$(free_port); admin_port=$(free_port)

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$backend_port;
    location / { return 200 "hello from the backend\n"; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" & ng_pid=$!

cat > "$work/seawall.toml" <<TOML
[admin]
bind = "127.0.0.1:$admin_port"

[[certificates]]
name = "bench"
self_signed = ["localhost"]

[[listeners]]
name = "https"
bind = "127.0.0.1:$https_port"
protocol = "https"
certificates = ["bench"]
default_action = { forward = "backend" }

[[target_groups]]
name = "backend"
targets = ["127.0.0.1:$backend_port"]
TOML
RUST_LOG=warn ./target/release/seawall run --config "$work/seawall.toml" & sw_pid=$!

for _ in $(seq 50); do curl -fsk "https://localhost:$https_port/" >/dev/null 2>&1 && break; sleep 0.1; done

rps() { wrk -t2 -c64 -d"$duration" "$1" | awk '/Requests\/sec/ {print $2}'; }
direct=$(rps "http://127.0.0.1:$backend_port/")
proxied=$(rps "https://localhost:$https_port/")
echo "direct to backend (HTTP):       $direct req/s"
echo "through seawall (HTTPS, h1 k-a): $proxied req/s"
awk -v p="$proxied" -v d="$direct" 'BEGIN { printf "ratio seawall/direct:           %.2f\n", p / d }'
