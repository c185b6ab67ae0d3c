// The shared mode in a real headless Chromium (browser.mjs) against a real `ringcast serve` + redis-server:
// two tabs of the page on one origin share ONE WebSocket (the server's ringcast_connections_open says 1), each
// receives only its own symbols, closing one tab (even without its "bye") unsubscribes what only it wanted
// (the server stops queueing those ticks: ringcast_deliveries_total), and closing the last tab closes the
// socket; a worker that fails to load leaves the tab a socket of its own.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { metric, startStack, stopAll, until } from "./harness.mjs";
import { badge, latestPrice as got, rowPrice as price, skipWhy, startBrowser } from "./browser.mjs";

after(stopAll);

test("two tabs share one socket, each gets only its symbols, and a closed tab's symbols are unsubscribed", {
  skip: skipWhy,
  timeout: 120_000,
}, async () => {
  const { port, publish } = await startStack();
  const browser = await startBrowser();
  try {
    const page = (symbols) => browser.openTab(`http://127.0.0.1:${port}/?symbols=${symbols}`);
    const live = async (tab) => (await badge(tab)) === "live";
    // The gauge counts every open connection: the /metrics request itself (hence - 1) and, for a while, the
    // browser's page loads and spare preconnects. Both tabs are live first, so the figure cannot dip below
    // their sockets: waiting for it to settle at 1 fails with two sockets (dedicated mode: it settles at 2).
    const open = async () => (await metric(port, "ringcast_connections_open")) - 1;
    const sockets = (n) => until(async () => `${n} open WebSocket(s), not ${await open()}`, async () => (await open()) === n, 30_000);

    // What a tab received (its latest-value store, latestPrice): a hidden tab draws nothing until it is
    // shown (the board repaints per animation frame), but its ticks arrive.
    const a = await page("EFERT,LUCK");
    await until("tab A live", () => live(a), 30_000);
    assert.equal(await a.evaluate("window.ringcast.mode"), "shared");
    await sockets(1);
    publish('{"symbol":"LUCK","price":"400.00"}');
    await until("LUCK in tab A", async () => (await got(a, "LUCK")) === "400.00");
    const b = await page("LUCK,OGDC");
    await until("tab B live", () => live(b), 30_000);
    // LUCK was already subscribed for tab A, so the server sends no new snapshot: the worker hands over its own.
    await until("tab B's snapshot of LUCK", async () => (await got(b, "LUCK")) === "400.00");
    assert.equal(await b.evaluate("window.ringcast.mode"), "shared");
    assert.equal(await b.evaluate(`document.getElementById("status").dataset.mode`), "shared");
    await sockets(1); // both tabs on one WebSocket

    publish('{"symbol":"EFERT","price":"55.00"}');
    publish('{"symbol":"LUCK","price":"405.00"}');
    publish('{"symbol":"OGDC","price":"120.00"}');
    await until("each tab's ticks", async () =>
      (await got(a, "EFERT")) === "55.00" && (await got(a, "LUCK")) === "405.00" &&
      (await got(b, "LUCK")) === "405.00" && (await got(b, "OGDC")) === "120.00");
    await until("the visible tab draws its ticks", async () => (await price(b, "OGDC")) === "120.00");
    await a.activate();
    await until("the hidden tab draws once shown", async () => (await price(a, "LUCK")) === "405.00");
    assert.equal(await a.evaluate("window.ringcast.latest('OGDC') ?? null"), null, "tab A never gets OGDC");
    assert.equal(await b.evaluate("window.ringcast.latest('EFERT') ?? null"), null, "tab B never gets EFERT");

    // One round: publish OGDC (only tab B wants it) and LUCK, wait for LUCK in tab A; the frames the server
    // queued meanwhile say whether OGDC is still subscribed (2) or not (1).
    let n = 0;
    const round = async () => {
      const before = await metric(port, "ringcast_deliveries_total");
      n += 1;
      const value = `${400 + n}.00`;
      publish(`{"symbol":"OGDC","price":"${100 + n}.00"}`);
      publish(`{"symbol":"LUCK","price":"${value}"}`);
      await until(`LUCK ${value} in tab A`, async () => (await got(a, "LUCK")) === value);
      return (await metric(port, "ringcast_deliveries_total")) - before;
    };
    assert.equal(await round(), 2, "with tab B open, OGDC and LUCK go out on the one socket");

    // Tab B dies without its "bye" (its ports swallow it): the Web Lock it held for its life, freed by the
    // browser with the tab, is what tells the worker.
    await b.evaluate(`(() => {
      const post = MessagePort.prototype.postMessage;
      MessagePort.prototype.postMessage = function (m, ...rest) {
        if (m?.op !== "bye") return post.call(this, m, ...rest);
      };
    })()`);
    await b.close();
    let queued = null;
    await until(async () => `OGDC unsubscribed (frames per round: ${queued})`, async () => (queued = await round()) === 1);
    await sockets(1); // tab A keeps the socket
    assert.equal(await live(a), true);

    await a.close();
    await sockets(0); // the socket closed with the last tab
  } finally {
    await browser.close();
    await stopAll();
  }
});

test("a worker that fails to load falls back to a socket of the tab's own, and says so", {
  skip: skipWhy,
  timeout: 60_000,
}, async () => {
  const { port } = await startStack({ stored: ['{"symbol":"EFERT","price":"55.00"}'] });
  const browser = await startBrowser();
  try {
    const tab = await browser.openTab(`http://127.0.0.1:${port}/?symbols=LUCK`);
    await until("the page", async () => (await tab.evaluate("typeof window.ringcast")) === "object");
    await tab.evaluate(`import("/ringcast.js").then((m) => {
      window.statuses = [];
      window.fallback = m.connect("ws://" + location.host + "/", {
        symbols: ["EFERT"],
        workerUrl: "/no-such-worker.js",
        onStatus: (s, d) => window.statuses.push(s + ":" + d.mode),
      });
    })`);
    await until(async () => `the fallback live (${await tab.evaluate("JSON.stringify(window.statuses)")})`, async () =>
      (await tab.evaluate("window.statuses?.includes('live:dedicated') ?? false")) === true);
    assert.equal(await tab.evaluate("window.fallback.mode"), "dedicated");
    assert.equal(await tab.evaluate("window.ringcast.mode"), "shared", "the page's own feed is still shared");
    await until("the fallback's snapshot", async () =>
      (await tab.evaluate(`window.fallback.latest("EFERT")?.price ?? null`)) === "55.00");
  } finally {
    await browser.close();
    await stopAll();
  }
});
