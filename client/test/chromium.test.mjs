// The live ticker page in a real headless Chromium (browser.mjs), against a real `ringcast serve` +
// redis-server: the board renders the snapshot, follows published ticks (data-price), adds and removes symbols,
// and after SIGKILL and a restart of the server reconnects by itself, resubscribes and shows ticks published
// after it. Skipped, saying why, without a Chromium or without a global WebSocket (node --experimental-websocket).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startStack, stop, stopAll, until } from "./harness.mjs";
import { badge as badgeOf, rowPrice, skipWhy, startBrowser } from "./browser.mjs";

after(stopAll);

/** Starts Chromium headless; resolves with a DevTools session on a new tab at `url`. */
async function openPage(url) {
  const browser = await startBrowser();
  const tab = await browser.openTab(url);
  return { evaluate: tab.evaluate, close: () => browser.close() };
}

test("the page renders ticks, follows publishes, and recovers from a server SIGKILL + restart", {
  skip: skipWhy,
  timeout: 120_000,
}, async () => {
  const stored = ['{"symbol":"EFERT","open":"50.00","price":"55.00"}'];
  const { port, redisUrl, publish, server } = await startStack({ stored });
  const page = await openPage(`http://127.0.0.1:${port}/?symbols=EFERT,LUCK`);
  const price = (symbol) => rowPrice(page, symbol);
  const badge = () => badgeOf(page);
  try {
    await until("the board's rows", async () => (await price("LUCK")) === "");
    await until(async () => `the snapshot on the board (EFERT ${await price("EFERT")})`, async () =>
      (await price("EFERT")) === "55.00", 30_000);
    assert.equal(await badge(), "live");
    assert.equal(await page.evaluate("window.ringcast.mode"), "shared", "Chromium has SharedWorker: one socket per origin");
    assert.equal(
      await page.evaluate(`document.querySelector('tr[data-symbol="EFERT"] .pct').textContent`),
      "+10.00%",
      "change against open",
    );
    publish('{"symbol":"LUCK","price":"405.00"}');
    publish('{"symbol":"EFERT","open":"50.00","price":"56.25"}');
    await until("published ticks on the board", async () =>
      (await price("LUCK")) === "405.00" && (await price("EFERT")) === "56.25");

    // Remove a row with its button and add one with the form: the subscription follows the board.
    await page.evaluate(`document.querySelector('tr[data-symbol="EFERT"] button.rm').click()`);
    await page.evaluate(`(() => {
      document.getElementById("symbol").value = "ogdc";
      document.getElementById("add").requestSubmit();
    })()`);
    assert.equal(await price("EFERT"), null, "the removed row is gone");
    assert.equal(await price("OGDC"), "", "the added row (symbols are upper-cased)");
    assert.deepEqual(await page.evaluate("window.ringcast.symbols()"), ["LUCK", "OGDC"]);
    assert.equal(await page.evaluate("new URL(location.href).searchParams.get('symbols')"), "LUCK,OGDC");
    publish('{"symbol":"OGDC","price":"120.00"}');
    await until("the added symbol's tick", async () => (await price("OGDC")) === "120.00");

    await stop(server);
    await until(async () => `the badge to leave live (${await badge()})`, async () => (await badge()) !== "live");
    await startServer(port, redisUrl);
    await until(async () => `the page live again (${await badge()})`, async () => (await badge()) === "live", 30_000);
    publish('{"symbol":"EFERT","price":"60.00"}');
    publish('{"symbol":"LUCK","price":"407.50"}');
    await until(async () => `a tick published after the restart (LUCK ${await price("LUCK")})`, async () =>
      (await price("LUCK")) === "407.50");
    assert.equal(await price("EFERT"), null, "no row comes back for a removed symbol");
    assert.equal(await page.evaluate("window.ringcast.latest('EFERT') ?? null"), null, "nor its ticks");
  } finally {
    await page.close();
    await stopAll();
  }
});
