// ringcast.js: the browser client of a Ringcast server. A dependency-free ES module (no bundler; works from a
// plain <script type="module">). Protocol: docs/protocol.md; tokens: docs/auth.md; this file: client/README.md.
//
//   import { connect } from "/ringcast.js";
//   const feed = connect("wss://ticks.example.com/", { symbols: ["EFERT", "LUCK"], onTick: (t) => draw(t) });
//
// The pure pieces (backoff schedule, close-code policy, symbol bookkeeping) are exported for tests. The
// shared mode (one socket for all tabs, through a SharedWorker) lives in ringcast-worker.js.

import { connectShared } from "./ringcast-worker.js";

/** Reconnect timing, in milliseconds. */
export const DEFAULTS = Object.freeze({
  baseMs: 1_000, // the first retry's window (a delay in [jitterFloor·baseMs, baseMs))
  growth: 1.5, // the window grows by this factor per failed connect
  jitterFloor: 0.25, // a delay is never under this share of its window
  capMs: 30_000, // the window never grows past this
  healthyMs: 10_000, // live this long and the attempt counter resets
  promptMs: 1_000, // 1001/1012/4001/network back: a uniform delay in [0, promptMs)
  overloadMinMs: 5_000, // 1013: at least this, plus the backoff delay of attempt + 4
  probeAfterMs: 20_000, // no server traffic this long: send a probe
  deadAfterMs: 10_000, // no answer to the probe within this: the socket is dead
  connectTimeoutMs: 10_000, // a socket not open within this is dropped (a connect can hang, e.g. in a backlog)
});

/**
 * Exponential backoff with jitter: a uniform delay in [floor·w, w), w = min(cap, base · growth^attempt).
 * `attempt` counts failed connects since the last healthy period (0 for the first retry).
 *
 * Why 1.5 and a floor, not full jitter doubling from 0.5 s (docs/client.md "1006"): the window when the server
 * comes back decides the tail, and with doubling it is about twice the time already waited (after 2 s down,
 * 99% back at 8.8 s, later than the seed's fixed 3–8 s); growing by 1.5 keeps it near the time waited, and a
 * floor of a quarter stops the early retries of a fleet from piling at 0 ms and spending attempts for nothing.
 */
export function backoffDelay(attempt, opts = DEFAULTS, random = Math.random) {
  const growth = opts.growth ?? DEFAULTS.growth;
  const floor = opts.jitterFloor ?? DEFAULTS.jitterFloor;
  const window = Math.min(opts.capMs, opts.baseMs * growth ** Math.min(attempt, 60));
  return Math.floor(window * (floor + (1 - floor) * random()));
}

/**
 * What a close code makes the client do, the one table (docs/protocol.md "Close codes" repeats it).
 * Codes not listed (1000, 1002, 1006, 1007, 1009, 1011, …) take the default: `backoff`.
 *   prompt  — reconnect soon, spread over `promptMs` (the server restarts or moves us on)
 *   backoff — reconnect after backoffDelay(attempt), attempt + 1
 *   overload — reconnect after overloadMinMs + backoffDelay(attempt + 4), attempt + 1
 *   token   — call getToken(), then reconnect as `prompt` (no getToken: stop)
 *   stop    — do not reconnect; status `closed`, onError called
 */
export const CLOSE_CODES = Object.freeze({
  1001: { action: "prompt", why: "going away" },
  1008: { action: "stop", why: "policy violation" },
  1012: { action: "prompt", why: "service restart (server draining)" },
  1013: { action: "overload", why: "try again later (overload)" },
  4001: { action: "token", why: "token expired" },
  4003: { action: "stop", why: "token refused by policy" },
});

/** The policy entry of a close code (`backoff` when not in CLOSE_CODES). */
export function closePolicy(code) {
  return CLOSE_CODES[code] || { action: "backoff", why: `closed (${code})` };
}

/**
 * The delay before the next connect and the attempt counter after it, for a close `code`.
 * Returns `null` when the policy is `stop`.
 */
export function planReconnect(code, attempt, opts = DEFAULTS, random = Math.random) {
  const { action } = closePolicy(code);
  switch (action) {
    case "stop":
      return null;
    case "prompt":
    case "token":
      return { delayMs: Math.floor(random() * opts.promptMs), attempt: 0 };
    case "overload":
      return {
        delayMs: Math.min(opts.capMs, opts.overloadMinMs + backoffDelay(attempt + 4, opts, random)),
        attempt: attempt + 1,
      };
    default:
      return { delayMs: backoffDelay(attempt, opts, random), attempt: attempt + 1 };
  }
}

const SYMBOL = /^[!#-&(-+\--[\]-~]{1,32}$/; // printable ASCII without space , " ' \ (docs/protocol.md §1)

/** `"EFERT, LUCK"` or `["EFERT","LUCK"]` → valid, de-duplicated symbols; throws on an impossible one. */
export function parseSymbols(input) {
  const list = Array.isArray(input) ? input : String(input ?? "").split(",");
  const out = [];
  for (const raw of list) {
    const s = String(raw).trim();
    if (s === "") continue;
    if (!SYMBOL.test(s)) throw new TypeError(`ringcast: not a valid symbol: ${JSON.stringify(s)}`);
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

/** Adds `symbols` to the set; returns those that were new (what to send in a subscribe). */
export function addSymbols(set, symbols) {
  const added = symbols.filter((s) => !set.has(s));
  for (const s of added) set.add(s);
  return added;
}

/** Removes `symbols` from the set; returns those that were there (what to send in an unsubscribe). */
export function removeSymbols(set, symbols) {
  const removed = symbols.filter((s) => set.has(s));
  for (const s of removed) set.delete(s);
  return removed;
}

/** The client→server messages. Subscribes are split in chunks so none passes the server's limit. */
export function subscribeMessages(symbols, op = "subscribe", chunk = 256) {
  const out = [];
  for (let i = 0; i < symbols.length; i += chunk) {
    out.push(JSON.stringify({ op, symbols: symbols.slice(i, i + chunk) }));
  }
  return out;
}

/** `url` with `?token=` set (docs/auth.md: the query works with and without `--auth-secret`). */
export function withToken(url, token) {
  if (!token) return url;
  const sep = url.includes("?") ? "&" : "?";
  return `${url}${sep}token=${encodeURIComponent(token)}`;
}

/**
 * Whether a JWT's `exp` (read without verifying: only the server can) is within `marginS` of `nowS`.
 * A token that cannot be read counts as not expired (the server decides).
 */
export function tokenExpired(token, nowS = Date.now() / 1000, marginS = 5) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof exp === "number" && exp <= nowS + marginS;
  } catch {
    return false;
  }
}

/** Each frame, hands the UI the latest tick of each symbol that changed (at most one call per symbol). */
export function makeConflator(deliver, schedule) {
  const pending = new Map();
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = [...pending.values()];
    pending.clear();
    for (const tick of batch) deliver(tick);
  };
  return {
    push(tick) {
      pending.set(tick.symbol, tick);
      if (!scheduled) {
        scheduled = true;
        schedule(flush);
      }
    },
    clear() {
      pending.clear();
    },
  };
}

function frameScheduler() {
  if (typeof requestAnimationFrame === "function") return (fn) => requestAnimationFrame(() => fn());
  return (fn) => setTimeout(fn, 16);
}

/** An error's text for onError's `message`. */
export function errorText(err) {
  return String(err && err.message ? err.message : err);
}

const PING = JSON.stringify({ op: "ping" });

/**
 * Connects and stays connected until close() or a `stop` close code.
 * options: symbols, token | getToken (async () => jwt), onTick(tick), onSnapshot(tick), onStatus(status,
 * detail), onError(err), onRetired(symbol), shared (default: where SharedWorker exists), workerUrl,
 * WebSocket (constructor, default the global), timing overrides (DEFAULTS' names), random (for tests),
 * conflate (default true; the shared worker's own socket passes false: each tab conflates per its frame).
 * Shared mode: all tabs of the origin share one socket held by a SharedWorker (ringcast-worker.js); the
 * same API either way. Every status's detail carries `mode`: "shared" or "dedicated".
 */
export function connect(url, options = {}) {
  const shared = options.shared ?? (typeof SharedWorker !== "undefined" && !options.WebSocket);
  const tab = makeTab(options);
  const link = (shared && connectShared(url, options, tab)) || connectDirect(url, options, tab, "dedicated");
  return feedApi(tab, link);
}

/**
 * What a feed keeps for its page in either mode: the symbols wanted, the latest tick of each, the page's
 * callbacks (defaults filled in), live ticks conflated per frame, the last status. A link feeds it: the
 * page's own socket (connectDirect) or the shared worker's port (connectShared).
 */
function makeTab(options) {
  const noop = () => {};
  const onTick = options.onTick || noop;
  const conflator =
    options.conflate === false ? { push: onTick, clear: noop } : makeConflator(onTick, frameScheduler());
  // Without onSnapshot, snapshot ticks reach onTick like live ones.
  const onSnapshot = options.onSnapshot || conflator.push;
  const onStatus = options.onStatus || noop;
  const onRetired = options.onRetired || noop;
  const wanted = new Set();
  const latest = new Map();
  addSymbols(wanted, parseSymbols(options.symbols || []));
  const tab = {
    wanted,
    latest,
    conflator,
    onError: options.onError || noop,
    lastStatus: null,
    /** A tick of a wanted symbol: stored, then handed to onSnapshot (`snapshot`) or conflated for onTick. */
    deliver(tick, snapshot) {
      latest.set(tick.symbol, tick);
      if (snapshot) onSnapshot(tick);
      else conflator.push(tick);
    },
    retire(symbol) {
      wanted.delete(symbol);
      latest.delete(symbol);
      onRetired(symbol);
    },
    status(s, detail) {
      tab.lastStatus = s;
      onStatus(s, detail);
    },
  };
  return tab;
}

/** The object connect() returns: the tab's state, and its link (`{ mode, send(op, symbols), close() }`). */
function feedApi(tab, link) {
  return {
    get mode() {
      return link.mode;
    },
    subscribe(symbols) {
      const added = addSymbols(tab.wanted, parseSymbols(symbols));
      if (added.length) link.send("subscribe", added);
      return added;
    },
    unsubscribe(symbols) {
      const removed = removeSymbols(tab.wanted, parseSymbols(symbols));
      for (const s of removed) tab.latest.delete(s);
      if (removed.length) link.send("unsubscribe", removed);
      return removed;
    },
    latest: (symbol) => tab.latest.get(symbol),
    symbols: () => [...tab.wanted],
    status: () => tab.lastStatus,
    close: () => link.close(),
  };
}

/**
 * The link of one socket of this page's own (also the worker's socket in shared mode, and a tab's when its
 * worker fails to load): feeds `tab`, reconnecting until close() or a `stop` close code.
 */
export function connectDirect(url, options, tab, mode) {
  const opts = { ...DEFAULTS, ...options };
  const WS = options.WebSocket || globalThis.WebSocket;
  if (typeof WS !== "function") throw new Error("ringcast: no WebSocket in this environment");
  const random = options.random || Math.random;
  const awaitingSnapshot = new Set();
  let token = options.token || null;
  let ws = null;
  let attempt = 0;
  let stopped = false;
  let retryTimer = null;
  let healthyTimer = null;
  let livenessTimer = null; // the connect timeout, then the liveness watch
  let heardAt = 0; // when the server last sent anything (performance.now())
  let probing = false; // a probe is out and nothing has come since
  let opening = false; // between open() starting and its socket existing (getToken may be awaited)

  const status = (s, detail = {}) => tab.status(s, { ...detail, mode });
  const clearTimers = () => {
    clearTimeout(retryTimer);
    clearTimeout(healthyTimer);
    clearTimeout(livenessTimer);
    retryTimer = healthyTimer = livenessTimer = null;
  };
  const sendText = (text) => {
    if (ws && ws.readyState === 1) ws.send(text);
  };

  // Liveness: the server's pings are answered by the browser, invisibly to JS, so any server message counts
  // as a sign of life; after probeAfterMs of silence the client sends {"op":"ping"}, which the server answers
  // with {"type":"pong"}, and with no answer deadAfterMs later it drops the socket and reconnects. A message
  // (thousands a second) only stamps heardAt; the one timer reads it when it fires.
  const watchLiveness = () => {
    if (probing) return drop(1006, "no traffic: socket presumed dead");
    const quietMs = performance.now() - heardAt;
    if (quietMs < opts.probeAfterMs) {
      livenessTimer = setTimeout(watchLiveness, opts.probeAfterMs - quietMs);
      return;
    }
    probing = true;
    sendText(PING);
    livenessTimer = setTimeout(watchLiveness, opts.deadAfterMs);
  };
  const armLiveness = () => {
    clearTimeout(livenessTimer);
    heardAt = performance.now();
    probing = false;
    livenessTimer = setTimeout(watchLiveness, opts.probeAfterMs);
  };
  const heard = () => {
    if (probing) armLiveness(); // the probe's answer (or any message): silence counts from now again
    else heardAt = performance.now();
  };

  const refreshToken = async () => {
    if (!options.getToken) return false;
    try {
      token = await options.getToken();
      return Boolean(token);
    } catch (err) {
      tab.onError({ kind: "token", message: errorText(err) });
      return false;
    }
  };

  const open = async () => {
    retryTimer = null;
    if (stopped || ws || opening) return;
    opening = true;
    // A refused upgrade reaches JS as a bare 1006, so an expired token (a laptop that slept) would be
    // retried forever: fetch a new one first.
    if (options.getToken && (!token || tokenExpired(token))) await refreshToken();
    opening = false;
    if (stopped || ws) return;
    status("connecting", { attempt });
    let sock;
    try {
      sock = new WS(withToken(url, token));
    } catch (err) {
      tab.onError({ kind: "connect", message: errorText(err) });
      return schedule(1006);
    }
    ws = sock;
    livenessTimer = setTimeout(() => drop(1006, "connect timed out"), opts.connectTimeoutMs);
    sock.onopen = () => {
      if (sock !== ws) return;
      for (const m of subscribeMessages([...tab.wanted])) sock.send(m);
      status("live");
      armLiveness();
      healthyTimer = setTimeout(() => (attempt = 0), opts.healthyMs);
    };
    sock.onmessage = (e) => {
      if (sock !== ws) return;
      heard();
      if (typeof e.data === "string") onMessage(e.data);
    };
    sock.onclose = (e) => {
      if (sock !== ws) return;
      drop(e.code, e.reason);
    };
    // A browser follows every error with a close; Node's WebSocket (undici) may not when an upgrade is
    // refused (e.g. a draining server's 503), which left the connect hanging until connectTimeoutMs. An
    // error before open is therefore a failed connect at once (a close that follows finds it dropped).
    sock.onerror = () => {
      if (sock !== ws || sock.readyState === 1) return;
      drop(1006, "connect failed");
    };
  };

  // Detaches the socket, if any, and closes it.
  const release = () => {
    const old = ws;
    ws = null;
    if (!old) return;
    old.onopen = old.onmessage = old.onclose = old.onerror = null;
    if (old.readyState > 1) return;
    try {
      old.close(1000);
    } catch {
      // closing a socket still connecting may throw in old engines; it is dropped either way
    }
  };

  // The socket is gone (closed by the server, the network, or our liveness check): plan the next connect.
  const drop = (code, reason) => {
    release();
    clearTimers();
    awaitingSnapshot.clear();
    if (!stopped) schedule(code, reason);
  };

  const schedule = async (code, reason = "") => {
    const policy = closePolicy(code);
    if (policy.action === "token" && !(await refreshToken())) {
      return stopped || stopFor(code, "token expired and no new token");
    }
    const plan = planReconnect(code, attempt, opts, random);
    if (!plan) return stopFor(code, reason || policy.why);
    if (stopped) return;
    attempt = plan.attempt;
    status("reconnecting", { delayMs: plan.delayMs, code, reason: reason || policy.why, attempt });
    retryTimer = setTimeout(open, plan.delayMs);
  };

  // For good (a `stop` close code or close()): no timer, no listener, no socket left.
  const halt = () => {
    stopped = true;
    clearTimers();
    unlisten();
    release();
  };

  const stopFor = (code, why) => {
    halt();
    tab.onError({ kind: "closed", code, message: why });
    status("closed", { code, reason: why });
  };

  const onMessage = (text) => {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return tab.onError({ kind: "parse", message: "server sent non-JSON text" });
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.type !== "string") {
      if (typeof msg.symbol === "string" && tab.wanted.has(msg.symbol)) {
        tab.deliver(msg, awaitingSnapshot.delete(msg.symbol));
      }
      return;
    }
    switch (msg.type) {
      case "subscribed": {
        const unknown = new Set(msg.unknown || []);
        for (const s of msg.symbols || []) if (!unknown.has(s)) awaitingSnapshot.add(s);
        return;
      }
      case "feed":
        return status(msg.status === "down" ? "feed-down" : "live");
      case "retired":
        return tab.retire(msg.symbol);
      case "auth":
        if (msg.status === "expiring") {
          refreshToken().then((ok) => ok && sendText(JSON.stringify({ op: "auth", token })));
        }
        return;
      case "error":
        return tab.onError({ kind: "server", code: msg.error, message: msg.message });
      default:
        return; // "pong", a probe's answer: being heard was the point (heard())
    }
  };

  // The network is back: no point waiting out the backoff.
  const onOnline = () => {
    if (stopped || ws || opening) return;
    clearTimeout(retryTimer);
    attempt = 0;
    retryTimer = setTimeout(open, Math.floor(random() * opts.promptMs));
  };
  const onOffline = () => {
    if (ws) drop(1006, "browser offline");
  };
  const events = typeof addEventListener === "function" ? globalThis : null;
  events?.addEventListener("online", onOnline);
  events?.addEventListener("offline", onOffline);
  const unlisten = () => {
    events?.removeEventListener("online", onOnline);
    events?.removeEventListener("offline", onOffline);
  };

  open();

  return {
    mode,
    send(op, symbols) {
      for (const m of subscribeMessages(symbols, op)) sendText(m);
    },
    close() {
      if (stopped) return;
      halt();
      tab.conflator.clear();
      status("closed", { code: 1000, reason: "closed by the page" });
    },
  };
}
