#!/usr/bin/env bash
# THE test command: `bash tests/run.sh` (CI: .ci/run). Installs what the tests need,
# then runs, stopping at the first failure:
#   cargo build --release --bins · cargo fmt --check · cargo clippy -D warnings ·
#   cargo test --release · Autobahn conformance · kernel-tuning (root only) ·
#   fuzz/smoke.sh and perf/smoke.sh (when present)
# Each step prints a header and its elapsed seconds; the end is a summary and
# "tests: N passed, M failed" (cargo test results + autobahn + kernel-tuning + smokes).
#
# Knobs: RINGCAST_SKIP_AUTOBAHN=1, RINGCAST_SKIP_CLIPPY=1 (fast local runs);
#        RINGCAST_CACHE (default ~/.cache/ringcast: Python venvs).
# Exports for tests: RINGCAST_REDIS_SERVER (redis-server path), RINGCAST_PYTHON
# (python3 with `websockets`), RINGCAST_BIN (default target/release/ringcast; set it to
# test another build).
# Needs no stdin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
exec </dev/null

CACHE="${RINGCAST_CACHE:-$HOME/.cache/ringcast}"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-tests.XXXXXX")"
trap 'rm -rf "$LOGDIR"' EXIT
RUN_START=$SECONDS

step_names=() step_results=()
tests_passed=0 tests_failed=0
nstep=0

# Adds the test counts a step printed: cargo's "test result: ok. N passed; M failed"
# and the plain "word: N passed, M failed" lines of the shell/Python tests.
count_tests() {
    local log="$1" p f
    while read -r p f; do
        tests_passed=$((tests_passed + p))
        tests_failed=$((tests_failed + f))
    done < <(sed -nE \
        -e 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' \
        -e 's/^[A-Za-z0-9_-]+: ([0-9]+) passed, ([0-9]+) failed(, [0-9]+ skipped)?$/\1 \2/p' "$log")
}

summary() {
    local i
    echo
    echo "==> summary ($((SECONDS - RUN_START)) s)"
    for i in "${!step_names[@]}"; do
        printf '    %-42s %s\n' "${step_names[$i]}" "${step_results[$i]}"
    done
}

# step NAME CMD...: runs CMD with a header, its output shown (and kept for counting).
step() {
    local name="$1" start rc log
    shift
    nstep=$((nstep + 1))
    log="$LOGDIR/step-$nstep.log"
    echo
    echo "==> [$nstep] $name"
    start=$SECONDS
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    local secs=$((SECONDS - start))
    count_tests "$log"
    step_names+=("$name")
    if [[ "$rc" -ne 0 ]]; then
        step_results+=("FAILED (exit $rc, $secs s)")
        echo "<== [$nstep] $name: FAILED (exit $rc) after $secs s"
        summary
        echo "tests/run.sh: FAILED at step '$name' (exit $rc); see its output above"
        exit "$rc"
    fi
    step_results+=("ok ($secs s)")
    echo "<== [$nstep] $name: ok ($secs s)"
}

skip() {
    nstep=$((nstep + 1))
    echo
    echo "==> [$nstep] $1: skipped ($2)"
    step_names+=("$1")
    step_results+=("skipped: $2")
}

# ---- installs

install_redis() {
    # shellcheck source=tests/support/redis.sh
    source "$ROOT/tests/support/redis.sh"
    ensure_redis_installed || return 1
    echo "redis-server: $(command -v redis-server) ($(redis-server --version | grep -oE 'v=[0-9.]+'))"
}

install_openssl() {
    # certs/make-dev-cert.sh (the TLS tests and the wss perf smoke run) needs the openssl CLI.
    if ! command -v openssl >/dev/null 2>&1; then
        if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            echo "openssl: missing; install it (apt-get install -y openssl)"
            return 1
        fi
        apt-get install -y openssl >"$LOGDIR/apt-openssl.log" 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y openssl >"$LOGDIR/apt-openssl.log" 2>&1; } ||
            { tail -n 20 "$LOGDIR/apt-openssl.log"; return 1; }
    fi
    echo "openssl: $(openssl version)"
}

install_python() {
    local venv="$CACHE/py3"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
        echo "python venv: $venv (websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)'))"
        return 0
    fi
    local log="$LOGDIR/pip.log"
    rm -rf "$venv"
    mkdir -p "$CACHE"
    if ! { python3 -m venv "$venv" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q websockets; } >"$log" 2>&1; then
        echo "python venv: creating $venv with websockets failed:"
        tail -n 30 "$log"
        return 1
    fi
    echo "python venv: $venv (websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)'))"
}

install_autobahn() {
    local wstest
    wstest="$(bash tests/autobahn/install.sh)" || return 1
    echo "wstest: $wstest"
}

step "install redis-server" install_redis
RINGCAST_REDIS_SERVER="$(command -v redis-server)"
export RINGCAST_REDIS_SERVER
step "install openssl" install_openssl
step "install python venv (websockets)" install_python
export RINGCAST_PYTHON="$CACHE/py3/bin/python"
export RINGCAST_BIN="${RINGCAST_BIN:-$ROOT/target/release/ringcast}"
if [[ "${RINGCAST_SKIP_AUTOBAHN:-0}" == 1 ]]; then
    skip "install autobahn testsuite" "RINGCAST_SKIP_AUTOBAHN=1"
else
    step "install autobahn testsuite" install_autobahn
fi

# ---- build and checks

step "cargo build --release --bins" cargo build --release --bins
step "cargo fmt --all -- --check" cargo fmt --all -- --check
if [[ "${RINGCAST_SKIP_CLIPPY:-0}" == 1 ]]; then
    skip "cargo clippy --all-targets -- -D warnings" "RINGCAST_SKIP_CLIPPY=1"
else
    step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
fi
step "cargo test --release" cargo test --release
install_chromium() {   # for client/test/chromium.test.mjs (skipped without it)
    command -v chromium >/dev/null 2>&1 || [[ "$(id -u)" -ne 0 ]] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$LOGDIR/apt-chromium.log" 2>&1 ||
        { tail -n 20 "$LOGDIR/apt-chromium.log"; return 1; }
    echo "chromium: $(chromium --version 2>/dev/null || echo 'missing (not root): the page test is skipped')"
}
if command -v node >/dev/null; then   # the browser client (client/): unit tests, real server, real Chromium
    step "install chromium" install_chromium
    step "node --test client/test/" node --experimental-websocket --test client/test/
else
    skip "node --test client/test/" "node not installed"
fi

# ---- system tests

if [[ "${RINGCAST_SKIP_AUTOBAHN:-0}" == 1 ]]; then
    skip "autobahn conformance" "RINGCAST_SKIP_AUTOBAHN=1"
else
    step "autobahn conformance" bash tests/autobahn/run.sh "$RINGCAST_BIN"
fi
if [[ "$(id -u)" -eq 0 ]]; then
    step "kernel-tuning apply/check/revert" bash tests/kernel_tuning.sh
else
    skip "kernel-tuning apply/check/revert" "not root"
fi
# A fixed fuzz seed keeps the test command reproducible (run fuzz/smoke.sh with FUZZ_SEED=… to explore).
export FUZZ_SEED="${FUZZ_SEED:-42}"
for smoke in fuzz/smoke.sh perf/smoke.sh; do
    if [[ -f "$smoke" ]]; then
        step "$smoke" bash "$smoke"
    else
        skip "$smoke" "not present"
    fi
done

summary
echo "tests/run.sh: all steps passed"
echo "tests: $tests_passed passed, $tests_failed failed"
