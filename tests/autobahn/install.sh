#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (wstest) into a cached Python 2.7 virtualenv.
#
#   bash tests/autobahn/install.sh            # prints the wstest path on success
#
# The suite is Python 2.7 code (on Python 3 wstest fails at import), so it runs in a
# virtualenv made from pyenv's 2.7.18 with the set of pins in
# /work/shared/notes/autobahn.md (seen to install and run on these machines, ~35 s).
#
# Idempotent: a marker file inside the venv records the pin set; a second run with the
# same pins does nothing. Quiet unless something fails (then the install log is shown).
#
# Environment:
#   AUTOBAHN_VENV     where the 2.7 venv goes   (default ${RINGCAST_CACHE:-~/.cache/ringcast}/ab27)
#   AUTOBAHN_TOOLVENV python3 venv that provides `virtualenv` (default ~/.cache/ringcast/ab-tool)
#   AUTOBAHN_PYTHON27 the Python 2.7 interpreter (default ~/.pyenv/versions/2.7.18/bin/python2.7)
set -euo pipefail

VENV="${AUTOBAHN_VENV:-${RINGCAST_CACHE:-$HOME/.cache/ringcast}/ab27}"
TOOLVENV="${AUTOBAHN_TOOLVENV:-${RINGCAST_CACHE:-$HOME/.cache/ringcast}/ab-tool}"
PY27="${AUTOBAHN_PYTHON27:-$HOME/.pyenv/versions/2.7.18/bin/python2.7}"

PINS=(setuptools==44.0.0 txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0
      cryptography==3.3.2 Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1
      Werkzeug==1.0.1 klein==17.10.0 service_identity==18.1.0 unittest2==1.1.0 six==1.16.0
      "autobahn[accelerate,twisted]==0.10.9")
NODEPS_PINS=(autobahntestsuite==25.10.1)
TOOL_PINS=(virtualenv==20.21.1)

MARKER="$VENV/.ringcast-autobahn-installed"
WANT="pins: ${PINS[*]} | nodeps: ${NODEPS_PINS[*]}"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" && -x "$VENV/bin/wstest" ]]; then
    echo "$VENV/bin/wstest"
    exit 0
fi

if [[ ! -x "$PY27" ]]; then
    cat >&2 <<MSG
autobahn install: Python 2.7 not found at $PY27.
  The Autobahn|Testsuite needs Python 2.7 (it does not run on Python 3), and Debian 12
  has no python2 package. Install 2.7.18 with pyenv (\`pyenv install 2.7.18\`), or point
  AUTOBAHN_PYTHON27 at another 2.7 interpreter, or skip with RINGCAST_SKIP_AUTOBAHN=1.
MSG
    exit 1
fi
if ! command -v python3 >/dev/null; then
    echo "autobahn install: python3 is needed to create the virtualenv tool venv" >&2
    exit 1
fi

mkdir -p "$(dirname "$VENV")" "$(dirname "$TOOLVENV")"
LOG="$(mktemp "${TMPDIR:-/tmp}/ringcast-autobahn-install.XXXXXX")"
fail() {
    echo "autobahn install: FAILED while: $1 (log follows: $LOG)" >&2
    tail -n 60 "$LOG" >&2
    exit 1
}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Start from scratch if a previous attempt was interrupted half-way.
rm -rf "$VENV"

if [[ ! -x "$TOOLVENV/bin/virtualenv" ]]; then
    rm -rf "$TOOLVENV"
    python3 -m venv "$TOOLVENV" >>"$LOG" 2>&1 || fail "python3 -m venv $TOOLVENV"
    "$TOOLVENV/bin/pip" install -q "${TOOL_PINS[@]}" >>"$LOG" 2>&1 || fail "pip install ${TOOL_PINS[*]}"
fi
"$TOOLVENV/bin/virtualenv" -q -p "$PY27" "$VENV" >>"$LOG" 2>&1 || fail "virtualenv -p $PY27 $VENV"
"$VENV/bin/pip" install -q "${PINS[@]}" >>"$LOG" 2>&1 || fail "pip install (autobahn dependencies)"
"$VENV/bin/pip" install -q --no-deps "${NODEPS_PINS[@]}" >>"$LOG" 2>&1 || fail "pip install --no-deps ${NODEPS_PINS[*]}"
# Smoke: wstest must import (it fails at import on a wrong interpreter).
"$VENV/bin/wstest" --help >>"$LOG" 2>&1 || fail "wstest --help"

printf '%s' "$WANT" >"$MARKER"
rm -f "$LOG"
echo "$VENV/bin/wstest"
