"""Shared fixtures: busybox bundles, a private state root, the `ocirt` command, and the host audit.

Runtime tests create real containers (root, real namespaces and mounts). Every
test that does gets `state_root`, whose finalizer force-deletes whatever the
test left and then asserts, through `HostAudit`, that no mount, container
process or state directory outlived it, whether the test passed or failed.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".venv", "collections")
for path in (COLLECTIONS, os.path.join(REPO, "tools")):
    if path not in sys.path:
        sys.path.insert(0, path)

OCIRT = os.path.join(REPO, ".venv", "bin", "ocirt")

import busybox_bundle  # noqa: E402  (tools/, put on the path above)


def mount_points():
    """The set of (mount point, source root) pairs the host sees now."""
    points = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            points.add((fields[4], fields[3]))
    return points


def processes_in_cgroups_named(names):
    """Pids whose cgroup (any hierarchy) ends in one of NAMES: container processes of those ids.

    After pivot_root a container's /proc/PID/root reads "/" from the host, so
    its cgroup is what ties a process to a container.
    """
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % pid) as handle:
                paths = [line.rstrip("\n").split(":", 2)[2] for line in handle]
        except OSError:
            continue
        if any(os.path.basename(path) in names for path in paths if path.startswith("/ocirt")):
            found.append(int(pid))
    return found


def processes_rooted_under(path):
    """Pids whose root or cwd lies under PATH (a container's rootfs, seen from the host)."""
    found = []
    prefix = os.path.realpath(path).rstrip("/") + "/"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for link in ("root", "cwd"):
            try:
                target = os.readlink("/proc/%s/%s" % (name, link))
            except OSError:
                continue
            if (target + "/").startswith(prefix):
                found.append(int(name))
                break
    return found


# Every word passed to `ocirt` per state root: the audit looks for leftover
# cgroups of these ids only, so tests run at the same time elsewhere (other
# state roots) are not blamed on this one.
WORDS_BY_ROOT = {}


def runtime_cgroups():
    """Cgroup directories below the runtime's parent (/ocirt) in every hierarchy."""
    found = set()
    base = "/sys/fs/cgroup"
    for hierarchy in os.listdir(base):
        parent = os.path.join(base, hierarchy, "ocirt")
        if os.path.isdir(parent):
            for dirpath, dirnames, _files in os.walk(parent):
                found.update(os.path.join(dirpath, d) for d in dirnames)
    return found


class HostAudit:
    """What a test may not leave behind: mounts, cgroups, processes inside its bundles, state directories."""

    def __init__(self, state_root, scratch):
        self.state_root = state_root
        self.scratch = scratch
        self.mounts_before = mount_points()
        self.cgroups_before = runtime_cgroups()

    def leftovers(self):
        problems = []
        new_mounts = sorted(mount_points() - self.mounts_before)
        if new_mounts:
            problems.append("mounts left on the host: %s" % new_mounts)
        words = WORDS_BY_ROOT.get(self.state_root, set())
        new_cgroups = sorted(path for path in runtime_cgroups() - self.cgroups_before
                             if os.path.basename(path) in words)
        if new_cgroups:
            problems.append("cgroups left on the host: %s" % new_cgroups)
        pids = sorted(set(processes_rooted_under(self.scratch)) | set(processes_in_cgroups_named(words)))
        if pids:
            problems.append("processes left inside test bundles: %s" % pids)
        if os.path.isdir(self.state_root):
            # "=monitor" is the runtime's cache of the monitor's code, not a container.
            entries = sorted(e for e in os.listdir(self.state_root) if e != "=monitor")
            if entries:
                problems.append("state left in %s: %s" % (self.state_root, entries))
        return problems


def _detaches(args):
    """True for commands whose container keeps the command's stdio after it returns."""
    args = [str(a) for a in args]
    return bool(args) and (args[0] == "create" or (args[0] == "run" and ("-d" in args or "--detach" in args)))


def ocirt_cmd(state_root, *args, **kwargs):
    """Run the installed `ocirt` launcher with --root STATE_ROOT; return CompletedProcess (text).

    A detached container inherits the command's stdout and stderr, as with
    runc: reading them through pipes would wait for the container to exit.
    For create and run --detach they go to files instead, unless the caller
    says where they go.
    """
    check = kwargs.pop("check", True)
    WORDS_BY_ROOT.setdefault(state_root, set()).update(str(a) for a in args)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    argv = [OCIRT, "--root", state_root] + [str(a) for a in args]
    if _detaches(args) and "stdout" not in kwargs and "capture_output" not in kwargs:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.call(argv, stdout=out, stderr=err, **kwargs)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(argv, code, out.read(), err.read())
    else:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        result = subprocess.run(argv, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError("ocirt %s failed (%d): %s%s"
                             % (" ".join(map(str, args)), result.returncode, result.stdout, result.stderr))
    return result


class Ocirt:
    """`ocirt` bound to one state root, with helpers for the common lifecycle steps."""

    def __init__(self, state_root):
        self.root = state_root

    def __call__(self, *args, **kwargs):
        return ocirt_cmd(self.root, *args, **kwargs)

    def state(self, container_id):
        return json.loads(self("state", container_id).stdout)

    def run(self, bundle, container_id=None, **kwargs):
        """`ocirt run` in the foreground; returns CompletedProcess (check=False by default)."""
        kwargs.setdefault("check", False)
        return self("run", "--bundle", bundle, container_id or "run-" + uuid.uuid4().hex[:8], **kwargs)

    def ids(self):
        return sorted(s["id"] for s in json.loads(self("list", "--format", "json").stdout))


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


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="runtime tests create real containers and need root")
        for item in items:
            if "tests/runtime" in str(item.fspath):
                item.add_marker(skip)
