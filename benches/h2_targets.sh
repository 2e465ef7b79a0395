#!/usr/bin/env bash
# HTTP/2 targets: `seawall bench` (64 kept-alive HTTP/1.1 connections, on cpu1) through seawall's
# plain-HTTP listener to a target group with `protocol_version = "http2"`: nginx speaking h2c,
# also on cpu1. seawall runs with WORKERS data-plane workers (default 2) and may use both cores.
# Prints each round's requests per proxy CPU-second and each binary's median; the binaries take
# turns, so two builds compared in one run meet the same neighbours.
#
#   WORKERS=2 ROUNDS=3 benches/h2_targets.sh [BINARY...]   (default: target/release/seawall)
#
# Needs nginx (installed from Debian when missing). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need nginx nginx-light
export WORKERS=${WORKERS:-2}

cargo build --release --quiet
loadgen=target/release/seawall
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/seawall)

make_workdir

backend_port=$(free_port)
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 10000000;
  http2_max_concurrent_streams 1000;
  server {
    listen 127.0.0.1:$backend_port http2 reuseport backlog=4096;
    location = / { return 200 "hello from the backend\n"; }
  }
}
NGINX
taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A results
for round in $(seq "${ROUNDS:-3}"); do
    for bin in "${bins[@]}"; do
        port=$(free_port) admin_port=$(free_port)
        cat > "$work/seawall.toml" <<EOC
$(seawall_base "$admin_port")

[[listeners]]
name = "web"
bind = "127.0.0.1:$port"
protocol = "http"
default_action = { forward = "backend" }

[[target_groups]]
name = "backend"
protocol_version = "http2"
targets = ["127.0.0.1:$backend_port"]
EOC
        RUST_LOG=warn taskset -c 0,1 "$bin" run --config "$work/seawall.toml" 2>"$work/seawall.err" &
        pid=$! pids+=($!)
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
        before=$(cpu_ticks "$pid")
        out=$(taskset -c 1 "$loadgen" bench --json -c 64 -d 5s "http://127.0.0.1:$port/")
        after=$(cpu_ticks "$pid")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        line=$(python3 - "$out" "$((after - before))" "$clk" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
secs = int(sys.argv[2]) / int(sys.argv[3])
bad = r["errors_total"] + sum(n for s, n in r["status"].items() if not 200 <= int(s) < 300)
print(f'{r["requests"] / secs:.0f} {r["requests"]} {secs:.2f} {bad}')
PY
)
        read -r per_cpu requests secs bad <<<"$line"
        printf 'round %s  %-40s %9s per CPU-second (%s requests in %ss of CPU, %s errors or non-2xx)\n' \
            "$round" "$bin" "$per_cpu" "$requests" "$secs" "$bad"
        results[$bin]+="$per_cpu "
    done
done
echo "medians, per proxy CPU-second, workers = $WORKERS:"
for bin in "${bins[@]}"; do
    # shellcheck disable=SC2086 # the rounds are words
    printf '  %-40s %s\n' "$bin" "$(median ${results[$bin]})"
done
