#!/usr/bin/env bash
# seawall next to nginx, HAProxy, H2O and Caddy on this machine: the same certificates, the same
# backend, the same load generator (`seawall bench`), one proxy worker each pinned to cpu0 and
# everything else (backend, load generator) on cpu1, all on 127.0.0.1.
#
#   benches/compare.sh [seconds per scenario, default 5]
#
# Environment: PROFILE=dist|release (seawall's build, default dist: LTO, codegen-units=1), or
# SEAWALL_BIN=PATH to measure a binary built beforehand (benches/pgo.sh's, as the image ships);
# ACCESS_LOG=alb|json turns seawall's access log on, written to a file (the peers keep theirs off);
# SCENARIOS="hs-ecdsa 1mib ..." runs only those (default: all); ROUNDS=N (default 3) runs each
# load scenario N times per proxy, the proxies taking turns, and the table shows each proxy's
# median: on this shared machine one proxy's figure moves by tens of percent between runs, and a
# burst of load from a neighbour then lands on one round of one proxy, not on its result;
# PEERS="nginx haproxy h2o caddy" (the default: all four) picks the peers seawall is run beside.
# WORKERS=N runs seawall with N data-plane workers and HAProxy with N threads, and PROXY_CPUS=0,1
# lets the proxies run on both cores (the load generator and backend stay on cpu1): with both,
# `WORKERS=2` against `WORKERS=1` tells what the second worker costs per CPU-second, beside what
# HAProxy's second thread costs it on the same layout. Two more peers make that one run, whose
# rounds rotate as every proxy's do, rather than two runs minutes apart on a machine whose speed
# drifts: seawall1 (seawall with one worker) and haproxy1 (HAProxy with one thread), e.g.
#   WORKERS=2 PROXY_CPUS=0,1 PEERS="seawall1 haproxy haproxy1" SCENARIOS="keepalive h2" benches/compare.sh
# where sw/sw1 is seawall's WORKERS=2 over its one worker.
# SYSCALLS=1 counts each proxy's system calls, page faults and context switches during every
# round with `perf stat` (kernel tracepoints and software events: cheap, unlike strace) and prints
# them per unit of work under the round's line, with its user share of CPU: where two proxies'
# user time is alike, these tell their kernel time apart.
# A short run to see that every column fills in: ROUNDS=1 benches/compare.sh 2
#
# The contract every proxy is set up to: TLS 1.2 and 1.3 on the listener with the same certificate
# and key files (an ECDSA P-256 listener and an RSA-2048 one), h2 and http/1.1 by ALPN, `/fixed`
# answered by the proxy itself (200, "ok\n"; HAProxy's is "ok"), everything else proxied over
# HTTP/1.1 to the same backend with kept-alive backend connections (up to 128 idle ones kept where
# that is a setting), no access log, one thread or worker.
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
# own counters confirm that its handshakes were full ones. A proxy that cannot do a scenario, or
# whose every round failed, gets `n/a` in the table, with the reason under it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
profile=${PROFILE:-dist}
rounds=${ROUNDS:-3}

. benches/common.sh
# The peers, in the order they run after seawall (the order rotates by round).
read -r -a peers <<<"${PEERS:-nginx haproxy h2o caddy}"
proxies=(seawall "${peers[@]}")
declare -A name_of=([seawall]=seawall [nginx]=nginx [haproxy]=HAProxy [h2o]=H2O [caddy]=Caddy
    [seawall1]="seawall 1" [haproxy1]="HAProxy 1")
declare -A short_of=([seawall]=sw [nginx]=ngx [haproxy]=hap [h2o]=h2o [caddy]=caddy
    [seawall1]=sw1 [haproxy1]=hap1)
for p in "${peers[@]}"; do
    if [ -z "${name_of[$p]:-}" ] || [ "$p" = seawall ]; then
        echo "PEERS: unknown peer $p (nginx haproxy h2o caddy seawall1 haproxy1)" >&2
        exit 2
    fi
done
peer() { [[ " ${peers[*]} " == *" $1 "* ]]; }
need nginx nginx-light # also the backend
{ peer haproxy || peer haproxy1; } && need haproxy haproxy
peer h2o && need h2o h2o
peer caddy && need caddy caddy
need openssl openssl
need python3 python3
[ -z "${SYSCALLS:-}" ] || need perf linux-perf

if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --profile "$profile" --quiet; fi
# The load generator is this build's `seawall bench` whichever binary is measured, so that a
# binary's own speed as a client does not change the load its proxy side is measured under.
loadgen=${CARGO_TARGET_DIR:-$PWD/target}/$profile/seawall
bin=$loadgen
[ -z "${SEAWALL_BIN:-}" ] || bin=$(realpath "$SEAWALL_BIN")
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

# ---- the proxies, on cpu0 ------------------------------------------------------------------------
declare -A port_ecdsa port_rsa pid_of
# Ports for every proxy the script knows, so that every configuration can be written; only this
# run's proxies are started.
for p in "${!name_of[@]}"; do port_ecdsa[$p]=$(free_port); port_rsa[$p]=$(free_port); done
admin_port=$(free_port) admin_port1=$(free_port)
# start PROXY COMMAND...: runs the proxy pinned to cpu0 (PROXY_CPUS, see above) if it is one of
# this run's; its pid is the command's (taskset and env exec it).
start() {
    local p=$1; shift
    [ "$p" = seawall ] || peer "$p" || return 0
    taskset -c "${PROXY_CPUS:-0}" "$@" & pid_of[$p]=$!; pids+=($!)
}

# seawall_config PROXY ADMIN_PORT: seawall's configuration (WORKERS workers) on PROXY's ports.
seawall_config() {
    cat <<EOF
$(seawall_base "$2")
$(seawall_certificate ecdsa "$work/ecdsa.pem" "$work/ecdsa-key.pem")
$(seawall_certificate rsa "$work/rsa.pem" "$work/rsa-key.pem")
$(seawall_listener ecdsa "${port_ecdsa[$1]}" ecdsa)
$(seawall_listener rsa "${port_rsa[$1]}" rsa)

[[target_groups]]
name = "backend"
targets = ["127.0.0.1:$backend_port"]
EOF
    if [ -n "${ACCESS_LOG:-}" ]; then
        printf '\n[access_log]\npath = "%s"\nformat = "%s"\n' "$work/$1-access.log" "$ACCESS_LOG"
    fi
}
seawall_config seawall "$admin_port" > "$work/seawall.toml"
start seawall env RUST_LOG=warn "$bin" run --config "$work/seawall.toml"
WORKERS=1 seawall_config seawall1 "$admin_port1" > "$work/seawall1.toml"
start seawall1 env RUST_LOG=warn "$bin" run --config "$work/seawall1.toml"

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
start nginx nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"

# haproxy_config PROXY THREADS: HAProxy's configuration on PROXY's ports.
haproxy_config() {
    cat <<EOF
global
  nbthread $2
  maxconn 9000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe_ecdsa
  bind 127.0.0.1:${port_ecdsa[$1]} ssl crt $work/ecdsa-haproxy.pem alpn h2,http/1.1
  maxconn 9000
  http-request return status 200 content-type text/plain string "ok" if { path /fixed }
  default_backend be
frontend fe_rsa
  bind 127.0.0.1:${port_rsa[$1]} ssl crt $work/rsa-haproxy.pem alpn h2,http/1.1
  maxconn 9000
  http-request return status 200 content-type text/plain string "ok" if { path /fixed }
  default_backend be
backend be
  server b1 127.0.0.1:$backend_port maxconn 1000
EOF
}
haproxy_config haproxy "${WORKERS:-1}" > "$work/haproxy.cfg"
start haproxy haproxy -f "$work/haproxy.cfg" -db
haproxy_config haproxy1 1 > "$work/haproxy1.cfg"
start haproxy1 haproxy -f "$work/haproxy1.cfg" -db

# H2O 2.2: one thread; the keys signed in-process as the others do (not by neverbleed's separate
# process) and no OCSP fetcher processes; 20 000 connections (the default 1 024 would refuse
# idle-mem's 5 000) kept 60 s idle (the default 10 s would close idle-mem's first ones before its
# last is open; nginx keeps them 75 s, HAProxy 60 s); backend connections kept alive 60 s (2.2's
# pool has no count limit). 2.2 has no fixed-response directive: /fixed is its built-in mruby
# handler. TLS: OpenSSL's default groups and TLS 1.3 suites, as nginx and HAProxy (2.2 has no
# setting for groups). It adds x-forwarded-for, x-forwarded-proto and via to proxied requests, as
# it does by default (seawall adds X-Forwarded-*; nginx and HAProxy add none). No access log.
h2o_host() {
    cat <<EOC
  "$1":
    listen:
      host: 127.0.0.1
      port: $2
      ssl:
        certificate-file: $3
        key-file: $4
        minimum-version: TLSv1.2
        neverbleed: OFF
        ocsp-update-interval: 0
    paths:
      /fixed:
        mruby.handler: proc {|env| [200, {"content-type" => "text/plain"}, ["ok\\n"]]}
      /:
        proxy.reverse.url: http://127.0.0.1:$backend_port/
EOC
}
mkdir -p "$work/h2o"
cat > "$work/h2o/h2o.conf" <<EOF
num-threads: 1
max-connections: 20000
error-log: $work/h2o/error.log
http1-request-timeout: 60
http2-idle-timeout: 60
proxy.timeout.keepalive: 60000
hosts:
$(h2o_host ecdsa "${port_ecdsa[h2o]}" "$work/ecdsa.pem" "$work/ecdsa-key.pem")
$(h2o_host rsa "${port_rsa[h2o]}" "$work/rsa.pem" "$work/rsa-key.pem")
EOF
# Started as root, h2o drops to nobody after reading its files ($work is world-readable).
start h2o h2o -c "$work/h2o/h2o.conf"

# Caddy 2.6 under GOMAXPROCS=1: no admin endpoint, no automatic HTTPS (nor ACME), no HTTP/3 (its
# default would add a UDP listener and Alt-Svc), runtime log at ERROR and no access log; the
# bench's certificate files, the curves in OpenSSL's default order (Go has no X448); Go's TLS 1.3
# picks AES-128-GCM where nginx and HAProxy pick AES-256-GCM (not configurable in Go). /fixed is
# `respond` (the quoted body spans the line break: the Caddyfile has no \n escape); the rest is
# `reverse_proxy` with up to 128 idle backend connections kept 60 s, and without Go's
# Accept-Encoding: gzip on the backend request. It adds X-Forwarded-For, -Host and -Proto to
# proxied requests, as it does by default. Its state (autosave.json) goes under $work.
caddy_site() {
    cat <<EOC
https://:$1 {
	bind 127.0.0.1
	tls $2 $3 {
		protocols tls1.2 tls1.3
		curves x25519 secp256r1 secp384r1 secp521r1
	}
	respond /fixed "ok
" 200
	reverse_proxy 127.0.0.1:$backend_port {
		transport http {
			keepalive 60s
			keepalive_idle_conns 128
			keepalive_idle_conns_per_host 128
			compression off
		}
	}
}
EOC
}
mkdir -p "$work/caddy"
cat > "$work/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	log {
		level ERROR
	}
	servers {
		protocols h1 h2
	}
}
$(caddy_site "${port_ecdsa[caddy]}" "$work/ecdsa.pem" "$work/ecdsa-key.pem")
$(caddy_site "${port_rsa[caddy]}" "$work/rsa.pem" "$work/rsa-key.pem")
EOF
start caddy env GOMAXPROCS=1 HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" XDG_DATA_HOME="$work/caddy" \
    caddy run --config "$work/caddy/Caddyfile" --adapter caddyfile

for p in "${proxies[@]}"; do
    for _ in $(seq 100); do
        curl -fsk "https://localhost:${port_ecdsa[$p]}/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsk "https://localhost:${port_ecdsa[$p]}/" >/dev/null || { echo "$p did not start" >&2; exit 1; }
done

# ---- measuring ---------------------------------------------------------------------------------
clk=$(getconf CLK_TCK)
# Every process of a proxy: the one started and its children (nginx's worker). H2O and Caddy are one
# process each (H2O's threads are in its /proc/PID/stat).
procs() { echo "$1"; pgrep -P "$1" || true; }
syscall_events=raw_syscalls:sys_enter,page-faults,context-switches
for call in epoll_wait epoll_pwait read readv recvfrom recvmsg write writev sendto sendmsg; do
    syscall_events+=,syscalls:sys_enter_$call
done
cpu_ticks() { local t=0; for q in $(procs "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat"))); done; echo "$t"; }
user_ticks() { local t=0; for q in $(procs "$1"); do t=$((t + $(awk '{print $14}' "/proc/$q/stat"))); done; echo "$t"; }
rss_kib() { local t=0; for q in $(procs "$1"); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$q/status"))); done; echo "$t"; }
# Ticks the hypervisor gave to other guests while the proxy's CPUs wanted to run: /proc/stat's
# steal column, summed over PROXY_CPUS (taskset's list, such as 0,1 or 0-1). A share of the run
# above a few percent means the machine's neighbours were busy.
steal_cpus=$(python3 -c '
import sys
cpus = []
for part in sys.argv[1].split(","):
    lo, _, hi = part.partition("-")
    cpus += range(int(lo), int(hi or lo) + 1)
print(" ".join(f"cpu{c}" for c in cpus))
' "${PROXY_CPUS:-0}")
steal_ticks() { awk -v cpus=" $steal_cpus " 'index(cpus, " " $1 " ") { s += $9 } END { print s }' /proc/stat; }
metric() { curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# run_bench PROXY LABEL FIELD ARGS...: runs `seawall bench --json` on cpu1 against PROXY and adds
# a round to PROXY's figures for LABEL: the work per proxy CPU-second (the work is the report's
# FIELD: requests, handshakes.full or bytes.body), the absolute rate and the suite. A round that
# failed (the bench exited with an error, no work was done, or more than 1% of the requests were
# errors or non-2xx) adds no figure, only a reason to failed_of; the proxy's figure is the median
# of its other rounds, or n/a if none is left.
declare -A result rate suite rounds_of rates_of failed_of
run_bench() {
    local proxy=$1 label=$2 field=$3; shift 3
    local before after user0 user1 out full0 res0
    if [ "$proxy" = seawall ]; then
        full0=$(metric 'seawall_tls_handshakes_total{kind="full"}')
        res0=$(metric 'seawall_tls_handshakes_total{kind="resumed"}')
    fi
    local steal0 started_ns
    steal0=$(steal_ticks) started_ns=$(date +%s%N)
    local perf_pid=""
    if [ -n "${SYSCALLS:-}" ]; then
        perf stat -x, -o "$work/syscalls.csv" -e "$syscall_events" \
            -p "$(procs "${pid_of[$proxy]}" | paste -sd,)" 2>/dev/null &
        perf_pid=$!
    fi
    before=$(cpu_ticks "${pid_of[$proxy]}") user0=$(user_ticks "${pid_of[$proxy]}")
    if ! out=$(taskset -c 1 "$loadgen" bench -k --json "$@" 2>"$work/bench.err"); then
        [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
        fail_round "$proxy" "$label" "seawall bench failed: $(tail -n 1 "$work/bench.err")"
        return 0
    fi
    after=$(cpu_ticks "${pid_of[$proxy]}") user1=$(user_ticks "${pid_of[$proxy]}")
    [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
    local steal_pct
    steal_pct=$(awk -v s="$(($(steal_ticks) - steal0))" -v c="$clk" -v ns="$(($(date +%s%N) - started_ns))" \
        -v n="$(wc -w <<< "$steal_cpus")" 'BEGIN { printf "%.1f", 100 * s / c / (ns / 1e9) / n }')
    local cpu_s
    cpu_s=$(awk -v a="$after" -v b="$before" -v c="$clk" 'BEGIN { printf "%.3f", (a - b) / c }')
    local amount per_s negotiated errors requests
    read -r amount per_s negotiated errors requests < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); f = sys.argv[2]
v = r
for k in f.split("."): v = v[k]
tls = r.get("tls") or {}
bad = sum(n for code, n in r["status"].items() if not code.startswith("2"))
print(v, v / r["duration_secs"], tls.get("cipher_suite", "-"), r["errors_total"] + bad, r["requests"])
' "$out" "$field")
    if [ "$amount" = 0 ] || [ $((errors * 100)) -gt "$requests" ]; then
        fail_round "$proxy" "$label" "$errors errors or non-2xx of $requests responses, $amount $field"
        return 0
    fi
    # Bytes are shown as MB (10^6).
    local scale=1
    [ "$field" = bytes.body ] && scale=1000000
    local work_per_cpu_s rate_now
    work_per_cpu_s=$(awk -v w="$amount" -v c="$cpu_s" -v k="$scale" 'BEGIN { printf "%.0f", (c > 0 ? w / c / k : 0) }')
    rate_now=$(awk -v r="$per_s" -v k="$scale" 'BEGIN { printf "%.0f", r / k }')
    rounds_of[$label,$proxy]+=" $work_per_cpu_s"
    rates_of[$label,$proxy]+=" $rate_now"
    # shellcheck disable=SC2086 # the rounds are words
    result[$label,$proxy]=$(median ${rounds_of[$label,$proxy]})
    # shellcheck disable=SC2086
    rate[$label,$proxy]=$(median ${rates_of[$label,$proxy]})
    suite[$label,$proxy]=$negotiated
    local note=""
    if [ "$proxy" = seawall ] && [ "$field" = handshakes.full ]; then
        local full1 res1
        full1=$(metric 'seawall_tls_handshakes_total{kind="full"}')
        res1=$(metric 'seawall_tls_handshakes_total{kind="resumed"}')
        note=" (seawall counted full $((full1 - full0)), resumed $((res1 - res0)))"
    fi
    printf '  %-9s %-8s %10s in %6ss of proxy CPU: %8s per CPU-second, %8s/s, %s errors or non-2xx, %s stolen %s%%%s\n' \
        "$label" "$proxy" "$amount" "$cpu_s" "$work_per_cpu_s" "$rate_now" "$errors" "${steal_cpus// /+}" "$steal_pct" "$note" >&2
    if [ -n "$perf_pid" ]; then
        # perf's CSV rows: count,unit,event,...; the tracepoint's name without its group.
        awk -F, -v n="$amount" -v k="$scale" -v u="$((user1 - user0))" -v t="$((after - before))" '
            $1 ~ /^[0-9]+$/ && $1 > 0 { ev = $3; sub(/.*:(sys_enter_)?/, "", ev); sub(/sys_enter/, "all", ev); out = out sprintf(" %s %.2f", ev, $1 / (n / k)) }
            END { printf "            user time %.0f%% of CPU; per %s, system calls:%s\n", (t > 0 ? 100 * u / t : 0), (k > 1 ? "MB" : "unit"), out }' \
            "$work/syscalls.csv" >&2
    fi
}
# fail_round PROXY LABEL REASON: a round without a figure.
fail_round() {
    failed_of[$2,$1]+="${failed_of[$2,$1]:+; }$3"
    [ -n "${result[$2,$1]:-}" ] || result[$2,$1]=n/a
    printf '  %-9s %-8s failed: %s\n' "$2" "$1" "$3" >&2
}

# idle_mem PROXY: RSS growth per connection for 5 000 idle TLS keep-alive connections, each of
# which has completed one request. The client sets TCP_NODELAY, as curl and browsers do: without
# it, its request waits behind its TLS Finished for the server's delayed ACK (40 ms) wherever the
# server has nothing to send after the handshake (Go's TLS, hence Caddy, sends its session tickets
# before the client's Finished), and 5 000 connections to Caddy took longer than the 60 s allowed.
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
    c = socket.create_connection(("127.0.0.1", port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(c, server_hostname="localhost")
    s.sendall(b"GET /fixed HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    held.append(s)
open(ready, "w").close()
time.sleep(30)
PY
    local holder=$!
    for _ in $(seq 600); do [ -e "$work/$proxy.ready" ] && break; kill -0 "$holder" 2>/dev/null || break; sleep 0.1; done
    sleep 1
    after=$(rss_kib "${pid_of[$proxy]}")
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    if [ ! -e "$work/$proxy.ready" ]; then
        fail_round "$proxy" idle-mem "the $n connections were not all opened and answered within 60 s"
        return 0
    fi
    result[idle-mem,$proxy]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
    printf '  %-9s %-8s RSS %s -> %s KiB: %s KiB per connection\n' idle-mem "$proxy" "$before" "$after" \
        "${result[idle-mem,$proxy]}" >&2
    sleep 2
}

d="${secs}s"
scenarios=" ${SCENARIOS:-idle-mem hs-ecdsa hs-rsa keepalive h2 1mib} "
want() { [[ $scenarios == *" $1 "* ]]; }
version() {
    case $1 in
        nginx) nginx -v 2>&1 | sed 's/.*\///' ;;
        haproxy | haproxy1) haproxy -v | awk 'NR==1 {print $3}' ;;
        seawall1) echo "(one worker)" ;;
        h2o) h2o --version | awk 'NR==1 {print $3}' ;;
        caddy) caddy version | awk '{print $1}' ;;
    esac
}
{
    # The binary measured: SEAWALL_BIN's (a PGO build, say) when given, not the loadgen's profile.
    printf 'seawall (%s%s%s)' "${SEAWALL_BIN:-$profile}" "${WORKERS:+, $WORKERS workers}" \
        "${ACCESS_LOG:+, access log $ACCESS_LOG to a file}"
    for p in "${peers[@]}"; do printf ' vs %s %s' "${name_of[$p]}" "$(version "$p")"; done
    printf ', %ss per scenario, %s rounds\n' "$secs" "$rounds"
} >&2
# Memory first, before any load has grown the allocators' free lists (freed memory that a process
# keeps would hide the growth).
want idle-mem && for p in "${proxies[@]}"; do idle_mem "$p"; done
# each LABEL FIELD ARGS... (with @PORT@ for the proxy's ECDSA port, @RSA@ for its RSA one): runs
# the scenario $rounds times for every proxy, the proxies taking turns within a round and round r
# starting one proxy further along than round r-1 (so no proxy always runs first, or always right
# after the same one).
each() {
    local label=$1 field=$2; shift 2
    want "$label" || return 0
    local r i p args n=${#proxies[@]}
    for r in $(seq 0 $((rounds - 1))); do
        for i in $(seq 0 $((n - 1))); do
            p=${proxies[$(((i + r) % n))]}
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
# ratio S P INV: seawall's figure S over the peer's P (P over S when INV is 1: memory, where less is
# better), so above 1 means seawall leads; n/a when either is missing.
ratio() {
    awk -v s="$1" -v p="$2" -v inv="$3" 'BEGIN {
        if (s == "" || p == "" || s == "n/a" || p == "n/a" || (inv ? s + 0 : p + 0) <= 0) { print "n/a"; exit }
        printf "%.2f", (inv ? p / s : s / p)
    }'
}
# best INV V...: the best of the figures (the largest, the smallest when INV is 1), n/a ones left out.
best() {
    local inv=$1; shift
    printf '%s\n' "$@" | awk -v inv="$inv" '$1 != "" && $1 != "n/a" {
        if (b == "" || (inv ? $1 + 0 < b + 0 : $1 + 0 > b + 0)) b = $1
    } END { print b }'
}
ratio_cols=()
for p in "${peers[@]}"; do ratio_cols+=("sw/${short_of[$p]}"); done
ratio_cols+=(sw/best)
row() {
    local label=$1 what=$2 unit=$3
    [ -n "${result[$label,seawall]:-}" ] || return 0
    local inv=0 p c line abs="" figures=()
    [ "$label" = idle-mem ] && inv=1
    local s=${result[$label,seawall]}
    line=$(printf '| %-50s |' "$what ($unit)")
    for p in "${proxies[@]}"; do line+=$(printf ' %9s |' "${result[$label,$p]:-n/a}"); done
    for p in "${peers[@]}"; do
        c="sw/${short_of[$p]}"
        line+=$(printf " %${#c}s |" "$(ratio "$s" "${result[$label,$p]:-}" "$inv")")
        # seawall's own one-worker figure is a baseline, not a peer to lead.
        [ "$p" = seawall1 ] || figures+=("${result[$label,$p]:-}")
    done
    line+=$(printf ' %7s |' "$(ratio "$s" "$(best "$inv" "${figures[@]}")" "$inv")")
    if [ -n "${rate[$label,seawall]:-}" ]; then
        for p in "${proxies[@]}"; do abs+="${abs:+ / }${rate[$label,$p]:-n/a}"; done
        line+=" $abs"
    fi
    echo "$line"
}
# suites LABEL: the suite each proxy negotiated in the scenario, proxies with the same one grouped.
suites() {
    local p out="" s
    declare -A by=()
    local order=()
    for p in "${proxies[@]}"; do
        s=${suite[$1,$p]:-}
        [ -n "$s" ] || continue
        [ -n "${by[$s]:-}" ] || order+=("$s")
        by[$s]+="${by[$s]:+, }${name_of[$p]}"
    done
    [ ${#order[@]} -gt 0 ] || { echo -; return; }
    if [ ${#order[@]} = 1 ]; then echo "${order[0]}"; return; fi
    for s in "${order[@]}"; do out+="${out:+, }$s (${by[$s]})"; done
    echo "$out"
}
header="| scenario (per proxy CPU-second)                    |"
rule="|----------------------------------------------------|"
for p in "${proxies[@]}"; do header+=$(printf ' %9s |' "${name_of[$p]}"); rule+="-----------|"; done
for c in "${ratio_cols[@]}"; do
    [ ${#c} -ge 6 ] || c=$(printf '%6s' "$c")
    header+=" $c |"
    rule+=$(printf -- '-%.0s' $(seq $((${#c} + 2))))"|"
done
header+=" absolute /s:"
for p in "${proxies[@]}"; do header+=" ${short_of[$p]} /"; done
echo
echo "${header% /}"
echo "$rule"
row hs-ecdsa "full TLS 1.3 handshakes, ECDSA P-256, X25519" "hs"
row hs-rsa "full TLS 1.3 handshakes, RSA-2048, X25519" "hs"
row keepalive "HTTPS keep-alive proxied, 64 conns" "req"
row h2 "HTTP/2 proxied, 16 conns x 10 streams" "req"
row 1mib "1 MiB downloads proxied, 8 conns" "MB"
row idle-mem "memory per idle TLS connection, 5000 held" "KiB"
echo
for k in "${!failed_of[@]}"; do
    printf '# %s, %s: %s: %s\n' "${name_of[${k#*,}]}" "${k%,*}" \
        "$([ "${result[$k]}" = n/a ] && echo "n/a, every round failed" || echo "some rounds failed, median of the others")" \
        "${failed_of[$k]}"
done | sort
echo "Negotiated: handshakes $(suites hs-ecdsa); keep-alive $(suites keepalive); h2 $(suites h2); 1 MiB $(suites 1mib)"
echo "Each load figure is the proxy's median over $rounds rounds; memory is measured once."
echo "Ratios are seawall over the peer (for memory: the peer over seawall), so above 1 means seawall leads;"
echo "sw/best is seawall against the best peer of this run in each scenario (seawall 1 is not a peer)."
