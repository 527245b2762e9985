"""What each module's AnsiballZ payload ships of ours, built by ansible's own module_common as a task builds it.

The controller parses every module_utils file a module's imports reach (lazy
ones too) on every task of every playbook run; that build was most of a task's
cost (issue 20, bench/README.md). These bounds are structural, never times:
files that must stay out of a payload, and a ceiling on the number of our
files per module, set from bench/bench_payload.py's result (measured + 3, so
that one new small file passes and a new edge into another layer does not).
"""
import os
import sys

import pytest

from helpers import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_payload  # noqa: E402  pylint: disable=wrong-import-position

from test_import_rules import PACKAGE, load_imports, read_sources  # noqa: E402

# Our module_utils files per module's payload, at most (measured 2026-12-05 at 7dd7a4c + 3).
MAX_FILES = {
    "daemonless.oci.oci_bundle": 69,
    "daemonless.oci.oci_container_state": 72,
    "daemonless.oci.oci_containers": 87,
    "daemonless.oci.oci_container_exec": 57,
    "daemonless.oci.oci_container_info": 67,
}
# What a module must not ship: the parts of other layers its work never runs.
NEVER = {
    "daemonless.oci.oci_bundle": ("_ansible/container_state.py", "_ansible/networks.py", "_ansible/reconcile.py",
                                  "_ansible/secrets.py", "_ansible/supervision.py", "_ansible/logs.py",
                                  "_network/attachment.py", "_network/cni.py", "_network/conflist.py",
                                  "_image/client.py", "_image/pull.py"),
    "daemonless.oci.oci_container_state": ("_bundle/", "_image/store.py", "_image/client.py", "_image/pull.py",
                                           "_image/reference.py", "_ansible/selection.py", "_ansible/bundle_task.py"),
    "daemonless.oci.oci_containers": ("_image/client.py", "_image/pull.py", "_ansible/selection.py"),
    "daemonless.oci.oci_container_exec": ("_network/attachment.py", "_network/cni.py", "_ansible/networks.py", "_ansible/reconcile.py",
                                          "_image/store.py", "_ansible/container_state.py"),
    "daemonless.oci.oci_container_info": ("_bundle/", "_image/store.py", "_ansible/container_state.py",
                                          "_ansible/reconcile.py"),
}


@pytest.fixture(scope="module")
def payloads():
    if not os.path.isdir(bench_payload.COLLECTIONS):
        pytest.skip("no %s: run `make venv`" % bench_payload.COLLECTIONS)
    return bench_payload.measure(tuple(MAX_FILES), rounds=1)


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
    for users_of. (It still ships lifecycle.py for `force`, which deletes the bundle's containers.)"""
    files = payloads["daemonless.oci.oci_bundle"]["files"]
    assert "_runtime/state.py" in files and "_bundle/bundle.py" in files
    assert not [f for f in files if f.startswith("_network/") and f not in ("_network/__init__.py",
                                                                           "_network/defaults.py")]


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
