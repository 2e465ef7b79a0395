#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: repeatable on a
# shared, noisy machine (instructions, not seconds), so it tells whether a change to the hot path
# made it cheaper before compare.sh can. Kernel time (about half of all CPU here) is not counted.
#
#   benches/callgrind.sh [keepalive|h2|handshake] [requests, default 20000]
#   RULES=100 benches/callgrind.sh keepalive    # the listener has 100 rules; none matches the
#                                               # measured request, which takes the default action
#   ACCESS_LOG=alb benches/callgrind.sh h2      # with the access log on, written to a file
#                                               # (alb or json); the writer thread is counted too
#   WORKERS=2 benches/callgrind.sh keepalive    # the data plane of two workers (two threads)
#   SEAWALL_BIN=target/pgo/seawall benches/callgrind.sh h2   # a binary built beforehand
#
# seawall (the dist build, with line tables for the annotation) runs under callgrind in front of
# an nginx backend; `seawall bench` warms the connections up, then instrumentation is switched on
# for exactly the measured requests. Prints the instructions per request and the top functions
# by inclusive cost; the profile stays in target/callgrind.out for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-keepalive}
n=${2:-20000}

. benches/common.sh
need nginx nginx-light
need valgrind valgrind
need openssl openssl

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${SEAWALL_BIN:-}" ]; then
    bin=$(realpath "$SEAWALL_BIN")
else
    CARGO_PROFILE_DIST_DEBUG=line-tables-only cargo build --profile dist --quiet
    bin=$target_dir/dist/seawall
fi
out=$target_dir/callgrind.out

# extra_rules N: N-1 more rules of every condition kind after the listener's one, none of which
# matches the measured request, so that it is tried against all N (the worst case of a listener
# of N rules; exact-host rules are skipped by the router's host index, the others are tested).
extra_rules() {
    local i
    for ((i = 2; i <= $1; i++)); do
        case $((i % 7)) in
            0) m="host = [\"svc$i.example.test\"]" ;;
            1) m="host = [\"*.svc$i.example.test\"]" ;;
            2) m="path = [\"/api/v$i/*\"]" ;;
            3) m="header = { \"x-tenant\" = [\"t$i\"] }" ;;
            4) m="method = [\"POST\"], path = [\"/m$i\"]" ;;
            5) m="query = { v = [\"$i\"] }" ;;
            6) m="source_ip = [\"10.$((i % 256)).0.0/16\"]" ;;
        esac
        printf '  [[listeners.rules]]\n  priority = %d\n  match = { %s }\n' "$i" "$m"
        printf '  action = { fixed_response = { status = 200, body = "rule %d" } }\n' "$i"
    done
}

make_workdir
backend_port=$(free_port) port=$(free_port) admin_port=$(free_port)

openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/backend.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/backend.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$backend_port; location = / { return 200 "hello from the backend\n"; } }
}
EOF
nginx -c "$work/backend.conf" -p "$work" & pids+=($!)

cat > "$work/seawall.toml" <<EOF
$(seawall_base "$admin_port")
$(seawall_certificate ecdsa "$work/cert.pem" "$work/key.pem")
$(seawall_listener web "$port" ecdsa)
$(extra_rules "${RULES:-1}")

[[target_groups]]
name = "backend"
targets = ["127.0.0.1:$backend_port"]
EOF
if [ -n "${ACCESS_LOG:-}" ]; then
    # Not beside the configuration: its folder is watched for edits, and under valgrind's
    # slowness each of the writer's batches is a few lines, so the watcher's wake-up per batch
    # would be charged to a handful of requests instead of the hundreds of a real batch.
    mkdir -p "$work/logs"
    printf '\n[access_log]\npath = "%s"\nformat = "%s"\n' "$work/logs/access.log" "$ACCESS_LOG" \
        >>"$work/seawall.toml"
fi
rm -f "$out"*
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no \
    "$bin" run --config "$work/seawall.toml" 2>"$work/valgrind.log" & vg=$!; pids+=("$vg")
for _ in $(seq 300); do curl -fsk "https://localhost:$port/fixed" >/dev/null 2>&1 && break; sleep 0.2; done

url="https://localhost:$port/"
case $mode in
    keepalive) args=(-c 16) ;;
    h2) args=(-c 4 --h2 --streams 10) ;;
    handshake) args=(-c 4 --new-connection --tls 1.3); url="https://localhost:$port/fixed" ;;
    *) echo "unknown mode $mode (keepalive, h2, handshake)" >&2; exit 2 ;;
esac
"$bin" bench -k --json "${args[@]}" -n 2000 "$url" >/dev/null
callgrind_control -i on "$vg" >/dev/null 2>&1
"$bin" bench -k --json "${args[@]}" -n "$n" "$url" >"$work/bench.json"
callgrind_control -i off "$vg" >/dev/null 2>&1
callgrind_control -d "$vg" >/dev/null 2>&1
errors=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors_total"])' "$work/bench.json")

# The dump callgrind_control asked for is the file with instructions in it.
profile=$(grep -al '^totals: [1-9]' "$out"* | head -1)
total=$(awk '/^totals:/ {print $2}' "$profile")
# A dump on request leaves its summary line at 0, which callgrind_annotate then prints as empty.
sed -i "s/^summary: 0\$/summary: $total/" "$profile"
echo "$mode${ACCESS_LOG:+ (access log: $ACCESS_LOG)}: $n requests ($errors errors), $total instructions, $((total / n)) per request"
if [ -n "${ACCESS_LOG:-}" ]; then
    echo "access log: $(wc -l <"$work/logs/access.log") lines"
fi
echo "profile: $profile (callgrind_annotate --inclusive=yes $profile)"
callgrind_annotate --inclusive=yes "$profile" 2>/dev/null \
    | sed 's|/root/.cargo/registry/src/[^/]*/||' | grep -E '^ *[0-9,]+ ' | sed -n '2,30p'
