#!/usr/bin/env bash
# Smoke run of the load harness: a few seconds, a few hundred connections, against a freshly started
# ringcast (target/release/ringcast) and a Redis of its own. Asserts ticks were delivered and none lost.
# Last line: `perf-smoke: N passed, N failed`.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${PERF_SMOKE_OUT:-$(mktemp -d)}"
fail() { echo "perf-smoke: FAIL: $*"; echo "perf-smoke: 0 passed, 1 failed"; exit 1; }

command -v redis-server >/dev/null || fail "redis-server is not on PATH (apt-get install -y redis-server)"
if [ ! -x "$root/target/release/ringcast" ]; then
  echo "perf-smoke: building ringcast (release)"
  (cd "$root" && cargo build --release --bin ringcast) || fail "cargo build --release of ringcast failed"
fi
echo "perf-smoke: building ringcast-load (release)"
(cd "$here" && cargo build --release --quiet) || fail "cargo build --release of perf/ failed"

"$here/target/release/ringcast-load" run --scenario latency --server ringcast --start-redis \
  --conns "${PERF_SMOKE_CONNS:-300}" --symbols 20 --per-conn 2 --rate 200 --warmup 1 --duration 4 \
  --timeout 90 --out "$out/smoke.json" --svg "$out/smoke.svg"
rc=$?
[ $rc -eq 0 ] || fail "ringcast-load exited with $rc"
python3 - "$out/smoke.json" <<'PY' || { echo "perf-smoke: 0 passed, 1 failed"; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
p = r["phases"][0]
c = p["counters"]
t = r["totals"]
errs = []
if r["connect"]["open"] != r["connect"]["requested"]:
    errs.append(f"only {r['connect']['open']} of {r['connect']['requested']} connections opened")
if t.get("deliveries", 0) <= t.get("snapshots", 0):
    errs.append(f"no live tick ever arrived ({r['published']} published, {t.get('acks', 0)} subscribe acks): "
                "the server does not deliver subscriptions from Redis yet")
elif p["deliveries"] == 0:
    errs.append("no tick arrived during the measured phase")
if t.get("lost", 0) != 0:
    errs.append(f"{t['lost']} ticks lost")
if t.get("duplicated", 0) or t.get("out_of_order", 0):
    errs.append(f"{t['duplicated']} duplicated and {t['out_of_order']} out-of-order ticks")
if t.get("protocol_errors", 0) or t.get("handshake_errors", 0):
    errs.append(f"{t['protocol_errors']} protocol and {t['handshake_errors']} handshake errors")
for e in errs:
    print("perf-smoke: FAIL:", e)
if errs:
    sys.exit(1)
print(f"perf-smoke: ok: {p['deliveries']} deliveries ({p['deliveries_per_s']:.0f}/s), ratio {p['delivery_ratio']:.3f}, "
      f"p50 {p['latency_us']['p50']} µs p99 {p['latency_us']['p99']} µs, lost 0")
PY
echo "perf-smoke: 1 passed, 0 failed"
