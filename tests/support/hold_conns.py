#!/usr/bin/env python3
"""Open N WebSocket connections to HOST:PORT from source address SRC, complete each upgrade, report
`ready <n> failed <m>` on stdout, then hold them until stdin closes (or --hold seconds pass).

Used by tests that need more connections than one process may hold descriptors for (20,000 here):
run several of these, each from its own source address. Bounded in time; exits by itself."""
import argparse, base64, os, selectors, socket, sys, time

p = argparse.ArgumentParser()
p.add_argument("host"); p.add_argument("port", type=int); p.add_argument("count", type=int)
p.add_argument("--src", default="127.0.0.2"); p.add_argument("--batch", type=int, default=512)
p.add_argument("--timeout", type=float, default=60.0); p.add_argument("--hold", type=float, default=120.0)
a = p.parse_args()

REQ = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n")
sel = selectors.DefaultSelector()
conns, pending, ok, failed = [], {}, 0, 0
deadline = time.time() + a.timeout
started = 0

def start_one():
    global started, failed
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.bind((a.src, 0))
        s.connect_ex((a.host, a.port))
    except OSError:
        failed += 1; s.close(); return
    key = base64.b64encode(os.urandom(16)).decode()
    pending[s.fileno()] = [s, (REQ % key).encode(), b""]
    sel.register(s, selectors.EVENT_WRITE)
    conns.append(s)
    started += 1

while (ok + failed < a.count) and time.time() < deadline:
    while started < a.count and len(pending) < a.batch:
        start_one()
    for key, ev in sel.select(timeout=0.5):
        s = key.fileobj; st = pending.get(s.fileno())
        if st is None: continue
        try:
            if ev & selectors.EVENT_WRITE:
                n = s.send(st[1]); st[1] = st[1][n:]
                if not st[1]: sel.modify(s, selectors.EVENT_READ)
            else:
                data = s.recv(4096)
                if not data: raise OSError("closed")
                st[2] += data
                if b"\r\n\r\n" in st[2]:
                    sel.unregister(s); del pending[s.fileno()]
                    if st[2].startswith(b"HTTP/1.1 101"): ok += 1
                    else: failed += 1
        except OSError:
            sel.unregister(s); del pending[s.fileno()]; failed += 1
failed += a.count - ok - failed
print("ready %d failed %d" % (ok, failed), flush=True)
end = time.time() + a.hold
sel2 = selectors.DefaultSelector(); sel2.register(sys.stdin, selectors.EVENT_READ)
while time.time() < end:
    if sel2.select(timeout=1.0) and not sys.stdin.read(1):
        break
for s in conns:
    s.close()
