// The seed system as a baseline for ringcast-load: a Node ws + ioredis ticker server speaking the seeds'
// protocol. Deliberately plain (what the seed did), so the harness can compare Ringcast against it.
//
//   PORT=3001 HOST=127.0.0.1 REDIS_URL=redis://127.0.0.1:6379 PREFIX=perf: node server.js
//
// Protocol: a client sends `EFERT,LUCK` or {"op":"subscribe","symbols":["EFERT","LUCK"]}; the server
// answers {"type":"subscribed","symbols":[...]}, then the latest tick of each symbol from the hash
// `${PREFIX}ticks`, then every tick published on channel `${PREFIX}ticks` (one tick object or a JSON
// array of them per message) for those symbols, each as its own text message. GET /healthz → 200.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');

const PORT = Number(process.env.PORT || 3001);
const HOST = process.env.HOST || '0.0.0.0';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = process.env.PREFIX || '';
const KEY = `${PREFIX}ticks`;

const redis = new Redis(REDIS_URL);
const sub = new Redis(REDIS_URL);
const subscribers = new Map(); // symbol -> Set<ws>

function deliver(symbol, text) {
  const set = subscribers.get(symbol);
  if (!set) return;
  for (const ws of set) {
    if (ws.readyState === 1) ws.send(text);
  }
}

sub.subscribe(KEY, (err) => {
  if (err) { console.error('subscribe failed:', err.message); process.exit(1); }
});
sub.on('message', (_channel, message) => {
  let parsed;
  try { parsed = JSON.parse(message); } catch { return; }
  if (Array.isArray(parsed)) {
    for (const t of parsed) if (t && typeof t.symbol === 'string') deliver(t.symbol, JSON.stringify(t));
  } else if (parsed && typeof parsed.symbol === 'string') {
    deliver(parsed.symbol, message);
  }
});

function parseSymbols(text) {
  const s = text.trim();
  if (s.startsWith('{')) {
    try {
      const m = JSON.parse(s);
      if (m && (m.op === 'subscribe' || m.op === undefined) && Array.isArray(m.symbols)) {
        return m.symbols.filter((x) => typeof x === 'string' && x.length > 0);
      }
    } catch { /* fall through */ }
    return null;
  }
  return s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
}

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok\n'); return; }
  res.writeHead(426, { 'content-type': 'text/plain' }); res.end('websocket only\n');
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.symbols = new Set();
  ws.on('message', async (data, isBinary) => {
    if (isBinary) return;
    const symbols = parseSymbols(data.toString());
    if (!symbols) { ws.send(JSON.stringify({ type: 'error', message: 'bad subscribe message' })); return; }
    for (const sym of symbols) {
      ws.symbols.add(sym);
      let set = subscribers.get(sym);
      if (!set) { set = new Set(); subscribers.set(sym, set); }
      set.add(ws);
    }
    ws.send(JSON.stringify({ type: 'subscribed', symbols }));
    if (symbols.length === 0) return;
    try {
      const latest = await redis.hmget(KEY, ...symbols);
      for (const v of latest) if (v !== null && ws.readyState === 1) ws.send(v);
    } catch (e) { /* snapshot is best effort */ }
  });
  ws.on('close', () => {
    for (const sym of ws.symbols) {
      const set = subscribers.get(sym);
      if (set) { set.delete(ws); if (set.size === 0) subscribers.delete(sym); }
    }
  });
  ws.on('error', () => {});
});

server.listen(PORT, HOST, () => console.error(`node-ws baseline listening on ${HOST}:${PORT}, redis ${REDIS_URL}, key ${KEY}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
