#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, replaying its corpus first.
#
#     fuzz/run.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]   (default: every target)
#
# Stable Rust is enough: libFuzzer comes with the libfuzzer-sys crate (built with a C++ compiler),
# and the coverage instrumentation cargo-fuzz would add is passed here as rustc flags. Seeds are
# read from corpus/TARGET/ (committed); what a run finds that is new goes to target/corpus/TARGET/,
# so the seeds change only by hand. A crash stops the run with exit status 1, and its input is
# written to artifacts/TARGET/; `BIN ARTIFACT` replays it (BIN is printed), and a fixed crash's
# input belongs in corpus/TARGET/ and in a unit test beside the code that crashed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

all=(config wildcard redirect head_scan framing request response)
seconds="${1:-60}"
[ "$#" -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]; targets: ${all[*]}" >&2
    exit 2
    ;;
esac

# A target directory of its own: these flags differ from the main build's, and sharing one would
# rebuild both every time.
target_dir="${SEAWALL_FUZZ_TARGET_DIR:-$PWD/target}"
# With --target, RUSTFLAGS reach the targets' code and not build scripts or proc macros, which
# cannot link libFuzzer's coverage callbacks.
host=$(rustc -vV | sed -n 's/^host: //p')
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "==> building ${targets[*]}" >&2
RUSTFLAGS="${flags[*]}" cargo build --locked --release --target "$host" \
    --target-dir "$target_dir" "${bins[@]}"

failed=()
for t in "${targets[@]}"; do
    bin="$target_dir/$host/release/$t"
    found="$target_dir/corpus/$t"
    artifacts="$PWD/artifacts/$t"
    mkdir -p "$found" "$artifacts" "corpus/$t"
    args=(
        -max_total_time="$seconds"
        # The request target waits 5 s for an answer itself; this catches what hangs elsewhere.
        -timeout=30
        -rss_limit_mb=2048
        -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
    echo "==> $t: $(find "corpus/$t" -type f | wc -l) seeds, ${seconds}s" >&2
    start=$SECONDS
    if "$bin" "${args[@]}" "$found" "corpus/$t" >"$target_dir/$t.log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$target_dir/$t.log" \
            | tr '\n' ' ' >&2
        echo "($((SECONDS - start))s)" >&2
    else
        tail -n 60 "$target_dir/$t.log" >&2
        echo "==> $t FAILED; the input is in $artifacts/:" >&2
        ls -t "$artifacts" | head -n 3 | sed "s|^|    $bin $artifacts/|" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "==> crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "==> fuzzing ok: ${targets[*]}" >&2
