// ringcast-worker.js: connect()'s shared mode (client/README.md): every tab of one origin talks to ONE
// SharedWorker, which holds ONE WebSocket (ringcast.js's connect) for all of them, counts which tab (port) wants
// which symbol, hands each tab only its own ticks, and unsubscribes what no tab wants any more: a tab that
// says "bye" (pagehide, close()), whose Web Lock is released (the tab holds one for its life; the browser
// frees it when the tab dies, however it dies), or, where there are no Web Locks, that falls silent for
// `missedBeats` heartbeats.
//
// Both sides live here: connectShared() runs in the page (ringcast.js's connect() calls it), serveShared()
// in the worker. Served by `ringcast serve` at /ringcast-worker.js; started as
// `new SharedWorker("/ringcast-worker.js", { type: "module" })`, it serves at once (last line).
import { DEFAULTS, addSymbols, connect, connectDirect, errorText, parseSymbols, removeSymbols } from "./ringcast.js";

/** Shared-mode timing, in milliseconds. */
export const SHARED_DEFAULTS = Object.freeze({
  heartbeatMs: 5_000, // each tab pings the worker this often
  missedBeats: 3, // a port silent for this many heartbeats is dropped (its tab is gone)
  tokenTimeoutMs: 10_000, // a tab asked for a token answers within this
});

/**
 * Which port wants which symbol (the worker's bookkeeping). Each change returns what the one upstream socket
 * must do: `add` the symbols no port wanted before (to subscribe), `remove`/`drop` those no port wants any
 * more (to unsubscribe). A port is known from its first `add` (even of no symbols) until `drop`.
 */
export function makePortBook() {
  const byPort = new Map(); // port -> Set(symbol)
  const bySymbol = new Map(); // symbol -> Set(port): the ports that want it (never empty)
  const none = new Set();
  const book = {
    add(port, symbols) {
      let mine = byPort.get(port);
      if (!mine) byPort.set(port, (mine = new Set()));
      const subscribe = [];
      for (const s of addSymbols(mine, symbols)) {
        let ports = bySymbol.get(s);
        if (!ports) {
          bySymbol.set(s, (ports = new Set()));
          subscribe.push(s);
        }
        ports.add(port);
      }
      return subscribe;
    },
    remove(port, symbols) {
      const mine = byPort.get(port);
      if (!mine) return [];
      const unsubscribe = [];
      for (const s of removeSymbols(mine, symbols)) {
        const ports = bySymbol.get(s);
        ports.delete(port);
        if (ports.size === 0) {
          bySymbol.delete(s);
          unsubscribe.push(s);
        }
      }
      return unsubscribe;
    },
    drop(port) {
      const mine = byPort.get(port);
      if (!mine) return [];
      const unsubscribe = book.remove(port, [...mine]);
      byPort.delete(port);
      return unsubscribe;
    },
    /** The server retired `symbol`: nobody holds it any more (no unsubscribe to send). */
    retire(symbol) {
      for (const port of book.holders(symbol)) byPort.get(port).delete(symbol);
      bySymbol.delete(symbol);
    },
    has: (port) => byPort.has(port),
    /** The ports that want `symbol`, live (per tick: no copy); iterate it, do not keep or change it. */
    holders: (symbol) => bySymbol.get(symbol) || none,
    portsFor: (symbol) => [...book.holders(symbol)],
    ports: () => [...byPort.keys()],
    symbols: () => [...bySymbol.keys()],
  };
  return book;
}

/** The ports last heard from more than `missedBeats` heartbeats before `now` (their tabs are gone). */
export function silentPorts(lastSeen, now, heartbeatMs, missedBeats = SHARED_DEFAULTS.missedBeats) {
  const out = [];
  for (const [port, at] of lastSeen) if (now - at > heartbeatMs * missedBeats) out.push(port);
  return out;
}

/**
 * The worker side: adopts each connecting port, holds the one upstream feed (made from the first tab's
 * "hello": url, token, timing) while any port is known, and routes its events. `deps` for tests: `connect`
 * (the upstream's), `now`, `locks` (navigator.locks). Returns `{ book, sweep }` (sweep: drop the silent
 * ports now).
 */
export function serveShared(scope, deps = {}) {
  const connectUpstream = deps.connect || connect;
  const now = deps.now || (() => Date.now());
  const locks = "locks" in deps ? deps.locks : globalThis.navigator?.locks;
  const book = makePortBook();
  const lastSeen = new Map(); // the ports that hold no lock: when each was last heard
  const tokenPorts = new Set(); // ports whose page has a getToken
  const asks = new Map(); // token request id -> resolve
  let nextAsk = 1;
  let feed = null;
  let lastStatus = null;
  let heartbeatMs = SHARED_DEFAULTS.heartbeatMs;
  let sweeper = null;

  const post = (port, msg) => {
    try {
      port.postMessage(msg);
    } catch {
      // a port that cannot take a message is gone; the sweep drops it
    }
  };
  const toAll = (msg) => {
    for (const port of book.ports()) post(port, msg);
  };
  const toHolders = (type, tick) => {
    const msg = { type, tick };
    for (const port of book.holders(tick.symbol)) post(port, msg);
  };

  // getToken lives in the pages: ask one that has it.
  const askToken = () =>
    new Promise((resolve, reject) => {
      const [port] = [...tokenPorts];
      if (!port) return reject(new Error("no tab with a getToken"));
      const id = nextAsk++;
      const timer = setTimeout(() => {
        asks.delete(id);
        reject(new Error("the tab asked for a token did not answer"));
      }, SHARED_DEFAULTS.tokenTimeoutMs);
      asks.set(id, (token) => {
        clearTimeout(timer);
        resolve(token);
      });
      post(port, { type: "getToken", id });
    });

  const start = (hello) => {
    heartbeatMs = hello.heartbeatMs || heartbeatMs;
    feed = connectUpstream(hello.url, {
      ...hello.timing,
      token: hello.token || undefined,
      getToken: hello.getToken ? askToken : undefined,
      shared: false,
      conflate: false, // each tab conflates per its own frame
      onTick: (tick) => toHolders("tick", tick),
      onSnapshot: (tick) => toHolders("snapshot", tick),
      onStatus: (status, detail) => {
        lastStatus = { status, detail: { ...detail, mode: "shared" } };
        toAll({ type: "status", ...lastStatus });
      },
      onError: (err) => toAll({ type: "error", err }),
      onRetired: (symbol) => {
        const ports = book.portsFor(symbol);
        book.retire(symbol);
        for (const port of ports) post(port, { type: "retired", symbol });
      },
    });
    sweeper = setInterval(sweep, heartbeatMs);
  };

  const subscribe = (port, symbols) => {
    const fresh = book.add(port, symbols);
    if (fresh.length) feed.subscribe(fresh);
    // Symbols another tab already holds bring no snapshot from the server: hand over the stored one.
    const subscribed = new Set(fresh);
    for (const s of symbols) {
      const tick = subscribed.has(s) ? undefined : feed.latest(s);
      if (tick) post(port, { type: "snapshot", tick });
    }
  };

  const forget = (port) => {
    const gone = book.drop(port);
    lastSeen.delete(port);
    tokenPorts.delete(port);
    if (!feed) return;
    if (book.ports().length === 0) {
      clearInterval(sweeper);
      const old = feed;
      feed = null;
      lastStatus = null;
      old.close();
    } else if (gone.length) {
      feed.unsubscribe(gone);
    }
  };

  const sweep = () => {
    for (const port of silentPorts(lastSeen, now(), heartbeatMs)) forget(port);
  };

  const onPortMessage = (port, m) => {
    if (m.op === "hello") {
      if (m.lock && locks) {
        // Granted once the tab's own hold on it ends: the tab is gone.
        locks.request(m.lock, () => forget(port));
        lastSeen.delete(port);
      } else lastSeen.set(port, now());
      if (m.getToken) tokenPorts.add(port);
      if (!feed) start(m);
      if (lastStatus) post(port, { type: "status", ...lastStatus });
      return subscribe(port, safeSymbols(m.symbols));
    }
    // A port dropped as silent (a throttled background tab) that speaks again: it says hello again.
    if (!book.has(port)) return m.op === "bye" ? undefined : post(port, { type: "rejoin" });
    if (lastSeen.has(port)) lastSeen.set(port, now());
    switch (m.op) {
      case "subscribe":
        return subscribe(port, safeSymbols(m.symbols));
      case "unsubscribe": {
        const gone = book.remove(port, safeSymbols(m.symbols));
        if (gone.length) feed.unsubscribe(gone);
        return;
      }
      case "token": {
        const resolve = asks.get(m.id);
        asks.delete(m.id);
        return resolve && resolve(m.token || null);
      }
      case "bye":
        return forget(port);
      default:
        return; // "ping": being heard is the point
    }
  };

  scope.addEventListener("connect", (e) => {
    const port = e.ports[0];
    port.onmessage = (msg) => onPortMessage(port, msg.data || {});
  });
  return { book, sweep };
}

function safeSymbols(symbols) {
  try {
    return parseSymbols(symbols || []);
  } catch {
    return [];
  }
}

/**
 * The page side: connect()'s link to the worker, feeding `tab` (see ringcast.js). Returns null when no
 * SharedWorker can be started (connect() then opens a socket of its own); falls back the same way, with
 * status detail `mode: "dedicated"`, when the worker fails to load.
 */
export function connectShared(url, options, tab) {
  let worker;
  try {
    const script = options.workerUrl || new URL("./ringcast-worker.js", import.meta.url);
    worker = new SharedWorker(script, { type: "module", name: `ringcast ${url}` });
  } catch {
    return null;
  }
  const port = worker.port;
  const heartbeatMs = options.heartbeatMs || SHARED_DEFAULTS.heartbeatMs;
  const timing = {};
  for (const k of Object.keys(DEFAULTS)) if (options[k] !== undefined) timing[k] = options[k];
  let stopped = false;
  let heard = false; // the worker has spoken: it loaded
  let direct = null; // the link of the dedicated fallback, once the worker failed
  let joined = false; // hello sent (it carries every symbol wanted so far)
  // A Web Lock held for the tab's life: the worker waits on it to learn the tab is gone. Without Web
  // Locks, heartbeats tell the worker instead.
  const locks = globalThis.navigator?.locks;
  const lock = locks ? `ringcast-tab-${Date.now()}-${Math.random().toString(36).slice(2)}` : null;
  let releaseLock = () => {};

  const hello = () => {
    joined = true;
    port.postMessage({
      op: "hello",
      lock,
      url,
      token: options.token || null,
      getToken: Boolean(options.getToken),
      symbols: [...tab.wanted],
      timing,
      heartbeatMs,
    });
  };

  port.onmessage = (e) => {
    const m = e.data || {};
    heard = true;
    if (stopped) return;
    switch (m.type) {
      case "tick":
      case "snapshot":
        if (tab.wanted.has(m.tick.symbol)) tab.deliver(m.tick, m.type === "snapshot");
        return;
      case "status":
        return tab.status(m.status, m.detail);
      case "error":
        return tab.onError(m.err);
      case "retired":
        return tab.retire(m.symbol);
      case "getToken":
        return Promise.resolve()
          .then(() => options.getToken())
          .catch((err) => {
            tab.onError({ kind: "token", message: errorText(err) });
            return null;
          })
          .then((token) => port.postMessage({ op: "token", id: m.id, token }));
      case "rejoin":
        return hello();
      default:
        return;
    }
  };
  const beat = lock ? null : setInterval(() => port.postMessage({ op: "ping" }), heartbeatMs);
  const bye = () => port.postMessage({ op: "bye" });
  const back = (e) => e.persisted && !stopped && !direct && hello(); // back from the back/forward cache
  const events = typeof addEventListener === "function" ? globalThis : null;
  events?.addEventListener("pagehide", bye);
  events?.addEventListener("pageshow", back);
  // Done with the worker (closed, or it failed to load).
  const leave = () => {
    clearInterval(beat);
    events?.removeEventListener("pagehide", bye);
    events?.removeEventListener("pageshow", back);
    port.close();
    releaseLock();
  };
  worker.onerror = () => {
    if (heard || stopped || direct) return;
    leave();
    direct = connectDirect(url, options, tab, "dedicated");
  };
  if (lock) {
    locks.request(lock, () => {
      if (stopped || direct) return undefined;
      hello(); // only once the lock is held: the worker's wait on it must not be granted at once
      return new Promise((resolve) => (releaseLock = resolve));
    });
  } else hello();

  return {
    get mode() {
      return direct ? direct.mode : "shared";
    },
    send(op, symbols) {
      if (direct) direct.send(op, symbols);
      else if (joined && !stopped) port.postMessage({ op, symbols });
    },
    close() {
      if (direct) return direct.close();
      if (stopped) return;
      stopped = true;
      tab.conflator.clear();
      bye();
      leave();
      tab.status("closed", { code: 1000, reason: "closed by the page", mode: "shared" });
    },
  };
}

// Started as a SharedWorker: serve. (Imported by ringcast.js in a page or by a test: nothing runs.)
if (typeof SharedWorkerGlobalScope !== "undefined" && globalThis instanceof SharedWorkerGlobalScope) {
  serveShared(globalThis);
}
