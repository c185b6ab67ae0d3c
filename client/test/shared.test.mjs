// The shared mode's worker side (client/ringcast-worker.js): the per-port subscription bookkeeping, the
// silent-port rule, and serveShared() routing between fake ports and a fake upstream feed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { makePortBook, silentPorts, serveShared, SHARED_DEFAULTS } from "../ringcast-worker.js";
import { connect } from "../ringcast.js";

test("book: a symbol is subscribed once for all ports and unsubscribed when its last port leaves", () => {
  const book = makePortBook();
  assert.deepEqual(book.add("a", ["EFERT", "LUCK"]), ["EFERT", "LUCK"]);
  assert.deepEqual(book.add("b", ["LUCK", "OGDC"]), ["OGDC"], "LUCK is already subscribed");
  assert.deepEqual(book.add("b", ["OGDC"]), [], "a port's repeat is no new subscription");
  assert.deepEqual(book.portsFor("LUCK"), ["a", "b"]);
  assert.deepEqual(book.portsFor("OGDC"), ["b"]);
  assert.deepEqual(book.remove("a", ["LUCK"]), [], "b still wants LUCK");
  assert.deepEqual(book.remove("a", ["OGDC"]), [], "a never had OGDC");
  assert.deepEqual(book.drop("b"), ["LUCK", "OGDC"], "b was the last to want these");
  assert.equal(book.has("b"), false);
  assert.deepEqual(book.drop("b"), [], "dropping twice sends nothing");
  assert.deepEqual(book.symbols(), ["EFERT"]);
  assert.deepEqual(book.drop("a"), ["EFERT"]);
  assert.deepEqual(book.ports(), []);
});

test("book: a retired symbol leaves every port without an unsubscribe", () => {
  const book = makePortBook();
  book.add("a", ["X"]);
  book.add("b", ["X", "Y"]);
  book.retire("X");
  assert.deepEqual(book.portsFor("X"), []);
  assert.deepEqual(book.drop("b"), ["Y"]);
  assert.deepEqual(book.add("a", ["X"]), ["X"], "subscribing again starts from zero");
});

test("silent ports: dropped after missedBeats heartbeats", () => {
  const seen = new Map([["a", 1_000], ["b", 10_000]]);
  assert.deepEqual(silentPorts(seen, 16_000, 5_000), []);
  assert.deepEqual(silentPorts(seen, 16_001, 5_000), ["a"]);
  assert.deepEqual(silentPorts(seen, 25_001, 5_000, 3), ["a", "b"]);
  assert.equal(SHARED_DEFAULTS.missedBeats, 3);
});

function fakeFeed() {
  const feed = { calls: [], opts: null, stored: new Map(), closed: false };
  feed.connect = (url, opts) => {
    feed.url = url;
    feed.opts = opts;
    return {
      subscribe: (s) => feed.calls.push(["subscribe", s]),
      unsubscribe: (s) => feed.calls.push(["unsubscribe", s]),
      latest: (s) => feed.stored.get(s),
      close: () => (feed.closed = true),
    };
  };
  return feed;
}

function fakePort(scope) {
  const port = { got: [], postMessage: (m) => port.got.push(m) };
  scope.fire({ ports: [port] });
  port.say = (m) => port.onmessage({ data: m });
  port.ticks = () => port.got.filter((m) => m.type === "tick").map((m) => m.tick.symbol);
  return port;
}

function fakeScope() {
  return { addEventListener: (name, fn) => name === "connect" && (fakeScope.last = fn), fire: (e) => fakeScope.last(e) };
}

test("worker: two tabs share one feed, each gets only its ticks, and a tab's bye unsubscribes only its symbols", () => {
  const feed = fakeFeed();
  const scope = fakeScope();
  let clock = 0;
  const { sweep } = serveShared(scope, { connect: feed.connect, now: () => clock });
  const a = fakePort(scope);
  const b = fakePort(scope);
  a.say({ op: "hello", url: "ws://x/", symbols: ["EFERT", "LUCK"], timing: { baseMs: 7 }, heartbeatMs: 1000 });
  assert.equal(feed.url, "ws://x/");
  assert.equal(feed.opts.baseMs, 7);
  assert.equal(feed.opts.shared, false, "the worker's own socket is a plain one");
  feed.stored.set("LUCK", { symbol: "LUCK", price: "400" });
  b.say({ op: "hello", url: "ws://x/", symbols: ["LUCK", "OGDC"] });
  assert.deepEqual(feed.calls, [["subscribe", ["EFERT", "LUCK"]], ["subscribe", ["OGDC"]]]);
  assert.deepEqual(b.got, [{ type: "snapshot", tick: { symbol: "LUCK", price: "400" } }], "the stored tick of a held symbol");

  feed.opts.onStatus("live", { mode: "dedicated" });
  for (const symbol of ["EFERT", "LUCK", "OGDC"]) feed.opts.onTick({ symbol });
  assert.deepEqual(a.ticks(), ["EFERT", "LUCK"]);
  assert.deepEqual(b.ticks(), ["LUCK", "OGDC"]);
  assert.deepEqual(a.got[0], { type: "status", status: "live", detail: { mode: "shared" } });

  feed.calls.length = 0;
  b.say({ op: "bye" });
  assert.deepEqual(feed.calls, [["unsubscribe", ["OGDC"]]], "LUCK stays: tab a wants it");
  b.got.length = 0;
  feed.opts.onTick({ symbol: "LUCK" });
  assert.deepEqual(b.ticks(), [], "nothing reaches a tab that left");

  // A tab that stops pinging is dropped after missedBeats heartbeats; the last one closes the socket.
  clock = 2_000;
  a.say({ op: "ping" });
  clock = 5_000;
  sweep();
  assert.equal(feed.closed, false, "silent for 3 s of the allowed 3 heartbeats");
  clock = 5_001;
  sweep();
  assert.equal(feed.closed, true, "no tab left: the socket is closed");
  a.got.length = 0;
  a.say({ op: "subscribe", symbols: ["HBL"] });
  assert.deepEqual(a.got, [{ type: "rejoin" }], "a dropped tab that speaks again is asked to say hello");
});

test("worker: a tab holding a Web Lock is dropped when its lock is freed, never for silence", () => {
  const feed = fakeFeed();
  const scope = fakeScope();
  const waits = new Map();
  let clock = 0;
  const locks = { request: (name, granted) => waits.set(name, granted) };
  const { sweep } = serveShared(scope, { connect: feed.connect, now: () => clock, locks });
  const a = fakePort(scope);
  const b = fakePort(scope);
  a.say({ op: "hello", url: "ws://x/", symbols: ["EFERT"], lock: "tab-a", heartbeatMs: 1000 });
  b.say({ op: "hello", url: "ws://x/", symbols: ["EFERT", "OGDC"], lock: "tab-b" });
  assert.deepEqual([...waits.keys()], ["tab-a", "tab-b"]);
  clock = 60_000;
  sweep();
  assert.deepEqual(feed.calls, [["subscribe", ["EFERT"]], ["subscribe", ["OGDC"]]], "no drop for silence");
  waits.get("tab-b")(); // tab b died: the browser freed its lock
  assert.deepEqual(feed.calls.at(-1), ["unsubscribe", ["OGDC"]]);
  feed.opts.onTick({ symbol: "EFERT" });
  assert.deepEqual(a.ticks(), ["EFERT"]);
  assert.deepEqual(b.ticks(), []);
  waits.get("tab-a")();
  assert.equal(feed.closed, true, "the last tab gone: the socket is closed");
});

test("worker: getToken is asked of a tab that has one", async () => {
  const feed = fakeFeed();
  const scope = fakeScope();
  serveShared(scope, { connect: feed.connect });
  const a = fakePort(scope);
  a.say({ op: "hello", url: "ws://x/", symbols: [], getToken: true });
  const pending = feed.opts.getToken();
  const ask = a.got.find((m) => m.type === "getToken");
  a.say({ op: "token", id: ask.id, token: "jwt-2" });
  assert.equal(await pending, "jwt-2");
  a.say({ op: "bye" });
});

test("connect(): dedicated where there is no SharedWorker, and says so in status", () => {
  assert.equal(typeof SharedWorker, "undefined");
  const seen = [];
  class NeverOpens {
    constructor() {
      this.readyState = 0;
    }
    close() {}
  }
  const feed = connect("ws://127.0.0.1:1/", { WebSocket: NeverOpens, onStatus: (s, d) => seen.push([s, d.mode]) });
  assert.equal(feed.mode, "dedicated");
  feed.close();
  assert.deepEqual(seen, [["connecting", "dedicated"], ["closed", "dedicated"]]);
});
