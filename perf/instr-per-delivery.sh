#!/usr/bin/env bash
# Server instructions per delivery, ws:// vs wss://, under callgrind: a noise-free figure for the
# "wss CPU per delivery" row (wall-clock rounds spread +-20 % on a shared VM; instruction counts
# do not, as long as the server keeps up).
#
#   perf/instr-per-delivery.sh [--bin PATH] [--runs N] [--modes "ws wss"] [--conns 400]
#       [--symbols 40] [--rate 200] [--window 4] [--tls-groups x25519] [--keep DIR]
#
# Per run and mode: a private redis-server, `ringcast serve --workers 1` under
# `valgrind --tool=callgrind` pinned to core 0, the harness (perf/target/release/ringcast-load,
# `--scenario latency --server-pid`) on core 1 with --conns connections over --symbols symbols,
# --rate ticks/s of 100 bytes. Once every connection is up and ticks flow, the callgrind counters
# are zeroed (callgrind_control -z) and after --window seconds dumped (callgrind_control -d);
# deliveries are the calls of Core::deliver in the dump (perf/callgrind-by-symbol.py --deliveries),
# so instructions and deliveries cover exactly the same window.
# Prints one line per run: mode, deliveries, instructions, instructions per delivery, and per mode
# the wss/ws ratio of each run. The dumps are kept in --keep (default a temp dir, printed) for
# `perf/callgrind-by-symbol.py DUMP BIN` (the per-symbol breakdown). Needs valgrind, gcc (the
# perf/valgrind-uring-wait.c shim), redis-server, curl, openssl. Results: perf/RESULTS.md, "wss vs ws".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/release/ringcast"
load="$root/perf/target/release/ringcast-load"
runs=3 modes="ws wss" conns=400 symbols=40 rate=200 window=4 groups=x25519 keep=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin="$2"; shift ;;
        --runs) runs="$2"; shift ;;
        --modes) modes="$2"; shift ;;
        --conns) conns="$2"; shift ;;
        --symbols) symbols="$2"; shift ;;
        --rate) rate="$2"; shift ;;
        --window) window="$2"; shift ;;
        --tls-groups) groups="$2"; shift ;;
        --keep) keep="$2"; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "instr-per-delivery: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in gcc valgrind callgrind_control redis-server curl openssl; do
    command -v "$tool" >/dev/null || { echo "instr-per-delivery: $tool not found" >&2; exit 1; }
done
[[ -x "$bin" ]] || { echo "instr-per-delivery: $bin missing (cargo build --release, or --bin)" >&2; exit 1; }
[[ -x "$load" ]] || { echo "instr-per-delivery: $load missing (cd perf && cargo build --release)" >&2; exit 1; }
keep="${keep:-$(mktemp -d /tmp/instr-per-delivery.XXXXXX)}"
mkdir -p "$keep"
bash "$root/certs/make-dev-cert.sh" "$keep/cert" >/dev/null
# valgrind 3.19 holds its thread lock through io_uring_enter; the shim waits in ppoll instead.
gcc -O2 -shared -fPIC -o "$keep/valgrind-uring-wait.so" "$root/perf/valgrind-uring-wait.c" -ldl

pids=()
# The harness first (SIGTERM: it stops its client processes), then the server (SIGKILL: its counters
# are dumped already, and a drain under valgrind would take long), then redis.
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# metric NAME SCHEME PORT: the value of an unlabelled metric (summed over labels).
metric() {
    curl -ks --max-time 30 "$2://127.0.0.1:$3/metrics" |
        awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

one_run() { # mode run
    local mode=$1 n=$2 scheme=http tlsargs=() loadtls=()
    if [[ $mode == wss ]]; then
        scheme=https
        tlsargs=(--tls-cert "$keep/cert/cert.pem" --tls-key "$keep/cert/key.pem")
        loadtls=(--tls --ca "$keep/cert/cert.pem" --tls-groups "$groups")
    fi
    local rport sport out="$keep/callgrind.$mode.$n"
    rport=$(free_port); sport=$(free_port)
    redis-server --port "$rport" --save '' --appendonly no --daemonize no >/dev/null &
    local rpid=$!; pids+=("$rpid")
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
    LD_PRELOAD="$keep/valgrind-uring-wait.so" taskset -c 0 valgrind --tool=callgrind --fair-sched=yes --dump-instr=yes --callgrind-out-file="$out" \
        "$bin" serve --listen "127.0.0.1:$sport" --workers 1 --processes 1 \
        --redis "redis://127.0.0.1:$rport" --prefix perf: "${tlsargs[@]}" \
        2>"$keep/valgrind.$mode.$n.log" &
    local spid=$!; pids=("$spid" "${pids[@]}")
    until curl -ks --max-time 5 "$scheme://127.0.0.1:$sport/healthz" >/dev/null 2>&1; do sleep 0.5; done
    local total=$((window + 90))
    taskset -c 1 "$load" run --scenario latency --server-pid "$spid" --target "127.0.0.1:$sport" \
        --redis "redis://127.0.0.1:$rport" --prefix perf: --conns "$conns" --symbols "$symbols" \
        --rate "$rate" --tick-bytes 100 --warmup 2s --duration "${total}s" --connect-timeout 60s --connect-concurrency 50 --out "$keep/load.$mode.$n.json" \
        "${loadtls[@]}" >"$keep/load.$mode.$n.log" 2>&1 &
    local lpid=$!; pids=("$lpid" "${pids[@]}")
    # Every connection up and ticks flowing for a second.
    local waited=0
    until [[ $(metric ringcast_connections_open "$scheme" "$sport") -ge $conns ]]; do
        sleep 1; waited=$((waited + 1))
        ((waited < 80)) || { echo "$mode run $n: not every connection came up (see $keep/load.$mode.$n.log)" >&2; exit 1; }
    done
    local d0 d1
    d0=$(metric ringcast_deliveries_total "$scheme" "$sport")
    until [[ $(metric ringcast_deliveries_total "$scheme" "$sport") -gt $((d0 + 1000)) ]]; do sleep 0.5; done
    sleep 1
    # The scrapes stay outside the counted window (over https each is a TLS handshake).
    d0=$(metric ringcast_deliveries_total "$scheme" "$sport")
    callgrind_control -z "$spid" >/dev/null
    sleep "$window"
    callgrind_control -d "$spid" >/dev/null
    d1=$(metric ringcast_deliveries_total "$scheme" "$sport")
    kill -TERM "$lpid"; wait "$lpid" 2>/dev/null || true
    kill -KILL "$spid"; wait "$spid" 2>/dev/null || true
    cleanup
    local dump ir
    dump="$out.1"
    ir=$(awk '/^summary:|^totals:/ { print $2; exit }' "$dump")
    # Deliveries: the calls of Core::deliver callgrind counted in the same window as the
    # instructions (the /metrics difference also counts the time callgrind_control takes to act).
    local deliveries
    deliveries=$(python3 "$root/perf/callgrind-by-symbol.py" --deliveries "$dump")
    echo "$mode run $n: ringcast_deliveries_total moved by $((d1 - d0)) around the window" >>"$keep/metrics.txt"
    printf '%s run %d: %d deliveries, %d instructions, %.0f instructions/delivery (%s)\n' \
        "$mode" "$n" "$deliveries" "$ir" "$(echo "$ir / $deliveries" | bc -l)" "$dump"
    echo "$mode $n $deliveries $ir $dump" >>"$keep/results.txt"
}

echo "instr-per-delivery: $bin, $conns connections, $symbols symbols, $rate ticks/s, ${window}s window; dumps in $keep"
: >"$keep/results.txt"
for n in $(seq 1 "$runs"); do
    for mode in $modes; do one_run "$mode" "$n"; done
done
awk '{ per[$1, $2] = $4 / $3 } END {
    for (k in per) { split(k, a, SUBSEP); if (a[1] == "wss" && (("ws", a[2]) in per))
        printf "run %s: wss/ws instructions per delivery %.3f\n", a[2], per["wss", a[2]] / per["ws", a[2]] } }' \
    "$keep/results.txt" | sort
