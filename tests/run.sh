#!/usr/bin/env bash
# THE test command: `bash tests/run.sh` (CI: .ci/run). Installs what the tests need, then runs every
# step, whatever an earlier one did:
#   cargo build --release --bins · cargo fmt --check · cargo clippy -D warnings ·
#   cargo +MSRV check (Cargo.toml's rust-version) · cargo test --release ·
#   cargo test --lib (debug: debug_assert! and overflow checks) · cargo test in perf/ ·
#   haproxy -c / nginx -t of deploy/ · Autobahn conformance · kernel-tuning (root) · fuzz/smoke.sh ·
#   perf/smoke.sh
# Only a failed release build stops steps that need it: they are reported as "not run".
# Each step prints a header and its elapsed seconds; the end is a summary (one line per step: ok,
# FAILED, skipped or not run, with a note such as Autobahn's strict-OK count), a verdict line, and last
# a line of its own:
#   tests: N passed, M failed            (", K skipped" is added when a step or part was skipped)
# N and M count cargo's tests, the perf smoke runs, and each other test step as one result (Autobahn's
# 517 cases are one result); a failed step whose output counted no failure adds one to M. The exit
# status is non-zero when any step failed.
#
# Skips: with CI=true (CI has root and every tool) a skip is a failure. Locally a step may be skipped
# (not root, a missing script, RINGCAST_SKIP_*), and a script may report a skipped part with a line
# `NAME: skipped: REASON` (fuzz/smoke.sh without cargo-fuzz); both show in the summary and the last line.
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
CI_RUN=0
[[ "${CI:-}" == true || "${CI:-}" == 1 ]] && CI_RUN=1

step_names=() step_results=()
tests_passed=0 tests_failed=0 tests_skipped=0
failed_steps=()
nstep=0
build_ok=1

# Counts the test lines a step printed: cargo's "test result: ok. N passed; M failed" and the plain
# "word: N passed, M failed" lines of the shell tests. Prints "PASSED FAILED LINES".
count_tests() {
    local log="$1" p f total_p=0 total_f=0 lines=0
    while read -r p f; do
        total_p=$((total_p + p))
        total_f=$((total_f + f))
        lines=$((lines + 1))
    done < <(sed -nE \
        -e 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' \
        -e 's/^[A-Za-z0-9_-]+: ([0-9]+) passed, ([0-9]+) failed(, [0-9]+ skipped)?$/\1 \2/p' "$log")
    echo "$total_p $total_f $lines"
}

summary() {
    local i
    echo
    echo "==> summary ($((SECONDS - RUN_START)) s)"
    for i in "${!step_names[@]}"; do
        printf '    %-42s %s\n' "${step_names[$i]}" "${step_results[$i]}"
    done
}

# run_step KIND NAME CMD...: runs CMD with a header, its output shown (and kept for counting).
# KIND "test": its counted test lines, or itself as one result when it printed none.
# KIND "setup" (installs, build, fmt): a result only when it fails.
run_step() {
    local kind="$1" name="$2" start rc log
    shift 2
    nstep=$((nstep + 1))
    log="$LOGDIR/step-$nstep.log"
    echo
    echo "==> [$nstep] $name"
    start=$SECONDS
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    local secs=$((SECONDS - start)) p f lines note result skipped
    read -r p f lines < <(count_tests "$log")
    note="$(sed -nE 's/^[A-Za-z0-9_-]+: summary: (.*)$/\1/p' "$log" | tail -n 1)"
    if [[ "$kind" == test && "$lines" -eq 0 ]]; then
        if [[ "$rc" -eq 0 ]]; then p=1; else f=1; fi
    fi
    if [[ "$rc" -ne 0 && "$f" -eq 0 ]]; then
        f=1 # it failed without a counted failing test (a build error, a crash, a check)
    fi
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
    if [[ "$rc" -ne 0 ]]; then
        result="FAILED (exit $rc, $secs s)"
        failed_steps+=("$name")
    else
        result="ok ($secs s)"
    fi
    [[ -n "$note" ]] && result="$result: $note"
    # A part the step skipped (`NAME: skipped: REASON`).
    while IFS= read -r skipped; do
        [[ -n "$skipped" ]] || continue
        if [[ "$CI_RUN" -eq 1 && "$rc" -eq 0 ]]; then
            result="FAILED (skipped in CI: $skipped)"
            failed_steps+=("$name")
            tests_failed=$((tests_failed + 1))
            [[ "$kind" == test && "$lines" -eq 0 ]] && tests_passed=$((tests_passed - 1))
            rc=1
        elif [[ "$CI_RUN" -eq 1 ]]; then
            result="$result; skipped in CI: $skipped"
        else
            result="$result; skipped: $skipped"
            tests_skipped=$((tests_skipped + 1))
        fi
    done < <(sed -nE 's/^[A-Za-z0-9_-]+: skipped: (.*)$/\1/p' "$log")
    step_names+=("$name")
    step_results+=("$result")
    echo "<== [$nstep] $name: $result"
    return "$rc"
}

step() { run_step test "$@" || true; }
setup() { run_step setup "$@" || true; }

# skip NAME REASON: a step not run here. With CI=true, a failure.
skip() {
    nstep=$((nstep + 1))
    echo
    step_names+=("$1")
    if [[ "$CI_RUN" -eq 1 ]]; then
        echo "==> [$nstep] $1: FAILED: skipped in CI ($2)"
        step_results+=("FAILED (skipped in CI: $2)")
        failed_steps+=("$1")
        tests_failed=$((tests_failed + 1))
    else
        echo "==> [$nstep] $1: skipped ($2)"
        step_results+=("skipped: $2")
        tests_skipped=$((tests_skipped + 1))
    fi
}

# A step that needs the release build: reported as not run when the build failed.
built_step() {
    if [[ "$build_ok" -eq 1 ]]; then
        step "$@"
    else
        nstep=$((nstep + 1))
        echo
        echo "==> [$nstep] $1: not run (the release build failed)"
        step_names+=("$1")
        step_results+=("not run (the release build failed)")
    fi
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

install_balancers() {
    # tests/edge_balancer.rs runs a real HAProxy and nginx in front of ringcast (deploy/haproxy.cfg,
    # deploy/nginx.conf); without them those tests print a skip line (a failure with CI=true).
    local missing=() tool
    for tool in haproxy nginx; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [[ "${#missing[@]}" -gt 0 ]]; then
        if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            echo "${missing[*]}: missing; install them (apt-get install -y ${missing[*]})"
            return 1
        fi
        { DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }; } \
            >"$LOGDIR/apt-balancers.log" 2>&1 || { tail -n 20 "$LOGDIR/apt-balancers.log"; return 1; }
    fi
    echo "haproxy: $(haproxy -v | head -n 1)"
    echo "nginx: $(nginx -v 2>&1)"
}

install_promtool() {
    # tests/deploy_monitoring.rs runs `promtool check rules` / `promtool test rules` on
    # deploy/prometheus-alerts*.yml; without it that part prints a skip line (a failure with CI=true).
    # Debian ships promtool in the `prometheus` package (~100 MB; the service is not started here).
    if ! command -v promtool >/dev/null 2>&1; then
        if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            echo "promtool: missing; install it (apt-get install -y --no-install-recommends prometheus)"
            return 1
        fi
        { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }; } \
            >"$LOGDIR/apt-prometheus.log" 2>&1 || { tail -n 20 "$LOGDIR/apt-prometheus.log"; return 1; }
    fi
    echo "promtool: $(promtool --version 2>&1 | head -n 1)"
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

setup "install redis-server" install_redis
RINGCAST_REDIS_SERVER="$(command -v redis-server || true)"
export RINGCAST_REDIS_SERVER
setup "install openssl" install_openssl
setup "install haproxy and nginx" install_balancers
setup "install promtool (prometheus)" install_promtool
setup "install python venv (websockets)" install_python
export RINGCAST_PYTHON="$CACHE/py3/bin/python"
export RINGCAST_BIN="${RINGCAST_BIN:-$ROOT/target/release/ringcast}"
if [[ "${RINGCAST_SKIP_AUTOBAHN:-0}" == 1 ]]; then
    skip "install autobahn testsuite" "RINGCAST_SKIP_AUTOBAHN=1"
else
    setup "install autobahn testsuite" install_autobahn
fi

# ---- build and checks

run_step setup "cargo build --release --bins" cargo build --release --bins || build_ok=0
step "cargo fmt --all -- --check" cargo fmt --all -- --check
if [[ "${RINGCAST_SKIP_CLIPPY:-0}" == 1 ]]; then
    skip "cargo clippy --all-targets -- -D warnings" "RINGCAST_SKIP_CLIPPY=1"
else
    step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
fi
# MSRV: the crate (tests, benches and examples too) type-checks with the Rust of Cargo.toml's
# `rust-version`, with the same Cargo.lock. The toolchain stays installed (~/.rustup) and the check has a
# target dir of its own (target/msrv), so after the first run (~2-3 min of CPU on 2 cores, most of it the
# dependencies) it rechecks only this crate: ~30 s. Without rustup or when the Rust dist server cannot
# be reached, a skipped part (a failure with CI=true).
msrv_check() {
    local msrv
    msrv="$(sed -nE 's/^rust-version = "([0-9.]+)".*/\1/p' Cargo.toml)"
    [[ -n "$msrv" ]] || { echo "msrv: Cargo.toml has no rust-version"; return 1; }
    if ! command -v rustup >/dev/null 2>&1; then
        echo "msrv: skipped: no rustup to install Rust $msrv"
        return 0
    fi
    if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
        echo "msrv: installing Rust $msrv (rustup toolchain install $msrv --profile minimal)"
        if ! rustup toolchain install "$msrv" --profile minimal >"$LOGDIR/rustup-msrv.log" 2>&1; then
            tail -n 5 "$LOGDIR/rustup-msrv.log"
            echo "msrv: skipped: rustup could not install Rust $msrv (is static.rust-lang.org reachable?)"
            return 0
        fi
    fi
    echo "msrv: $(rustup run "$msrv" rustc --version)"
    CARGO_TARGET_DIR="$ROOT/target/msrv" cargo "+$msrv" check --locked --all-targets
}
step "cargo +MSRV check --locked --all-targets" msrv_check
# --no-fail-fast: every test binary runs and reports even after one fails.
built_step "cargo test --release" cargo test --release --no-fail-fast
# Debug build: debug_assert! and overflow checks run (the release tests compile them out).
step "cargo test --lib (debug)" cargo test --lib
step "cargo test (perf/)" bash -c 'cd perf && cargo test'
# deploy/: the load balancer configurations as shipped (tests/edge_balancer.rs also runs them for real).
check_haproxy_cfg() {
    command -v haproxy >/dev/null 2>&1 || { echo "haproxy-cfg: skipped: haproxy not installed"; return 0; }
    haproxy -c -f deploy/haproxy.cfg
}
check_nginx_conf() {   # deploy/nginx.conf is an http{} include: checked inside a minimal main conf
    command -v nginx >/dev/null 2>&1 || { echo "nginx-conf: skipped: nginx not installed"; return 0; }
    local dir rc=0 t
    dir="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-nginx.XXXXXX")"
    {
        printf 'pid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n' "$dir"
        for t in client_body proxy fastcgi uwsgi scgi; do printf '  %s_temp_path %s/%s;\n' "$t" "$dir" "$t"; done
        printf '  include %s/deploy/nginx.conf;\n}\n' "$ROOT"
    } >"$dir/nginx.conf"
    nginx -t -p "$dir" -c "$dir/nginx.conf" -e stderr || rc=$?
    rm -rf "$dir"
    return "$rc"
}
step "haproxy -c -f deploy/haproxy.cfg" check_haproxy_cfg
step "nginx -t (deploy/nginx.conf)" check_nginx_conf
install_chromium() {   # for client/test/chromium.test.mjs
    if ! command -v chromium >/dev/null 2>&1 && [[ "$(id -u)" -eq 0 ]]; then
        { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }; } \
            >"$LOGDIR/apt-chromium.log" 2>&1 || { tail -n 20 "$LOGDIR/apt-chromium.log"; return 1; }
    fi
    command -v chromium >/dev/null 2>&1 || { echo "chromium: missing (not root): install it (apt-get install -y chromium)"; return 1; }
    echo "chromium: $(chromium --version 2>/dev/null)"
}
# The browser client (client/): unit tests, a real server, a real Chromium.
setup "install chromium" install_chromium
node_client_tests() {   # node's TAP totals become one counted "client: N passed, M failed" line
    local out="$LOGDIR/node-client.log" rc
    node --experimental-websocket --test --test-reporter=tap client/test/ 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    echo "client: $(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$out" | tail -1) passed, $(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$out" | tail -1) failed"
    return "$rc"
}
built_step "node --test client/test/" node_client_tests

# ---- system tests

if [[ "${RINGCAST_SKIP_AUTOBAHN:-0}" == 1 ]]; then
    skip "autobahn conformance" "RINGCAST_SKIP_AUTOBAHN=1"
else
    built_step "autobahn conformance" bash tests/autobahn/run.sh "$RINGCAST_BIN"
fi
if [[ "$(id -u)" -eq 0 ]]; then
    step "kernel-tuning apply/check/revert" bash tests/kernel_tuning.sh
else
    skip "kernel-tuning apply/check/revert" "not root"
fi
# A fixed fuzz seed keeps the test command reproducible (run fuzz/smoke.sh with FUZZ_SEED=… to explore).
export FUZZ_SEED="${FUZZ_SEED:-42}"
step "fuzz/smoke.sh" bash fuzz/smoke.sh
built_step "perf/smoke.sh" bash perf/smoke.sh

summary
if [[ "${#failed_steps[@]}" -eq 0 ]]; then
    echo "tests/run.sh: all steps passed"
else
    echo "tests/run.sh: FAILED: ${failed_steps[*]}"
fi
skipped=""
[[ "$tests_skipped" -gt 0 ]] && skipped=", $tests_skipped skipped"
echo "tests: $tests_passed passed, $tests_failed failed$skipped"
[[ "${#failed_steps[@]}" -eq 0 && "$tests_failed" -eq 0 ]]
