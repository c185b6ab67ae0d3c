// The live ticker page in a real headless Chromium (Debian `chromium`; env RINGCAST_CHROMIUM picks another
// binary), driven over the DevTools protocol (no playwright), against a real `ringcast serve` + redis-server:
// the board renders the snapshot, follows published ticks (data-price), adds and removes symbols, and after
// SIGKILL and a restart of the server reconnects by itself, resubscribes and shows ticks published after it.
// Skipped, saying why, without a Chromium or without a global WebSocket (node --experimental-websocket).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, start, startRedis, startServer, stop, stopAll, until } from "./harness.mjs";

function findChromium() {
  for (const name of [process.env.RINGCAST_CHROMIUM, "chromium", "chromium-browser", "google-chrome"]) {
    if (!name) continue;
    try {
      execFileSync("sh", ["-c", `command -v "${name}"`], { stdio: "ignore" });
      return name;
    } catch {
      // try the next
    }
  }
  return null;
}

const CHROMIUM = findChromium();
const profile = mkdtempSync(join(tmpdir(), "ringcast-chromium-"));
after(async () => {
  await stopAll();
  rmSync(profile, { recursive: true, force: true });
});

/** Starts Chromium headless; resolves with a DevTools session on a new tab at `url`. */
async function openPage(url) {
  const chrome = start(
    CHROMIUM,
    [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--remote-debugging-port=0",
      "--remote-allow-origins=*",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    ["ignore", "ignore", "pipe"],
    { group: true },
  );
  let stderr = "";
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no DevTools endpoint within 30 s: ${stderr}`)), 30_000);
    chrome.stderr.on("data", (d) => {
      stderr += d;
      const m = stderr.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    chrome.on("exit", (code) => reject(new Error(`chromium exited (${code}): ${stderr}`)));
  });
  const ws = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("DevTools socket failed"));
  });
  let nextId = 1;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    const w = waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id);
    if (msg.error) w.reject(new Error(JSON.stringify(msg.error)));
    else w.resolve(msg.result);
  };
  const call = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  const { targetId } = await call("Target.createTarget", { url });
  const { sessionId } = await call("Target.attachToTarget", { targetId, flatten: true });
  const evaluate = async (expression) => {
    const r = await call("Runtime.evaluate", { expression, returnByValue: true }, sessionId);
    if (r.exceptionDetails) throw new Error(`page: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  };
  return { chrome, evaluate, close: () => ws.close() };
}

test("the page renders ticks, follows publishes, and recovers from a server SIGKILL + restart", {
  skip: !CHROMIUM
    ? "no chromium (apt-get install -y chromium, or set RINGCAST_CHROMIUM)"
    : typeof WebSocket === "undefined"
      ? "no global WebSocket (run node with --experimental-websocket)"
      : false,
  timeout: 120_000,
}, async () => {
  const { url: redisUrl, publish } = await startRedis();
  publish('{"symbol":"EFERT","open":"50.00","price":"55.00"}');
  const port = await freePort();
  let server = await startServer(port, redisUrl);
  const page = await openPage(`http://127.0.0.1:${port}/?symbols=EFERT,LUCK`);
  const price = (symbol) =>
    page.evaluate(`document.querySelector('tr[data-symbol="${symbol}"]')?.dataset.price ?? null`);
  const badge = () => page.evaluate(`document.getElementById("status").dataset.status`);
  try {
    await until("the board's rows", async () => (await price("LUCK")) === "");
    await until(async () => `the snapshot on the board (EFERT ${await price("EFERT")})`, async () =>
      (await price("EFERT")) === "55.00", 30_000);
    assert.equal(await badge(), "live");
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
    server = await startServer(port, redisUrl);
    await until(async () => `the page live again (${await badge()})`, async () => (await badge()) === "live", 30_000);
    publish('{"symbol":"EFERT","price":"60.00"}');
    publish('{"symbol":"LUCK","price":"407.50"}');
    await until(async () => `a tick published after the restart (LUCK ${await price("LUCK")})`, async () =>
      (await price("LUCK")) === "407.50");
    assert.equal(await price("EFERT"), null, "no row comes back for a removed symbol");
    assert.equal(await page.evaluate("window.ringcast.latest('EFERT') ?? null"), null, "nor its ticks");
  } finally {
    page.close();
    await stopAll();
  }
});
