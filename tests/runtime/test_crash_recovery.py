"""Crash recovery: a create killed at every phase, a state file that cannot be read, a full disk.

`ocirt create` dies by SIGKILL at the phase OCIRT_FAILPOINT names (create.py's
_failpoint). Afterwards `ocirt state` must tell the truth (stopped; creating
only while the container's process really is alive; never created or running),
and `ocirt delete --force` must leave no process, cgroup, mount or state
directory; the fixtures' host audit checks the same once more. A state file
that is garbage, truncated, empty, missing or of the wrong shape must give a
clear error that points to delete --force, which then removes the container's
processes (found through its default cgroup) and everything else. A full (or
nearly full) state root must fail create with a clear error and leave nothing,
or leave a container whose state can be read.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from helpers import alive, cgroup_dirs, new_id, pid_namespace_of, pids_in_pid_namespace, state_record

PHASES = ["after-state", "after-fork", "before-cgroups", "after-cgroups", "during-mounts", "before-created"]


def cgroup_procs(path):
    pids = set()
    for directory in cgroup_dirs(path):
        try:
            with open(os.path.join(directory, "cgroup.procs")) as handle:
                pids.update(int(line) for line in handle if line.strip())
        except OSError:
            continue
    return sorted(pids)


def assert_clean_error(result, *needles):
    assert result.returncode not in (0, -9), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("ocirt: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, "error does not say %r: %r" % (needle, result.stderr)


def kill_cgroup(path):
    """Last resort after a failed assertion: end the processes of the test's own container cgroup PATH
    (a unique id) and remove its directories, so the host is left clean either way."""
    for dummy in range(3):
        for pid in cgroup_procs(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for directory in sorted(cgroup_dirs(path), key=len, reverse=True):
            for attempt in range(200):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
        if not cgroup_dirs(path):
            return


def assert_gone(ocirt, container_id, pid=0, start_time=None, namespace=None, cgroup_path=None):
    """Nothing of the container is left: state, process, its pid namespace, its cgroup."""
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))
    result = ocirt("state", container_id, check=False)
    assert_clean_error(result, "container %s: does not exist" % container_id)
    assert container_id not in ocirt.ids()
    if pid:
        assert not alive(pid, start_time), "process %d of %s survived" % (pid, container_id)
    if namespace is not None:
        assert pids_in_pid_namespace(namespace) == []
    assert cgroup_dirs(cgroup_path or "/ocirt/" + container_id) == []


# --------------------------------------------------------------------------
# 1. create killed at each phase


def state_tells_the_truth(ocirt, container_id, attempts=5):
    """`ocirt state` works and says stopped, or creating while the recorded process is really alive.

    Returns the status. The process of a dying create exits on its own soon after (its
    channel is closed): a "creating" whose process has gone since is asked again.
    """
    for dummy in range(attempts):
        state = ocirt.state(container_id)
        record = state_record(ocirt.root, container_id) or {}
        status = state["status"]
        assert status in ("creating", "stopped"), "a killed create is reported %s" % status
        if status == "stopped":
            assert state["pid"] == 0
            assert not alive(record.get("pid"), record.get("pidStartTime")), (state, record)
            return status
        assert state["pid"] == record.get("pid") and state["pid"] > 0, (state, record)
        if alive(record["pid"], record.get("pidStartTime")):
            return status
        time.sleep(0.05)
    raise AssertionError("container %s: state keeps saying creating for a process that is gone" % container_id)


@pytest.mark.parametrize("phase", PHASES)
def test_create_killed_at_a_phase_then_state_and_delete_force(ocirt, make_bundle, phase):
    bundle = make_bundle(["sleep", "100"])
    container_id = new_id("fp")
    env = dict(os.environ, OCIRT_FAILPOINT=phase)
    try:
        result = ocirt("create", "--bundle", bundle, container_id, check=False, env=env)
        assert result.returncode in (-9, 137), "create was not killed at %s: %r" % (phase, result)
        record = state_record(ocirt.root, container_id)
        assert record is not None and record["id"] == container_id, record
        pid, start_time = record.get("pid") or 0, record.get("pidStartTime")
        namespace = pid_namespace_of(pid) if alive(pid, start_time) else None

        status = state_tells_the_truth(ocirt, container_id)
        listed = dict((s["id"], s["status"]) for s in json.loads(ocirt("list", "--format", "json").stdout))
        assert listed.get(container_id) in ("creating", "stopped"), listed
        started = ocirt("start", container_id, check=False)
        assert_clean_error(started, "cannot start a container that is")
        if phase == "before-created":
            # The process finished setting up and waits on the exec fifo: alive, and honestly "creating".
            assert status == "creating"
            assert cgroup_procs("/ocirt/" + container_id) == [pid]

        deleted = ocirt("delete", "--force", container_id, check=False)
        assert deleted.returncode == 0, deleted
        assert_gone(ocirt, container_id, pid, start_time, namespace)
        # Deleting again is a success, as with runc.
        assert ocirt("delete", "--force", container_id, check=False).returncode == 0
    finally:
        kill_cgroup("/ocirt/" + container_id)


@pytest.mark.parametrize("phase", ["after-cgroups", "during-mounts", "before-created"])
def test_create_killed_with_a_cgroups_path_it_made_leaves_no_cgroup(ocirt, make_bundle, phase):
    """linux.cgroupsPath naming directories that did not exist: create made them, so a delete
    --force after a crash removes them as a normal delete would."""
    top = new_id("/ocirt-crash")
    path = top + "/ctr"
    bundle = make_bundle(["sleep", "100"], config={"linux": {"cgroupsPath": path}})
    container_id = new_id("fpcg")
    env = dict(os.environ, OCIRT_FAILPOINT=phase)
    try:
        result = ocirt("create", "--bundle", bundle, container_id, check=False, env=env)
        assert result.returncode in (-9, 137), result
        assert cgroup_dirs(path), "create died after making the cgroup, yet there is none"
        state_tells_the_truth(ocirt, container_id)
        assert ocirt("delete", "--force", container_id, check=False).returncode == 0
        assert_gone(ocirt, container_id, cgroup_path=path)
        assert cgroup_dirs(top) == [], "create made %s; delete --force after the crash left it" % top
    finally:
        kill_cgroup(path)
        kill_cgroup(top)


# --------------------------------------------------------------------------
# 2. a state file that cannot be read, for a running container


def corrupt(path, kind, original):
    if kind == "missing":
        os.unlink(path)
        return
    data = {
        "garbage": b"\x00\xff\xfe garbage {{{ \x80",
        "truncated": original[:len(original) // 2],
        "empty": b"",
        "json-list": b"[]",
        "json-null": b"null",
        "json-string": b'"running"',
        "wrong-types": json.dumps({"id": "x", "status": "running", "pid": "12", "pidStartTime": [],
                                   "cgroup": "nonsense", "namespaces": 7}).encode(),
    }[kind]
    with open(path, "wb") as handle:
        handle.write(data)


CORRUPTIONS = ["garbage", "truncated", "empty", "missing", "json-list", "json-null", "json-string", "wrong-types"]


@pytest.mark.parametrize("monitored", [False, True], ids=["plain", "monitored"])
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_unreadable_state_of_a_running_container(ocirt, make_bundle, kind, monitored):
    neighbour = new_id("neighbour")
    ocirt("run", "--detach", "--bundle", make_bundle(["sleep", "100"]), neighbour)
    container_id = new_id("corrupt")
    bundle = make_bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    try:
        if monitored:
            ocirt("run", "--detach", "--bundle", bundle, container_id)
        else:
            ocirt("create", "--bundle", bundle, container_id)
            ocirt("start", container_id)
        state = ocirt.state(container_id)
        assert state["status"] == "running"
        record = state_record(ocirt.root, container_id)
        pid, start_time = record["pid"], record["pidStartTime"]
        namespace = pid_namespace_of(pid)
        monitor = record.get("monitor") or {}
        for dummy in range(500):
            if len(pids_in_pid_namespace(namespace)) == 3:
                break
            time.sleep(0.01)
        assert len(pids_in_pid_namespace(namespace)) == 3  # the shell and its two sleeps
        state_path = os.path.join(ocirt.root, container_id, "state.json")
        with open(state_path, "rb") as handle:
            original = handle.read()
        corrupt(state_path, kind, original)

        result = ocirt("state", container_id, check=False)
        assert_clean_error(result, "container %s" % container_id, "delete --force")
        assert "unreadable" in result.stderr or (kind == "missing" and "missing" in result.stderr), result.stderr
        # One broken container does not break the others' commands.
        listing = ocirt("list", "--format", "json", check=False)
        assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing
        assert neighbour in [s["id"] for s in json.loads(listing.stdout)]
        for command in (["kill", container_id, "KILL"], ["start", container_id], ["delete", container_id]):
            refused = ocirt(*command, check=False)
            assert_clean_error(refused, "container %s" % container_id)
        assert alive(pid, start_time)  # none of those touched it

        deleted = ocirt("delete", "--force", container_id, check=False)
        assert deleted.returncode == 0, deleted
        assert_gone(ocirt, container_id, pid, start_time, namespace)
        if monitor:
            for dummy in range(500):
                if not alive(monitor["pid"], monitor.get("startTime")):
                    break
                time.sleep(0.01)
            assert not alive(monitor["pid"], monitor.get("startTime")), "the monitor outlived delete --force"
        assert ocirt.state(neighbour)["status"] == "running"
    finally:
        kill_cgroup("/ocirt/" + container_id)
        # After a failed delete --force, the state directory goes by hand: the audit would blame the next step.
        shutil.rmtree(os.path.join(ocirt.root, container_id), ignore_errors=True)
        ocirt("delete", "--force", neighbour, check=False)


def test_delete_force_with_unreadable_state_waits_for_the_monitor(ocirt, make_bundle):
    """With the state unreadable, delete --force kills the container through its cgroup; its monitor
    then records the exit in the state directory. Repeated, so that a delete racing the monitor's
    last writes (rmdir: Directory not empty) shows: every delete must succeed and leave nothing."""
    bundle = make_bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    failures = []
    for attempt in range(15):
        container_id = new_id("monrace%d" % attempt)
        try:
            ocirt("run", "--detach", "--bundle", bundle, container_id)
            record = state_record(ocirt.root, container_id)
            monitor = record["monitor"]
            with open(os.path.join(ocirt.root, container_id, "state.json"), "wb") as handle:
                handle.write(b"\x00garbage")
            deleted = ocirt("delete", "--force", container_id, check=False)
            if deleted.returncode != 0 or os.path.lexists(os.path.join(ocirt.root, container_id)):
                failures.append((attempt, deleted.returncode, deleted.stderr.strip().splitlines()[-1:]))
            for dummy in range(500):
                if not alive(monitor["pid"], monitor.get("startTime")):
                    break
                time.sleep(0.01)
            assert not alive(record["pid"], record["pidStartTime"])
            assert not alive(monitor["pid"], monitor.get("startTime"))
        finally:
            kill_cgroup("/ocirt/" + container_id)
            shutil.rmtree(os.path.join(ocirt.root, container_id), ignore_errors=True)
    assert not failures, "delete --force failed or left the state directory: %s" % failures


# --------------------------------------------------------------------------
# 3. a full state root


@pytest.fixture
def tiny_state_root(ocirt):
    """The test's state root on a 256 KiB tmpfs (unmounted afterwards, before the fixtures' audit)."""
    os.makedirs(ocirt.root, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0711", "tmpfs", ocirt.root], check=True)
    try:
        yield ocirt.root
    finally:
        for name in os.listdir(ocirt.root):
            if name != "fill" and not name.startswith("="):
                ocirt("delete", "--force", name, check=False)
        umounted = subprocess.run(["umount", ocirt.root], check=False)
        if umounted.returncode != 0:
            subprocess.run(["umount", "-l", ocirt.root], check=False)


def fill(root, leave_free):
    """Fill ROOT's file system so that about LEAVE_FREE bytes stay available; return what is available."""
    path = os.path.join(root, "fill")
    if os.path.exists(path):
        os.unlink(path)
    vfs = os.statvfs(root)
    size = max(0, vfs.f_bavail * vfs.f_frsize - leave_free)
    with open(path, "wb") as handle:
        for offset in range(0, size, 4096):
            try:
                handle.write(b"\0" * min(4096, size - offset))
                handle.flush()
            except OSError:
                break
    vfs = os.statvfs(root)
    return vfs.f_bavail * vfs.f_frsize


def test_create_on_a_full_state_root_fails_cleanly(tiny_state_root, ocirt, make_bundle):
    bundle = make_bundle(["sleep", "100"])
    assert fill(tiny_state_root, 0) == 0
    container_id = new_id("full")
    try:
        result = ocirt("create", "--bundle", bundle, container_id, check=False)
        assert_clean_error(result, "No space left on device")
        assert sorted(os.listdir(tiny_state_root)) == ["fill"]
        assert_gone(ocirt, container_id)
    finally:
        kill_cgroup("/ocirt/" + container_id)


def test_create_on_a_nearly_full_state_root_never_leaves_a_truncated_state(tiny_state_root, ocirt, make_bundle):
    """At each amount of free space create either fails cleanly, leaving nothing, or succeeds with a
    state that reads back whole (a short write must never be renamed into place)."""
    bundle = make_bundle(["sleep", "100"], config={"annotations": {"padding": "p" * 20000}})
    outcomes = []
    for free_kib in range(36, 104, 4):
        container_id = new_id("nearfull")
        try:
            fill(tiny_state_root, free_kib * 1024)
            result = ocirt("create", "--bundle", bundle, container_id, check=False)
            if result.returncode != 0:
                # (How it reports ENOSPC is the full-disk test's business: here, nothing may be left.)
                assert result.returncode != -9 and "No space left on device" in result.stderr, result
                assert_gone(ocirt, container_id)
                outcomes.append((free_kib, "refused"))
                continue
            state = ocirt("state", container_id, check=False)
            assert state.returncode == 0, "free %d KiB: create succeeded but its state cannot be read: %s" % (
                free_kib, state.stderr)
            assert json.loads(state.stdout)["status"] == "created"
            assert json.loads(state.stdout)["annotations"] == {"padding": "p" * 20000}
            os.unlink(os.path.join(tiny_state_root, "fill"))  # room for delete's own writes
            assert ocirt("delete", "--force", container_id, check=False).returncode == 0
            assert_gone(ocirt, container_id)
            outcomes.append((free_kib, "created"))
        finally:
            ocirt("delete", "--force", container_id, check=False)
            kill_cgroup("/ocirt/" + container_id)
    assert ("refused" in dict(outcomes).values()) and ("created" in dict(outcomes).values()), outcomes
