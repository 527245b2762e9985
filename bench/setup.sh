#!/usr/bin/env bash
# Installs what bench/run.py needs beyond `make venv`, idempotently (run as root):
#  - Debian packages: the peers runc, crun and podman (with conmon), strace for the profile;
#  - bench/.venv: PyPI's ansible 12.x for the Ansible benchmark (containers.podman).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

pkgs="runc crun podman conmon strace python3-venv python3-cffi-backend busybox-static"
missing=
for p in $pkgs; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

if ! cmp -s requirements.txt .venv/.stamp 2>/dev/null; then
  test -x .venv/bin/python || /usr/bin/python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/.stamp
fi
echo "bench: ready (ansible-core $(.venv/bin/python -c 'import ansible.release as r; print(r.__version__)'))"
