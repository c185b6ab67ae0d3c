#!/usr/bin/env python3
"""The seed's browser client, in Python `websockets`: connect, send the plain subscribe `HASCOL`, print every
message received (one per line) until COUNT have arrived, then close normally. Bounded by --timeout.
For wss://, --ca CERT trusts a development certificate."""
import argparse, asyncio, ssl, sys
import websockets

p = argparse.ArgumentParser()
p.add_argument("url"); p.add_argument("subscribe"); p.add_argument("count", type=int)
p.add_argument("--ca"); p.add_argument("--timeout", type=float, default=10.0)
a = p.parse_args()

async def main():
    ctx = None
    if a.url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=a.ca)
    async with websockets.connect(a.url, ssl=ctx, open_timeout=a.timeout) as ws:
        print("open", flush=True)
        await ws.send(a.subscribe)
        for _ in range(a.count):
            msg = await asyncio.wait_for(ws.recv(), a.timeout)
            print(msg, flush=True)
    print("closed", ws.close_code, flush=True)

try:
    asyncio.run(asyncio.wait_for(main(), a.timeout * 3))
except Exception as e:
    print("error", type(e).__name__, e, flush=True)
    sys.exit(1)
