// connect()'s state machine against a scripted WebSocket stand-in (the real server is in server.test.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../ringcast.js";
import { until as waitUntil } from "./harness.mjs";

function fakeSockets() {
  const made = [];
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      made.push(this);
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.();
      }, 1);
    }
    send(text) {
      this.sent.push(text);
    }
    close() {
      this.readyState = 3;
    }
    serverSends(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    failsToConnect() {
      this.readyState = 3;
      this.onerror?.({});
    }
    serverCloses(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return { FakeWS, made };
}

// The fake sockets answer within milliseconds: shorter waits, polled often.
const until = (what, ready, ms = 2000) => waitUntil(what, ready, ms, 2);

const FAST = { baseMs: 10, promptMs: 10, capMs: 50, overloadMinMs: 20 };

test("resubscribes everything after each reconnect; snapshot vs live; latest store", async () => {
  const { FakeWS, made } = fakeSockets();
  const statuses = [];
  const snaps = [];
  const ticks = [];
  const feed = connect("ws://x/", {
    ...FAST,
    WebSocket: FakeWS,
    symbols: "EFERT,LUCK",
    onStatus: (s, d) => statuses.push([s, d]),
    onSnapshot: (t) => snaps.push(t),
    onTick: (t) => ticks.push(t),
  });
  await until("open", () => made[0]?.sent.length === 1);
  assert.deepEqual(JSON.parse(made[0].sent[0]), { op: "subscribe", symbols: ["EFERT", "LUCK"] });
  feed.subscribe(["OGDC", "LUCK"]);
  assert.deepEqual(JSON.parse(made[0].sent[1]), { op: "subscribe", symbols: ["OGDC"] });
  made[0].serverSends({ type: "subscribed", symbols: ["EFERT", "LUCK"], unknown: ["LUCK"] });
  made[0].serverSends({ symbol: "EFERT", price: "55.00" });
  made[0].serverSends({ symbol: "EFERT", price: "56.00" });
  made[0].serverSends({ symbol: "EFERT", price: "57.00" });
  assert.deepEqual(snaps, [{ symbol: "EFERT", price: "55.00" }]);
  await until("conflated tick", () => ticks.length === 1);
  assert.deepEqual(ticks, [{ symbol: "EFERT", price: "57.00" }]);
  assert.equal(feed.latest("EFERT").price, "57.00");

  made[0].serverSends({ type: "feed", status: "down" });
  assert.equal(statuses.at(-1)[0], "feed-down");
  made[0].serverCloses(1012, "restart");
  const reconnecting = statuses.find(([s]) => s === "reconnecting");
  assert.ok(reconnecting[1].delayMs < FAST.promptMs);
  assert.equal(reconnecting[1].code, 1012);
  await until("second socket resubscribed", () => made[1]?.sent.length === 1);
  assert.deepEqual(JSON.parse(made[1].sent[0]).symbols, ["EFERT", "LUCK", "OGDC"]);
  assert.equal(feed.latest("EFERT").price, "57.00", "the store survives a reconnect");
  feed.unsubscribe("LUCK");
  assert.deepEqual(JSON.parse(made[1].sent[1]), { op: "unsubscribe", symbols: ["LUCK"] });
  feed.close();
  assert.equal(statuses.at(-1)[0], "closed");
});

test("4001: a new token from getToken, then reconnect with it; 4003: stop for good", async () => {
  const { FakeWS, made } = fakeSockets();
  let n = 0;
  const statuses = [];
  const errors = [];
  const feed = connect("ws://x/", {
    ...FAST,
    WebSocket: FakeWS,
    getToken: async () => `t${++n}`,
    onStatus: (s) => statuses.push(s),
    onError: (e) => errors.push(e),
  });
  await until("open", () => made[0]?.readyState === 1);
  assert.equal(made[0].url, "ws://x/?token=t1");
  made[0].serverSends({ type: "auth", status: "expiring", expires_at: 1 });
  await until("refresh sent", () => made[0].sent.length === 1);
  assert.deepEqual(JSON.parse(made[0].sent[0]), { op: "auth", token: "t2" });
  assert.equal(made.length, 1, "the refresh keeps the socket");
  made[0].serverCloses(4001, "token expired");
  await until("reconnected", () => made[1]?.readyState === 1);
  assert.equal(made[1].url, "ws://x/?token=t3");
  made[1].serverCloses(4003, "forbidden");
  await until("closed", () => statuses.at(-1) === "closed");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(made.length, 2, "no reconnect after a policy close");
  assert.equal(errors.at(-1).code, 4003);
  feed.close();
});

test("a silent socket is probed, then dropped and replaced", async () => {
  const { FakeWS, made } = fakeSockets();
  const feed = connect("ws://x/", {
    ...FAST,
    probeAfterMs: 30,
    deadAfterMs: 30,
    WebSocket: FakeWS,
    symbols: ["EFERT"],
  });
  await until("probe", () => made[0]?.sent.includes('{"op":"ping"}'));
  // The server's answer keeps it alive.
  made[0].serverSends({ type: "pong" });
  await until("second probe", () => made[0].sent.filter((m) => m.includes("ping")).length === 2);
  await until("replaced", () => made[1]?.readyState === 1, 1000);
  assert.equal(made[0].readyState, 3, "the silent socket was closed");
  feed.close();
});

test("an error before open (no close follows, as in Node on a refused upgrade) is a failed connect at once", async () => {
  const { FakeWS, made } = fakeSockets();
  const statuses = [];
  const feed = connect("ws://x/", { ...FAST, WebSocket: FakeWS, onStatus: (s, d) => statuses.push([s, d]) });
  try {
    await until("first socket", () => made.length === 1);
    made[0].failsToConnect();
    await until("retried well before connectTimeoutMs", () => made[1]?.readyState === 1, 500);
    const [, detail] = statuses.find(([s]) => s === "reconnecting");
    assert.equal(detail.code, 1006);
  } finally {
    feed.close();
  }
});

test("backoff reset: the attempt counter grows while sockets die young and resets after healthyMs live", async () => {
  const { FakeWS, made } = fakeSockets();
  const attempts = [];
  const feed = connect("ws://x/", {
    ...FAST,
    healthyMs: 100,
    WebSocket: FakeWS,
    onStatus: (s, d) => s === "reconnecting" && attempts.push(d.attempt),
  });
  try {
    for (const i of [0, 1]) {
      await until(`socket ${i} open`, () => made[i]?.readyState === 1);
      made[i].serverCloses(1006); // dies at once: not healthy
    }
    await until("socket 2 open", () => made[2]?.readyState === 1);
    await new Promise((r) => setTimeout(r, 200)); // live past healthyMs
    made[2].serverCloses(1006);
    await until("three reconnects planned", () => attempts.length === 3);
    assert.deepEqual(attempts, [1, 2, 1], "the third close plans from attempt 0 again");
  } finally {
    feed.close();
  }
});

test("1013 waits at least overloadMinMs", async () => {
  const { FakeWS, made } = fakeSockets();
  const statuses = [];
  const feed = connect("ws://x/", { ...FAST, WebSocket: FakeWS, onStatus: (s, d) => statuses.push([s, d]) });
  await until("open", () => made[0]?.readyState === 1);
  made[0].serverCloses(1013);
  const [, detail] = statuses.find(([s]) => s === "reconnecting");
  assert.ok(detail.delayMs >= FAST.overloadMinMs);
  feed.close();
});

test("a connect that never opens is dropped after connectTimeoutMs and retried", async () => {
  const { FakeWS, made } = fakeSockets();
  const statuses = [];
  const feed = connect("ws://x/", {
    ...FAST,
    connectTimeoutMs: 30,
    WebSocket: class extends FakeWS {
      constructor(url) {
        super(url);
        if (made.length === 1) this.readyState = 2; // the first one hangs: never opens
      }
    },
    onStatus: (s, d) => statuses.push([s, d]),
  });
  await until("second socket open", () => made[1]?.readyState === 1, 1000);
  assert.equal(statuses.find(([s]) => s === "reconnecting")[1].reason, "connect timed out");
  feed.close();
});

test("an expired token is replaced before a reconnect (a refused upgrade is only a bare 1006)", async () => {
  const { FakeWS, made } = fakeSockets();
  const jwt = (exp) => `e30.${Buffer.from(JSON.stringify({ sub: "a", exp })).toString("base64url")}.sig`;
  const tokens = [jwt(Date.now() / 1000 + 3600), jwt(Date.now() / 1000 + 7200)];
  const expired = jwt(Date.now() / 1000 - 10);
  let calls = 0;
  const feed = connect("ws://x/", {
    ...FAST,
    WebSocket: FakeWS,
    token: expired,
    getToken: async () => tokens[calls++],
  });
  await until("open", () => made[0]?.readyState === 1);
  assert.equal(made[0].url, `ws://x/?token=${tokens[0]}`, "the expired token was never sent");
  made[0].serverCloses(1006);
  await until("reconnected", () => made[1]?.readyState === 1);
  assert.equal(calls, 1, "a token still valid is kept");
  assert.equal(made[1].url, `ws://x/?token=${tokens[0]}`);
  feed.close();
});
