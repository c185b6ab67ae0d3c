// Reconnects and refusals in a real headless Chromium (browser.mjs) against a real `ringcast serve` +
// redis-server, in both modes (shared: one socket per browser context through the SharedWorker; dedicated:
// `?mode=dedicated`, a socket per tab):
//   - SIGTERM drain: the server's 1012 closes reach the tabs spread over --drain-window (not all at once);
//     every tab reconnects by itself to the next server, resubscribes and shows ticks published after it;
//   - a 4001 (token expired) makes the client call getToken() and reconnect, resubscribed, the latest values
//     kept throughout; a 4003 (token refused) stops it: status `closed`, no second connect.
// Skipped, saying why, without a Chromium or without a global WebSocket (node --experimental-websocket).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, exited, metric, nowS, sign, startServer, startStack, stopAll, until } from "./harness.mjs";
import { badge, latestPrice as got, skipWhy, startBrowser } from "./browser.mjs";

after(stopAll);

// Records every change of the page's badge (status, close code) with the time, in window.statusLog.
const RECORD_BADGE = `(() => {
  const badge = document.getElementById("status");
  window.statusLog = [[Date.now(), badge.dataset.status, badge.dataset.code ?? ""]];
  new MutationObserver(() => window.statusLog.push([Date.now(), badge.dataset.status, badge.dataset.code ?? ""]))
    .observe(badge, { attributes: true, attributeFilter: ["data-status", "data-code"] });
})()`;

test("SIGTERM drain: 1012 closes spread over the window, every tab (shared and dedicated) back with new ticks", {
  skip: skipWhy,
  timeout: 120_000,
}, async () => {
  const { port, redisUrl, publish, server } = await startStack({ extra: ["--drain-window", "3s"] });
  const browser = await startBrowser();
  try {
    // 4 dedicated tabs (4 sockets) and 3 browser contexts × 2 shared tabs (3 sockets).
    const url = (extra) => `http://127.0.0.1:${port}/?symbols=EFERT,LUCK${extra}`;
    const tabs = [];
    for (let i = 0; i < 4; i++) tabs.push({ socket: `d${i}`, tab: await browser.openTab(url("&mode=dedicated")) });
    for (let c = 0; c < 3; c++) {
      const context = await browser.newContext();
      for (let i = 0; i < 2; i++) tabs.push({ socket: `s${c}`, tab: await browser.openTab(url(""), { context }) });
    }
    for (const { tab } of tabs) {
      await until("the page", async () => (await tab.evaluate("typeof window.ringcast")) === "object", 30_000);
      await tab.evaluate(RECORD_BADGE);
    }
    const modes = await Promise.all(tabs.map(({ tab }) => tab.evaluate("window.ringcast.mode")));
    assert.deepEqual(modes, [...Array(4).fill("dedicated"), ...Array(6).fill("shared")]);
    await until("every tab live", async () => (await Promise.all(tabs.map(({ tab }) => badge(tab)))).every((s) => s === "live"), 30_000);
    const open = async () => (await metric(port, "ringcast_connections_open")) - 1; // less this /metrics request
    await until(async () => `7 sockets (4 dedicated, 3 shared), not ${await open()}`, async () => (await open()) === 7, 30_000);
    publish('{"symbol":"LUCK","price":"400.00"}');
    await until("LUCK in every tab", async () => (await Promise.all(tabs.map(({ tab }) => got(tab, "LUCK")))).every((p) => p === "400.00"));

    const t0 = Date.now();
    server.kill("SIGTERM");
    await until("the old server gone", () => exited(server), 30_000);
    await startServer(port, redisUrl);
    const logs = async () => Promise.all(tabs.map(({ tab }) => tab.evaluate("window.statusLog")));
    const backAt = (log) => log.find(([t, s]) => t > t0 && s === "live" && log.some(([u, r]) => u > t0 && u < t && r === "reconnecting"))?.[0];
    await until("every tab live again", async () => (await logs()).every((log) => backAt(log) !== undefined), 60_000);
    publish('{"symbol":"LUCK","price":"401.00"}');
    publish('{"symbol":"EFERT","price":"56.00"}');
    await until("ticks published after the restart in every tab", async () => {
      const prices = await Promise.all(tabs.flatMap(({ tab }) => [got(tab, "LUCK"), got(tab, "EFERT")]));
      return prices.every((p, i) => p === (i % 2 === 0 ? "401.00" : "56.00"));
    }, 30_000);

    // When each socket was closed by the drain (its first reconnecting after the SIGTERM, code 1012).
    const closedAt = new Map();
    const all = await logs();
    tabs.forEach(({ socket }, i) => {
      const close = all[i].find(([t, s]) => t > t0 && s === "reconnecting");
      assert.equal(close[2], "1012", `${socket}: the first close after SIGTERM is a 1012 (${JSON.stringify(all[i])})`);
      closedAt.set(socket, Math.min(closedAt.get(socket) ?? Infinity, close[0] - t0));
    });
    const times = [...closedAt.values()].sort((a, b) => a - b);
    // Seven sockets closed one by one across the 3 s window: ~0.43 s apart, first to last ~2.6 s.
    assert.ok(times.at(-1) - times[0] >= 1500, `1012 closes spread over the drain window: ${times} ms after SIGTERM`);
    const backs = all.map((log) => backAt(log) - t0).sort((a, b) => a - b);
    console.log(`# 1012 closes (ms after SIGTERM, per socket): ${times.join(", ")}; tabs live again: ${backs.join(", ")}`);
  } finally {
    await browser.close();
    await stopAll();
  }
});

// In a tab on the server's origin that runs nothing of its own (/ringcast.js as a document), a feed made by
// connect() with `options` (JSON, plus `getToken` from the queue window.tokens), its statuses in
// window.statuses ([status, code]) and errors in window.errors.
const feedIn = async (tab, port, options, tokens) => {
  await until("the document", async () => (await tab.evaluate("location.origin")) === `http://127.0.0.1:${port}`, 30_000);
  return tab.evaluate(`import("/ringcast.js").then((m) => {
    window.statuses = [];
    window.errors = [];
    window.tokenCalls = 0;
    window.tokens = ${JSON.stringify(tokens)};
    const options = ${JSON.stringify(options)};
    if (window.tokens) options.getToken = async () => (window.tokenCalls++, window.tokens.shift() ?? null);
    window.feed = m.connect("ws://127.0.0.1:${port}/", {
      ...options,
      onStatus: (s, d) => window.statuses.push([s, d.code ?? null, d.mode]),
      onError: (e) => window.errors.push(e),
    });
    return window.feed.mode;
  })`);
};

for (const mode of ["shared", "dedicated"]) {
  test(`${mode}: a 4001 expiry fetches a new token and resubscribes, latest values kept; a 4003 stops`, {
    skip: skipWhy,
    timeout: 90_000,
  }, async () => {
    const { port, publish } = await startStack({ extra: AUTH, stored: ['{"symbol":"EFERT","price":"55.00"}'] });
    const browser = await startBrowser();
    try {
      const blank = `http://127.0.0.1:${port}/ringcast.js`;
      const tab = await browser.openTab(blank);
      const statuses = () => tab.evaluate("window.statuses");
      // The first token expires in 3–4 s; the refresh on the server's warning (1 s before) gets none (null:
      // the token service is down, say), so at expiry the server closes with 4001; the client then calls
      // getToken() again and gets one good for an hour.
      const tokens = [sign({ sub: "alice", exp: nowS() + 4 }), null, sign({ sub: "alice", exp: nowS() + 3600 })];
      assert.equal(await feedIn(tab, port, { symbols: ["EFERT", "LUCK"], shared: mode === "shared" }, tokens), mode);
      await until(async () => `live (${JSON.stringify(await statuses())})`, async () => (await statuses()).some(([s]) => s === "live"), 30_000);
      await until(async () => `the snapshot (${JSON.stringify(await statuses())} ${JSON.stringify(await tab.evaluate("window.errors"))})`, async () => (await tab.evaluate(`window.feed.latest("EFERT")?.price`)) === "55.00");
      publish('{"symbol":"LUCK","price":"405.00"}');
      await until("a live tick", async () => (await tab.evaluate(`window.feed.latest("LUCK")?.price`)) === "405.00");

      // Sampled through the expiry and the reconnect: the latest values never go missing.
      const samples = [];
      await until(async () => `a 4001 and live again (${JSON.stringify(await statuses())})`, async () => {
        samples.push(await tab.evaluate(`[window.feed.latest("EFERT")?.price, window.feed.latest("LUCK")?.price].join()`));
        const s = await statuses();
        const i = s.findIndex(([st, code]) => st === "reconnecting" && code === 4001);
        return i >= 0 && s.slice(i).some(([st]) => st === "live");
      }, 30_000);
      assert.deepEqual([...new Set(samples)], ["55.00,405.00"], "latest values kept through the 4001 reconnect");
      assert.equal(await tab.evaluate("window.tokenCalls"), 3, "first token, the refresh, the one after the 4001");
      assert.equal((await statuses()).filter(([s]) => s === "closed").length, 0);
      publish('{"symbol":"LUCK","price":"406.00"}');
      await until("a tick after the reconnect (resubscribed)", async () => (await tab.evaluate(`window.feed.latest("LUCK")?.price`)) === "406.00");
      await tab.evaluate("window.feed.close()");

      // 4003: a token the server refuses (bad signature) stops the client at once, and for good.
      const accepted = await metric(port, "ringcast_connections_accepted_total");
      const tab2 = await browser.openTab(blank);
      await feedIn(tab2, port, { symbols: ["EFERT"], shared: mode === "shared", token: `${sign({ sub: "eve", exp: nowS() + 3600 })}x` });
      const s2 = () => tab2.evaluate("window.statuses");
      await until(async () => `closed (${JSON.stringify(await s2())})`, async () => (await s2()).some(([s]) => s === "closed"), 30_000);
      await new Promise((r) => setTimeout(r, 3000)); // a retry loop would connect again within this (first retry ≤ 1 s)
      // The upgrade succeeds (101) and the server closes at once with 4003, so the socket was open an instant.
      assert.deepEqual((await s2()).map(([s, code]) => [s, code]), [["connecting", null], ["live", null], ["closed", 4003]], "no reconnect");
      const errors = await tab2.evaluate("window.errors");
      assert.equal(errors.at(-1).code, 4003);
      // One upgrade for the refused token (the /metrics requests count too: less the two made here).
      const made = (await metric(port, "ringcast_connections_accepted_total")) - accepted - 1;
      // 3 here: the tab's document, its module, the refused upgrade; a retry loop would add 2+ within the 3 s.
      assert.ok(made <= 4, `one connect for the refused token, not a loop (${made} connections incl. page loads)`);
    } finally {
      await browser.close();
      await stopAll();
    }
  });
}
