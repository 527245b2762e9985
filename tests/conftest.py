"""Shared fixtures: busybox bundles, a private state root, the `ocirt` command, and the host audit.

Runtime tests create real containers (root, real namespaces and mounts). Every
test that does gets `state_root`, whose finalizer force-deletes whatever the
test left and then asserts, through `HostAudit`, that no mount, container
process or state directory outlived it, whether the test passed or failed.

The helpers these fixtures use, and that the test files share, are in
helpers.py (`from helpers import poll, new_id, ...`).
"""
import os
import shutil
import stat
import sys
import uuid

import pytest

from helpers import COLLECTIONS, REPO, HostAudit, Ocirt, ocirt_cmd

for path in (COLLECTIONS, os.path.join(REPO, "tools")):
    if path not in sys.path:
        sys.path.insert(0, path)

import busybox_bundle  # noqa: E402  (tools/, put on the path above)


@pytest.fixture
def scratch(tmp_path):
    return str(tmp_path)


@pytest.fixture
def state_root(scratch):
    """A private state root; afterwards everything in it is force-deleted and the host audited."""
    root = "/run/ocirt-test-%s" % uuid.uuid4().hex[:12]
    audit = HostAudit(root, scratch)
    yield root
    if os.path.isdir(root):
        # `list` knows the ids of containers stored under a hashed directory name too.
        listed = ocirt_cmd(root, "list", "-q", check=False).stdout.split()
        named = [n for n in os.listdir(root) if not n.startswith("=")]
        for container_id in sorted(set(listed) | set(named)):
            ocirt_cmd(root, "delete", "--force", container_id, check=False)
    problems = audit.leftovers()
    shutil.rmtree(root, ignore_errors=True)
    assert not problems, "; ".join(problems)


@pytest.fixture
def ocirt(state_root):
    return Ocirt(state_root)


@pytest.fixture
def make_bundle(scratch):
    """make_bundle(args, config=None, name=None) -> bundle path with a fresh busybox rootfs."""
    counter = [0]

    def build(args=None, config=None, name=None):
        counter[0] += 1
        path = os.path.join(scratch, name or "bundle%d" % counter[0])
        busybox_bundle.build_bundle(path, args=args, config=config or {})
        return path
    return build


@pytest.fixture
def userns_scratch(scratch):
    """Let a user-namespaced container's root (host uid 100000) reach the bundles.

    pytest makes its temporary directories 0700: the container's root could not
    even look up its rootfs. Search permission (o+x) is added on the scratch
    directory and its parents while the test runs, then the modes are restored.
    """
    changed = []
    path = scratch
    while path != "/":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(path, mode | stat.S_IXOTH)
            changed.append((path, mode))
        path = os.path.dirname(path)
    try:
        yield scratch
    finally:
        for path, mode in changed:
            os.chmod(path, mode)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of generated cases (fuzz, hypothesis); `make check` skips them")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="runtime tests create real containers and need root")
        for item in items:
            if "tests/runtime" in str(item.fspath):
                item.add_marker(skip)
