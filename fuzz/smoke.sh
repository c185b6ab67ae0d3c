#!/usr/bin/env bash
# Bounded fuzz smoke run of the protocol layer and the TLS 1.3 record layer (builds excluded).
#
# With a nightly toolchain and cargo-fuzz (installed here if missing), each target runs under
# libFuzzer for FUZZ_SECONDS, starting from the committed seeds (seeds/<target>/). Without nightly or
# when cargo-fuzz cannot be installed, the stable replay harness (examples/replay.rs: the committed
# seeds, a fixed count per target, any saved corpus, then seeded structure-aware random inputs through
# the same target bodies and invariants) runs instead, and a line `fuzz-smoke: skipped: libFuzzer (...)`
# says so (tests/run.sh shows it in its summary; with CI=true it is a failure).
#
#   fuzz/smoke.sh                       # 25 s per target
#   FUZZ_SECONDS=5 FUZZ_SEED=7 fuzz/smoke.sh
#   FUZZ_ENGINE=replay fuzz/smoke.sh    # force the stable harness
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-25}
seed=${FUZZ_SEED:-$RANDOM}
targets=(handshake frame_decoder client_command proxy_header tls_record)

has_nightly() { cargo +nightly --version >/dev/null 2>&1; }
has_cargo_fuzz() { cargo fuzz --version >/dev/null 2>&1; }

engine=${FUZZ_ENGINE:-}
if [[ -z $engine ]]; then
    engine=replay
    if has_nightly; then
        if ! has_cargo_fuzz; then
            echo "smoke: cargo-fuzz missing, installing it (cargo install cargo-fuzz --locked)"
            cargo install cargo-fuzz --locked >/dev/null 2>&1 || true
        fi
        if has_cargo_fuzz; then
            engine=libfuzzer
        else
            echo "fuzz-smoke: skipped: libFuzzer (cargo install cargo-fuzz failed); the stable replay runs instead"
        fi
    else
        echo "fuzz-smoke: skipped: libFuzzer (no nightly toolchain); the stable replay runs instead"
    fi
fi

if [[ $engine == libfuzzer ]]; then
    echo "smoke: libFuzzer via cargo +nightly fuzz, ${seconds} s per target, seed ${seed}"
    for target in "${targets[@]}"; do
        mkdir -p "corpus/$target"
        log="target/smoke-$target.log"
        mkdir -p target
        rc=0
        cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time="$seconds" -seed="$seed" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || rc=$?
        grep -E '^(Done|stat::number_of_executed_units|SUMMARY)|panicked|ERROR' "$log" || true
        if [[ $rc -ne 0 ]]; then
            tail -n 30 "$log"
            echo "smoke: $target FAILED (crash input in fuzz/artifacts/$target)"
            exit 1
        fi
        echo "smoke: $target ok ($(find "corpus/$target" -type f | wc -l) corpus inputs)"
    done
else
    echo "smoke: stable replay harness, ${seconds} s per target, seed ${seed}"
    cargo build --release --example replay --quiet
    for target in "${targets[@]}"; do
        ./target/release/examples/replay "$target" "$seconds" "$seed"
    done
fi
echo "smoke: done"
