#!/usr/bin/env bash
# Runs `ansible-test ARGS...` (sanity, units, integration) on the collection
# as committed plus uncommitted files: ansible-test wants the collection
# under a real .../ansible_collections/daemonless/oci directory outside any
# other git checkout, so the files are copied to a temporary one.
# Example: tools/ansible_test.sh sanity --venv --python 3.11 --test pep8
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
py=$repo/.venv/bin/python

# ansible-test --venv downloads a get-pip script from a host these machines
# cannot reach; it accepts a copy saved in its cache, and ours bootstraps pip
# from the interpreter's ensurepip instead.
pip_version=$("$py" -c '
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip=.([0-9.]+).", src).group(1))')
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
cmp -s tools/offline_get_pip.py "$cache" || install -D -m 0644 tools/offline_get_pip.py "$cache"

work=$(mktemp -d /tmp/ocirt-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/daemonless/oci
mkdir -p "$dest"
git ls-files -z -co --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && [ "${f#build/}" = "$f" ] && printf '%s\0' "$f"; done \
  | tar -c --null -T - -f - | tar -x -f - -C "$dest"
cd "$dest"
"$repo/.venv/bin/ansible-test" "$@"
