// Real restart: N clients (connect() from ../ringcast.js, default timing; or `--client seed`, the seed's
// 3–8 s client, seed-client.mjs) against a real `ringcast serve` (one worker) and redis-server on loopback;
// the server gets SIGTERM (--drain-window, close 1012 spread over it) or, with `--signal KILL`, SIGKILL (a
// crash: every socket drops, 1006), and a new one is started on the same port as soon as the old one has
// exited (plus `--down-ms`). Measured from the signal: when each client is `live` again. Bounded (gives up
// after --limit-s), kills what it started.
//
//   RINGCAST_BIN=target/release/ringcast node --experimental-websocket client/bench/restart-real.mjs \
//     [--clients 1000] [--drain 2s] [--signal TERM|KILL] [--down-ms 0] [--client ringcast|seed] [--limit-s 45]

import { connect } from "../ringcast.js";
import { spawnServer, startStack, stopAll, until, whenExited } from "../test/harness.mjs";
import { seedConnect } from "./seed-client.mjs";
import { giveUpAfter, parseArgs, peakPer, quantile } from "./stats.mjs";

const args = parseArgs();
const CLIENTS = Number(args.clients ?? 1000);
const DRAIN = args.drain ?? "2s";
const LIMIT_MS = Number(args["limit-s"] ?? 45) * 1000;
const SIGNAL = `SIG${args.signal ?? "TERM"}`;
const DOWN_MS = Number(args["down-ms"] ?? 0);
const CLIENT = args.client ?? "ringcast";
const connectClient = { ringcast: connect, seed: seedConnect }[CLIENT];
if (!connectClient) throw new Error(`--client ringcast|seed, not ${CLIENT}`);

const began = Date.now();
const hardStop = giveUpAfter(LIMIT_MS);

const serverArgs = ["--drain-window", DRAIN];
let { port, redisUrl, server } = await startStack({ extra: serverArgs });

let t0 = 0;
const back = new Array(CLIENTS).fill(null); // ms after the signal when live again
const closed = new Array(CLIENTS).fill(null); // ms after the signal when the socket went
const events = Array.from({ length: CLIENTS }, () => []); // (ms after the signal, status, planned delay)
let live = 0;
const feeds = [];
for (let i = 0; i < CLIENTS; i++) {
  feeds.push(
    connectClient(`ws://127.0.0.1:${port}/`, {
      symbols: [`S${i % 50}`],
      onStatus: (s, d) => {
        if (t0 !== 0) events[i].push([Date.now() - t0, s, d?.delayMs ?? d?.why ?? ""]);
        if (s === "live") {
          if (t0 === 0) live += 1;
          else if (back[i] === null) back[i] = Date.now() - t0;
        } else if (s === "reconnecting" && t0 !== 0 && closed[i] === null) {
          closed[i] = Date.now() - t0;
        }
      },
    }),
  );
}
await until(() => `${CLIENTS} clients live (${live})`, () => live === CLIENTS, 20_000);
const connectedIn = Date.now() - began;

t0 = Date.now();
server.kill(SIGNAL);
await whenExited(server);
const exitedAt = Date.now() - t0;
await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
server = spawnServer(port, redisUrl, serverArgs);
await until(
  () => `all back (${back.filter((b) => b !== null).length}/${CLIENTS})`,
  () => back.every((b) => b !== null),
  LIMIT_MS - (Date.now() - began) - 2_000,
);

for (const f of feeds) f.close();
clearTimeout(hardStop);
await stopAll();

const times = [...back].sort((a, b) => a - b);
const q = (p) => quantile(times, p);
const peak = peakPer(times, 1000);
const closes = closed.filter((c) => c !== null).sort((a, b) => a - b);
console.log(`${CLIENT} clients ${CLIENTS}, connected in ${connectedIn} ms; ${SIGNAL}, drain window ${DRAIN}, down ${DOWN_MS} ms more`);
console.log(`old server exited ${exitedAt} ms after ${SIGNAL}; closes seen ${closes[0]}–${closes.at(-1)} ms`);
console.log(`live again: first ${times[0]} ms, 50% ${q(0.5)} ms, 99% ${q(0.99)} ms, all ${times.at(-1)} ms; peak ${peak} in 1 s`);
const buckets = new Map();
for (const t of times) buckets.set(Math.floor(t / 250), (buckets.get(Math.floor(t / 250)) ?? 0) + 1);
console.log("| from (s) | clients live again |\n|---|---:|");
for (const [b, n] of [...buckets].sort((a, b) => a[0] - b[0])) console.log(`| ${(b / 4).toFixed(2)} | ${n} |`);
if (args.trace) for (const i of [0, 1, 2, CLIENTS - 1]) console.log(`client ${i}:`, JSON.stringify(events[i]));
process.exit(0);
