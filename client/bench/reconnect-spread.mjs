// Reconnect spread of N simulated clients after a server restart, with the client's real schedule
// (planReconnect from ../ringcast.js; also with the schedule it had before the 1006 tuning) against the
// seed's (a uniform 3–8 s wait before every retry, whatever the close). Simulated time, no sockets:
// deterministic for a given --seed. Used for docs/client.md.
//
//   node client/bench/reconnect-spread.mjs [--clients 1000] [--down-ms 2000] [--drain-ms 10000] [--seed 1] \
//     [--downs 500,2000,5000,10000,30000]
//
// Scenarios, each from t = 0 when every client lost its socket at once:
//   1012  the server drains (close 1012) and its replacement already listens (a connect succeeds at once):
//         all closes at t = 0 (--drain-window 0, the worst case), and spread uniformly over --drain-ms
//         (the server's --drain-window, default 10 s);
//   1006  the server drops every socket (crash, SIGKILL: close 1006) and listens again after --down-ms;
//         a connect before that is refused at once (loopback) and counts as a failed attempt (1006 again).
// A client is "back" at the time of its first connect at or after the server is up. Connect latency is 0.

import { DEFAULTS, planReconnect } from "../ringcast.js";
import { parseArgs, peakPer, quantile } from "./stats.mjs";

const args = parseArgs();
const CLIENTS = Number(args.clients ?? 1000);
const DOWN_MS = Number(args["down-ms"] ?? 2000);
const SEED = Number(args.seed ?? 1);
const DRAIN_MS = Number(args["drain-ms"] ?? 10_000);

/** mulberry32: a small seeded PRNG, so runs are repeatable. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The schedule before the 1006 tuning (docs/client.md): full jitter, doubling from 0.5 s. */
const BEFORE = { ...DEFAULTS, baseMs: 500, growth: 2, jitterFloor: 0 };

/** Ringcast client: the delay after `code`, then retries with the 1006 plan until the server is up. */
function ringcastClient(code, upAtMs, random, opts = DEFAULTS) {
  let t = 0;
  let plan = planReconnect(code, 0, opts, random);
  let connects = 0;
  for (;;) {
    t += plan.delayMs;
    connects += 1;
    if (t >= upAtMs) return { at: t, connects };
    plan = planReconnect(1006, plan.attempt, opts, random);
  }
}

/** The seed's client: `setTimeout(connect, 3000 + random() * 5000)` on every close. */
function seedClient(_code, upAtMs, random) {
  let t = 0;
  let connects = 0;
  for (;;) {
    t += random() * (8000 - 3000) + 3000;
    connects += 1;
    if (t >= upAtMs) return { at: t, connects };
  }
}

function run(client, code, upAtMs, seed, spreadMs = 0) {
  const random = rng(seed);
  const closes = rng(seed + 1000);
  const results = Array.from({ length: CLIENTS }, () => {
    const closedAt = spreadMs * closes();
    const r = client(code, upAtMs - closedAt, random);
    return { at: closedAt + r.at, connects: r.connects };
  });
  const times = results.map((r) => r.at).sort((a, b) => a - b);
  const connects = results.reduce((n, r) => n + r.connects, 0);
  return { times, connects };
}

function histogram(series, bucketMs = 250) {
  const end = Math.max(...series.map(([, s]) => s.times.at(-1)));
  const buckets = Math.ceil((end + 1) / bucketMs);
  const counts = series.map(([, s]) => {
    const c = new Array(buckets).fill(0);
    for (const t of s.times) c[Math.floor(t / bucketMs)] += 1;
    return c;
  });
  const lines = [`| from (s) | ${series.map(([name]) => name).join(" | ")} |`, `|---|${series.map(() => "---:|").join("")}`];
  for (let b = 0; b < buckets; b++) {
    if (counts.every((c) => c[b] === 0)) continue;
    lines.push(`| ${((b * bucketMs) / 1000).toFixed(2)} | ${counts.map((c) => c[b]).join(" | ")} |`);
  }
  return lines.join("\n");
}

const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

console.log(`# Reconnect spread: ${CLIENTS} clients, seed ${SEED}, server down ${DOWN_MS} ms after a 1006 drop\n`);
for (const [code, upAtMs, spreadMs, what] of [
  [1012, 0, 0, "1012, all at once (--drain-window 0; the replacement already listens)"],
  [1012, 0, DRAIN_MS, `1012 spread over the drain window (${DRAIN_MS} ms; the replacement already listens)`],
  [1006, DOWN_MS, 0, `1006 (drop; the server listens again after ${DOWN_MS} ms)`],
]) {
  const series = [
    ["ringcast.js", run(ringcastClient, code, upAtMs, SEED, spreadMs)],
    ["before (×2 from 0.5 s)", run((c, u, r) => ringcastClient(c, u, r, BEFORE), code, upAtMs, SEED, spreadMs)],
    ["seed 3–8 s", run(seedClient, code, upAtMs, SEED, spreadMs)],
  ];
  console.log(`## ${what}\n`);
  console.log("| client | first back | 50% back | 99% back | all back | peak reconnects in 1 s | peak in 250 ms | connects made |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const [name, s] of series) {
    console.log(
      `| ${name} | ${fmt(s.times[0])} | ${fmt(quantile(s.times, 0.5))} | ${fmt(quantile(s.times, 0.99))} | ` +
        `${fmt(s.times.at(-1))} | ${peakPer(s.times, 1000)} | ${peakPer(s.times, 250)} | ${s.connects} |`,
    );
  }
  console.log(`\nReconnects per 250 ms bucket (empty buckets left out):\n`);
  console.log(histogram(series));
  console.log("");
}

// The 1006 case over a range of downtimes: where each schedule's tail lands (--downs, ms, comma-separated).
const DOWNS = String(args.downs ?? "500,2000,5000,10000,30000").split(",").map(Number);
console.log(`## 1006 by downtime: 50% / 99% back (s), connects per client, peak reconnects in 1 s\n`);
console.log(`| down | ringcast.js | before (×2 from 0.5 s) | seed 3–8 s |`);
console.log(`|---:|---|---|---|`);
for (const down of DOWNS) {
  const cells = [
    run(ringcastClient, 1006, down, SEED),
    run((c, u, r) => ringcastClient(c, u, r, BEFORE), 1006, down, SEED),
    run(seedClient, 1006, down, SEED),
  ].map((s) => {
    const q = (p) => (quantile(s.times, p) / 1000).toFixed(1);
    return `${q(0.5)} / ${q(0.99)} s, ${(s.connects / CLIENTS).toFixed(1)}, ${peakPer(s.times, 1000)}`;
  });
  console.log(`| ${down / 1000} s | ${cells.join(" | ")} |`);
}
