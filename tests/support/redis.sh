# shellcheck shell=bash
# Redis helpers for tests. Source it:
#
#   source tests/support/redis.sh
#   ensure_redis_installed            # apt-get install -y redis-server if it is missing
#   start_redis 16379                 # background redis-server on 127.0.0.1:16379, waits for PING
#   ...                               # REDIS_PID, REDIS_PORT, REDIS_URL are set
#   stop_redis                        # stops it by PID
#
# Functions return non-zero on failure (they don't exit: this file doesn't change the
# caller's shell options). Every wait is bounded.

# Installs redis-server with apt-get when it is not on PATH (needs root).
ensure_redis_installed() {
    if command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "redis: redis-server is missing and there is no apt-get; install Redis >= 6 by hand" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "redis: redis-server is missing; run as root or: apt-get install -y redis-server" >&2
            return 1
        fi
    fi
    local log
    log="$(mktemp "${TMPDIR:-/tmp}/ringcast-apt.XXXXXX")"
    echo "redis: installing redis-server with apt-get"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } \
           </dev/null >"$log" 2>&1; then
        echo "redis: apt-get install redis-server failed:" >&2
        tail -n 20 "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    command -v redis-server >/dev/null 2>&1
}

# _redis_ping PORT: succeeds when the server on 127.0.0.1:PORT answers PONG.
_redis_ping() {
    local port="$1" reply=""
    if command -v redis-cli >/dev/null 2>&1; then
        reply="$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" || return 1
    else
        # Plain RESP over bash's /dev/tcp.
        reply="$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$port"'; printf "PING\r\n" >&3; head -c 7 <&3' 2>/dev/null)" || return 1
    fi
    [[ "$reply" == *PONG* ]]
}

# start_redis PORT: starts a throwaway redis-server on 127.0.0.1:PORT (no persistence)
# in the background, sets REDIS_PID/REDIS_PORT/REDIS_URL/REDIS_LOG, waits (<= 10 s) for PING.
start_redis() {
    local port="${1:?usage: start_redis PORT}"
    if [[ -n "${REDIS_PID:-}" ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
        echo "redis: already started (pid $REDIS_PID on port ${REDIS_PORT:-?})" >&2
        return 1
    fi
    command -v redis-server >/dev/null 2>&1 || { echo "redis: redis-server not installed (ensure_redis_installed)" >&2; return 1; }
    REDIS_LOG="$(mktemp "${TMPDIR:-/tmp}/ringcast-redis-$port.XXXXXX")"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "${TMPDIR:-/tmp}" </dev/null >"$REDIS_LOG" 2>&1 &
    REDIS_PID=$!
    REDIS_PORT="$port"
    REDIS_URL="redis://127.0.0.1:$port"
    export REDIS_PID REDIS_PORT REDIS_URL REDIS_LOG
    local _
    for _ in $(seq 100); do  # 10 s
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            echo "redis: redis-server exited at startup (port $port busy?):" >&2
            tail -n 20 "$REDIS_LOG" >&2
            REDIS_PID=""
            return 1
        fi
        if _redis_ping "$port"; then
            return 0
        fi
        sleep 0.1
    done
    echo "redis: no PONG from 127.0.0.1:$port within 10 s" >&2
    stop_redis
    return 1
}

# stop_redis: stops the server start_redis started (TERM, then KILL after 5 s).
stop_redis() {
    local pid="${REDIS_PID:-}" _
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "${REDIS_LOG:-}"
    REDIS_PID=""
}
