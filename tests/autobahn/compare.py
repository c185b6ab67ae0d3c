#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite fuzzingclient run with the committed expectations.

    compare.py INDEX_JSON EXPECTED_JSON [--update] [--agent NAME]

INDEX_JSON is <outdir>/index.json written by wstest ({agent: {case: {behavior,
behaviorClose, ...}}}); EXPECTED_JSON maps case id -> {behavior, behaviorClose}.

Check mode: prints every case whose behavior or behaviorClose differs from the
expectation, fails on any FAILED verdict and when the set of cases differs, and ends
with one line "autobahn: summary: N of T cases as expected, M differ (K strict OK, ...)".
The whole run is one result for tests/run.sh (the summary line is shown beside it).
Exit 0 only when every case is as expected. A missing or empty expectation file is an
error: record it with `tests/autobahn/run.sh --update`.

--update rewrites EXPECTED_JSON from the run; it refuses when any case is not strict:
a behavior other than OK, INFORMATIONAL or UNIMPLEMENTED (NON-STRICT, FAILED, WRONG
CODE, UNCLEAN) or a close other than OK or INFORMATIONAL. There is no override: the
expectations only ever record a strict run.
"""
import argparse
import json
import sys

HINT = "either this is a regression or update expected-results.json with tests/autobahn/run.sh --update"
STRICT_BEHAVIOR = {"OK", "INFORMATIONAL", "UNIMPLEMENTED"}
CLEAN_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def load_run(path, agent):
    with open(path) as f:
        index = json.load(f)
    if not isinstance(index, dict) or not index:
        sys.exit(f"autobahn compare: {path} has no results")
    if agent is None:
        if len(index) != 1:
            sys.exit(f"autobahn compare: {path} has several agents {sorted(index)}; pass --agent")
        agent = next(iter(index))
    if agent not in index:
        sys.exit(f"autobahn compare: agent {agent!r} not in {path} (have {sorted(index)})")
    return {
        case: {"behavior": r.get("behavior"), "behaviorClose": r.get("behaviorClose")}
        for case, r in index[agent].items()
    }


def write_expected(path, results):
    lines = [
        f"  {json.dumps(case)}: {json.dumps(results[case], sort_keys=True)}"
        for case in sorted(results, key=case_key)
    ]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def counts_of(results):
    counts = {}
    for r in results.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    strict_ok = sum(1 for r in results.values() if r["behavior"] == "OK" and r["behaviorClose"] == "OK")
    rest = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()) if k != "OK")
    return f"{strict_ok} strict OK" + (f", {rest}" if rest else "")


def update(args, run):
    refused = [
        (case, r)
        for case, r in run.items()
        if r["behavior"] not in STRICT_BEHAVIOR or r["behaviorClose"] not in CLEAN_CLOSE
    ]
    for case, r in sorted(refused, key=lambda cr: case_key(cr[0])):
        print(f"case {case}: behavior {r['behavior']}, close {r['behaviorClose']}")
    if refused:
        print(
            f"autobahn: refusing to record {len(refused)} cases that are not strict "
            "(NON-STRICT, FAILED, WRONG CODE, UNCLEAN or an unclean close): fix them first"
        )
        return 1
    write_expected(args.expected, run)
    print(f"autobahn: recorded {len(run)} cases in {args.expected} ({counts_of(run)})")
    return 0


def check(args, run, expected):
    passed = failed = 0
    for case in sorted(set(run) | set(expected), key=case_key):
        got = run.get(case)
        want = expected.get(case)
        problems = []
        if got is None:
            problems.append(f"case {case}: expected {want['behavior']}, but the run has no such case")
        else:
            if want is None:
                problems.append(
                    f"case {case}: not in expected-results.json (got {got['behavior']}, close "
                    f"{got['behaviorClose']}) — update expected-results.json with tests/autobahn/run.sh --update"
                )
            if want is not None:
                if got["behavior"] != want.get("behavior"):
                    problems.append(f"case {case}: expected {want.get('behavior')}, got {got['behavior']} — {HINT}")
                if got["behaviorClose"] != want.get("behaviorClose"):
                    problems.append(
                        f"case {case}: expected close {want.get('behaviorClose')}, got close "
                        f"{got['behaviorClose']} — {HINT}"
                    )
            if got["behavior"] == "FAILED" or got["behaviorClose"] == "FAILED":
                if not problems:
                    problems.append(f"case {case}: FAILED (behavior {got['behavior']}, close {got['behaviorClose']})")
        if problems:
            failed += 1
            for p in problems:
                print(p)
        else:
            passed += 1
    if len(run) != len(expected):
        print(f"autobahn: the run has {len(run)} cases, expected-results.json has {len(expected)}")
    total = passed + failed
    print(f"autobahn: summary: {passed} of {total} cases as expected, {failed} differ ({counts_of(run)})")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("expected")
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--agent")
    args = ap.parse_args()
    run = load_run(args.index, args.agent)
    if args.update:
        return update(args, run)
    try:
        with open(args.expected) as f:
            expected = json.load(f)
    except FileNotFoundError:
        expected = None
    if not isinstance(expected, dict) or not expected:
        print(
            f"autobahn: {args.expected} is missing or empty: nothing to compare with. "
            "Record the expectations with tests/autobahn/run.sh --update"
        )
        return 1
    return check(args, run, expected)


if __name__ == "__main__":
    sys.exit(main())
