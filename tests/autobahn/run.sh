#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (fuzzingclient, all 517 cases) against `ringcast serve --echo`
# and compares the verdicts with tests/autobahn/expected-results.json.
#
#   bash tests/autobahn/run.sh [--update] [--keep] [BINARY]
#
# BINARY defaults to target/release/ringcast (this script builds nothing). The server
# runs as `BINARY serve --listen 127.0.0.1:<free port> --workers 2 --echo`, must answer
# GET /healthz within 10 s, and is stopped by PID when the script exits.
#   --update  rewrite expected-results.json from this run (refuses any case that is not
#             strict: NON-STRICT, FAILED, WRONG CODE, UNCLEAN or an unclean close)
#   --keep    keep the report directory (HTML per case) even when everything passed
# Environment: AUTOBAHN_TIMEOUT (seconds for the whole run, default 900),
#   AUTOBAHN_VENV (see install.sh), RINGCAST_BIN (instead of BINARY).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOTAL_TIMEOUT="${AUTOBAHN_TIMEOUT:-900}"

# Bound the whole run: re-run this script under `timeout` once.
if [[ -z "${_RINGCAST_AUTOBAHN_BOUNDED:-}" ]]; then
    export _RINGCAST_AUTOBAHN_BOUNDED=1
    rc=0
    timeout --kill-after=20 "$TOTAL_TIMEOUT" bash "${BASH_SOURCE[0]}" "$@" || rc=$?
    if [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then
        echo "autobahn: FAILED: the run took longer than ${TOTAL_TIMEOUT}s (AUTOBAHN_TIMEOUT)" >&2
    fi
    exit "$rc"
fi

update=() keep=0 bin="${RINGCAST_BIN:-}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --update) update+=(--update) ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "autobahn: unknown option $1" >&2; exit 2 ;;
        *) bin="$1" ;;
    esac
    shift
done
bin="${bin:-$ROOT/target/release/ringcast}"
if [[ ! -x "$bin" ]]; then
    echo "autobahn: server binary $bin not found; build it first (cargo build --release --bins)" >&2
    exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

wstest="$(bash "$HERE/install.sh")"

out="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-autobahn.XXXXXX")"
server_pid=""
status=1
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "$status" -eq 0 && "$keep" -eq 0 ]]; then
        rm -rf "$out"
    else
        echo "autobahn: reports and logs kept in $out"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# The log is capped (a server stuck in an error loop can write gigabytes in seconds).
"$bin" serve --listen "127.0.0.1:$port" --workers 2 --echo </dev/null \
    > >(head -c $((64 << 20)) >"$out/server.log") 2>&1 &
server_pid=$!

show_server_log() {
    local lines
    lines="$(wc -l <"$out/server.log")"
    echo "--- server log ($lines lines; first and last 20) ---" >&2
    head -n 20 "$out/server.log" >&2
    if [[ "$lines" -gt 40 ]]; then
        echo "[...]" >&2
        tail -n 20 "$out/server.log" >&2
    elif [[ "$lines" -gt 20 ]]; then
        tail -n "$((lines - 20))" "$out/server.log" >&2
    fi
    echo "---" >&2
    if [[ "$(stat -c %s "$out/server.log")" -ge $((64 << 20)) ]]; then
        echo "autobahn: the server log hit its 64 MiB cap (a log flood; the server may have died writing to it)" >&2
    fi
}

healthy=0
for _ in $(seq 100); do  # 10 s
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "autobahn: the server exited during startup" >&2
        show_server_log
        exit 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.1
done
if [[ "$healthy" -ne 1 ]]; then
    echo "autobahn: no 200 from http://127.0.0.1:$port/healthz within 10 s" >&2
    show_server_log
    exit 1
fi

python3 - "$HERE/spec.json" "$out/spec.json" "$port" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["outdir"] = "./reports"
for s in spec["servers"]:
    s["url"] = "ws://127.0.0.1:%s" % sys.argv[3]
json.dump(spec, open(sys.argv[2], "w"), indent=2)
PY

echo "autobahn: running wstest against $bin on port $port (log: $out/wstest.log)"
start=$SECONDS
if ! (cd "$out" && "$wstest" -m fuzzingclient -s spec.json </dev/null >wstest.log 2>&1); then
    echo "autobahn: wstest failed after $((SECONDS - start)) s; last lines of its log:" >&2
    tail -n 30 "$out/wstest.log" >&2
    exit 1
fi
echo "autobahn: wstest finished in $((SECONDS - start)) s"
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "autobahn: the server died during the run" >&2
    show_server_log
    exit 1
fi
if [[ ! -s "$out/reports/index.json" ]]; then
    echo "autobahn: wstest wrote no reports/index.json" >&2
    tail -n 30 "$out/wstest.log" >&2
    exit 1
fi

python3 "$HERE/compare.py" "$out/reports/index.json" "$HERE/expected-results.json" "${update[@]}"
status=0
