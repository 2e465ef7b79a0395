#!/usr/bin/env bash
# The dist build of seawall, optimised with a profile of its own hot paths (LLVM's profile-guided
# optimisation): what the Dockerfile ships and what the benchmarks measure when given it.
#
#   benches/pgo.sh                 # writes target/pgo/seawall
#   benches/pgo.sh /usr/local/bin/seawall
#   SEAWALL_BIN=target/pgo/seawall benches/compare.sh   # measure it beside the peers
#
# Three steps, each in a target folder of its own under $PGO_DIR (default target/pgo), so that
# neither disturbs the plain dist build in target/:
#   1. the dist build instrumented to count what runs (`-Cprofile-generate`);
#   2. a training load on loopback: the instrumented binary terminating TLS in front of a second
#      seawall that answers every request itself (so no other server is needed, as in a Docker
#      build), loaded by `seawall bench` with HTTPS keep-alive, HTTP/2, full handshakes (TLS 1.3
#      and 1.2), resumed ones, answers of its own, an HTTP/2 target group and 2 KiB uploads,
#      with the access log off and on; only the proxy's counts are kept (code no load reaches
#      is laid out as cold, so a path users depend on belongs in this list);
#   3. the dist build again, laid out and inlined by those counts (`-Cprofile-use`).
#
# Needs llvm-profdata of the LLVM rustc is built on: rustup's llvm-tools component when rustup
# can fetch it, else Debian's llvm-N (bookworm-security carries the versions stable rustc uses).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

out=${1:-$PWD/target/pgo/seawall}
dir=$(realpath -m "${PGO_DIR:-$PWD/target/pgo}")
secs=${PGO_SECONDS:-4}
mkdir -p "$dir"

profdata_tool() {
    local major sysroot host tool
    major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    sysroot=$(rustc --print sysroot)
    host=$(rustc -vV | sed -n 's/^host: //p')
    tool=$sysroot/lib/rustlib/$host/bin/llvm-profdata
    [ -x "$tool" ] || { command -v rustup >/dev/null && rustup component add llvm-tools >/dev/null 2>&1; } || true
    if [ -x "$tool" ]; then echo "$tool"; return; fi
    need "llvm-profdata-$major" "llvm-$major"
    command -v "llvm-profdata-$major"
}
profdata=$(profdata_tool)
need curl curl
# No Python in a Rust build image: a port that nothing answers on, from bash alone.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# 1. Instrumented.
raw=$dir/raw
rm -rf "$raw" && mkdir -p "$raw"
echo "pgo: building the instrumented binary" >&2
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Cprofile-generate=$raw" CARGO_TARGET_DIR=$dir/gen \
    cargo build --profile dist --locked --quiet --bin seawall
gen=$dir/gen/dist/seawall

# 2. Training.
make_workdir
LLVM_PROFILE_FILE="$work/certs-%p.profraw" "$gen" certs --out "$work" --stem tls localhost >/dev/null 2>&1
cert=$work/tls.pem key=$work/tls-key.pem
backend_port=$(free_port)
cat >"$work/backend.toml" <<EOF
[[listeners]]
name = "backend"
bind = "127.0.0.1:$backend_port"
protocol = "http"
default_action = { fixed_response = { status = 200, content_type = "text/plain", body = "hello from the backend\n" } }
EOF
LLVM_PROFILE_FILE="$work/backend-%p.profraw" RUST_LOG=warn "$gen" run --config "$work/backend.toml" &
pids+=($!)
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$backend_port/" >/dev/null 2>&1 && break; sleep 0.1; done

# train ACCESS_LOG: the proxy (with the access log in that format, or off when empty) under
# each load in turn, then stopped so that its counts are written.
train() {
    local port admin_port proxy
    port=$(free_port) admin_port=$(free_port)
    {
        seawall_base "$admin_port"
        seawall_certificate ecdsa "$cert" "$key"
        seawall_listener web "$port" ecdsa
        cat <<EOC
  [[listeners.rules]]
  priority = 2
  match = { path = ["/h2c/*"] }
  action = { forward = "backend-h2c" }

[[target_groups]]
name = "backend"
targets = ["127.0.0.1:$backend_port"]

[[target_groups]]
name = "backend-h2c"
protocol_version = "http2"
targets = ["127.0.0.1:$backend_port"]
EOC
        if [ -n "$1" ]; then
            mkdir -p "$work/logs"
            printf '\n[access_log]\npath = "%s"\nformat = "%s"\n' "$work/logs/access-$1.log" "$1"
        fi
    } >"$work/proxy.toml"
    LLVM_PROFILE_FILE="$raw/proxy-%p.profraw" RUST_LOG=warn "$gen" run --config "$work/proxy.toml" &
    proxy=$!
    pids+=("$proxy")
    for _ in $(seq 300); do curl -fsk "https://localhost:$port/fixed" >/dev/null 2>&1 && break; sleep 0.1; done
    local url="https://localhost:$port/"
    # Each load: the bench's arguments, then the path.
    local load=(
        "-c 64|"
        "-c 16 --h2 --streams 10|"
        "-c 4 --new-connection --tls 1.3|fixed"
        "-c 4 --new-connection --tls 1.2|fixed"
        "-c 4 --new-connection --tls 1.3 --resume|fixed"
        "-c 16|fixed"
        "-c 16 --h2 --streams 4|h2c/"
        "-c 8 -X POST --body-file $work/upload|"
    )
    local args
    for args in "${load[@]}"; do
        # shellcheck disable=SC2086 # the arguments are split on purpose
        LLVM_PROFILE_FILE="$work/bench-%p.profraw" \
            "$gen" bench -k --json ${args%|*} -d "${secs}s" "$url${args#*|}" >"$work/bench.json"
        # A load that failed would train the error paths in place of the ones it names.
        if ! grep -q '"errors_total": 0,' "$work/bench.json" \
            || grep -E '^ +"[0-9]{3}": ' "$work/bench.json" | grep -vq '"200"'; then
            echo "pgo: the load '$args' did not get only 200s:" >&2
            cat "$work/bench.json" >&2
            exit 1
        fi
    done
    kill -TERM "$proxy"
    wait "$proxy" || true
}
echo "pgo: training" >&2
head -c 2048 /dev/zero | tr '\0' x >"$work/upload"
train ""
train alb
ls "$raw"/proxy-*.profraw >/dev/null

"$profdata" merge -o "$dir/merged.profdata" "$raw"/proxy-*.profraw
# Named by its content: cargo sees RUSTFLAGS, not the file they name, so a new profile under the
# same name would leave every dependency built with the old one.
profile=$dir/seawall-$(sha256sum "$dir/merged.profdata" | cut -c1-16).profdata
mv "$dir/merged.profdata" "$profile"

# 3. Optimised.
echo "pgo: building with the profile" >&2
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Cprofile-use=$profile" \
    CARGO_TARGET_DIR=$dir/use cargo build --profile dist --locked --quiet --bin seawall
mkdir -p "$(dirname "$out")"
cp "$dir/use/dist/seawall" "$out"
echo "pgo: $out" >&2
