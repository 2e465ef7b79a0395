#!/usr/bin/env bash
# seawall next to nginx and HAProxy on this machine: the same certificates, the same backend, the
# same load generator (`seawall bench`), one proxy worker each pinned to cpu0 and everything else
# (backend, load generator) on cpu1, all on 127.0.0.1.
#
#   benches/compare.sh [seconds per scenario, default 5]
#
# Environment: PROFILE=dist|release (seawall's build, default dist: LTO, codegen-units=1);
# ACCESS_LOG=alb|json turns seawall's access log on, written to a file (the peers keep theirs off);
# SCENARIOS="hs-ecdsa 1mib ..." runs only those (default: all); ROUNDS=N (default 3) runs each
# load scenario N times per proxy, the proxies taking turns, and the table shows each proxy's
# median: on this shared machine one proxy's figure moves by tens of percent between runs, and a
# burst of load from a neighbour then lands on one round of one proxy, not on its result.
#
# Scenarios (each proxy in turn, in the same run):
#   hs-ecdsa   full TLS 1.3 handshakes, ECDSA P-256 certificate, X25519, a fixed response each
#   hs-rsa     the same with an RSA-2048 certificate
#   keepalive  HTTPS HTTP/1.1 keep-alive requests proxied to the backend, 64 connections
#   h2         HTTP/2 requests proxied, 16 connections x 10 streams
#   1mib       1 MiB responses proxied, 8 connections
#   idle-mem   RSS growth of the proxy for 5 000 idle TLS keep-alive connections
#
# Figure of merit: work per CPU-second of the proxy (utime+stime of all its processes from
# /proc/PID/stat, before and after), because on 2 cores the load generator saturates first. The
# absolute rate is printed beside it. The load generator never resumes TLS sessions, and seawall's
# own counters confirm that its handshakes were full ones.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
profile=${PROFILE:-dist}
rounds=${ROUNDS:-3}

. benches/common.sh
need nginx nginx-light
need haproxy haproxy
need openssl openssl
need python3 python3

if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --profile "$profile" --quiet; fi
bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile/seawall
make_workdir
# 5 000 held connections and their backend sides fit in the usual hard limit (20 000 here).
ulimit -n "$(ulimit -Hn)"


# ---- certificates: the same files for every proxy ----------------------------------------------
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/ecdsa-key.pem" -out "$work/ecdsa.pem" 2>/dev/null
openssl req -x509 -nodes -newkey rsa:2048 -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/rsa-key.pem" -out "$work/rsa.pem" 2>/dev/null
cat "$work/ecdsa.pem" "$work/ecdsa-key.pem" > "$work/ecdsa-haproxy.pem"
cat "$work/rsa.pem" "$work/rsa-key.pem" > "$work/rsa-haproxy.pem"

# ---- backend: nginx on cpu1, a small body on / and 1 MiB on /1m -------------------------------
backend_port=$(free_port)
mkdir -p "$work/backend/www"
head -c 1048576 /dev/urandom > "$work/backend/www/1m"
cat > "$work/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$backend_port reuseport backlog=4096;
    location = / { return 200 "hello from the backend\n"; }
    location = /1m { root $work/backend/www; }
  }
}
EOF
taskset -c 1 nginx -c "$work/backend/nginx.conf" -p "$work/backend" & pids+=($!)

# ---- the three proxies, on cpu0 ------------------------------------------------------------------
declare -A port_ecdsa port_rsa pid_of
for p in seawall nginx haproxy; do port_ecdsa[$p]=$(free_port); port_rsa[$p]=$(free_port); done
admin_port=$(free_port)

cat > "$work/seawall.toml" <<EOF
$(seawall_base "$admin_port")
$(seawall_certificate ecdsa "$work/ecdsa.pem" "$work/ecdsa-key.pem")
$(seawall_certificate rsa "$work/rsa.pem" "$work/rsa-key.pem")
$(seawall_listener ecdsa "${port_ecdsa[seawall]}" ecdsa)
$(seawall_listener rsa "${port_rsa[seawall]}" rsa)

[[target_groups]]
name = "backend"
targets = ["127.0.0.1:$backend_port"]
EOF
if [ -n "${ACCESS_LOG:-}" ]; then
    printf '\n[access_log]\npath = "%s"\nformat = "%s"\n' "$work/access.log" "$ACCESS_LOG" \
        >>"$work/seawall.toml"
fi
RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/seawall.toml" & pid_of[seawall]=$!; pids+=($!)

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 10000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  upstream backend { server 127.0.0.1:$backend_port; keepalive 128; }
  server {
    listen 127.0.0.1:${port_ecdsa[nginx]} ssl http2 backlog=4096;
    ssl_certificate $work/ecdsa.pem;
    ssl_certificate_key $work/ecdsa-key.pem;
    location = /fixed { return 200 "ok\n"; }
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${port_rsa[nginx]} ssl http2 backlog=4096;
    ssl_certificate $work/rsa.pem;
    ssl_certificate_key $work/rsa-key.pem;
    location = /fixed { return 200 "ok\n"; }
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
taskset -c 0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & pid_of[nginx]=$!; pids+=($!)

cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe_ecdsa
  bind 127.0.0.1:${port_ecdsa[haproxy]} ssl crt $work/ecdsa-haproxy.pem alpn h2,http/1.1
  maxconn 9000
  http-request return status 200 content-type text/plain string "ok" if { path /fixed }
  default_backend be
frontend fe_rsa
  bind 127.0.0.1:${port_rsa[haproxy]} ssl crt $work/rsa-haproxy.pem alpn h2,http/1.1
  maxconn 9000
  http-request return status 200 content-type text/plain string "ok" if { path /fixed }
  default_backend be
backend be
  server b1 127.0.0.1:$backend_port maxconn 1000
EOF
taskset -c 0 haproxy -f "$work/haproxy.cfg" -db & pid_of[haproxy]=$!; pids+=($!)

for p in seawall nginx haproxy; do
    for _ in $(seq 100); do
        curl -fsk "https://localhost:${port_ecdsa[$p]}/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsk "https://localhost:${port_ecdsa[$p]}/" >/dev/null || { echo "$p did not start" >&2; exit 1; }
done

# ---- measuring ---------------------------------------------------------------------------------
clk=$(getconf CLK_TCK)
# Every process of a proxy: the one started and its children (nginx's worker).
procs() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local t=0; for q in $(procs "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat"))); done; echo "$t"; }
rss_kib() { local t=0; for q in $(procs "$1"); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$q/status"))); done; echo "$t"; }
# Ticks the hypervisor gave to other guests while cpu0 (the proxy's) wanted to run: /proc/stat's
# steal column. A share of the run above a few percent means the machine's neighbours were busy.
steal_ticks() { awk '$1 == "cpu0" { print $9 }' /proc/stat; }
metric() { curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# bench PROXY LABEL FIELD ARGS...: runs `seawall bench --json` on cpu1 against PROXY, prints
# "<work per proxy CPU-second> <absolute rate> <suite>" where the work is the report's FIELD
# (requests, handshakes.full or bytes.body).
declare -A result rate suite rounds_of rates_of
# median V...: the middle value (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
run_bench() {
    local proxy=$1 label=$2 field=$3; shift 3
    local before after out full0 res0
    if [ "$proxy" = seawall ]; then
        full0=$(metric 'seawall_tls_handshakes_total{kind="full"}')
        res0=$(metric 'seawall_tls_handshakes_total{kind="resumed"}')
    fi
    local steal0 started_ns
    steal0=$(steal_ticks) started_ns=$(date +%s%N)
    before=$(cpu_ticks "${pid_of[$proxy]}")
    out=$(taskset -c 1 "$bin" bench -k --json "$@")
    after=$(cpu_ticks "${pid_of[$proxy]}")
    local steal_pct
    steal_pct=$(awk -v s="$(($(steal_ticks) - steal0))" -v c="$clk" -v ns="$(($(date +%s%N) - started_ns))" \
        'BEGIN { printf "%.1f", 100 * s / c / (ns / 1e9) }')
    local cpu_s
    cpu_s=$(awk -v a="$after" -v b="$before" -v c="$clk" 'BEGIN { printf "%.3f", (a - b) / c }')
    local amount per_s negotiated errors
    read -r amount per_s negotiated errors < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); f = sys.argv[2]
v = r
for k in f.split("."): v = v[k]
tls = r.get("tls") or {}
bad = sum(n for code, n in r["status"].items() if not code.startswith("2"))
print(v, v / r["duration_secs"], tls.get("cipher_suite", "-"), r["errors_total"] + bad)
' "$out" "$field")
    # Bytes are shown as MB (10^6).
    local scale=1
    [ "$field" = bytes.body ] && scale=1000000
    local work_per_cpu_s rate_now
    work_per_cpu_s=$(awk -v w="$amount" -v c="$cpu_s" -v k="$scale" 'BEGIN { printf "%.0f", (c > 0 ? w / c / k : 0) }')
    rate_now=$(awk -v r="$per_s" -v k="$scale" 'BEGIN { printf "%.0f", r / k }')
    rounds_of[$label,$proxy]+=" $work_per_cpu_s"
    rates_of[$label,$proxy]+=" $rate_now"
    result[$label,$proxy]=$(median ${rounds_of[$label,$proxy]})
    rate[$label,$proxy]=$(median ${rates_of[$label,$proxy]})
    suite[$label]=$negotiated
    local note=""
    if [ "$proxy" = seawall ] && [ "$field" = handshakes.full ]; then
        local full1 res1
        full1=$(metric 'seawall_tls_handshakes_total{kind="full"}')
        res1=$(metric 'seawall_tls_handshakes_total{kind="resumed"}')
        note=" (seawall counted full $((full1 - full0)), resumed $((res1 - res0)))"
    fi
    printf '  %-9s %-8s %10s in %6ss of proxy CPU: %8s per CPU-second, %8s/s, %s errors or non-2xx, cpu0 stolen %s%%%s\n' \
        "$label" "$proxy" "$amount" "$cpu_s" "$work_per_cpu_s" "$rate_now" "$errors" "$steal_pct" "$note" >&2
}

# idle_mem PROXY: RSS growth per connection for 5 000 idle TLS keep-alive connections, each of
# which has completed one request.
idle_mem() {
    local proxy=$1 n=5000
    local before after
    before=$(rss_kib "${pid_of[$proxy]}")
    taskset -c 1 python3 - "${port_ecdsa[$proxy]}" "$n" "$work/$proxy.ready" <<'PY' &
import socket, ssl, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
held = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET /fixed HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    held.append(s)
open(ready, "w").close()
time.sleep(30)
PY
    local holder=$!
    for _ in $(seq 600); do [ -e "$work/$proxy.ready" ] && break; sleep 0.1; done
    sleep 1
    after=$(rss_kib "${pid_of[$proxy]}")
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    result[idle-mem,$proxy]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
    printf '  %-9s %-8s RSS %s -> %s KiB: %s KiB per connection\n' idle-mem "$proxy" "$before" "$after" \
        "${result[idle-mem,$proxy]}" >&2
    sleep 2
}

d="${secs}s"
proxies=(seawall nginx haproxy)
scenarios=" ${SCENARIOS:-idle-mem hs-ecdsa hs-rsa keepalive h2 1mib} "
want() { [[ $scenarios == *" $1 "* ]]; }
echo "seawall ($profile${ACCESS_LOG:+, access log $ACCESS_LOG to a file}) vs nginx $(nginx -v 2>&1 | sed 's/.*\///') vs HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), ${secs}s per scenario, $rounds rounds" >&2
# Memory first, before any load has grown the allocators' free lists (freed memory that a process
# keeps would hide the growth).
want idle-mem && for p in "${proxies[@]}"; do idle_mem "$p"; done
# each LABEL FIELD ARGS... (with @PORT@ for the proxy's ECDSA port, @RSA@ for its RSA one): runs
# the scenario $rounds times for every proxy, the proxies taking turns within a round.
each() {
    local label=$1 field=$2; shift 2
    want "$label" || return 0
    local r p args
    for r in $(seq "$rounds"); do
        for p in "${proxies[@]}"; do
            args=("${@//@PORT@/${port_ecdsa[$p]}}")
            args=("${args[@]//@RSA@/${port_rsa[$p]}}")
            run_bench "$p" "$label" "$field" "${args[@]}"
        done
    done
}
each hs-ecdsa handshakes.full -c 32 -d "$d" --new-connection --tls 1.3 --group x25519 "https://localhost:@PORT@/fixed"
each hs-rsa handshakes.full -c 32 -d "$d" --new-connection --tls 1.3 --group x25519 "https://localhost:@RSA@/fixed"
each keepalive requests -c 64 -d "$d" "https://localhost:@PORT@/"
each h2 requests -c 16 --h2 --streams 10 -d "$d" "https://localhost:@PORT@/"
each 1mib bytes.body -c 8 -d "$d" "https://localhost:@PORT@/1m"

# ---- the table -----------------------------------------------------------------------------------
row() {
    local label=$1 what=$2 unit=$3
    [ -n "${result[$label,seawall]:-}" ] || return 0
    local s=${result[$label,seawall]} n=${result[$label,nginx]} h=${result[$label,haproxy]}
    awk -v l="$what" -v u="$unit" -v s="$s" -v n="$n" -v h="$h" \
        -v rs="${rate[$label,seawall]:-}" -v rn="${rate[$label,nginx]:-}" -v rh="${rate[$label,haproxy]:-}" \
        -v inv="$([ "$label" = idle-mem ] && echo 1 || echo 0)" 'BEGIN {
        # Memory: less is better, so the ratio is the peer over seawall.
        rn_ = (inv ? (s > 0 ? n / s : 0) : (n > 0 ? s / n : 0))
        rh_ = (inv ? (s > 0 ? h / s : 0) : (h > 0 ? s / h : 0))
        printf "| %-50s | %9s | %9s | %9s | %6.2f | %6.2f |", l " (" u ")", s, n, h, rn_, rh_
        if (rs != "") printf " %s / %s / %s", rs, rn, rh
        printf "\n"
    }'
}
echo
echo "| scenario (per proxy CPU-second)                    |   seawall |     nginx |   HAProxy | sw/ngx | sw/hap | absolute /s: sw / ngx / hap"
echo "|----------------------------------------------------|-----------|-----------|-----------|--------|--------|"
row hs-ecdsa "full TLS 1.3 handshakes, ECDSA P-256, X25519" "hs"
row hs-rsa "full TLS 1.3 handshakes, RSA-2048, X25519" "hs"
row keepalive "HTTPS keep-alive proxied, 64 conns" "req"
row h2 "HTTP/2 proxied, 16 conns x 10 streams" "req"
row 1mib "1 MiB downloads proxied, 8 conns" "MB"
row idle-mem "memory per idle TLS connection, 5000 held" "KiB"
echo
echo "Negotiated: handshakes ${suite[hs-ecdsa]:--}; keep-alive ${suite[keepalive]:--}; h2 ${suite[h2]:--}; 1 MiB ${suite[1mib]:--}"
echo "Each load figure is the proxy's median over $rounds rounds; memory is measured once."
echo "Ratios are seawall over the peer (for memory: the peer over seawall), so above 1 means seawall leads."
