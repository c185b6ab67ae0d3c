// connect() against the real server: `ringcast serve` (RINGCAST_BIN, default target/release/ringcast) and
// redis-server (RINGCAST_REDIS_SERVER, default on PATH), on free ports, both killed at the end.
// Node 20 needs `--experimental-websocket` for a global WebSocket (tests/run.sh passes it); without it
// this file is skipped, saying why.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../ringcast.js";
import { freePort, startRedis, startServer, stop, stopAll, until } from "./harness.mjs";

after(stopAll);

test("subscribe → snapshot → live tick; SIGKILL + restart: reconnects and resubscribes", {
  skip: typeof WebSocket === "undefined" ? "no global WebSocket (run node with --experimental-websocket)" : false,
  timeout: 60_000,
}, async () => {
  const { url: redisUrl, publish } = await startRedis();
  publish('{"symbol":"EFERT","price":"55.00"}');
  const port = await freePort();
  let server = await startServer(port, redisUrl);

  const statuses = [];
  const snaps = [];
  const ticks = [];
  const feed = connect(`ws://127.0.0.1:${port}/`, {
    symbols: ["EFERT", "LUCK"],
    baseMs: 100,
    promptMs: 100,
    capMs: 400,
    connectTimeoutMs: 2_000,
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
    server = await startServer(port, redisUrl);
    await until(() => `live again (statuses: ${JSON.stringify(statuses)})`, () => statuses.at(-1)[0] === "live");
    // The new server knows this connection's symbols only if the client subscribed again.
    publish('{"symbol":"EFERT","price":"61.00"}');
    const seen = () => [...ticks, ...snaps].some((t) => t.symbol === "EFERT" && t.price === "61.00");
    await until("tick after restart", seen);
    assert.equal(feed.latest("EFERT").price, "61.00");
  } finally {
    feed.close();
    await stopAll();
  }
});
