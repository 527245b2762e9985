"""The container monitor with real containers: exit codes, OOM, logs, rotation, volume, detachment.

Monitored containers come from `ocirt run --detach` or `ocirt create --monitor`
+ `ocirt start`. The monitor (plugins/module_utils/_runtime/monitor/monitor.py) is the parent
of the container's process: it writes the container's stdout/stderr to a
CRI-format log (`TIMESTAMP STREAM F|P TEXT`), rotates it, and records the exit
in exit.json, which `state`, `wait` and `logs` read.

Nothing here asserts on durations. Every wait is bounded (`ocirt wait
--timeout`, a bounded poll, or `communicate(timeout=...)`), and a timeout is a
hang detector that fails the test with a message, never a measurement.

When a test needs output in a known order across stdout and stderr, the
container does not merely sleep between writes: it waits for a file that the
test creates in the rootfs (visible through the container's read-only root)
only once the previous line is in the log. The monitor reads the two pipes
separately, so their relative order is only defined when one write is logged
before the next is made.
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import OCIRT, POLL_DELAY, POLL_TRIES, fd_targets, gone, new_id, poll, proc_start_time

WAIT_SECONDS = 60          # --timeout for `ocirt wait`: a hang detector, not a measurement

RECORD = re.compile(rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$", re.S)
ROTATION_NOTICE = re.compile(rb"^\[monitor: log rotation removed (\d+) bytes of older output\]$")
DROP_NOTICE = re.compile(rb"^\[monitor: the disk fell behind; (\d+) bytes of output were dropped here\]$")

SLEEP = ["sleep", "1000"]
# The container waits for /NAME to exist in its root (the test creates it on the host side).
WAIT_FOR = 'until [ -e /%s ]; do sleep 0.01; done'


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def fd_access_mode(pid, fd):
    with open("/proc/%d/fdinfo/%d" % (pid, fd)) as handle:
        for line in handle:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE
    raise AssertionError("no flags in /proc/%d/fdinfo/%d" % (pid, fd))


def parse_log(data):
    """[(timestamp, stream, 'F'|'P', text)] of a log file's bytes; fails on a malformed line."""
    assert data == b"" or data.endswith(b"\n"), "the log ends in the middle of a record: %r" % data[-200:]
    records = []
    for line in data.split(b"\n")[:-1]:
        match = RECORD.match(line)
        assert match, "malformed log line: %r" % line
        stamp, stream, kind, text = match.groups()
        records.append((stamp.decode(), stream.decode(), kind.decode(), text))
    return records


def read_log(path):
    with open(path, "rb") as handle:
        return parse_log(handle.read())


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def texts(records, stream=None):
    return [r[3] for r in records if stream is None or r[1] == stream]


class ProcessGuard:
    """Container and monitor processes the tests saw; at teardown none may be left.

    The conftest audit finds leftover processes by their root, which a
    pivoted container process does not show from the host, and knows nothing
    of monitors: this guard checks the pids themselves (with start times).
    """

    def __init__(self):
        self.tracked = {}

    def track(self, pid, what):
        start = proc_start_time(pid)
        if pid and start is not None:
            self.tracked[(pid, start)] = what

    def leftovers(self):
        left = []
        for dummy in range(POLL_TRIES):
            left = [(pid, start, what) for (pid, start), what in self.tracked.items()
                    if not gone(pid, start)]
            if not left:
                return []
            time.sleep(POLL_DELAY)
        for pid, _start, _what in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return ["%s (pid %d)" % (what, pid) for pid, _start, what in left]


@pytest.fixture(autouse=True)
def process_guard():
    """Set up before `state_root`, so it checks after that fixture's force-delete."""
    guard = ProcessGuard()
    yield guard
    left = guard.leftovers()
    assert not left, "processes outlived the test: %s" % ", ".join(left)


@pytest.fixture(autouse=True)
def monitor_cache(process_guard, state_root):
    """The runtime keeps the monitor's source in the state root (create._monitor_module),
    as ROOT/=monitor (formerly ROOT/.monitor).

    That cache is not a container's state, and it may hold nothing else. Torn
    down before `state_root`: check its contents, then remove it, so that the
    conftest audit of the state root sees containers only.
    """
    yield
    for name in ("=monitor", ".monitor"):
        cache = os.path.join(state_root, name)
        if not os.path.isdir(cache):
            continue
        for dirpath, _dirnames, filenames in os.walk(cache):
            for filename in filenames:
                rel = os.path.relpath(os.path.join(dirpath, filename), cache)
                assert re.match(r"^(__pycache__/)?ocirt_(monitor|libc_ffi)_[0-9a-f]{16}\.", rel), \
                    "unexpected file in the monitor cache %s: %s" % (cache, rel)
        shutil.rmtree(cache)


class Monitored:
    """Starting and inspecting monitored containers over the `ocirt` fixture."""

    def __init__(self, ocirt, make_bundle, guard, scratch):
        self.ocirt = ocirt
        self.make_bundle = make_bundle
        self.guard = guard
        self.scratch = scratch

    def bundle(self, args, config=None):
        return self.make_bundle(args, config=config)

    def run(self, bundle, container_id=None, *log_flags):
        container_id = container_id or new_id()
        self.ocirt("run", "--detach", *log_flags, "--bundle", bundle, container_id)
        self.track(container_id)
        return container_id

    def create_start(self, bundle, container_id=None, *log_flags):
        container_id = container_id or new_id()
        self.ocirt("create", "--monitor", *log_flags, "--bundle", bundle, container_id)
        self.track(container_id)
        self.ocirt("start", container_id)
        return container_id

    def track(self, container_id):
        state = self.ocirt.state(container_id)
        self.guard.track(state.get("pid") or 0, "container %s" % container_id)
        self.guard.track(state.get("monitorPid") or 0, "monitor of %s" % container_id)

    def state(self, container_id):
        return self.ocirt.state(container_id)

    def wait(self, container_id, timeout=WAIT_SECONDS):
        return self.ocirt("wait", "--timeout", timeout, container_id, check=False)

    def wait_exit(self, container_id):
        """`ocirt wait`, which must succeed in printing an exit code; returns that code."""
        result = self.wait(container_id)
        assert re.match(r"^\d+\n$", result.stdout), \
            "wait printed no exit code (rc %d): %r %r" % (result.returncode, result.stdout, result.stderr)
        code = int(result.stdout)
        assert result.returncode == code, result
        return code

    def log_path(self, container_id):
        return self.state(container_id)["logPath"]

    def wait_for_log(self, container_id, predicate, what):
        path = self.log_path(container_id)

        def check():
            try:
                return predicate(read_log(path))
            except (OSError, AssertionError):
                return False
        return poll(check, what)

    def release(self, bundle, name):
        """Create /NAME in the container's root (WAIT_FOR in the container waits for it)."""
        with open(os.path.join(bundle, "rootfs", name), "w"):
            pass

    def logs(self, container_id, *flags):
        return self.ocirt("logs", *(list(flags) + [container_id]), check=False)


@pytest.fixture
def mon(ocirt, make_bundle, process_guard, scratch):
    return Monitored(ocirt, make_bundle, process_guard, scratch)


def no_pid_namespace():
    """A config without a pid namespace: the process is not a pid 1, so signals without
    a handler (SIGTERM) kill it (a pid 1 ignores them, even from the host)."""
    return {"linux": {"namespaces": [{"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                                     {"type": "mount"}]}}


# --------------------------------------------------------------------------
# 1. exit codes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 42])
def test_wait_prints_and_returns_the_exit_code(mon, code):
    bundle = mon.bundle(["sh", "-c", "exit %d" % code])
    container_id = mon.run(bundle)
    result = mon.wait(container_id)
    assert result.stdout == "%d\n" % code, result
    assert result.returncode == code, result
    state = mon.state(container_id)
    assert state["status"] == "stopped"
    assert state["exitCode"] == code
    assert state["exitSignal"] is None
    assert state["oomKilled"] is False
    assert state["monitorPid"] == 0
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$", state["finished"]), state
    assert state["finished"] >= state["started"], state


def test_create_monitor_then_start_records_the_exit(mon):
    bundle = mon.bundle(["sh", "-c", "exit 3"])
    container_id = new_id()
    mon.ocirt("create", "--monitor", "--bundle", bundle, container_id)
    mon.track(container_id)
    created = mon.state(container_id)
    assert created["status"] == "created"
    assert created["monitorPid"] > 0
    assert "exitCode" not in created
    mon.ocirt("start", container_id)
    assert mon.wait_exit(container_id) == 3
    assert mon.state(container_id)["exitCode"] == 3


def test_sigkill_is_reported_as_137_and_sigkill(mon):
    container_id = mon.run(mon.bundle(SLEEP))
    assert mon.state(container_id)["status"] == "running"
    mon.ocirt("kill", container_id, "KILL")
    assert mon.wait_exit(container_id) == 137
    state = mon.state(container_id)
    assert state["status"] == "stopped"
    assert state["exitCode"] == 137
    assert state["exitSignal"] == "SIGKILL"
    assert state["oomKilled"] is False


def test_sigterm_is_reported_as_143_and_sigterm(mon):
    # Without a pid namespace `sleep` is not a pid 1, so the default action of TERM applies.
    container_id = mon.run(mon.bundle(SLEEP, config=no_pid_namespace()))
    assert mon.state(container_id)["status"] == "running"
    mon.ocirt("kill", container_id, "TERM")
    assert mon.wait_exit(container_id) == 143
    state = mon.state(container_id)
    assert state["exitCode"] == 143
    assert state["exitSignal"] == "SIGTERM"


def test_wait_timeout_on_a_running_container_fails_with_a_message(mon):
    container_id = mon.run(mon.bundle(SLEEP))
    result = mon.wait(container_id, timeout=0.3)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "still running" in result.stderr and container_id in result.stderr, result
    assert mon.state(container_id)["status"] == "running"


def test_logs_of_an_unmonitored_container_is_an_error(ocirt, make_bundle, process_guard):
    container_id = new_id()
    ocirt("create", "--bundle", make_bundle(SLEEP), container_id)
    process_guard.track(ocirt.state(container_id)["pid"], "container %s" % container_id)
    result = ocirt("logs", container_id, check=False)
    assert result.returncode == 1, result
    assert "has no log" in result.stderr and "--monitor" in result.stderr, result
    ocirt("delete", "--force", container_id)


# --------------------------------------------------------------------------
# 2. OOM
# --------------------------------------------------------------------------

def test_oom_kill_is_recorded(mon):
    config = {"linux": {"resources": {"memory": {"limit": 16 << 20, "swap": 16 << 20}}}}
    bundle = mon.bundle(["sh", "-c", "x=a; while :; do x=$x$x; done"], config=config)
    container_id = mon.run(bundle)
    assert mon.wait_exit(container_id) == 137
    state = mon.state(container_id)
    assert state["oomKilled"] is True, state
    assert state["exitCode"] == 137
    assert state["exitSignal"] == "SIGKILL"


# --------------------------------------------------------------------------
# 3. logs
# --------------------------------------------------------------------------

def test_stdout_and_stderr_are_logged_in_order_and_split_by_logs(mon):
    script = "; ".join(["echo o1", WAIT_FOR % "s1", "echo e1 >&2", WAIT_FOR % "s2",
                        "echo o2", WAIT_FOR % "s3", "echo e2 >&2"])
    bundle = mon.bundle(["sh", "-c", script])
    container_id = mon.run(bundle)
    for count, name in ((1, "s1"), (2, "s2"), (3, "s3")):
        mon.wait_for_log(container_id, lambda records, n=count: len(records) >= n,
                         "%d records in the log" % count)
        mon.release(bundle, name)
    assert mon.wait_exit(container_id) == 0

    records = read_log(mon.log_path(container_id))
    assert [(r[1], r[2], r[3]) for r in records] == [
        ("stdout", "F", b"o1"), ("stderr", "F", b"e1"), ("stdout", "F", b"o2"), ("stderr", "F", b"e2")]
    stamps = [r[0] for r in records]
    assert stamps == sorted(stamps), stamps

    plain = mon.logs(container_id)
    assert plain.returncode == 0, plain
    assert plain.stdout == "o1\no2\n"
    assert plain.stderr == "e1\ne2\n"

    last = mon.logs(container_id, "--tail", "1")
    assert (last.stdout, last.stderr) == ("", "e2\n"), last
    last_two = mon.logs(container_id, "--tail", "2")
    assert (last_two.stdout, last_two.stderr) == ("o2\n", "e2\n"), last_two
    none = mon.logs(container_id, "--tail", "0")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", ""), none

    stamped = mon.logs(container_id, "--timestamps")
    assert stamped.stdout == "%s o1\n%s o2\n" % (stamps[0], stamps[2])
    assert stamped.stderr == "%s e1\n%s e2\n" % (stamps[1], stamps[3])


def test_logs_since(mon):
    script = "; ".join(["echo before", WAIT_FOR % "go", "echo after"])
    bundle = mon.bundle(["sh", "-c", script])
    container_id = mon.run(bundle)
    mon.wait_for_log(container_id, lambda records: texts(records) == [b"before"], "the first line")
    # A time after `before` was logged and before `after` is written (host clock, as the monitor's).
    now = time.time_ns()
    seconds, nanos = divmod(now, 10 ** 9)
    between = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % nanos
    mon.release(bundle, "go")
    assert mon.wait_exit(container_id) == 0

    since = mon.logs(container_id, "--since", between)
    assert (since.returncode, since.stdout) == (0, "after\n"), since
    # The same instant with a shorter fraction (normalized to nine digits), and a duration.
    short = between[:23] + "Z"
    assert mon.logs(container_id, "--since", short).stdout.endswith("after\n")
    assert mon.logs(container_id, "--since", "1h").stdout == "before\nafter\n"
    bad = mon.logs(container_id, "--since", "yesterday")
    assert bad.returncode == 1 and "--since" in bad.stderr, bad


def test_partial_last_line_is_a_p_record(mon, scratch):
    log_path = os.path.join(scratch, "partial.log")
    bundle = mon.bundle(["sh", "-c", "echo first; printf 'no newline'"])
    container_id = mon.create_start(bundle, None, "--log-path", log_path)
    assert mon.wait_exit(container_id) == 0
    assert mon.state(container_id)["logPath"] == log_path
    records = read_log(log_path)
    assert [(r[1], r[2], r[3]) for r in records] == [
        ("stdout", "F", b"first"), ("stdout", "P", b"no newline")]
    assert mon.logs(container_id).stdout == "first\nno newline"


def test_empty_and_long_lines_survive(mon):
    # An empty line, a line with spaces, and a line of 40000 bytes (logged in 16 KiB P pieces).
    script = "echo; echo 'a  b c '; head -c 40000 /dev/zero | tr '\\0' x; echo"
    container_id = mon.run(mon.bundle(["sh", "-c", script]))
    assert mon.wait_exit(container_id) == 0
    records = read_log(mon.log_path(container_id))
    long_pieces = records[2:]
    assert [(r[2], r[3]) for r in records[:2]] == [("F", b""), ("F", b"a  b c ")]
    assert [r[2] for r in long_pieces][-1] == "F"
    assert all(r[2] == "P" for r in long_pieces[:-1]) and long_pieces[:-1]
    assert all(len(r[3]) <= 16384 for r in long_pieces)
    assert b"".join(r[3] for r in long_pieces) == b"x" * 40000
    assert mon.logs(container_id).stdout == "\na  b c \n" + "x" * 40000 + "\n"


def test_logs_follow_prints_everything_and_ends_with_the_container(mon):
    script = "; ".join(["echo line1", WAIT_FOR % "go", "echo line2", "sleep 0.1", "echo line3 >&2",
                        "sleep 0.1", "echo line4", "printf tail"])
    bundle = mon.bundle(["sh", "-c", script])
    container_id = mon.run(bundle)
    follower = subprocess.Popen([OCIRT, "--root", mon.ocirt.root, "logs", "--follow", container_id],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0)
    try:
        # Unbuffered: readline takes exactly the first line and leaves the rest to communicate.
        ready = select.select([follower.stdout], [], [], WAIT_SECONDS)[0]
        assert ready, "logs --follow printed nothing"
        first = follower.stdout.readline()
        assert first == b"line1\n"
        # The container is still waiting for /go: the follower is following a running container.
        assert mon.state(container_id)["status"] == "running"
        mon.release(bundle, "go")
        try:
            out, err = follower.communicate(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail("logs --follow did not end after the container exited")
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    assert first + out == b"line1\nline2\nline4\ntail"
    assert err == b"line3\n"
    assert mon.state(container_id)["exitCode"] == 0


def test_logs_follow_of_a_stopped_container_returns(mon):
    container_id = mon.run(mon.bundle(["sh", "-c", "echo done"]))
    assert mon.wait_exit(container_id) == 0
    follower = subprocess.Popen([OCIRT, "--root", mon.ocirt.root, "logs", "-f", container_id],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = follower.communicate(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        follower.kill()
        follower.communicate()
        pytest.fail("logs --follow of a stopped container did not return")
    assert (follower.returncode, out, err) == (0, b"done\n", b"")


# --------------------------------------------------------------------------
# 4. rotation
# --------------------------------------------------------------------------

def test_rotation_keeps_a_contiguous_suffix_and_says_what_it_removed(mon):
    max_size = 4096
    bundle = mon.bundle(["seq", "1", "2000"])
    container_id = mon.create_start(bundle, None, "--log-max-size", "4k", "--log-max-files", "3")
    assert mon.wait_exit(container_id) == 0
    path = mon.log_path(container_id)
    assert os.path.dirname(path) == os.path.join(mon.ocirt.root, container_id)
    for name in (path, path + ".1", path + ".2"):
        assert os.path.isfile(name), "%s is missing" % name
    assert not os.path.exists(path + ".3")

    records = []
    for name in (path + ".2", path + ".1", path):
        data = open(name, "rb").read()
        file_records = parse_log(data)
        longest = max(len(line) + 1 for line in data.split(b"\n")[:-1])
        assert len(data) <= max_size + longest, "%s holds %d bytes" % (name, len(data))
        records.extend(file_records)

    numbers = [int(r[3]) for r in records if r[1] == "stdout"]
    assert all(r[2] == "F" for r in records)
    assert numbers, "nothing kept"
    assert numbers == list(range(numbers[0], 2001)), "kept lines are not a contiguous suffix: %s" % numbers
    assert numbers[0] > 1, "nothing was rotated away"

    notices = [ROTATION_NOTICE.match(r[3]) for r in records if r[1] == "stderr"]
    assert notices and all(notices), [r for r in records if r[1] == "stderr"]
    assert all(0 < int(m.group(1)) <= 2 * max_size for m in notices), [m.group(0) for m in notices]
    # Each rotation that removes a file says so first thing in the new live file.
    assert ROTATION_NOTICE.match(read_log(path)[0][3])

    plain = mon.logs(container_id)
    assert plain.stdout == "".join("%d\n" % n for n in numbers)
    assert all(ROTATION_NOTICE.match(line.encode()) for line in plain.stderr.splitlines())


def test_log_max_size_zero_does_not_rotate(mon):
    bundle = mon.bundle(["seq", "1", "3000"])
    container_id = mon.run(bundle, None, "--log-max-size", "0", "--log-max-files", "2")
    assert mon.wait_exit(container_id) == 0
    path = mon.log_path(container_id)
    assert not os.path.exists(path + ".1")
    assert texts(read_log(path)) == [str(n).encode() for n in range(1, 3001)]


# --------------------------------------------------------------------------
# 5. volume
# --------------------------------------------------------------------------

LINE = b"012345678901234567890123456789012345678\n"   # 40 bytes
VOLUME = 100000000                                   # 2,500,000 lines


def test_a_flood_of_output_is_logged_or_accounted_for(mon):
    """100 MB as fast as the container can write it, without rotation.

    `cat` of a file 25 times rather than `yes | head -c`: a pipeline that relies
    on SIGPIPE is tested on its own (test_container_does_not_inherit_ignored_signals).
    Every byte must be in the log, or reported by a "dropped" record: logged
    output bytes plus reported dropped bytes must be exactly 100,000,000.
    """
    bundle = mon.bundle(["cat"] + ["/chunk"] * 25)
    with open(os.path.join(bundle, "rootfs", "chunk"), "wb") as handle:
        handle.write(LINE * (VOLUME // 25 // len(LINE)))
    container_id = mon.run(bundle, None, "--log-max-size", "0")
    assert mon.wait_exit(container_id) == 0
    path = mon.log_path(container_id)
    assert not os.path.exists(path + ".1")
    logged = 0
    dropped = 0
    notices = []
    with open(path, "rb") as handle:
        for line in handle:
            parts = line.split(b" ", 3)
            if parts[1:3] == [b"stdout", b"F"] and parts[3] == LINE:
                logged += len(LINE)
                continue
            match = RECORD.match(line[:-1])
            assert match and match.group(2) == b"stderr", "unexpected record %r" % line
            notice = DROP_NOTICE.match(match.group(4))
            assert notice, "unexpected record %r" % line
            notices.append(line)
            dropped += int(notice.group(1))
    assert logged + dropped == VOLUME, (
        "logged %d bytes of output and reported %d dropped: %d != %d (notices: %r)"
        % (logged, dropped, logged + dropped, VOLUME, notices[:3]))


def test_container_does_not_inherit_ignored_signals(mon):
    """The container's process starts with default signal dispositions, as with runc.

    Python ignores SIGPIPE (and SIGXFSZ) in itself; a runtime written in it must
    not pass that on, or `yes | head` in a container never ends.
    """
    container_id = mon.run(mon.bundle(["grep", "SigIgn", "/proc/self/status"]))
    assert mon.wait_exit(container_id) == 0
    line = texts(read_log(mon.log_path(container_id)))[0].decode()
    mask = int(line.split()[1], 16)
    ignored = [signal_name(n) for n in range(1, 65) if mask & (1 << (n - 1))]
    assert mask == 0, "the container's process starts with signals ignored: %s (%s)" % (ignored, line)

    pipeline = mon.run(mon.bundle(["sh", "-c", "yes | head -n 2; echo done"]))
    result = mon.wait(pipeline, timeout=30)
    assert result.returncode == 0, "`yes | head -n 2` did not finish: %r" % result
    assert texts(read_log(mon.log_path(pipeline))) == [b"y", b"y", b"done"]


# --------------------------------------------------------------------------
# 6. detachment
# --------------------------------------------------------------------------

def test_run_detach_through_pipes_returns_and_keeps_nothing_of_the_caller(mon):
    bundle = mon.bundle(SLEEP)
    container_id = new_id()
    caller = subprocess.Popen([OCIRT, "--root", mon.ocirt.root, "run", "--detach", "--bundle", bundle,
                               container_id],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    caller_pipes = set("pipe:[%d]" % os.fstat(f.fileno()).st_ino
                       for f in (caller.stdin, caller.stdout, caller.stderr))
    try:
        # EOF on both pipes means nothing (monitor, container) holds their write ends any more.
        out, err = caller.communicate(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        caller.kill()
        caller.communicate()
        pytest.fail("run --detach with piped output did not return (its pipes are held open)")
    assert caller.returncode == 0, err
    mon.track(container_id)
    state = mon.state(container_id)
    assert state["status"] == "running"
    monitor, container = state["monitorPid"], state["pid"]
    assert monitor > 0 and container > 0 and monitor != container

    assert os.getsid(monitor) != os.getsid(0)
    assert os.getsid(container) != os.getsid(0)
    with open("/proc/%d/cmdline" % monitor, "rb") as handle:
        argv = handle.read().split(b"\0")
    assert b"-I" in argv and b"-S" in argv, argv

    container_fds = fd_targets(container)
    assert sorted(container_fds) == [0, 1, 2], container_fds
    assert container_fds[0] == "/dev/null"
    assert container_fds[1].startswith("pipe:") and container_fds[2].startswith("pipe:")
    assert container_fds[1] != container_fds[2]

    # run --detach returns once the container is created; the monitor then re-executes itself and
    # opens the log: its descriptors are settled once it holds the log.
    poll(lambda: state["logPath"] in fd_targets(monitor).values(), "the monitor to open its log")
    monitor_fds = fd_targets(monitor)
    assert [monitor_fds.get(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3, monitor_fds
    assert not caller_pipes & set(monitor_fds.values()), (caller_pipes, monitor_fds)
    assert not caller_pipes & set(container_fds.values()), (caller_pipes, container_fds)
    # The read ends of the container's stdout and stderr, one each, opened for reading.
    for target in (container_fds[1], container_fds[2]):
        ends = [fd for fd, t in monitor_fds.items() if t == target]
        assert len(ends) == 1, (target, monitor_fds)
        assert fd_access_mode(monitor, ends[0]) == os.O_RDONLY
    assert list(monitor_fds.values()).count(state["logPath"]) == 1, monitor_fds
    others = dict((fd, t) for fd, t in monitor_fds.items()
                  if fd > 2 and t not in (container_fds[1], container_fds[2], state["logPath"]))
    # Whatever else the monitor holds is its own: pipes of its own (signal wake-up), nothing else.
    assert all(t.startswith("pipe:") for t in others.values()), others
    assert len(set(others.values())) <= 1, others


# --------------------------------------------------------------------------
# 7. kill: the container, or the monitor
# --------------------------------------------------------------------------

def test_killing_the_container_leaves_the_monitor_to_record_it_and_exit(mon):
    container_id = mon.run(mon.bundle(SLEEP))
    state = mon.state(container_id)
    monitor = state["monitorPid"]
    monitor_start = proc_start_time(monitor)
    mon.ocirt("kill", container_id, "KILL")
    poll(lambda: gone(monitor, monitor_start), "the monitor to exit after its container")
    exit_file = os.path.join(mon.ocirt.root, container_id, "exit.json")
    with open(exit_file) as handle:
        recorded = json.load(handle)
    assert recorded["exitCode"] == 137 and recorded["signal"] == "SIGKILL", recorded
    state = mon.state(container_id)
    assert (state["status"], state["exitCode"], state["exitSignal"], state["monitorPid"]) == \
        ("stopped", 137, "SIGKILL", 0)


def test_a_killed_monitor_leaves_the_container_running_and_its_exit_unknown(mon):
    container_id = mon.run(mon.bundle(SLEEP))
    state = mon.state(container_id)
    monitor, container = state["monitorPid"], state["pid"]
    monitor_start, container_start = proc_start_time(monitor), proc_start_time(container)
    os.kill(monitor, signal.SIGKILL)
    poll(lambda: gone(monitor, monitor_start), "the killed monitor to be gone")

    state = mon.state(container_id)
    assert state["status"] == "running"
    assert state["monitorPid"] == 0
    assert proc_start_time(container) == container_start

    mon.ocirt("kill", container_id, "KILL")
    poll(lambda: mon.state(container_id)["status"] == "stopped", "the container to stop")
    state = mon.state(container_id)
    assert state["exitCode"] is None
    assert "unknown" in state.get("exitReason", ""), state

    result = mon.wait(container_id)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "exit code unknown" in result.stderr and container_id in result.stderr, result

    mon.ocirt("delete", "--force", container_id)
    assert not os.path.exists(os.path.join(mon.ocirt.root, container_id))
    assert container_id not in mon.ocirt.ids()


# --------------------------------------------------------------------------
# 8. delete
# --------------------------------------------------------------------------

def test_delete_removes_the_state_and_the_log(mon):
    bundle = mon.bundle(["sh", "-c", WAIT_FOR % "go" + "; echo bye"])
    container_id = mon.run(bundle)
    state = mon.state(container_id)
    assert state["status"] == "running"
    monitor, monitor_start = state["monitorPid"], proc_start_time(state["monitorPid"])
    assert monitor > 0 and monitor_start is not None
    mon.release(bundle, "go")
    assert mon.wait_exit(container_id) == 0
    assert texts(read_log(mon.log_path(container_id))) == [b"bye"]
    log_path = mon.log_path(container_id)
    state_dir = os.path.join(mon.ocirt.root, container_id)
    assert os.path.isfile(log_path) and os.path.dirname(log_path) == state_dir
    mon.ocirt("delete", container_id)
    assert not os.path.exists(state_dir)
    assert not os.path.exists(log_path)
    assert gone(monitor, monitor_start)
    result = mon.logs(container_id)
    assert result.returncode == 1 and "does not exist" in result.stderr, result


def test_delete_force_of_a_running_monitored_container_ends_container_and_monitor(mon):
    container_id = mon.run(mon.bundle(SLEEP))
    state = mon.state(container_id)
    pids = [(state["monitorPid"], proc_start_time(state["monitorPid"])),
            (state["pid"], proc_start_time(state["pid"]))]
    mon.ocirt("delete", "--force", container_id)
    assert not os.path.exists(os.path.join(mon.ocirt.root, container_id))
    for pid, start in pids:
        poll(lambda: gone(pid, start), "process %d to be gone after delete --force" % pid)


# --------------------------------------------------------------------------
# 9. a caller that goes away
# --------------------------------------------------------------------------

def test_a_caller_that_exits_right_after_run_detach_does_not_take_the_container(mon):
    bundle = mon.bundle(SLEEP)
    container_id = new_id()
    script = ("import subprocess, sys\n"
              "r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,\n"
              "                   stderr=subprocess.PIPE)\n"
              "sys.stderr.buffer.write(r.stderr)\n"
              "sys.exit(r.returncode)\n")
    caller = subprocess.Popen([sys.executable, "-c", script, OCIRT, "--root", mon.ocirt.root, "run",
                               "--detach", "--bundle", bundle, container_id],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        _out, err = caller.communicate(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        caller.kill()
        caller.communicate()
        pytest.fail("the caller of run --detach did not exit")
    assert caller.returncode == 0, err
    mon.track(container_id)
    # What a shell does to a finished job: its whole process group is killed.
    try:
        os.killpg(caller.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    state = mon.state(container_id)
    assert state["status"] == "running"
    assert state["monitorPid"] > 0
    assert os.getpgid(state["monitorPid"]) != caller.pid
    assert os.getpgid(state["pid"]) != caller.pid
    # The monitor still does its job.
    mon.ocirt("kill", container_id, "KILL")
    assert mon.wait_exit(container_id) == 137


def test_create_monitored_with_a_config_from_the_caller_ignores_config_json(mon, state_root):
    """The Ansible glue adds what it owns (networks, secrets, hostname) to the bundle's config and
    hands that to create: the container runs it, records it, and config.json stays untouched."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
    bundle = mon.bundle(["sh", "-c", "exit 1"])
    with open(os.path.join(bundle, "config.json")) as handle:
        on_disk = handle.read()
    given = json.loads(on_disk)
    given["process"]["args"] = ["sh", "-c", "echo from-the-caller; exit 5"]
    container_id = new_id()
    create.create_monitored(state_root, container_id, bundle, config=given)
    mon.track(container_id)
    assert mon.state(container_id)["status"] == "created"
    mon.ocirt("start", container_id)
    assert mon.wait_exit(container_id) == 5
    assert "from-the-caller" in mon.logs(container_id).stdout
    with open(os.path.join(bundle, "config.json")) as handle:
        assert handle.read() == on_disk
    assert given["process"]["args"][0] == "sh"


def test_create_monitored_validates_the_callers_config_and_leaves_nothing(mon, state_root):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
    bundle = mon.bundle(["true"])
    with open(os.path.join(bundle, "config.json")) as handle:
        given = json.load(handle)
    given["process"]["args"] = "not a list"
    container_id = new_id()
    with pytest.raises(OCIError, match="process.args"):
        create.create_monitored(state_root, container_id, bundle, config=given)
    assert mon.ocirt("state", container_id, check=False).returncode != 0


# The runtime as an Ansible module carries it: packages inside a zip on sys.path (AnsiballZ), a
# zip the module's exit removes. The caller removes it as soon as create_monitored returns.
ZIP_CALLER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
assert create.__loader__.__class__.__name__ == "zipimporter", create.__loader__
pid = create.create_monitored(sys.argv[2], sys.argv[3], sys.argv[4])
os.unlink(sys.argv[1])
print(pid)
"""


def test_a_monitor_started_from_a_zip_payload_that_vanishes_at_once_still_logs(mon, scratch):
    """The monitor's sources (monitor.py, the libc FFI tables) are read from the caller's zip before
    create_monitored returns: an Ansible module exits right after, and its payload goes with it
    (the first monitor of every fresh state root was lost this way: no log, monitorPid 0)."""
    import zipfile
    from helpers import COLLECTIONS
    payload = os.path.join(scratch, "payload.zip")
    package = os.path.join(COLLECTIONS, "ansible_collections")
    with zipfile.ZipFile(payload, "w") as archive:
        for dirpath, dirnames, filenames in os.walk(os.path.realpath(os.path.join(package, "daemonless", "oci"))):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".venv", ".git", "tests", "bench")]
            for filename in filenames:
                if filename.endswith(".py"):
                    full = os.path.join(dirpath, filename)
                    relative = os.path.relpath(full, os.path.realpath(os.path.join(package, "daemonless", "oci")))
                    archive.write(full, os.path.join("ansible_collections", "daemonless", "oci", relative))
        present = set(archive.namelist())
        for parent in ("ansible_collections", "ansible_collections/daemonless", "ansible_collections/daemonless/oci",
                       "ansible_collections/daemonless/oci/plugins",
                       "ansible_collections/daemonless/oci/plugins/module_utils"):
            if parent + "/__init__.py" not in present:
                archive.writestr(parent + "/__init__.py", "")
    assert not os.path.isdir(os.path.join(mon.ocirt.root, "=monitor")), "the state root must be fresh"
    bundle = mon.bundle(["sh", "-c", "echo hello; exec sleep 1000"])
    container_id = new_id()
    result = subprocess.run([sys.executable, "-c", ZIP_CALLER, payload, mon.ocirt.root, container_id, bundle],
                            capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)
    assert result.returncode == 0, result
    assert not os.path.exists(payload)
    mon.track(container_id)
    mon.ocirt("start", container_id)
    mon.wait_for_log(container_id, lambda records: texts(records, "stdout") == [b"hello"],
                     "the container's output in the log of a monitor started from a vanished zip")
    state = mon.state(container_id)
    assert state["status"] == "running" and state["monitorPid"] > 0, state
    mon.ocirt("delete", "--force", container_id)


def test_forked_first_monitors_of_a_state_root_do_not_trip_over_each_others_bytecode(scratch):
    """oci_containers' forked workers start the first monitors of a state root at once: each writes
    the monitor's source and bytecode there (create._monitor_module), and none may fail for another's."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
    root = os.path.join(scratch, "root")
    os.mkdir(root)
    children = []
    for _number in range(8):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                create._monitor_module(root, monitor, "ocirt_monitor_")
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert codes == [0] * 8, codes
    cache = os.path.join(root, "=monitor")
    names = sorted(os.listdir(cache)) + sorted(os.listdir(os.path.join(cache, "__pycache__")))
    assert len(names) == 3 and not [n for n in names if n.endswith(".tmp")], names
    source = [n for n in os.listdir(cache) if n.endswith(".py")][0]
    loaded = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path[:0] = [sys.argv[1]]; "
                             "import %s as m; print(m.__cached__)" % source[:-3], cache],
                            capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip().endswith(".pyc"), loaded
