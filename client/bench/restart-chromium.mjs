// restart-real.mjs in a real headless Chromium: --tabs tabs (one browser, one origin), each holding --per-tab
// clients, each its own WebSocket (connect() from /ringcast.js with `shared: false`, default timing; or
// `--client seed`, the seed's 3–8 s client, seed-client.mjs, injected into the tab); or `--client shared`,
// the page's default mode: --tabs browser contexts (separate profiles), each with --per-tab tabs sharing ONE
// socket through the SharedWorker. The server (one worker, --drain-window) gets SIGTERM (1012 spread over
// the window) or, `--signal KILL`, SIGKILL (1006); a new one starts on the same port once the old one has
// exited (plus --down-ms). Measured from the signal: when each client (each tab in shared mode) is `live`
// again. Only one tab is in front: the others are background tabs, whose timers Chromium throttles, as a
// user's would be. Bounded (--limit-s), kills what it started.
//
//   RINGCAST_BIN=target/release/ringcast node --experimental-websocket client/bench/restart-chromium.mjs \
//     [--tabs 20] [--per-tab 10] [--client ringcast|seed|shared] [--signal TERM|KILL] [--drain 2s] \
//     [--down-ms 0] [--limit-s 90]

import { spawnServer, startStack, stopAll, until, whenExited } from "../test/harness.mjs";
import { startBrowser } from "../test/browser.mjs";
import { seedConnect } from "./seed-client.mjs";
import { giveUpAfter, parseArgs, peakPer, quantile } from "./stats.mjs";

const args = parseArgs();
const TABS = Number(args.tabs ?? 20);
const PER_TAB = Number(args["per-tab"] ?? 10);
const CLIENT = args.client ?? "ringcast";
const SIGNAL = `SIG${args.signal ?? "TERM"}`;
const DRAIN = args.drain ?? "2s";
const DOWN_MS = Number(args["down-ms"] ?? 0);
const LIMIT_MS = Number(args["limit-s"] ?? 90) * 1000;
if (!["ringcast", "seed", "shared"].includes(CLIENT)) throw new Error(`--client ringcast|seed|shared, not ${CLIENT}`);

const began = Date.now();
const hardStop = giveUpAfter(LIMIT_MS);

const serverArgs = ["--drain-window", DRAIN];
let { port, redisUrl, server } = await startStack({ extra: serverArgs });
const browser = await startBrowser();
const origin = `http://127.0.0.1:${port}`;

// Each client's statuses as [Date.now(), status, code] in window.logs[i].
const clientsIn = (n, first) => `(async () => {
  window.logs = window.logs || [];
  const make = ${CLIENT === "seed" ? `(${seedConnect.toString()})` : `(await import("/ringcast.js")).connect`};
  for (let i = 0; i < ${n}; i++) {
    const log = [];
    window.logs.push(log);
    make("ws://127.0.0.1:${port}/", {
      symbols: ["S" + ((${first} + i) % 50)],
      shared: ${CLIENT === "shared"},
      onStatus: (s, d) => log.push([Date.now(), s, d?.code ?? null]),
    });
  }
})()`;

const tabs = [];
for (let t = 0; t < TABS; t++) {
  const context = CLIENT === "shared" ? await browser.newContext() : undefined;
  for (let k = 0; k < (CLIENT === "shared" ? PER_TAB : 1); k++) {
    const tab = await browser.openTab(`${origin}/ringcast.js`, { context });
    await until("the document", async () => (await tab.evaluate("location.origin")) === origin, 30_000);
    await tab.evaluate(clientsIn(CLIENT === "shared" ? 1 : PER_TAB, t * PER_TAB));
    tabs.push(tab);
  }
}
const logs = async () => (await Promise.all(tabs.map((tab) => tab.evaluate("window.logs")))).flat();
const lastIs = (log, status) => log.at(-1)?.[1] === status;
await until(async () => `all clients live`, async () => (await logs()).every((log) => lastIs(log, "live")), 60_000);
const clients = (await logs()).length;
const connectedIn = Date.now() - began;

const t0 = Date.now();
server.kill(SIGNAL);
await whenExited(server);
const exitedAt = Date.now() - t0;
await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
server = spawnServer(port, redisUrl, serverArgs);
const backAt = (log) => log.find(([t, s]) => t > t0 && s === "live" && log.some(([u, r]) => u > t0 && u < t && r !== "live"))?.[0];
let last = [];
await until(
  () => `all back (${last.filter((l) => backAt(l) !== undefined).length}/${clients})`,
  async () => (last = await logs()).every((log) => backAt(log) !== undefined),
  LIMIT_MS - (Date.now() - began) - 5_000,
  250,
);
await browser.close();
clearTimeout(hardStop);
await stopAll();

const times = last.map((log) => backAt(log) - t0).sort((a, b) => a - b);
const closes = last.map((log) => log.find(([t, s]) => t > t0 && s !== "live")?.[0] - t0).sort((a, b) => a - b);
const connects = last.reduce((n, log) => n + log.filter(([t, s]) => t > t0 && s === "connecting").length, 0);
const what = CLIENT === "shared" ? `${TABS} contexts × ${PER_TAB} tabs, one shared socket each` : `${TABS} tabs × ${PER_TAB} ${CLIENT} clients`;
console.log(`${what} (${clients} ${CLIENT === "shared" ? "tabs" : "sockets"}), connected in ${connectedIn} ms; ${SIGNAL}, drain window ${DRAIN}, down ${DOWN_MS} ms more`);
console.log(`old server exited ${exitedAt} ms after ${SIGNAL}; closes seen ${closes[0]}–${closes.at(-1)} ms; ${connects} connects after it`);
console.log(
  `live again: first ${times[0]} ms, 50% ${quantile(times, 0.5)} ms, 99% ${quantile(times, 0.99)} ms, ` +
    `all ${times.at(-1)} ms; peak ${peakPer(times, 1000)} in 1 s`,
);
process.exit(0);
