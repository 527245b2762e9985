"""What each module's AnsiballZ payload ships of ours, built by ansible's own module_common as a task builds it.

The controller parses every module_utils file a module's imports reach (lazy
ones too) on every task of every playbook run; that build was most of a task's
cost (issue 20, bench/README.md). These bounds are structural, never times:
files that must stay out of a payload, and a ceiling on the number of our
files per module, set from bench/bench_payload.py's result (measured + 3, so
that one new small file passes and a new edge into another layer does not).
"""
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO
from test_import_rules import PACKAGE, load_imports, read_sources

BENCH_PAYLOAD = os.path.join(REPO, "bench", "bench_payload.py")
COLLECTIONS = os.path.join(REPO, ".venv", "collections")

# Our module_utils files per module's payload, at most: measured 2026-12-05 + 3 (before: 77, 69, 83, 67, 63);
# + 1 for the modules that create containers or bundles (_ansible/bytecode.py, the host's cache of compiled
# code), + 1 for those that make containers (_network/hostname.py: the network code imported only when a task or
# a container has a network).
MAX_FILES = {
    "daemonless.oci.oci_bundle": 54 + 1,
    "daemonless.oci.oci_container_state": 73 + 2,
    "daemonless.oci.oci_containers": 87 + 2,
    "daemonless.oci.oci_container_exec": 57,
    "daemonless.oci.oci_container_info": 49,
}
# What creates a container: the modules that only read, signal or delete containers ship none of it.
CREATE = ("_runtime/operations/create.py", "_runtime/operations/run.py", "_runtime/setup/container_init.py",
          "_runtime/setup/seccomp.py", "_runtime/setup/process.py", "_runtime/monitor/monitor.py",
          "_runtime/linux/_syscall_table.py", "_runtime/setup/mounts.py")
# What a module must not ship: the parts of other layers its work never runs.
NEVER = {
    "daemonless.oci.oci_bundle": ("_ansible/container_state.py", "_ansible/networks.py", "_ansible/reconcile.py",
                                  "_ansible/secrets.py", "_ansible/supervision.py", "_ansible/logs.py",
                                  "_network/attachment.py", "_network/cni.py", "_network/conflist.py",
                                  "_image/client.py", "_image/pull.py") + CREATE,
    "daemonless.oci.oci_container_state": ("_bundle/", "_image/store.py", "_image/client.py", "_image/pull.py",
                                           "_image/reference.py", "_ansible/selection.py", "_ansible/bundle_task.py"),
    "daemonless.oci.oci_containers": ("_image/client.py", "_image/pull.py", "_ansible/selection.py"),
    "daemonless.oci.oci_container_exec": ("_network/attachment.py", "_network/cni.py", "_ansible/networks.py", "_ansible/reconcile.py",
                                          "_image/store.py", "_ansible/container_state.py"),
    "daemonless.oci.oci_container_info": ("_bundle/", "_image/store.py", "_ansible/container_state.py",
                                          "_ansible/reconcile.py") + CREATE,
}


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    """{module: {"files": [our module_utils files in its payload], ...}}, from bench/bench_payload.py run in a
    fresh interpreter: ansible's collection loader must own `ansible_collections`, which this process
    imported as plain packages."""
    if not os.path.isdir(COLLECTIONS):
        pytest.skip("no %s: run `make venv`" % COLLECTIONS)
    output = str(tmp_path_factory.mktemp("payload") / "payload.json")
    env = dict((k, v) for k, v in os.environ.items() if k != "PYTHONPATH")
    subprocess.run([sys.executable, BENCH_PAYLOAD, "--rounds", "1", "--json", output, "--module"] + sorted(MAX_FILES),
                   env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
    with open(output) as handle:
        return json.load(handle)["modules"]


@pytest.mark.parametrize("module", sorted(MAX_FILES))
def test_a_payload_ships_only_what_its_module_can_run(payloads, module):
    files = payloads[module]["files"]
    assert files, "%s: no file of ours in the payload: the measurement is broken" % module
    shipped = [f for f in files if f.startswith(NEVER[module]) and not f.endswith("/__init__.py")]
    assert not shipped, "%s ships %s" % (module, shipped)
    assert len(files) <= MAX_FILES[module], "%s ships %d of our files (at most %d):\n%s" % (
        module, len(files), MAX_FILES[module], "\n".join(files))


def test_the_bundle_module_reaches_no_network_or_container_state_code(payloads):
    """oci_bundle's payload is what it runs: the bundle, the image store for image bundles, the state reader
    for users_of, lifecycle.py for `force` (which deletes the bundle's containers), and no more."""
    files = payloads["daemonless.oci.oci_bundle"]["files"]
    assert "_runtime/state.py" in files and "_bundle/bundle.py" in files
    allowed = ("_network/__init__.py", "_network/defaults.py")
    assert not [f for f in files if f.startswith("_network/") and f not in allowed]


def _closure(imports, start):
    seen, todo = set([start]), [start]
    while todo:
        for imp in imports[todo.pop()]:
            if imp.target is not None and imp.target not in seen:
                seen.add(imp.target)
                todo.append(imp.target)
    return seen


@pytest.mark.parametrize("module,allowed", [
    ("_ansible.argument_specs", ("_ansible.argument_specs", "_runtime.defaults", "_network.defaults",
                                 "_image.defaults")),
    ("_ansible.module_support", ("_ansible.module_support", "_runtime.linux.syscalls", "_runtime.linux._libc_ffi",
                                 "_runtime.linux._syscall_numbers", "_runtime.errors")),
], ids=["argument_specs", "module_support"])
def test_what_every_module_imports_is_a_leaf(module, allowed):
    """Every module imports these: whatever they reach, every payload ships."""
    reached = _closure(load_imports(read_sources()), PACKAGE + "." + module)
    extra = sorted(name[len(PACKAGE) + 1:] for name in reached if name[len(PACKAGE) + 1:] not in allowed)
    assert not extra, "%s reaches %s" % (module, extra)


def test_the_cni_path_default_has_one_value():
    """cni.py runs alone (a poststop hook) and keeps its own copy of the default."""
    from ansible_collections.daemonless.oci.plugins.module_utils._network import cni, defaults
    assert cni.DEFAULT_CNI_PATH == defaults.DEFAULT_CNI_PATH
