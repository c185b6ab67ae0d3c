// The pure pieces of client/ringcast.js: backoff schedule, close-code table, symbol bookkeeping, conflation.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULTS,
  CLOSE_CODES,
  backoffDelay,
  closePolicy,
  planReconnect,
  parseSymbols,
  addSymbols,
  removeSymbols,
  subscribeMessages,
  withToken,
  makeConflator,
  tokenExpired,
} from "../ringcast.js";

// A deterministic uniform source (xorshift) so spreads are checked without flakiness.
function rng(seed = 42) {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

test("backoff: jitter over [w/4, w) of a window growing by 1.5 from base to cap", () => {
  assert.equal(backoffDelay(0, DEFAULTS, () => 0), 250);
  assert.equal(backoffDelay(0, DEFAULTS, () => 0.999999), 999);
  assert.equal(backoffDelay(2, DEFAULTS, () => 0), 562); // window 2.25 s
  assert.equal(backoffDelay(2, DEFAULTS, () => 0.999999), 2249);
  for (const attempt of [9, 10, 20, 1000]) {
    assert.equal(backoffDelay(attempt, DEFAULTS, () => 0.999999), 29_999, `attempt ${attempt} is capped`);
    assert.equal(backoffDelay(attempt, DEFAULTS, () => 0), 7_500);
  }
  assert.equal(backoffDelay(3, { ...DEFAULTS, growth: 2, jitterFloor: 0, baseMs: 500 }, () => 0.5), 2000, "full jitter, doubling");
});

test("backoff: the first retries of many clients are spread over the whole window", () => {
  const random = rng(7);
  const delays = Array.from({ length: 1000 }, () => backoffDelay(0, DEFAULTS, random));
  const buckets = [0, 0, 0, 0, 0];
  for (const d of delays) {
    assert.ok(d >= 250 && d < DEFAULTS.baseMs);
    buckets[Math.floor((d - 250) / 150)]++;
  }
  for (const b of buckets) assert.ok(b > 150 && b < 250, `uneven spread: ${buckets}`);
});

test("plan: attempts grow on failures and the prompt codes reset them", () => {
  const half = () => 0.5;
  let attempt = 0;
  const windows = [];
  const top = () => 0.999999;
  for (let i = 0; i < 11; i++) {
    const plan = planReconnect(1006, attempt, DEFAULTS, top);
    windows.push(plan.delayMs + 1);
    attempt = plan.attempt;
  }
  assert.deepEqual(windows, [1000, 1500, 2250, 3375, 5063, 7594, 11391, 17086, 25629, 30000, 30000]);
  assert.deepEqual(planReconnect(1012, 5, DEFAULTS, half), { delayMs: 500, attempt: 0 });
  assert.deepEqual(planReconnect(1001, 5, DEFAULTS, () => 0.1), { delayMs: 100, attempt: 0 });
  assert.deepEqual(planReconnect(4001, 3, DEFAULTS, half), { delayMs: 500, attempt: 0 });
});

test("plan: 1013 overload waits longer than a plain failure, still under the cap", () => {
  for (const r of [0, 0.5, 0.999]) {
    const plan = planReconnect(1013, 0, DEFAULTS, () => r);
    assert.ok(plan.delayMs >= DEFAULTS.overloadMinMs, `${plan.delayMs}`);
    assert.ok(plan.delayMs <= DEFAULTS.capMs);
    assert.ok(plan.delayMs > planReconnect(1006, 0, DEFAULTS, () => r).delayMs);
    assert.equal(plan.attempt, 1);
  }
  assert.equal(planReconnect(1013, 10, DEFAULTS, () => 0.999).delayMs, DEFAULTS.capMs);
});

test("close-code table: policy closes stop, unknown codes back off", () => {
  assert.equal(planReconnect(4003, 0), null);
  assert.equal(planReconnect(1008, 0), null);
  assert.equal(closePolicy(4001).action, "token");
  assert.equal(closePolicy(1013).action, "overload");
  for (const code of [1000, 1002, 1006, 1007, 1009, 1011, 4999]) {
    assert.equal(closePolicy(code).action, "backoff", `code ${code}`);
  }
  assert.deepEqual(
    Object.keys(CLOSE_CODES).map(Number),
    [1001, 1008, 1012, 1013, 4001, 4003],
    "docs/protocol.md lists exactly these",
  );
});

test("symbols: parsed from a list or the seed's comma form, checked and de-duplicated", () => {
  assert.deepEqual(parseSymbols(" EFERT, LUCK ,EFERT,"), ["EFERT", "LUCK"]);
  assert.deepEqual(parseSymbols(["HASCOL", "PSX:KSE100"]), ["HASCOL", "PSX:KSE100"]);
  for (const bad of ['A"B', "A'B", "A\\B", "A B", "x".repeat(33), "é"]) {
    assert.throws(() => parseSymbols([bad]), /not a valid symbol/, bad);
  }
  assert.ok(parseSymbols(["x".repeat(32)]).length === 1);
});

test("bookkeeping: only new symbols are subscribed, only held ones unsubscribed", () => {
  const set = new Set();
  assert.deepEqual(addSymbols(set, ["EFERT", "LUCK"]), ["EFERT", "LUCK"]);
  assert.deepEqual(addSymbols(set, ["LUCK", "OGDC"]), ["OGDC"]);
  assert.deepEqual(removeSymbols(set, ["LUCK", "PPL"]), ["LUCK"]);
  assert.deepEqual([...set], ["EFERT", "OGDC"]);
  assert.deepEqual(subscribeMessages([]), []);
  assert.deepEqual(subscribeMessages(["A", "B", "C"], "unsubscribe", 2), [
    '{"op":"unsubscribe","symbols":["A","B"]}',
    '{"op":"unsubscribe","symbols":["C"]}',
  ]);
  assert.equal(withToken("ws://h/", "a b"), "ws://h/?token=a%20b");
  assert.equal(withToken("ws://h/?x=1", "t"), "ws://h/?x=1&token=t");
  assert.equal(withToken("ws://h/", null), "ws://h/");
});

test("conflation: one delivery per symbol per frame, the latest value", () => {
  const frames = [];
  const got = [];
  const c = makeConflator((t) => got.push(t), (fn) => frames.push(fn));
  for (let i = 0; i < 100; i++) c.push({ symbol: "EFERT", price: String(i) });
  c.push({ symbol: "LUCK", price: "1" });
  assert.equal(frames.length, 1, "one frame scheduled for the burst");
  frames.shift()();
  assert.deepEqual(got, [
    { symbol: "EFERT", price: "99" },
    { symbol: "LUCK", price: "1" },
  ]);
  c.push({ symbol: "EFERT", price: "100" });
  assert.equal(frames.length, 1, "a new frame after a flush");
});

test("token expiry is read from the JWT payload (unverified); unreadable tokens are left to the server", () => {
  const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
  assert.equal(tokenExpired(jwt({ sub: "a", exp: 1000 }), 2000), true);
  assert.equal(tokenExpired(jwt({ sub: "a", exp: 1003 }), 1000), true, "within the 5 s margin");
  assert.equal(tokenExpired(jwt({ sub: "a", exp: 9999 }), 1000), false);
  assert.equal(tokenExpired(jwt({ sub: "aÿ?>", exp: 9999 }), 1000), false, "base64url - and _");
  assert.equal(tokenExpired(jwt({ sub: "a" }), 1000), false, "no exp");
  assert.equal(tokenExpired("opaque-token", 1000), false);
});
