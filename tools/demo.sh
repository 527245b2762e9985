#!/usr/bin/env bash
# Runs busybox containers through the ocirt runtime core: one in the
# foreground, then one through the detached create/start/kill/delete cycle.
# Called by `make demo` (which sets up .venv first); run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
OCIRT=${OCIRT:-.venv/bin/ocirt}   # any runc-compatible command works here
DEMO=$PWD/build/demo
STATE=$DEMO/state
SLEEPER=demo-sleeper

ocirt() { "$OCIRT" --root "$STATE" "$@"; }
step() { printf '\n=== %s\n' "$*"; }
cleanup() { ocirt delete --force "$SLEEPER" >/dev/null 2>&1 || true; }

cleanup
ocirt delete --force demo-run >/dev/null 2>&1 || true
trap cleanup EXIT
mkdir -p "$STATE"

step "building busybox bundles in $DEMO"
# shellcheck disable=SC2016  # expanded by the container's shell, not this one
"$PY" tools/busybox_bundle.py "$DEMO/bundle" sh -c \
    'echo "hello from $(hostname), I am pid $$, uid $(id -u)"; echo "ls /:"; ls /'
"$PY" tools/busybox_bundle.py "$DEMO/sleeper" sleep 30

step "ocirt run --bundle $DEMO/bundle demo-run"
rc=0
ocirt run --bundle "$DEMO/bundle" demo-run </dev/null || rc=$?
echo "exit code: $rc"

step "ocirt create --bundle $DEMO/sleeper $SLEEPER"
ocirt create --bundle "$DEMO/sleeper" "$SLEEPER" </dev/null

step "ocirt state $SLEEPER"
ocirt state "$SLEEPER" | "$PY" -m json.tool

step "ocirt start $SLEEPER"
ocirt start "$SLEEPER"

step "ocirt state $SLEEPER"
ocirt state "$SLEEPER" | "$PY" -m json.tool

step "ocirt list"
ocirt list

step "ocirt kill $SLEEPER KILL"
ocirt kill "$SLEEPER" KILL
stopped=
for _ in $(seq 50); do
    if ocirt state "$SLEEPER" | grep -Eq '"status": *"stopped"'; then
        stopped=1
        break
    fi
    sleep 0.1
done
if [ -z "$stopped" ]; then
    echo "error: $SLEEPER did not stop within 5 s" >&2
    exit 1
fi
echo "$SLEEPER is stopped"

step "ocirt delete $SLEEPER"
ocirt delete "$SLEEPER"
ocirt list

step "done"
