#!/usr/bin/env bash
# Test for kernel-tuning/: apply → check → revert → the original values are back.
# Needs root (it writes /proc/sys); skips otherwise. Uses a temporary state file, so
# it never touches a real /var/lib/ringcast-tuning/previous.conf. Bounded: every
# step runs under `timeout`. Ends with "kernel-tuning: N passed, M failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KT=kernel-tuning

if [[ "$(id -u)" -ne 0 ]]; then
    echo "kernel-tuning: skipped (not root; apply/revert write /proc/sys)"
    echo "kernel-tuning: 0 passed, 0 failed, 3 skipped"
    exit 0
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-kt.XXXXXX")"
export RINGCAST_TUNING_STATE="$tmp/state/previous.conf"
passed=0 failed=0
pass() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }

keys=()
while IFS= read -r k; do keys+=("$k"); done < <(sed -nE 's/^[[:space:]]*([a-z][A-Za-z0-9_.]*)[[:space:]]*=.*/\1/p' "$KT/99-ringcast.conf")
snapshot() {
    local k
    for k in "${keys[@]}"; do
        if [[ -e "/proc/sys/${k//.//}" ]]; then
            printf '%s = %s\n' "$k" "$(tr -s ' \t' '  ' <"/proc/sys/${k//.//}")"
        fi
    done
}
snapshot >"$tmp/before"

cleanup() {
    # Whatever happened, put the machine back.
    if [[ -s "$RINGCAST_TUNING_STATE" ]]; then
        timeout 30 "$KT/revert" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# 1. apply succeeds and check then reports everything OK.
if timeout 30 "$KT/apply" >"$tmp/apply.log" 2>&1 && timeout 30 "$KT/check" >"$tmp/check.log" 2>&1; then
    pass "apply, then check reports all settings OK"
else
    fail "apply, then check reports all settings OK"
    cat "$tmp/apply.log" "$tmp/check.log" 2>/dev/null || true
fi

# 2. revert restores every original value.
if timeout 30 "$KT/revert" >"$tmp/revert.log" 2>&1; then
    snapshot >"$tmp/after"
    if diff -u "$tmp/before" "$tmp/after"; then
        pass "revert restores the original values"
    else
        fail "revert restores the original values (diff above)"
    fi
else
    fail "revert restores the original values (revert failed)"
    cat "$tmp/revert.log"
fi

# 3. revert is idempotent: a second run succeeds and changes nothing.
if timeout 30 "$KT/revert" >"$tmp/revert2.log" 2>&1; then
    snapshot >"$tmp/after2"
    if cmp -s "$tmp/before" "$tmp/after2"; then
        pass "second revert is a no-op"
    else
        fail "second revert is a no-op (values changed)"
    fi
else
    fail "second revert is a no-op (exit non-zero)"
    cat "$tmp/revert2.log"
fi

echo "kernel-tuning: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
