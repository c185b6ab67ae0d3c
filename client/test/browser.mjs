// A headless Chromium driven over the DevTools protocol (no playwright), for chromium*.test.mjs: Debian
// `chromium` (env RINGCAST_CHROMIUM picks another binary). Started through harness.mjs, so stopAll() kills it.
// (Holds no tests itself.)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { skipNoWebSocket, start, stop } from "./harness.mjs";

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

export const CHROMIUM = findChromium();

/** Why a browser test cannot run here (for `skip`), or false. */
export const skipWhy = !CHROMIUM
  ? "no chromium (apt-get install -y chromium, or set RINGCAST_CHROMIUM)"
  : skipNoWebSocket;

/**
 * Starts Chromium headless on a fresh profile; resolves with `{ openTab(url, { context }), newContext(),
 * close() }`. A tab: `{ targetId, call(method, params), evaluate(expression), activate(), close() }` (`call`:
 * a DevTools method in the tab's session; Target.activateTarget brings it to the front; Target.closeTarget
 * closes it as a user would). `extraArgs`: more Chromium flags.
 */
export async function startBrowser(extraArgs = []) {
  const profile = mkdtempSync(join(tmpdir(), "ringcast-chromium-"));
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
      ...extraArgs,
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
  const openTab = async (url, { context } = {}) => {
    const { targetId } = await call("Target.createTarget", { url, browserContextId: context });
    const { sessionId } = await call("Target.attachToTarget", { targetId, flatten: true });
    const evaluate = async (expression) => {
      const r = await call("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, sessionId);
      if (r.exceptionDetails) throw new Error(`page: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    };
    return {
      targetId,
      sessionId,
      call: (method, params = {}) => call(method, params, sessionId),
      evaluate,
      activate: () => call("Target.activateTarget", { targetId }),
      close: () => call("Target.closeTarget", { targetId }),
    };
  };
  return {
    chrome,
    openTab,
    /** A new browser context (like a separate profile: its own origin storage, its own SharedWorkers). */
    newContext: async () => (await call("Target.createBrowserContext")).browserContextId,
    /** Stops Chromium and removes its profile. */
    async close() {
      ws.close();
      await stop(chrome);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The price a tab's board shows for `symbol` (its row's data-price: "" before a tick), or null: no row. */
export const rowPrice = (tab, symbol) =>
  tab.evaluate(`document.querySelector('tr[data-symbol="${symbol}"]')?.dataset.price ?? null`);

/** The status on a tab's badge (undefined before the page has one). */
export const badge = (tab) => tab.evaluate(`document.getElementById("status")?.dataset.status`);

/** The price in a tab's feed (`window.ringcast`, the page's) for `symbol`: what it received, drawn or not; or null. */
export const latestPrice = (tab, symbol) => tab.evaluate(`window.ringcast?.latest("${symbol}")?.price ?? null`);
