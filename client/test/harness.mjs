// Shared by the tests (and the benches in client/bench/): free ports, child processes that are all killed at
// the end, bounded waits, a real redis-server + `ringcast serve`, its /metrics, signed test tokens. (Holds no
// tests itself.)
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer, connect as tcpConnect } from "node:net";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = process.env.RINGCAST_BIN || `${root}target/release/ringcast`;
export const REDIS = process.env.RINGCAST_REDIS_SERVER || "redis-server";
const children = new Set();

/** Why a test that needs a global WebSocket cannot run here (for `skip`), or false. */
export const skipNoWebSocket =
  typeof WebSocket === "undefined" ? "no global WebSocket (run node with --experimental-websocket)" : false;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Spawns a child killed by stop()/stopAll(); `group`: in its own process group, killed as a group (for
 * programs with children of their own, like Chromium). */
export function start(cmd, args, stdio = ["ignore", "ignore", "inherit"], { group = false } = {}) {
  const child = spawn(cmd, args, { stdio, detached: group });
  child.group = group;
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

/** Whether `child` has exited (by itself or by a signal). */
export const exited = (child) => child.exitCode !== null || child.signalCode !== null;

/** Resolves once `child` has exited. */
export const whenExited = (child) => new Promise((resolve) => (exited(child) ? resolve() : child.once("exit", resolve)));

export function stop(child) {
  if (exited(child)) return Promise.resolve();
  const done = whenExited(child);
  if (child.group) process.kill(-child.pid, "SIGKILL");
  else child.kill("SIGKILL");
  return done;
}

/** Stops every child still running, the most recently started first. */
export async function stopAll() {
  for (const c of [...children].reverse()) await stop(c);
}

/** Polls `ready()` (sync or async) every `pollMs` until true; throws after `ms`, naming `what`. */
export async function until(what, ready, ms = 10_000, pollMs = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? await what() : what}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export const healthy = (port) =>
  fetch(`http://127.0.0.1:${port}/healthz`).then(
    (r) => r.ok,
    () => false,
  );

function redisPong(port) {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1", () => s.write("PING\r\n"));
    s.setTimeout(1000, () => s.destroy());
    s.on("data", (d) => {
      resolve(d.toString().startsWith("+PONG"));
      s.destroy();
    });
    s.on("error", () => resolve(false));
    s.on("close", () => resolve(false));
  });
}

/** A redis-server on a free port, answering; returns its URL and a `publish(tickJson)`. */
export async function startRedis() {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  start(REDIS, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
  const publish = (tick) => execFileSync(BIN, ["publish", "--redis", url, tick], { stdio: "ignore" });
  await until("redis", () => redisPong(port));
  return { url, publish };
}

/** `ringcast serve` on `port` (one worker) against `redisUrl`, just started. */
export function spawnServer(port, redisUrl, extra = []) {
  return start(BIN, [
    "--log", "warn", "serve", "--listen", `127.0.0.1:${port}`, "--redis", redisUrl, "--workers", "1", ...extra,
  ]);
}

/** spawnServer(), once its /healthz answers. */
export async function startServer(port, redisUrl, extra = []) {
  const child = spawnServer(port, redisUrl, extra);
  await until("server health", () => healthy(port));
  return child;
}

/**
 * A redis-server, then `ringcast serve` (`extra` arguments) on a free port; `stored` ticks are published
 * before the server starts. Resolves with `{ port, wsUrl, redisUrl, publish, server }`.
 */
export async function startStack({ extra = [], stored = [] } = {}) {
  const { url: redisUrl, publish } = await startRedis();
  for (const tick of stored) publish(tick);
  const port = await freePort();
  const server = await startServer(port, redisUrl, extra);
  return { port, wsUrl: `ws://127.0.0.1:${port}/`, redisUrl, publish, server };
}

/** The sum over workers of a metric on the server's /metrics (the request itself is an open connection). */
export async function metric(port, name) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop());
  }
  return sum;
}

// The token tests' HS256 secret; AUTH: the server's flags for it (no leeway, the warning 1 s before expiry).
const SECRET = "ringcast-client-test-secret-0123456789";
export const AUTH = ["--auth-secret", SECRET, "--auth-leeway", "0s", "--auth-warning", "1s"];

/** A JWT (HS256, SECRET) carrying `claims`. */
export function sign(claims) {
  const b64url = (text) => Buffer.from(text).toString("base64url");
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const mac = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${mac}`;
}

/** Now, in whole seconds (a JWT's `exp`). */
export const nowS = () => Math.floor(Date.now() / 1000);
