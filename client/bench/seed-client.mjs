// The seed's hand-written client, for comparison in the benches: after every close, whatever its code, it
// connects again after a uniform 3–8 s (`setTimeout(connect, 3000 + Math.random() * 5000)`), and subscribes
// on open. Statuses as connect()'s (`connecting`, `live`, `reconnecting`), so a bench can time both alike.
// Self-contained (no imports, no outer names): the browser bench injects its source into a page.

/** Connects like the seed's client; returns `{ close() }`. */
export function seedConnect(url, { symbols = [], onStatus = () => {} } = {}) {
  let ws = null;
  let timer = null;
  let stopped = false;
  const open = () => {
    onStatus("connecting", {});
    const sock = (ws = new WebSocket(url));
    let lost = false;
    const retry = (code) => {
      if (stopped || lost) return;
      lost = true;
      const delayMs = 3000 + Math.random() * 5000;
      onStatus("reconnecting", { delayMs, code });
      timer = setTimeout(open, delayMs);
    };
    sock.onopen = () => {
      sock.send(JSON.stringify({ op: "subscribe", symbols }));
      onStatus("live", {});
    };
    sock.onclose = (e) => retry(e.code);
    // Node's WebSocket may fire no close after a refused upgrade (client/README.md): an error before open
    // counts as the close (in a browser the close follows and finds it counted).
    sock.onerror = () => sock.readyState !== 1 && retry(1006);
  };
  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      ws?.close();
    },
  };
}
