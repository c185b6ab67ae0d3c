#!/usr/bin/env python3
"""Self cost (Ir) per symbol of a callgrind dump made with --dump-instr=yes.

callgrind attributes nearly all of an optimised ringcast build to the thread's entry function
(everything is inlined into it as far as callgrind's function tracking sees); this maps every
instruction address of the ringcast object to the symbol containing it (nm), and every other
object's cost to callgrind's function name.

    perf/callgrind-by-symbol.py DUMP BINARY [DELIVERIES] [TOP]
    perf/callgrind-by-symbol.py --deliveries DUMP   (prints the calls of Core::deliver)

DELIVERIES defaults to the calls of `Core::deliver` in the dump (one per tick queued to a
connection; callgrind counts those calls exactly, over the same window as the instructions).
"""
import bisect
import re
import subprocess
import sys
from collections import defaultdict

count_only = sys.argv[1] == "--deliveries"
if count_only:
    dump, binary = sys.argv[2], ""
else:
    dump, binary = sys.argv[1], sys.argv[2]
deliveries = float(sys.argv[3]) if len(sys.argv) > 3 else 0
top = int(sys.argv[4]) if len(sys.argv) > 4 else 40
DELIVER = "ringcast::runtime::core::Core>::deliver"
deliver_calls = 0
cfn = ""

names = {"ob": {}, "fn": {}}
cost = defaultdict(int)  # (ob, fn or addr) -> Ir
ob = fn = ""
addr = 0
skip_next = False
ref = re.compile(r"^\((\d+)\)(?: (.*))?$")


def resolve(kind, value):
    m = ref.match(value)
    if not m:
        return value
    if m.group(2) is not None:
        names[kind][m.group(1)] = m.group(2)
    return names[kind].get(m.group(1), value)


with open(dump) as f:
    for line in f:
        line = line.rstrip("\n")
        if not line:
            continue
        c = line[0]
        if line.startswith("ob="):
            ob = resolve("ob", line[3:])
        elif line.startswith("fn="):
            fn = resolve("fn", line[3:])
        elif line.startswith("cob="):
            resolve("ob", line[4:])
        elif line.startswith("cfn="):
            cfn = resolve("fn", line[4:])
        elif line.startswith("calls="):
            skip_next = True
            if cfn.endswith(DELIVER):
                deliver_calls += int(line[6:].split()[0])
        elif c in "0123456789+-*":
            parts = line.split()
            a = parts[0]
            if a.startswith("0x"):
                addr = int(a, 16)
            elif a[0] in "+-":
                addr += int(a, 0) if a[0] == "-" else int(a[1:], 0)
            if skip_next:
                skip_next = False
                continue
            ir = int(parts[2]) if len(parts) > 2 else 0
            if count_only:
                continue
            if ob.endswith(binary.split("/")[-1]):
                cost[(ob, addr)] += ir
            else:
                cost[(ob.split("/")[-1], fn)] += ir

if count_only:
    print(deliver_calls)
    sys.exit(0)
deliveries = deliveries or deliver_calls
syms = []
for line in subprocess.run(["nm", "-C", "--defined-only", "-n", binary], capture_output=True,
                           text=True).stdout.splitlines():
    p = line.split(" ", 2)
    if len(p) == 3 and p[1] in "tTwW":
        syms.append((int(p[0], 16), p[2]))
starts = [s[0] for s in syms]
by = defaultdict(int)
for (o, k), ir in cost.items():
    if isinstance(k, int):
        i = bisect.bisect_right(starts, k) - 1
        name = syms[i][1] if i >= 0 else "?"
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        by["ringcast: " + name] += ir
    else:
        by[o + ": " + k] += ir
total = sum(by.values())
print(f"total {total:,} Ir" + (f", {total / deliveries:.0f} per delivery" if deliveries else ""))
for name, ir in sorted(by.items(), key=lambda x: -x[1])[:top]:
    per = f"{ir / deliveries:8.0f}/deliv" if deliveries else ""
    print(f"{ir:12,} {100 * ir / total:5.1f}% {per}  {name[:150]}")
