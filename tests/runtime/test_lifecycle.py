"""The container lifecycle through the installed `ocirt` command, with real busybox containers.

create -> created -> start -> running -> kill -> stopped -> delete, every
wrong-state error, the state JSON, signals, --pid-file, run, list, concurrent
commands, the --log file, and a comparison with Debian's runc on one bundle.

Commands that leave a container process behind (create, run --detach) are run
with stdout/stderr going to files: the container inherits them, so a pipe
would stay open (and `communicate` would wait) for as long as it lives.

Waiting is always a bounded poll (POLL_TRIES x POLL_DELAY) that fails with
a message; nothing asserts on durations.
"""
import calendar
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from helpers import (
    OCIRT, POLL_DELAY, POLL_TRIES, assert_error, cmdline, new_id, pid_namespace_of, pids_in_pid_namespace, poll,
    proc_start_time, proc_state, state_path, wait_gone, wait_status)

SLEEP = ["sleep", "100"]
# pid 1 of a pid namespace ignores signals it has no handler for (even from
# the host), so a container that must die of TERM installs a handler.
TERM_TRAP = ["sh", "-c", 'trap "exit 7" TERM; while :; do sleep 0.1; done']

RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def wait_process(proc, what):
    """The return code of the child PROC, waiting a bounded number of polls."""
    poll(lambda: proc.poll() is not None, what)
    return proc.returncode


def parse_rfc3339(text):
    """(seconds since epoch, nanoseconds) of an RFC 3339 timestamp; fails on anything else."""
    match = RFC3339.match(text or "")
    assert match, "not an RFC 3339 timestamp: %r" % (text,)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = (match.group(7) or ".")[1:]
    return seconds, int(fraction.ljust(9, "0")) if fraction else 0


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

class PidNamespaceGuard:
    """Pins each container's pid namespace (an open fd, so its inode cannot be
    reused) and, at teardown, makes sure no process is left in any of them.

    The conftest audit looks for processes whose root lies under the test's
    bundles, but a pivot_root'ed container process shows "/" as its root from
    the host, so it does not see them; this guard does.
    """

    def __init__(self):
        self.pinned = {}  # key -> (fd, description)

    def track(self, pid, description):
        fd = os.open("/proc/%d/ns/pid" % pid, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in self.pinned:
            os.close(fd)
        else:
            self.pinned[key] = (fd, description)
        return key

    def finish(self):
        problems = []
        try:
            host = pid_namespace_of(os.getpid())
            for key, (_fd, description) in self.pinned.items():
                if key == host:
                    continue
                left = []
                for dummy in range(POLL_TRIES):
                    left = pids_in_pid_namespace(key)
                    if not left:
                        break
                    time.sleep(POLL_DELAY)
                if left:
                    problems.append("%s: processes left: %s" % (
                        description, ["%d %s" % (pid, cmdline(pid)) for pid in left]))
                    for pid in left:  # our own container's processes (pinned namespace)
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
        finally:
            for fd, _description in self.pinned.values():
                os.close(fd)
            self.pinned.clear()
        return problems


@pytest.fixture(autouse=True)
def pidns_guard():
    """Autouse, so it is set up before `state_root` and checked after its force-delete."""
    guard = PidNamespaceGuard()
    yield guard
    problems = guard.finish()
    assert not problems, "container processes outlived the test: " + "; ".join(problems)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return "<rc=%d stdout=%r stderr=%r>" % (self.returncode, self.stdout, self.stderr)


class Runtime:
    """Lifecycle helpers over the `ocirt` fixture (one state root)."""

    def __init__(self, ocirt, scratch, guard):
        self.ocirt = ocirt
        self.root = ocirt.root
        self.logs = os.path.join(scratch, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.guard = guard

    def __call__(self, *args, **kwargs):
        return self.ocirt(*args, **kwargs)

    def output_files(self, tag):
        base = os.path.join(self.logs, "%s-%s" % (tag, uuid.uuid4().hex[:6]))
        return base + ".out", base + ".err"

    def detached(self, *args, **kwargs):
        """Run an ocirt command whose container outlives it; stdio goes to files."""
        check = kwargs.pop("check", True)
        out_path, err_path = self.output_files(args[0])
        with open(out_path, "w") as out, open(err_path, "w") as err:
            completed = self.ocirt(*args, check=False, capture_output=False, stdout=out, stderr=err,
                                   **kwargs)
        with open(out_path) as out, open(err_path) as err:
            result = Result(completed.returncode, out.read(), err.read())
        result.out_path = out_path
        if check and result.returncode != 0:
            raise AssertionError("ocirt %s failed: %r" % (" ".join(map(str, args)), result))
        return result

    def create(self, bundle, cid, *extra, **kwargs):
        result = self.detached("create", "--bundle", bundle, *(list(extra) + [cid]), **kwargs)
        if result.returncode == 0:
            self.track(cid)
        return result

    def track(self, cid):
        pid = self.state(cid)["pid"]
        if pid > 0 and proc_start_time(pid) is not None:
            self.guard.track(pid, "container %s" % cid)
        return pid

    def state(self, cid):
        return self.ocirt.state(cid)

    def status(self, cid):
        return self.state(cid)["status"]

    def wait_status(self, cid, wanted):
        return wait_status(self.ocirt, cid, wanted)

    def status_if_exists(self, cid):
        """The status, or None while the id does not exist (yet, or any more)."""
        result = self("state", cid, check=False)
        return json.loads(result.stdout)["status"] if result.returncode == 0 else None

    def running(self, bundle, cid):
        self.create(bundle, cid)
        self("start", cid)
        assert self.status(cid) == "running"
        return self.state(cid)


class ForegroundRun:
    """`ocirt run` in the foreground as a child process, cleaned up even when the test fails."""

    def __init__(self, rt, bundle, cid):
        self.rt = rt
        self.cid = cid
        self.out_path, self.err_path = rt.output_files("run")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([OCIRT, "--root", rt.root, "run", "--bundle", bundle, cid],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def __enter__(self):
        rt, cid = self.rt, self.cid
        try:
            poll(lambda: rt.status_if_exists(cid) == "running", "container %s to run" % cid)
            rt.track(cid)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.rt("delete", "--force", self.cid, check=False)
            self.proc.kill()
            self.proc.wait()

    def wait(self):
        return wait_process(self.proc, "ocirt run %s to return" % self.cid)

    @property
    def stderr(self):
        with open(self.err_path) as handle:
            return handle.read()


@pytest.fixture
def rt(ocirt, scratch, pidns_guard):
    return Runtime(ocirt, scratch, pidns_guard)


# --------------------------------------------------------------------------
# 1. Lifecycle transitions
# --------------------------------------------------------------------------

def test_each_lifecycle_transition(rt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo program-ran; exec sleep 100"])
    cid = new_id()

    created = rt.create(bundle, cid)
    state = rt.state(cid)
    assert state["status"] == "created"
    pid = state["pid"]
    assert pid > 0
    start_time = proc_start_time(pid)
    assert start_time is not None, "the created container's process %d is not alive" % pid
    # Still the runtime's (Python) process, waiting; the program has not run.
    args = cmdline(pid)
    assert any(arg.endswith("ocirt") for arg in args) and "create" in args, args
    assert "python" in os.path.basename(os.readlink("/proc/%d/exe" % pid))
    assert proc_state(pid) in ("S", "D"), "created process should be blocked waiting for start"
    with open(created.out_path) as handle:
        assert "program-ran" not in handle.read()

    rt("start", cid)
    state = rt.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == pid
    assert proc_start_time(pid) == start_time
    # Now the container's own program (the shell exec'd sleep).
    poll(lambda: cmdline(pid) == ["sleep", "100"], "pid %d to exec the container's program" % pid)
    assert os.path.basename(os.readlink("/proc/%d/exe" % pid)) == "busybox"
    poll(lambda: "program-ran" in open(created.out_path).read(), "the program's output")

    rt("kill", cid, "KILL")
    state = rt.wait_status(cid, "stopped")
    assert state["pid"] == 0
    wait_gone(pid, start_time)

    rt("delete", cid)
    result = rt("state", cid, check=False)
    assert_error(result, cid, "does not exist")
    assert rt.ocirt.ids() == []
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_kill_a_created_container_stops_it(rt, make_bundle):
    cid = new_id()
    rt.create(make_bundle(SLEEP), cid)
    pid = rt.state(cid)["pid"]
    start_time = proc_start_time(pid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    wait_gone(pid, start_time)
    rt("delete", cid)
    assert rt.ocirt.ids() == []


def test_create_with_relative_bundle_records_absolute_path(rt, make_bundle, scratch):
    bundle = make_bundle(SLEEP, name="relbundle")
    cid = new_id()
    rt.create("relbundle", cid, cwd=scratch)
    state = rt.state(cid)
    assert state["bundle"] == bundle
    assert os.path.isabs(state["bundle"])
    assert state["rootfs"] == os.path.join(bundle, "rootfs")


# --------------------------------------------------------------------------
# 2. Wrong-state errors
# --------------------------------------------------------------------------

def test_start_twice_fails(rt, make_bundle):
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    result = rt("start", cid, check=False)
    assert_error(result, cid)
    assert "running" in result.stderr
    assert rt.state(cid)["status"] == "running"
    assert rt.state(cid)["pid"] == state["pid"]


def test_start_a_stopped_container_fails(rt, make_bundle):
    cid = new_id()
    rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    result = rt("start", cid, check=False)
    assert_error(result, cid, "stopped")
    assert rt.status(cid) == "stopped"


def test_start_a_created_container_whose_process_died_fails(rt, make_bundle):
    cid = new_id()
    rt.create(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    result = rt("start", cid, check=False)
    assert_error(result, cid, "stopped")


def test_kill_a_stopped_container_fails(rt, make_bundle):
    cid = new_id()
    rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    result = rt("kill", cid, "KILL", check=False)
    assert_error(result, cid, "stopped")


def test_delete_running_without_force_fails_and_it_keeps_running(rt, make_bundle):
    cid = new_id()
    before = rt.running(make_bundle(SLEEP), cid)
    start_time = proc_start_time(before["pid"])
    result = rt("delete", cid, check=False)
    assert_error(result, cid, "running")
    after = rt.state(cid)
    assert after["status"] == "running"
    assert after["pid"] == before["pid"]
    assert proc_start_time(before["pid"]) == start_time
    assert rt.ocirt.ids() == [cid]


def test_delete_force_on_running_container(rt, make_bundle):
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    pid = state["pid"]
    start_time = proc_start_time(pid)
    rt("delete", "--force", cid)
    assert proc_start_time(pid) != start_time, "delete --force returned with the process alive"
    assert_error(rt("state", cid, check=False), cid, "does not exist")
    assert rt.ocirt.ids() == []


def test_delete_created_without_force_fails(rt, make_bundle):
    # runtime-spec: deleting a container that is not stopped MUST error and
    # MUST have no effect (runc 1.1 deviates: it kills a created container).
    cid = new_id()
    rt.create(make_bundle(SLEEP), cid)
    pid = rt.state(cid)["pid"]
    start_time = proc_start_time(pid)
    result = rt("delete", cid, check=False)
    assert_error(result, cid, "created")
    assert rt.status(cid) == "created"
    assert proc_start_time(pid) == start_time
    rt("delete", "--force", cid)
    assert rt.ocirt.ids() == []


def test_delete_twice_second_fails(rt, make_bundle):
    cid = new_id()
    rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt("delete", cid)
    result = rt("delete", cid, check=False)
    assert_error(result, cid, "does not exist")
    # As runc: --force makes deleting what is already gone a success, so cleanup can be repeated.
    result = rt("delete", "--force", cid, check=False)
    assert result.returncode == 0, result.stderr
    assert rt.ocirt.ids() == []


@pytest.mark.parametrize("command", [["state"], ["start"], ["kill"], ["kill", "--all"], ["delete"]])
def test_unknown_id_is_an_error(rt, command):
    cid = new_id("nosuch")
    result = rt(*(command + [cid]), check=False)
    assert_error(result, cid, "does not exist")
    assert result.stdout == ""
    assert rt.ocirt.ids() == []


# --------------------------------------------------------------------------
# 3. The state JSON
# --------------------------------------------------------------------------

ANNOTATIONS = {"org.example.owner": "lifecycle-test", "com.example/with space": "a b = c"}


def test_state_json_fields(rt, make_bundle):
    bundle = make_bundle(SLEEP, config={"annotations": ANNOTATIONS})
    with open(os.path.join(bundle, "config.json")) as handle:
        config = json.load(handle)
    cid = new_id()
    rt.create(bundle, cid)

    first = rt.state(cid)
    assert first["ociVersion"] == config["ociVersion"]
    assert first["id"] == cid
    assert first["status"] == "created"
    assert isinstance(first["pid"], int) and first["pid"] > 0
    assert os.path.isabs(first["bundle"]) and first["bundle"] == bundle
    assert first["rootfs"] == os.path.join(bundle, "rootfs")
    assert first["annotations"] == ANNOTATIONS
    created = parse_rfc3339(first["created"])
    assert "started" not in first

    second = rt.state(cid)
    assert second == first, "state changed between two calls without a lifecycle step"

    rt("start", cid)
    running = rt.state(cid)
    assert running["created"] == first["created"]
    assert running["status"] == "running"
    started = parse_rfc3339(running.get("started"))
    assert started >= created, "started %s is before created %s" % (running["started"], first["created"])
    for key in ("ociVersion", "id", "pid", "bundle", "rootfs", "annotations"):
        assert running[key] == first[key], key

    rt("kill", cid, "KILL")
    stopped = rt.wait_status(cid, "stopped")
    assert stopped["created"] == first["created"]
    assert stopped["started"] == running["started"]
    assert stopped["pid"] == 0


def test_liveness_is_pid_and_start_time(rt, make_bundle, state_root):
    """A reused pid (simulated: a different recorded start time) is not the container."""
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    pid = state["pid"]
    real_start = proc_start_time(pid)
    path = state_path(state_root, cid)
    with open(path) as handle:
        original = handle.read()
    record = json.loads(original)
    assert record["pidStartTime"] == real_start
    record["pidStartTime"] = real_start + 12345
    try:
        with open(path, "w") as handle:
            json.dump(record, handle)
        state = rt.state(cid)
        assert state["status"] == "stopped"
        assert state["pid"] == 0
        # kill must not signal a process that is not the container's.
        result = rt("kill", cid, "KILL", check=False)
        assert_error(result, cid, "stopped")
        assert proc_start_time(pid) == real_start, "kill signalled a pid that is not the container's"
        assert rt.status(cid) == "stopped"
    finally:
        with open(path, "w") as handle:
            handle.write(original)
    assert rt.status(cid) == "running"
    rt("delete", "--force", cid)
    wait_gone(pid, real_start)


def _remove_cgroup_dirs(record):
    """rmdir, innermost first, the cgroup directories a container record says the runtime made."""
    for directory in sorted(set((record or {}).get("created") or []), key=len, reverse=True):
        try:
            os.rmdir(directory)
        except OSError:
            pass


@pytest.mark.parametrize("cgroup_recorded", [True, False], ids=["with-cgroup", "state-without-cgroup"])
def test_delete_after_pid_reuse_spares_the_new_owner_of_the_pid(rt, make_bundle, state_root,
                                                                cgroup_recorded):
    """The container died and its pid went to an unrelated host process: delete must not touch it.

    state-without-cgroup: the same with a state record that has no "cgroup" (as
    one written before cgroups were recorded), where the runtime falls back to
    the recorded pid and /proc/<pid>/ns paths.
    """
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    stranger = subprocess.Popen(["sleep", "100"], stdin=subprocess.DEVNULL)
    cgroup = None
    try:
        stranger_start = proc_start_time(stranger.pid)
        path = state_path(state_root, cid)
        with open(path) as handle:
            record = json.load(handle)
        assert record["pidStartTime"] != stranger_start
        # What the record reads like once the pid is reused: same numbers, someone else's process.
        record["pid"] = stranger.pid
        record["namespaces"] = dict((kind, "/proc/%d/ns/%s" % (stranger.pid, value.rsplit("/", 1)[1]))
                                    for kind, value in (record.get("namespaces") or {}).items())
        if not cgroup_recorded:
            cgroup = record.pop("cgroup", None)
        with open(path, "w") as handle:
            json.dump(record, handle)
        assert rt.status(cid) == "stopped"
        assert_error(rt("kill", cid, "KILL", check=False), cid, "stopped")
        assert_error(rt("kill", "--all", cid, "KILL", check=False), cid, "stopped")
        rt("delete", cid)
        assert rt.ocirt.ids() == []
        assert proc_start_time(stranger.pid) == stranger_start, \
            "delete killed pid %d, which was no longer the container's" % stranger.pid
    finally:
        stranger.kill()
        stranger.wait()
        _remove_cgroup_dirs(cgroup)  # the runtime could not know about them
    assert state["pid"] > 0


# --------------------------------------------------------------------------
# 4. kill and signals
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "kill"])
def test_kill_signal_forms_kill(rt, make_bundle, sig):
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    start_time = proc_start_time(state["pid"])
    rt("kill", cid, sig)
    rt.wait_status(cid, "stopped")
    wait_gone(state["pid"], start_time)


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_term_reaches_a_trapping_container(rt, make_bundle, sig):
    cid = new_id()
    rt.running(make_bundle(TERM_TRAP), cid)
    rt("kill", cid, sig)
    rt.wait_status(cid, "stopped")


def test_term_is_ignored_by_an_init_without_handler(rt, make_bundle):
    """The contrast that makes the TERM tests meaningful: `sleep` as pid 1 ignores TERM."""
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "TERM")
    # Let a TERM (were it delivered) take effect: a few state polls, not a timed wait.
    for dummy in range(5):
        time.sleep(POLL_DELAY)
        assert rt.status(cid) == "running"
    assert rt.state(cid)["pid"] == state["pid"]


def test_default_signal_is_sigterm(rt, make_bundle):
    """`kill ID` without a signal sends TERM: a foreground `run` then returns the trap's code 7."""
    cid = new_id("fg")
    with ForegroundRun(rt, make_bundle(TERM_TRAP), cid) as run:
        rt("kill", cid)
        code = run.wait()
    assert code == 7, run.stderr
    assert rt.ocirt.ids() == []


def test_kill_unknown_signal_name_is_an_error(rt, make_bundle):
    cid = new_id()
    state = rt.running(make_bundle(SLEEP), cid)
    result = rt("kill", cid, "NOPE", check=False)
    assert_error(result, "NOPE")
    result = rt("kill", cid, "999", check=False)
    assert_error(result, "999")
    after = rt.state(cid)
    assert after["status"] == "running" and after["pid"] == state["pid"]


def _container_pids(rt, cid, at_least, what):
    pid = rt.state(cid)["pid"]
    key = pid_namespace_of(pid)
    assert key != pid_namespace_of(os.getpid())

    def enough_pids():
        pids = pids_in_pid_namespace(key)
        return pids if len(pids) >= at_least else None

    return key, poll(enough_pids, what)


def test_kill_all_kill_reaches_forked_grandchildren(rt, make_bundle):
    cid = new_id()
    rt.running(make_bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"]), cid)
    key, pids = _container_pids(rt, cid, 3, "the container's shell and its two sleeps")
    starts = dict((pid, proc_start_time(pid)) for pid in pids)
    rt("kill", "--all", cid, "KILL")
    rt.wait_status(cid, "stopped")
    for pid, start_time in starts.items():
        wait_gone(pid, start_time)
    poll(lambda: not pids_in_pid_namespace(key), "the container's pid namespace to be empty")


def test_kill_all_signals_every_process_not_just_init(rt, make_bundle):
    """TERM with --all reaches the background sleeps (default action: die) while
    the init, which handles TERM, survives; without --all only the init gets it."""
    script = 'trap "echo trapped" TERM; sleep 1000 & sleep 1001 & while :; do sleep 0.1; done'
    cid = new_id()
    state = rt.running(make_bundle(["sh", "-c", script]), cid)
    init = state["pid"]

    def sleepers():
        key = pid_namespace_of(init)
        found = {}
        for pid in pids_in_pid_namespace(key):
            args = cmdline(pid)
            if args in (["sleep", "1000"], ["sleep", "1001"]):
                found[pid] = proc_start_time(pid)
        return found if len(found) == 2 else None

    background = poll(sleepers, "the two background sleeps")
    rt("kill", cid, "TERM")
    for dummy in range(5):  # a TERM to the init alone must not reach them
        time.sleep(POLL_DELAY)
        for pid, start_time in background.items():
            assert proc_start_time(pid) == start_time, "kill without --all reached pid %d" % pid
    rt("kill", "--all", cid, "TERM")
    for pid, start_time in background.items():
        wait_gone(pid, start_time)
    assert rt.status(cid) == "running"
    assert proc_start_time(init) is not None


# --------------------------------------------------------------------------
# 5. --pid-file, run
# --------------------------------------------------------------------------

def test_create_pid_file(rt, make_bundle, scratch):
    cid = new_id()
    pid_file = os.path.join(scratch, "container.pid")
    rt.create(make_bundle(SLEEP), cid, "--pid-file", pid_file)
    with open(pid_file) as handle:
        content = handle.read()
    assert re.fullmatch(r"[0-9]+", content), "pid file holds %r" % content
    assert int(content) == rt.state(cid)["pid"]
    leftovers = [name for name in os.listdir(scratch) if name.startswith(".container.pid")]
    assert leftovers == [], "temporary pid files left: %s" % leftovers


def test_create_pid_file_relative_to_cwd(rt, make_bundle, scratch):
    cid = new_id()
    bundle = make_bundle(SLEEP)
    rt.create(bundle, cid, "--pid-file", "rel.pid", cwd=scratch)
    with open(os.path.join(scratch, "rel.pid")) as handle:
        assert int(handle.read()) == rt.state(cid)["pid"]


def test_create_failing_late_leaves_nothing(rt, make_bundle, scratch):
    """A pid file that cannot be written fails create after the process exists: nothing may remain."""
    cid = new_id()
    bundle = make_bundle(SLEEP)
    result = rt.create(bundle, cid, "--pid-file", os.path.join(scratch, "no", "such", "dir", "pid"),
                       check=False)
    assert result.returncode != 0
    assert_error(rt("state", cid, check=False), cid, "does not exist")
    assert rt.ocirt.ids() == []
    # No process of ours is still waiting in a created state for this id.
    waiting = [int(p) for p in os.listdir("/proc") if p.isdigit()
               and cid in (cmdline(int(p)) or []) and proc_start_time(int(p)) is not None]
    assert waiting == [], "processes left by a failed create: %s" % waiting


def test_run_detach(rt, make_bundle):
    cid = new_id()
    result = rt.detached("run", "--detach", "--bundle", make_bundle(SLEEP), cid)
    assert result.returncode == 0
    rt.track(cid)
    state = rt.state(cid)
    assert state["status"] == "running"
    assert cmdline(state["pid"]) == SLEEP
    start_time = proc_start_time(state["pid"])
    # Whatever helper process the runtime keeps for a detached container must go with it.
    helper = state.get("monitorPid") or 0
    helper_start = proc_start_time(helper) if helper > 0 else None
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt("delete", cid)
    wait_gone(state["pid"], start_time)
    if helper_start is not None:
        wait_gone(helper, helper_start)
    assert rt.ocirt.ids() == []


@pytest.mark.parametrize("code", [0, 1, 42])
def test_run_exit_code(rt, make_bundle, code):
    result = rt.ocirt.run(make_bundle(["sh", "-c", "exit %d" % code]))
    assert result.returncode == code, result.stderr
    assert rt.ocirt.ids() == []


def test_run_exit_code_of_a_self_killed_container_is_137(rt, make_bundle):
    # Without a pid namespace: pid 1 of its own pid namespace cannot SIGKILL itself.
    namespaces = [{"type": t} for t in ("network", "ipc", "uts", "mount")]
    bundle = make_bundle(["sh", "-c", "kill -9 $$; echo survived; exit 5"],
                         config={"linux": {"namespaces": namespaces}})
    result = rt.ocirt.run(bundle)
    assert result.returncode == 137, (result.stdout, result.stderr)
    assert "survived" not in result.stdout
    assert rt.ocirt.ids() == []


def test_run_exit_code_of_an_externally_killed_container_is_137(rt, make_bundle):
    cid = new_id("fg")
    with ForegroundRun(rt, make_bundle(SLEEP), cid) as run:
        rt("kill", cid, "KILL")
        code = run.wait()
    assert code == 137, run.stderr
    assert rt.ocirt.ids() == []


def test_run_forwards_sigterm_to_the_container(rt, make_bundle):
    cid = new_id("fg")
    with ForegroundRun(rt, make_bundle(TERM_TRAP), cid) as run:
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait()
    assert code == 7, run.stderr
    assert rt.ocirt.ids() == []


def test_run_reports_137_when_its_container_is_force_deleted(rt, make_bundle):
    """Another command's `delete --force` SIGKILLs the container: `run` must still report
    the container's exit (128+9), as `runc run` does, not fail on the vanished state."""
    cid = new_id("fg")
    with ForegroundRun(rt, make_bundle(SLEEP), cid) as run:
        rt("delete", "--force", cid)
        code = run.wait()
    assert code == 137, "run returned %d: %s" % (code, run.stderr)
    assert "does not exist" not in run.stderr
    assert rt.ocirt.ids() == []


def test_run_keep_leaves_a_stopped_container(rt, make_bundle):
    cid = new_id("keep")
    result = rt("run", "--keep", "--bundle", make_bundle(["sh", "-c", "exit 3"]), cid, check=False)
    assert result.returncode == 3
    assert rt.ocirt.ids() == [cid]
    state = rt.state(cid)
    assert state["status"] == "stopped"
    assert state["pid"] == 0
    rt("delete", cid)
    assert rt.ocirt.ids() == []


def test_plain_run_removes_the_container(rt, make_bundle):
    cid = new_id("plain")
    result = rt("run", "--bundle", make_bundle(["true"]), cid, check=False)
    assert result.returncode == 0, result.stderr
    assert rt.ocirt.ids() == []
    assert_error(rt("state", cid, check=False), cid, "does not exist")


# --------------------------------------------------------------------------
# 6. list
# --------------------------------------------------------------------------

def test_list_formats(rt, make_bundle):
    assert rt("list").stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert json.loads(rt("list", "--format", "json").stdout) == []
    assert rt("list", "-q").stdout == ""

    first, second = sorted([new_id("a"), new_id("b")])
    bundle_a = make_bundle(SLEEP)
    bundle_b = make_bundle(SLEEP)
    rt.create(bundle_a, first)
    rt.running(bundle_b, second)
    states = dict((cid, rt.state(cid)) for cid in (first, second))

    lines = rt("list").stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [first, second]
    for row in rows:
        state = states[row[0]]
        assert row[1:5] == [str(state["pid"]), state["status"], state["bundle"], state["created"]]
        assert len(row) == 6
    assert rows[0][2] == "created" and rows[1][2] == "running"
    # The columns line up under the header.
    column = lines[0].index("STATUS")
    assert all(line[column:].startswith(("created", "running")) for line in lines[1:])

    listed = json.loads(rt("list", "--format", "json").stdout)
    assert isinstance(listed, list)
    assert sorted(item["id"] for item in listed) == [first, second]
    for item in listed:
        assert item == states[item["id"]]

    assert rt("list", "-q").stdout.splitlines() == [first, second]
    assert rt("list", "--quiet").stdout.splitlines() == [first, second]


def test_list_shows_stopped_status(rt, make_bundle):
    cid = new_id()
    rt.running(make_bundle(SLEEP), cid)
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rows = [line.split() for line in rt("list").stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [(cid, "0", "stopped")]


# --------------------------------------------------------------------------
# 7. Concurrency
# --------------------------------------------------------------------------

def test_two_containers_at_once(rt, make_bundle):
    one, two = new_id("one"), new_id("two")
    s1 = rt.running(make_bundle(SLEEP), one)
    s2 = rt.running(make_bundle(SLEEP), two)
    assert s1["pid"] != s2["pid"]
    assert pid_namespace_of(s1["pid"]) != pid_namespace_of(s2["pid"])
    assert rt.ocirt.ids() == sorted([one, two])
    start2 = proc_start_time(s2["pid"])
    rt("kill", one, "KILL")
    rt.wait_status(one, "stopped")
    assert rt.status(two) == "running"
    assert proc_start_time(s2["pid"]) == start2
    rt("delete", one)
    assert rt.ocirt.ids() == [two]
    rt("delete", "--force", two)
    assert rt.ocirt.ids() == []


def test_concurrent_create_with_the_same_id(rt, make_bundle, state_root):
    cid = new_id("same")
    bundles = [make_bundle(SLEEP), make_bundle(SLEEP)]
    procs = []
    files = []
    try:
        for bundle in bundles:
            out_path, err_path = rt.output_files("create")
            files.append((out_path, err_path))
            with open(out_path, "w") as out, open(err_path, "w") as err:
                procs.append(subprocess.Popen(
                    [OCIRT, "--root", state_root, "create", "--bundle", bundle, cid],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err))
        codes = [wait_process(proc, "concurrent create %d" % n) for n, proc in enumerate(procs)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    errors = [open(err).read() for _out, err in files]
    assert sorted(code == 0 for code in codes) == [False, True], (codes, errors)
    winner = codes.index(0)
    loser = 1 - winner
    assert "already exists" in errors[loser] and cid in errors[loser], errors[loser]

    rt.track(cid)
    state = rt.state(cid)
    assert state["status"] == "created"
    assert state["bundle"] == bundles[winner]
    assert rt.ocirt.ids() == [cid]
    assert sorted(os.listdir(os.path.join(state_root, cid))) == ["config.json", "exec.fifo", "state.json"]
    # Exactly one container process exists for this id: the winner's init.
    inits = sorted(int(p) for p in os.listdir("/proc") if p.isdigit()
                   and cid in (cmdline(int(p)) or []) and proc_start_time(int(p)) is not None)
    assert inits == [state["pid"]], "processes created for %s: %s" % (cid, inits)

    rt("start", cid)
    assert rt.status(cid) == "running"
    rt("delete", "--force", cid)
    assert rt.ocirt.ids() == []


def test_create_an_existing_id_fails_and_leaves_it_alone(rt, make_bundle):
    cid = new_id("dup")
    rt.create(make_bundle(SLEEP), cid)
    before = rt.state(cid)
    result = rt.create(make_bundle(SLEEP), cid, check=False)
    assert_error(result, cid, "already exists")
    assert rt.state(cid) == before
    assert proc_start_time(before["pid"]) is not None


def _concurrently(rt, *commands):
    procs = [subprocess.Popen([OCIRT, "--root", rt.root] + list(command), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command in commands]
    try:
        for proc in procs:
            wait_process(proc, "ocirt %s" % " ".join(proc.args[3:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return [Result(proc.returncode, out, err)
            for proc, (out, err) in ((proc, proc.communicate()) for proc in procs)]


def test_concurrent_start_exactly_one_wins(rt, make_bundle):
    cid = new_id("cstart")
    rt.create(make_bundle(SLEEP), cid)
    pid = rt.state(cid)["pid"]
    results = _concurrently(rt, ["start", cid], ["start", cid])
    assert sorted(r.returncode == 0 for r in results) == [False, True], results
    loser = [r for r in results if r.returncode != 0][0]
    assert cid in loser.stderr and "running" in loser.stderr
    state = rt.state(cid)
    assert state["status"] == "running" and state["pid"] == pid
    poll(lambda: cmdline(pid) == SLEEP, "the container to exec its program")


def test_concurrent_force_delete_both_succeed_once(rt, make_bundle):
    """The lock serializes them: one deletes, the other finds nothing left, which --force accepts (as runc)."""
    cid = new_id("cdel")
    state = rt.running(make_bundle(SLEEP), cid)
    start_time = proc_start_time(state["pid"])
    results = _concurrently(rt, ["delete", "--force", cid], ["delete", "--force", cid])
    assert [r.returncode for r in results] == [0, 0], results
    assert rt.ocirt.ids() == []
    wait_gone(state["pid"], start_time)


def test_force_delete_of_an_unknown_id_succeeds_like_runc(rt):
    cid = new_id("nosuch")
    result = rt("delete", "--force", cid, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


# --------------------------------------------------------------------------
# 8. Comparison with runc
# --------------------------------------------------------------------------

def find_runc():
    for path in ("/usr/sbin/runc", "/usr/bin/runc"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("runc")


@pytest.fixture
def runc(scratch, pidns_guard):
    path = find_runc()
    if not path:
        pytest.skip("runc is not installed (/usr/sbin/runc, /usr/bin/runc): nothing to compare with")
    root = os.path.join(scratch, "runc-root")
    logs = os.path.join(scratch, "runc-logs")
    os.makedirs(logs, exist_ok=True)
    made = []

    def call(*args, **kwargs):
        detached = kwargs.pop("detached", False)
        if args and args[0] in ("create", "run"):
            made.append(args[-1])
        command = [path, "--root", root] + [str(a) for a in args]
        if detached:
            base = os.path.join(logs, uuid.uuid4().hex[:8])
            with open(base + ".out", "w") as out, open(base + ".err", "w") as err:
                code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False).returncode
            return Result(code, open(base + ".out").read(), open(base + ".err").read())
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    yield call
    for cid in made:
        subprocess.run([path, "--root", root, "delete", "--force", cid], stdin=subprocess.DEVNULL,
                       capture_output=True, check=False)


def test_state_matches_runc(rt, runc, make_bundle):
    bundle = make_bundle(SLEEP, config={"annotations": ANNOTATIONS})
    rid, oid = new_id("runc"), new_id("ocirt")

    result = runc("create", "--bundle", bundle, rid, detached=True)
    assert result.returncode == 0, result
    rstate = json.loads(runc("state", rid).stdout)
    rt.guard.track(rstate["pid"], "runc container %s" % rid)
    rt.create(bundle, oid)
    ostate = rt.state(oid)

    def compare(r, o, status):
        keys = ("ociVersion", "id", "status", "pid", "bundle", "rootfs", "created", "annotations")
        assert set(keys) <= set(r), "runc lacks %s" % (set(keys) - set(r))
        assert set(keys) <= set(o), "ocirt lacks %s" % (set(keys) - set(o))
        assert set(r) <= set(o), "ocirt's state lacks runc's keys %s" % (set(r) - set(o))
        assert r["status"] == o["status"] == status
        assert r["bundle"] == o["bundle"] == bundle
        assert r["rootfs"] == o["rootfs"]
        assert r["annotations"] == o["annotations"] == ANNOTATIONS
        assert r["pid"] > 0 and o["pid"] > 0
        assert (r["id"], o["id"]) == (rid, oid)
        assert r.get("owner") == o.get("owner")
        parse_rfc3339(r["created"])
        parse_rfc3339(o["created"])
        for state in (r, o):
            assert isinstance(state["ociVersion"], str) and state["ociVersion"]

    compare(rstate, ostate, "created")
    assert runc("start", rid).returncode == 0
    rt("start", oid)
    rrun, orun = json.loads(runc("state", rid).stdout), rt.state(oid)
    compare(rrun, orun, "running")
    assert rrun["created"] == rstate["created"] and orun["created"] == ostate["created"]
    assert rrun["pid"] == rstate["pid"] and orun["pid"] == ostate["pid"]

    assert runc("kill", rid, "KILL").returncode == 0
    rt("kill", oid, "KILL")
    poll(lambda: json.loads(runc("state", rid).stdout)["status"] == "stopped", "runc container to stop")
    rt.wait_status(oid, "stopped")
    assert json.loads(runc("state", rid).stdout)["status"] == rt.status(oid) == "stopped"

    assert runc("delete", rid).returncode == 0
    rt("delete", oid)
    rmissing, omissing = runc("state", rid), rt("state", oid, check=False)
    assert rmissing.returncode != 0 and omissing.returncode != 0
    assert "does not exist" in rmissing.stderr and "does not exist" in omissing.stderr


@pytest.mark.parametrize("code", [0, 3])
def test_run_exit_code_matches_runc(rt, runc, make_bundle, code):
    bundle = make_bundle(["sh", "-c", "exit %d" % code])
    rresult = runc("run", "--bundle", bundle, new_id("runc"))
    oresult = rt.ocirt.run(bundle)
    assert rresult.returncode == oresult.returncode == code, (rresult, oresult.stderr)


def test_wrong_state_errors_match_runc(rt, runc, make_bundle):
    """Both refuse: start twice, delete running without --force, kill unknown signal."""
    bundle = make_bundle(SLEEP)
    rid, oid = new_id("runc"), new_id("ocirt")
    assert runc("run", "--detach", "--bundle", bundle, rid, detached=True).returncode == 0
    rt.guard.track(json.loads(runc("state", rid).stdout)["pid"], "runc container %s" % rid)
    rt.detached("run", "--detach", "--bundle", bundle, oid)
    rt.track(oid)
    for args in (("start",), ("delete",), ("kill", "NOPE")):
        r = runc(*((args[0], rid) + args[1:]))
        o = rt(*((args[0], oid) + args[1:]), check=False)
        assert r.returncode != 0 and o.returncode != 0, (args, r, o)
    assert json.loads(runc("state", rid).stdout)["status"] == rt.status(oid) == "running"


# --------------------------------------------------------------------------
# 9. --log
# --------------------------------------------------------------------------

def test_log_json_records_errors(rt, scratch):
    log = os.path.join(scratch, "ocirt.log")
    with open(log, "w") as handle:
        handle.write('{"level":"info","msg":"earlier line"}\n')
    cid = new_id("nosuch")
    result = rt("--log", log, "--log-format", "json", "state", cid, check=False)
    assert_error(result, cid)
    with open(log) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == '{"level":"info","msg":"earlier line"}', "the log was not appended to"
    assert len(lines) == 2
    entry = json.loads(lines[1])
    assert entry["level"] == "error"
    assert cid in entry["msg"] and "does not exist" in entry["msg"]
    assert "time" in entry

    other = new_id("nosuch")
    rt("--log", log, "--log-format", "json", "kill", other, "KILL", check=False)
    with open(log) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 3 and other in json.loads(lines[2])["msg"]


def test_log_text_records_errors(rt, scratch):
    log = os.path.join(scratch, "ocirt-text.log")
    cid = new_id("nosuch")
    result = rt("--log", log, "delete", cid, check=False)
    assert_error(result, cid)
    with open(log) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 1
    assert "level=error" in lines[0]
    assert cid in lines[0]
    assert re.search(r'msg="[^"]*%s[^"]*"' % re.escape(cid), lines[0]), lines[0]


def test_log_is_untouched_on_success(rt, make_bundle, scratch):
    log = os.path.join(scratch, "quiet.log")
    rt("--log", log, "--log-format", "json", "list")
    assert not os.path.exists(log) or open(log).read() == ""
