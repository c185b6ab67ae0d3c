// connect() against the real server: `ringcast serve` (RINGCAST_BIN, default target/release/ringcast) and
// redis-server (RINGCAST_REDIS_SERVER, default on PATH), on free ports, both killed at the end.
// Node 20 needs `--experimental-websocket` for a global WebSocket (tests/run.sh passes it); without it
// this file is skipped, saying why.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { connect } from "../ringcast.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const BIN = process.env.RINGCAST_BIN || `${root}target/release/ringcast`;
const REDIS = process.env.RINGCAST_REDIS_SERVER || "redis-server";
const children = new Set();

after(() => {
  for (const c of children) c.kill("SIGKILL");
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "inherit"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", resolve);
    child.kill("SIGKILL");
  });
}

async function until(what, ready, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const healthy = (port) =>
  fetch(`http://127.0.0.1:${port}/healthz`).then(
    (r) => r.ok,
    () => false,
  );

test("subscribe → snapshot → live tick; SIGKILL + restart: reconnects and resubscribes", {
  skip: typeof WebSocket === "undefined" ? "no global WebSocket (run node with --experimental-websocket)" : false,
  timeout: 60_000,
}, async () => {
  const redisPort = await freePort();
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  start(REDIS, ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
  const publish = (tick) => execFileSync(BIN, ["publish", "--redis", redisUrl, tick], { stdio: "ignore" });
  await until("redis", () => {
    try {
      publish('{"symbol":"EFERT","price":"55.00"}');
      return true;
    } catch {
      return false;
    }
  });

  const port = await freePort();
  const serve = () =>
    start(BIN, ["--log", "warn", "serve", "--listen", `127.0.0.1:${port}`, "--redis", redisUrl, "--workers", "1"]);
  let server = serve();
  await until("server health", () => healthy(port));

  const statuses = [];
  const snaps = [];
  const ticks = [];
  const feed = connect(`ws://127.0.0.1:${port}/`, {
    symbols: ["EFERT", "LUCK"],
    baseMs: 100,
    promptMs: 100,
    capMs: 400,
    onStatus: (s, d) => statuses.push([s, d]),
    onSnapshot: (t) => snaps.push(t),
    onTick: (t) => ticks.push(t),
  });
  try {
    await until("snapshot", () => snaps.length === 1);
    assert.deepEqual(snaps[0], { symbol: "EFERT", price: "55.00" });
    publish('{"symbol":"LUCK","price":"405.00"}');
    await until("live tick", () => ticks.some((t) => t.symbol === "LUCK"));
    assert.equal(feed.latest("LUCK").price, "405.00");

    await stop(server);
    await until("reconnecting", () => statuses.some(([s]) => s === "reconnecting"));
    server = serve();
    await until("restarted server health", () => healthy(port));
    await until(() => `live again (statuses: ${JSON.stringify(statuses)})`, () => statuses.at(-1)[0] === "live");
    // The new server knows this connection's symbols only if the client subscribed again.
    publish('{"symbol":"EFERT","price":"61.00"}');
    const seen = () => [...ticks, ...snaps].some((t) => t.symbol === "EFERT" && t.price === "61.00");
    await until("tick after restart", seen);
    assert.equal(feed.latest("EFERT").price, "61.00");
  } finally {
    feed.close();
    for (const c of [...children].reverse()) await stop(c);
  }
});
