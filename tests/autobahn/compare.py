#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite fuzzingclient run with the committed expectations.

    compare.py INDEX_JSON EXPECTED_JSON [--update [--force]] [--agent NAME]

INDEX_JSON is <outdir>/index.json written by wstest ({agent: {case: {behavior,
behaviorClose, ...}}}); EXPECTED_JSON maps case id -> {behavior, behaviorClose}.

Check mode: prints every case whose behavior or behaviorClose differs from the
expectation, fails on any FAILED verdict and when the set of cases differs, and ends
with "autobahn: N passed, M failed". Exit 0 only when nothing failed.

An empty expectation file ({}: nothing recorded yet) falls back to a baseline: every
case must be free of FAILED / WRONG CODE / UNCLEAN verdicts with a clean close, and a
warning says the expectations should be recorded with `tests/autobahn/run.sh --update`.

--update rewrites EXPECTED_JSON from the run; it refuses when any case FAILED or did
not close cleanly, unless --force.
"""
import argparse
import json
import sys

HINT = "either this is a regression or update expected-results.json with tests/autobahn/run.sh --update"
BAD_BEHAVIOR = {"FAILED", "WRONG CODE", "UNCLEAN"}
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


def update(args, run):
    refused = [
        (case, r)
        for case, r in run.items()
        if r["behavior"] in BAD_BEHAVIOR or r["behaviorClose"] not in CLEAN_CLOSE
    ]
    for case, r in sorted(refused, key=lambda cr: case_key(cr[0])):
        print(f"case {case}: behavior {r['behavior']}, close {r['behaviorClose']}")
    if refused and not args.force:
        print(
            f"autobahn: refusing to record {len(refused)} failed or unclean cases "
            "(fix them, or re-run with --update --force)"
        )
        return 1
    write_expected(args.expected, run)
    counts = {}
    for r in run.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"autobahn: recorded {len(run)} cases in {args.expected} ({summary})")
    return 0


def check(args, run, expected):
    passed = failed = 0
    if not expected:
        print(
            f"autobahn: WARNING: {args.expected} is empty; checking only for FAILED verdicts and "
            "unclean closes. Record the expectations with tests/autobahn/run.sh --update"
        )
    for case in sorted(set(run) | set(expected), key=case_key):
        got = run.get(case)
        want = expected.get(case)
        problems = []
        if got is None:
            problems.append(f"case {case}: expected {want['behavior']}, but the run has no such case")
        else:
            if want is None and expected:
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
            elif not expected and (got["behavior"] in BAD_BEHAVIOR or got["behaviorClose"] not in CLEAN_CLOSE):
                problems.append(f"case {case}: behavior {got['behavior']}, close {got['behaviorClose']}")
        if problems:
            failed += 1
            for p in problems:
                print(p)
        else:
            passed += 1
    if expected and len(run) != len(expected):
        print(f"autobahn: the run has {len(run)} cases, expected-results.json has {len(expected)}")
    print(f"autobahn: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("expected")
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--agent")
    args = ap.parse_args()
    run = load_run(args.index, args.agent)
    if args.update:
        return update(args, run)
    try:
        with open(args.expected) as f:
            expected = json.load(f)
    except FileNotFoundError:
        expected = {}
    return check(args, run, expected)


if __name__ == "__main__":
    sys.exit(main())
