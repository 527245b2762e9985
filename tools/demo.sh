#!/usr/bin/env bash
# The demo: tools/demo/deploy.yml builds an OCI image layout from busybox and
# deploys a service and a job from it with the daemonless.oci.container role
# on localhost, then prints their facts, the job's exit code and the logs. A
# second run shows that nothing changes; cleanup.yml removes everything.
# Called by `make demo` (which sets up .venv first); run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export ANSIBLE_COLLECTIONS_PATH=$PWD/.venv/collections
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
OCIRT=.venv/bin/ocirt
STATE_ROOT=/run/ocirt-demo   # demo_state_root in tools/demo/vars.yml
LOG=$(mktemp)

playbook() { .venv/bin/ansible-playbook -i tools/demo/inventory.yml "$@"; }
step() { printf '\n=== %s\n' "$*"; }
cleanup() {
    rm -f "$LOG"
    if [ -z "${cleaned:-}" ]; then
        playbook tools/demo/cleanup.yml >/dev/null 2>&1 || echo "cleanup failed: run ansible-playbook tools/demo/cleanup.yml" >&2
    fi
}
trap cleanup EXIT

step "ansible-playbook tools/demo/deploy.yml: image, service, job, facts, logs"
playbook tools/demo/deploy.yml

step "ansible-playbook tools/demo/deploy.yml again: nothing changes"
if ! ANSIBLE_DISPLAY_OK_HOSTS=false ANSIBLE_DISPLAY_SKIPPED_HOSTS=false playbook tools/demo/deploy.yml >"$LOG" 2>&1; then
    cat "$LOG"
    exit 1
fi
sed -n '/^PLAY RECAP/,$p' "$LOG"
if ! grep -Eq '^localhost +: .* changed=0 .* failed=0 ' "$LOG"; then
    cat "$LOG"
    echo "error: the second run changed something" >&2
    exit 1
fi

step "the same containers through the runtime core: ocirt --root $STATE_ROOT list"
"$OCIRT" --root "$STATE_ROOT" list

step "ansible-playbook tools/demo/cleanup.yml: containers, bundles and image removed"
playbook tools/demo/cleanup.yml | sed -n '/^PLAY RECAP/,$p'
cleaned=1
for dir in /var/tmp/ocirt-demo "$STATE_ROOT"; do   # demo_work, demo_state_root
    if [ -e "$dir" ]; then
        echo "error: $dir is left" >&2
        exit 1
    fi
done
echo "nothing is left in /var/tmp/ocirt-demo or $STATE_ROOT"

step "done"
