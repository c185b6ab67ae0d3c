// connect() against the real server: `ringcast serve` (RINGCAST_BIN, default target/release/ringcast) and
// redis-server (RINGCAST_REDIS_SERVER, default on PATH), on free ports, both killed at the end.
// Node 20 needs `--experimental-websocket` for a global WebSocket (tests/run.sh passes it); without it
// this file is skipped, saying why.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../ringcast.js";
import { AUTH, exited, nowS, sign, skipNoWebSocket, startServer, startStack, stop, stopAll, until } from "./harness.mjs";

after(stopAll);

const REAL = { skip: skipNoWebSocket, timeout: 60_000 };

test("subscribe → snapshot → live tick; SIGKILL + restart: reconnects and resubscribes", REAL, async () => {
  const stored = ['{"symbol":"EFERT","price":"55.00"}'];
  const { wsUrl, port, redisUrl, publish, server } = await startStack({ stored });

  const statuses = [];
  const snaps = [];
  const ticks = [];
  const feed = connect(wsUrl, {
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
    await startServer(port, redisUrl);
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

test("token: refreshed on the server's warning without a new socket; a 4001 close fetches one and reconnects", REAL, async () => {
  const { wsUrl, publish } = await startStack({ extra: AUTH, stored: ['{"symbol":"EFERT","price":"55.00"}'] });

  // 1st token: expires in 2 s; 2nd (the refresh): another user, so the server refuses it and closes with
  // 4001 at expiry; 3rd (after the 4001): good for an hour.
  const issued = [];
  const getToken = async () => {
    const n = issued.length;
    const claims = [
      { sub: "alice", exp: nowS() + 2 },
      { sub: "mallory", exp: nowS() + 3600 },
      { sub: "alice", exp: nowS() + 3600 },
    ][Math.min(n, 2)];
    issued.push(claims);
    return sign(claims);
  };
  const statuses = [];
  const errors = [];
  const feed = connect(wsUrl, {
    symbols: ["EFERT"],
    getToken,
    promptMs: 100,
    onStatus: (s, d) => statuses.push([s, d]),
    onError: (e) => errors.push(e),
  });
  try {
    await until("live", () => statuses.some(([s]) => s === "live"));
    await until("the refresh (warning 1 s before expiry)", () => issued.length === 2);
    await until(() => `auth_failed for the other user's token (errors: ${JSON.stringify(errors)})`, () =>
      errors.some((e) => e.code === "auth_failed"));
    await until(() => `a 4001 close (statuses: ${JSON.stringify(statuses)})`, () =>
      statuses.some(([s, d]) => s === "reconnecting" && d.code === 4001));
    assert.equal(issued.length, 3, "a new token was fetched for the reconnect");
    await until("live again", () => statuses.at(-1)[0] === "live");
    publish('{"symbol":"EFERT","price":"58.00"}');
    await until("a tick after the reconnect", () => feed.latest("EFERT")?.price === "58.00");
  } finally {
    feed.close();
    await stopAll();
  }
});

test("token refresh keeps the socket past the first token's expiry", REAL, async () => {
  const { wsUrl, publish } = await startStack({ extra: AUTH });
  const issued = [];
  const getToken = async () => {
    const claims = { sub: "alice", exp: nowS() + (issued.length === 0 ? 2 : 3600) };
    issued.push(claims);
    return sign(claims);
  };
  const statuses = [];
  const feed = connect(wsUrl, { symbols: ["LUCK"], getToken, onStatus: (s) => statuses.push(s) });
  try {
    await until("the refresh", () => issued.length === 2);
    const firstExpiryMs = issued[0].exp * 1000;
    await until("the first token's expiry to pass", () => Date.now() > firstExpiryMs + 1500);
    publish('{"symbol":"LUCK","price":"405.00"}');
    await until("a tick after the first token's expiry", () => feed.latest("LUCK")?.price === "405.00");
    assert.deepEqual(statuses, ["connecting", "live"], "one socket throughout");
  } finally {
    feed.close();
    await stopAll();
  }
});

test("SIGTERM drain: 1012 makes the client reconnect promptly to the next server", REAL, async () => {
  const { wsUrl, port, redisUrl, publish, server } = await startStack({ extra: ["--drain-window", "200ms"] });
  const statuses = [];
  const feed = connect(wsUrl, {
    symbols: ["OGDC"],
    onStatus: (s, d) => statuses.push([s, d]),
    connectTimeoutMs: 2_000,
  });
  try {
    await until("live", () => statuses.some(([s]) => s === "live"));
    server.kill("SIGTERM");
    await until(() => `a 1012 close (statuses: ${JSON.stringify(statuses)})`, () =>
      statuses.some(([s, d]) => s === "reconnecting" && d.code === 1012));
    const [, plan] = statuses.find(([s, d]) => s === "reconnecting" && d.code === 1012);
    assert.ok(plan.delayMs < 1000, `prompt: ${plan.delayMs} ms`);
    await until("the old server gone", () => exited(server));
    await startServer(port, redisUrl);
    await until("live again", () => statuses.at(-1)[0] === "live", 30_000);
    publish('{"symbol":"OGDC","price":"120.00"}');
    await until("a tick from the new server", () => feed.latest("OGDC")?.price === "120.00");
  } finally {
    feed.close();
    await stopAll();
  }
});

test("liveness: the server answers the client's probe, so a quiet socket is kept", REAL, async () => {
  const { wsUrl } = await startStack();
  const sent = [];
  const statuses = [];
  const errors = [];
  const pongs = [];
  const feed = connect(wsUrl, {
    symbols: ["QUIET"],
    probeAfterMs: 150,
    deadAfterMs: 1_000,
    WebSocket: class extends WebSocket {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (e) => e.data === '{"type":"pong"}' && pongs.push(e.data));
      }
      send(text) {
        sent.push(text);
        super.send(text);
      }
    },
    onStatus: (s) => statuses.push(s),
    onError: (e) => errors.push(e),
  });
  try {
    await until("four probes, each after an answer to the last", () =>
      sent.filter((m) => m === '{"op":"ping"}').length >= 4);
    assert.deepEqual(statuses, ["connecting", "live"], "never dropped as dead");
    assert.deepEqual(errors, [], "the probe's answers are not reported as errors");
    assert.ok(pongs.length >= 3, `the server answers {"op":"ping"} with {"type":"pong"} (${pongs.length})`);
  } finally {
    feed.close();
    await stopAll();
  }
});
