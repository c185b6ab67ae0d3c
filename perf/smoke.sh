#!/usr/bin/env bash
# Smoke runs of the load harness against a freshly started ringcast ($RINGCAST_BIN, default
# target/release/ringcast, as the integration tests) and a
# Redis of its own: a few seconds and a few hundred connections over ws://, then the same over wss://
# (--tls: a throwaway certificate from certs/make-dev-cert.sh). Each asserts that at least 99% of the
# measured phase's expected deliveries arrived (every subscriber, every tick), none lost, duplicated or
# out of order. Then a reconnect storm (--scenario storm): 200 ws:// clients with ringcast.js's policy, the
# server restarted as a rolling restart does (a new process with --join on the same port, then SIGTERM to
# the old one, 1 s drain); asserts every client is back, subscribed and current (a tick published after
# the restart seen) within 20 s, that no upgrade met a 503, and that every close the server sent is 1012.
# And a stall (--stall 50:
# the server SIGSTOPped for 50 ms mid-run): every tick delivered across it (none lost: the feed must not
# reconnect on the EINTR that follows SIGCONT), the latency timeline recorded before and after it.
# Then [fleet]: the same
# latency checks through HAProxy (deploy/haproxy.cfg, send-proxy-v2; --via-haproxy) with a Redis Cluster of
# 3 masters as the feed (--redis-cluster-masters 3: SPUBLISH per shard), ~6 s; skipped when haproxy is not
# installed (a failure with CI=true).
# Last line: `perf-smoke: N passed, N failed`.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${PERF_SMOKE_OUT:-$(mktemp -d)}"
runs=5
fail() { echo "perf-smoke: FAIL: $*"; echo "perf-smoke: 0 passed, $runs failed"; exit 1; }

command -v redis-server >/dev/null || fail "redis-server is not on PATH (apt-get install -y redis-server)"
command -v openssl >/dev/null || fail "openssl is not on PATH (apt-get install -y openssl; certs/make-dev-cert.sh needs it)"
bin="${RINGCAST_BIN:-$root/target/release/ringcast}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ -z "${RINGCAST_BIN:-}" ] && [ ! -x "$bin" ]; then
  echo "perf-smoke: building ringcast (release)"
  (cd "$root" && cargo build --release --bin ringcast) || fail "cargo build --release of ringcast failed"
fi
echo "perf-smoke: building ringcast-load (release)"
(cd "$here" && cargo build --release --quiet) || fail "cargo build --release of perf/ failed"

passed=0 failed=0

# smoke NAME CONNS DURATION [EXTRA FLAGS...]: one latency run and its checks.
smoke() {
  local name="$1" conns="$2" duration="$3"
  shift 3
  echo "perf-smoke: [$name] $conns connections, $duration s $*"
  "$here/target/release/ringcast-load" run --scenario latency --server ringcast --ringcast-bin "$bin" --start-redis \
    --conns "$conns" --symbols 20 --per-conn 2 --rate 200 --warmup 1 --duration "$duration" \
    --timeout 90 --out "$out/smoke-$name.json" --svg "$out/smoke-$name.svg" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "perf-smoke: FAIL: [$name] ringcast-load exited with $rc"
    failed=$((failed + 1))
    return
  fi
  if python3 - "$out/smoke-$name.json" "$name" <<'PY'; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
import json, sys
r = json.load(open(sys.argv[1]))
name = sys.argv[2]
p = r["phases"][0]
t = r["totals"]
errs = []
if r["connect"]["open"] != r["connect"]["requested"]:
    errs.append(f"only {r['connect']['open']} of {r['connect']['requested']} connections opened")
if t.get("deliveries", 0) <= t.get("snapshots", 0):
    errs.append(f"no live tick ever arrived ({r['published']} published, {t.get('acks', 0)} subscribe acks): "
                "the server does not deliver subscriptions from Redis yet")
elif p["deliveries"] == 0:
    errs.append("no tick arrived during the measured phase")
# Every subscriber gets every tick: at least 99% of the phase's expected deliveries (ticks still in
# flight when the phase ends are the only allowance), so losses at the tail, which no sequence gap
# reveals, show here.
if not p.get("expected_deliveries"):
    errs.append("the measured phase expected no deliveries (nothing was published)")
elif p["delivery_ratio"] < 0.99:
    errs.append(f"delivered {p['stable_deliveries']} of {p['expected_deliveries']} expected deliveries "
                f"(ratio {p['delivery_ratio']:.4f} < 0.99)")
if t.get("lost", 0) != 0:
    errs.append(f"{t['lost']} ticks lost")
if t.get("duplicated", 0) or t.get("out_of_order", 0):
    errs.append(f"{t['duplicated']} duplicated and {t['out_of_order']} out-of-order ticks")
if t.get("protocol_errors", 0) or t.get("handshake_errors", 0) or t.get("tls_errors", 0):
    errs.append(f"{t['protocol_errors']} protocol, {t['handshake_errors']} upgrade and {t.get('tls_errors', 0)} TLS errors")
arr = p.get("arrival_latency_us") or {}
if p["deliveries"] > 0 and not arr.get("count"):
    errs.append("no kernel receive timestamps (SO_TIMESTAMPNS): the publish→arrival split is missing")
elif arr.get("p50", 0) > p["latency_us"].get("p50", 0):
    errs.append(f"publish→arrival p50 {arr.get('p50')} µs is later than publish→read p50 {p['latency_us'].get('p50')} µs")
tls = r.get("tls", {})
want_tls = name == "wss"
if name == "fleet":
    f = r.get("fleet", {})
    cpu = p.get("proc_cpu_pct") or {}
    if not (f.get("haproxy") or {}).get("front") or r["target"] != f["haproxy"]["front"]:
        errs.append(f"the clients did not connect through HAProxy: target {r['target']}, fleet {f.get('haproxy')}")
    if (f.get("redis") or {}).get("masters") != 3 or len([k for k in cpu if k.startswith("redis:")]) != 3:
        errs.append(f"not a 3-master Redis Cluster: {f.get('redis')}, CPU sampled of {sorted(cpu)}")
    if "haproxy" not in cpu or p.get("redis_cpu_pct_per_10k_ticks_s") is None:
        errs.append(f"no HAProxy CPU or Redis CPU per 10k ticks/s in the phase: {sorted(cpu)}")
if bool(tls.get("enabled")) != want_tls or bool(r["config"].get("tls")) != want_tls:
    errs.append(f"the result says tls={tls.get('enabled')}, expected {want_tls}")
if want_tls and not (tls.get("negotiated") or {}).get("version"):
    errs.append("no TLS session recorded in the result")
for w in r["warnings"]:
    if w.startswith("first client error"):
        errs.append(w)
if name == "stall":
    st = r["extra"].get("stall") or {}
    if st.get("stalled_ms", 0) < 50:
        errs.append(f"the server was stopped {st.get('stalled_ms')} ms, not ≥ 50 ms")
    after = [b for b in st.get("buckets", []) if b["t_ms"] >= st.get("end_ms", 1e9) and b["deliveries"] > 0]
    if not st.get("pre_stall_p50_us") or not after:
        errs.append("no latency timeline before and after the stall")
    # (when the p50 is back is reported, not asserted: on a shared, loaded box it is the box's)
    print(f"perf-smoke: [stall] stopped {st.get('stalled_ms', 0):.0f} ms; p50 before {st.get('pre_stall_p50_us')} µs, "
          f"back under 2x after {st.get('recovered_ms')} ms, under 2 ms after {st.get('recovered_2ms_ms')} ms")
for e in errs:
    print(f"perf-smoke: FAIL: [{name}]", e)
if errs:
    sys.exit(1)
neg = tls.get("negotiated") or {}
via = f" over {neg.get('version')} {neg.get('cipher_suite')}" if want_tls else ""
print(f"perf-smoke: ok: [{name}] {p['deliveries']} deliveries ({p['deliveries_per_s']:.0f}/s){via}, "
      f"ratio {p['delivery_ratio']:.3f}, p50 {p['latency_us']['p50']} µs p99 {p['latency_us']['p99']} µs, lost 0")
PY
}

smoke ws "${PERF_SMOKE_CONNS:-300}" 4
smoke wss "${PERF_SMOKE_TLS_CONNS:-200}" 3 --tls
smoke stall "${PERF_SMOKE_CONNS:-300}" 3 --stall 50 --stall-at 1

# storm: a restart under ticks; every client must come back and be current.
echo "perf-smoke: [storm] 200 connections, SIGTERM handover to a --join'ed replacement (drain 1 s), ringcast.js policy"
if RINGCAST_DRAIN_WINDOW=1s "$here/target/release/ringcast-load" run --scenario storm --server ringcast --ringcast-bin "$bin" --start-redis \
    --conns "${PERF_SMOKE_STORM_CONNS:-200}" --symbols 20 --rate 200 --warmup 1 --duration 1 --storm-signal term \
    --reconnect-policy ringcast --storm-timeout 20 --timeout 90 --out "$out/smoke-storm.json" --svg "$out/smoke-storm.svg" &&
  python3 - "$out/smoke-storm.json" <<'PY'; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
import json, sys
r = json.load(open(sys.argv[1]))
s = r["extra"]["storm"]
errs = []
if r["connect"]["open"] != r["connect"]["requested"]:
    errs.append(f"only {r['connect']['open']} of {r['connect']['requested']} connections opened")
if s["not_back"] != 0 or s["back"] != r["connect"]["requested"]:
    errs.append(f"{s['back']} of {s['conns']} clients back and current within 20 s")
if s["reconnects"] < s["conns"]:
    errs.append(f"{s['reconnects']} reconnects for {s['conns']} clients")
# The draining server stops listening once the replacement listens: nobody meets a 503.
if s["refused_503"] != 0:
    errs.append(f"{s['refused_503']} upgrades refused with 503 during the handover")
# Every close the server started is explained: 1012 (the drain) and nothing else.
odd = {k: n for k, n in s.get("server_closes", {}).items() if not k.startswith("1012 ")}
if odd:
    errs.append(f"server closes other than 1012: {odd}")
t = r["totals"]
# (duplicated is not asserted: the server no longer sends a snapshot's tick again live, but a
# resubscribe racing a tick on a loaded box is not worth a flaky smoke)
if t.get("out_of_order", 0) or t.get("protocol_errors", 0):
    errs.append(f"{t['out_of_order']} out-of-order ticks, {t['protocol_errors']} protocol errors")
for e in errs:
    print("perf-smoke: FAIL: [storm]", e)
if errs:
    sys.exit(1)
print(f"perf-smoke: ok: [storm] {s['back']}/{s['conns']} back and current at {s['all_back_s']:.2f} s "
      f"(p99 {s['back_us']['p99'] / 1e6:.2f} s), {s['refused_503']} 503s (max {s['max_refusals_per_conn']} per client), "
      f"peak {s['peak_accepted_per_s']} upgrades/s")
PY

# fleet: through HAProxy, fed by a 3-master Redis Cluster.
if command -v haproxy >/dev/null; then
  smoke fleet "${PERF_SMOKE_FLEET_CONNS:-200}" 3 --via-haproxy --redis-cluster-masters 3
elif [ "${CI:-}" = true ]; then
  echo "perf-smoke: FAIL: [fleet] haproxy is not on PATH (apt-get install -y haproxy)"
  failed=$((failed + 1))
else
  echo "perf-smoke: skipped: [fleet] haproxy is not on PATH (apt-get install -y haproxy)"
  runs=$((runs - 1))
fi

echo "perf-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
