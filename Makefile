# Development tasks for the daemonless.oci collection.
# GNU make; meant to run as root on Debian 12 (it installs Debian packages).

SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV      := $(CURDIR)/.venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.stamp
DEB_PKGS  := python3-venv python3-cffi-backend busybox-static runc umoci skopeo zstd shellcheck openssh-server sudo \
             systemd-container debootstrap
# Networks (issue 16): the CNI plugins, the dnsname plugin and its dnsmasq, iptables for the plugins' rules.
DEB_PKGS  += containernetworking-plugins golang-github-containernetworking-plugin-dnsname dnsmasq-base iptables
# Tests run their own registries (the CNCF distribution registry); its Debian service is not used.
DEB_PKGS  += docker-registry
# The headers tools/gen_syscall_table.py reads: the test that the committed tables are current needs them.
DEB_PKGS  += linux-libc-dev linux-libc-dev-armhf-cross linux-libc-dev-ppc64el-cross linux-libc-dev-s390x-cross \
             linux-libc-dev-riscv64-cross linux-libc-dev-mips64el-cross linux-libc-dev-mipsel-cross \
             linux-libc-dev-powerpc-cross linux-libc-dev-hppa-cross linux-libc-dev-m68k-cross linux-libc-dev-sh4-cross

# `make test` runs: $(PYTEST) $(PYTEST_FLAGS) $(TEST_PATHS)
# Extend with e.g. `make test TEST_PATHS="tests/unit tests/functional"`.
PYTEST       := PYTHONPATH=$(VENV)/collections $(PY) -m pytest
PYTEST_FLAGS ?= -v -rs -p no:cacheprovider --durations=25
TEST_PATHS   ?= tests/unit tests/runtime tests/multihost

.PHONY: venv bytecode ffi demo check lint test units sanity integration molecule docs docs-check bench clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt Makefile tools/install_launcher.py
	@missing=; \
	for p in $(DEB_PKGS); do \
	  dpkg -s "$$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) tools/install_launcher.py $(CURDIR) $(VENV)
	$(PY) -m compileall -q plugins
	touch $@

# PYTHONDONTWRITEBYTECODE is set in this environment, so nothing writes .pyc
# files at import time; refresh them (cheap when up to date) before use.
bytecode: venv
	@$(PY) -m compileall -q plugins

ffi: venv
	$(PY) tools/gen_ffi.py

demo: venv bytecode
	bash tools/demo.sh

# Before a commit, as any user, in seconds: lint (ruff), types (mypy on the modules with hints) and
# the unit tests but the slow generated ones. No root, no container; tests that need root skip.
# It uses the venv as it is (`make venv` makes it, once, as root); the caches go to the user's own
# cache directory, since the venv may be root's.
CHECK_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/daemonless-oci
check: lint
	$(PYTEST) -q -rs -p no:cacheprovider -m "not slow" tests/unit

lint:
	@test -x $(VENV)/bin/ruff -a -x $(VENV)/bin/mypy || { echo "make lint: no ruff or mypy in $(VENV): run 'make venv' (as root) first" >&2; exit 1; }
	$(VENV)/bin/ruff check --cache-dir $(CHECK_CACHE)/ruff .
	$(PY) -m mypy --cache-dir $(CHECK_CACHE)/mypy

# The whole suite: lint (ruff, mypy), the pytest suites (unit and real containers), the modules through
# ansible-test integration, the role through molecule, the generated docs, then ansible-test sanity.
test: venv lint units integration molecule docs-check sanity

units: venv bytecode
	$(PYTEST) $(PYTEST_FLAGS) $(TEST_PATHS)

sanity: venv
	bash tools/ansible_test.sh sanity --venv --python 3.11

# The role through its molecule scenario on localhost (converge, idempotence, verify, cleanup).
molecule: venv bytecode
	PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(VENV)/collections $(VENV)/bin/molecule test -s default

# The module reference in docs/modules/ is generated from the modules' DOCUMENTATION.
docs: venv
	$(PY) tools/gen_module_docs.py

docs-check: venv
	$(PY) tools/gen_module_docs.py --check

# The modules through real ansible-playbook runs on localhost (real containers).
integration: venv
	bash tools/ansible_test.sh integration --venv --python 3.11 --allow-destructive

# Benchmarks against runc, crun and podman (not part of the tests: timing is never asserted).
bench: venv bytecode
	bash bench/setup.sh
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf --one-file-system build
	rm -rf $(VENV)
