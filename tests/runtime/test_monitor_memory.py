"""The idle monitor gives memory back (monitor.MemoryRelease), and still does its work afterwards.

Once nothing happened for RELEASE_IDLE seconds, the monitor returns its
freed heap (malloc_trim) and drops its pages of read-only file mappings
(madvise MADV_DONTNEED); they come back by minor faults when it runs again.
What is checked here, on real containers: that the release happened (the
interpreter's file mappings hold far fewer resident pages than an idle
interpreter's, a relative check against a reference process, never a
time limit), that it happens again after each wake-up (a restart, a health
check), and that a monitor that released still restarts a killed container,
runs health checks and logs and rotates output. Which mappings may be dropped
is checked on smaps text, hostile included.
"""
import os
import signal
import subprocess
import sys

import pytest

from helpers import new_id, poll, proc_start_time, rootfs_of
from test_restart import assert_all_gone, params, when
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor

# The monitor's interpreter: the runtime execs sys.executable (create._monitor_command).
INTERPRETER = os.path.realpath(sys.executable)
RELEASED = 0.6      # the monitor's interpreter pages resident, at most, as a share of an idle interpreter's


def interpreter_rss(pid):
    """KiB resident in PID's read-only mappings of the interpreter executable (code and constants)."""
    total = 0
    current = False
    with open("/proc/%d/smaps" % pid) as handle:
        for line in handle:
            fields = line.split()
            if not fields:
                continue
            if not fields[0].endswith(":"):
                current = (len(fields) >= 6 and os.path.realpath(fields[5]) == INTERPRETER
                           and fields[1][1] == "-")
            elif current and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.fixture(scope="module")
def idle_interpreter_rss():
    """The same pages of an idle `python -I -S` that has done a little work: what the monitor starts from."""
    reference = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                                  "import posix, select, time; sorted(str(n) for n in range(20000)); "
                                  "print('ready', flush=True); select.poll().poll()"],
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert reference.stdout.readline() == "ready\n"
        yield interpreter_rss(reference.pid)
    finally:
        reference.kill()
        reference.wait()


def released(pid, reference):
    rss = interpreter_rss(pid)
    return rss if rss < RELEASED * reference else None


def wait_released(pid, reference, what):
    return poll(lambda: released(pid, reference), "the monitor (pid %d) to give its pages back %s" % (pid, what))


SMAPS = b"""\
00400000-0041f000 r--p 00000000 fe:00 260811                             /usr/bin/python3.11
Size:                124 kB
Rss:                 124 kB
Anonymous:             0 kB
0041f000-006d2000 r-xp 0001f000 fe:00 260811                             /usr/bin/python3.11
Size:               2764 kB
Rss:                1728 kB
Anonymous:             0 kB
00945000-00946000 r--p 00344000 fe:00 260811                             /usr/bin/python3.11
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
00946000-00a85000 rw-p 00345000 fe:00 260811                             /usr/bin/python3.11
Size:               1276 kB
Anonymous:          1148 kB
33f5d000-33fef000 rw-p 00000000 00:00 0                                  [heap]
Anonymous:           552 kB
7fac21140000-7fac213a6000 rw-p 00000000 00:00 0
Anonymous:           880 kB
7fac213a6000-7fac213fd000 r--p 00000000 fe:00 1234                       /usr/lib/locale/C.utf8/LC_CTYPE
Anonymous:             0 kB
7fac2170d000-7fac21714000 r--s 00000000 fe:00 99                         /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
Anonymous:             0 kB
7fac21714000-7fac21716000 r--p 00000000 fe:00 98                         /usr/lib/no-anonymous-line.so
Rss:                   8 kB
7fac2171c000-7fac2171e000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
7fac21720000-7fac21730000 ---p 00000000 fe:00 97                         /usr/lib/gap.so
Anonymous:             0 kB
zzzz-7fac21740000 r--p 00000000 fe:00 96                                 /usr/lib/hostile.so
Anonymous:             0 kB
7fac21750000 r--p 00000000 fe:00 95                                      /usr/lib/hostile2.so
Anonymous:             0 kB
7fac21751000-7fac21753000 r--p 00000000 fe:00 94
Anonymous:             0 kB
Anonymous: 0 kB
"""


def test_only_read_only_file_pages_without_copy_on_write_pages_are_released():
    found = monitor.releasable(SMAPS.splitlines(True))
    assert found == [(0x400000, 0x41f000, False), (0x41f000, 0x6d2000, True),
                     (0x7fac213a6000, 0x7fac213fd000, False), (0x7fac2170d000, 0x7fac21714000, False)]
    # The relocated RELRO region (r--p, 4 kB of anonymous pages) is not among them: dropping its
    # pages would revert relocated pointers to the file's bytes.
    assert not [region for region in found if region[0] == 0x945000]


@pytest.mark.parametrize("smaps", [b"", b"\n\n", b"garbage\n" * 10, b"Anonymous: 0 kB\n",
                                   b"1-2 r--p 0 0 0 /x\nAnonymous:\n", b"\xff\xfe-\x00 r--p a b c /d\nAnonymous: 0 kB\n"])
def test_hostile_smaps_text_releases_nothing_and_does_not_raise(smaps):
    assert monitor.releasable(smaps.splitlines(True)) == []


def test_without_its_ffi_options_the_monitor_releases_nothing_and_does_not_fail():
    for options in ({}, {"cffi": "/nonexistent/_cffi_backend.so", "ffi": "nonexistent_tables"},
                    {"cffi": "", "ffi": ""}):
        release = monitor.MemoryRelease(options)
        assert release.lib is None
        assert release.release_and_wait([], 0) is False


def test_regions_are_merged_where_adjacent_and_the_biggest_code_is_dropped_last():
    regions = [(0x7000, 0x8000, True), (0x1000, 0x2000, False), (0x2000, 0x6000, True),
               (0x9000, 0xa000, False), (0xb000, 0xb800, True)]
    assert monitor.release_order(regions) == [
        (0x9000, 0xa000, False), (0xb000, 0xb800, True), (0x7000, 0x8000, True), (0x1000, 0x6000, True)]


# A process that waits through MemoryRelease's chain, as an idle monitor does, on a pipe and with a
# Python signal handler (the monitor's SIGCHLD): it prints what woke it.
CHAINED_WAIT = r"""
import _signal, posix, sys
sys.path[:0] = [sys.argv[1]]
import monitor
release = monitor.MemoryRelease({"cffi": sys.argv[2], "ffi": "_libc_ffi"})
assert release.lib is not None
wake_r, wake_w = posix.pipe2(posix.O_NONBLOCK | posix.O_CLOEXEC)
_signal.set_wakeup_fd(wake_w)
signals = []
_signal.signal(_signal.SIGUSR1, lambda signum, frame: signals.append(signum))
data_r, data_w = posix.pipe()
print("timed out" if release.release_and_wait([wake_r, data_r], 50) and not signals else "?", flush=True)
print("ready", flush=True)
waited = release.release_and_wait([wake_r, data_r], None)
print("signal" if waited and signals == [_signal.SIGUSR1] else "woken without the signal: %r" % signals, flush=True)
posix.read(wake_r, 100)
waited = release.release_and_wait([wake_r, data_r], None)
print("data %r" % posix.read(data_r, 10) if waited else "did not wait", flush=True)
"""


@pytest.fixture
def chained_wait(tmp_path):
    """A python -I -S process running CHAINED_WAIT, with monitor.py and the FFI tables beside it."""
    if os.uname().machine not in monitor.CONTEXT_STRIDE:
        pytest.skip("the chained wait needs glibc's ucontext layout of x86_64 or aarch64, not %s" % os.uname().machine)
    import shutil
    import _cffi_backend
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import _libc_ffi
    for module in (monitor, _libc_ffi):
        shutil.copy(module.__file__, str(tmp_path))
    process = subprocess.Popen([sys.executable, "-I", "-S", "-c", CHAINED_WAIT, str(tmp_path), _cffi_backend.__file__],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.pending = b""
    yield process
    process.kill()
    process.communicate()


def read_line(process):
    """PROCESS's next line of output; a minute without one fails the test rather than hang it."""
    import select
    while b"\n" not in process.pending:
        if not select.select([process.stdout], [], [], 60)[0]:
            pytest.fail("no output from the chained wait in 60 s; so far %r" % process.pending)
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            pytest.fail("the chained wait ended: %r %s" % (process.pending, process.stderr.read()))
        process.pending += chunk
    line, _newline, process.pending = process.pending.partition(b"\n")
    return line.decode() + "\n"


def in_poll(pid):
    with open("/proc/%d/wchan" % pid) as handle:
        return "poll" in handle.read()


def test_the_chained_wait_returns_on_its_timeout_on_a_signal_and_on_data(chained_wait):
    assert read_line(chained_wait) == "timed out\n"
    assert read_line(chained_wait) == "ready\n"
    # In the chain's poll, its interpreter code dropped, a signal ends the wait.
    poll(lambda: in_poll(chained_wait.pid), "the chained wait to be in poll")
    os.kill(chained_wait.pid, signal.SIGUSR1)
    assert read_line(chained_wait) == "signal\n"
    # It waits again; data on the other descriptor (the last made, the highest) ends that wait.
    poll(lambda: in_poll(chained_wait.pid), "the second chained wait")
    pipes = [int(fd) for fd in os.listdir("/proc/%d/fd" % chained_wait.pid)
             if os.readlink("/proc/%d/fd/%s" % (chained_wait.pid, fd)).startswith("pipe:")]
    with open("/proc/%d/fd/%d" % (chained_wait.pid, max(pipes)), "w") as pipe:
        pipe.write("x")
    assert read_line(chained_wait) == "data b'x'\n"
    assert chained_wait.wait(timeout=60) == 0, chained_wait.stderr.read().decode()


def test_an_idle_monitor_keeps_the_interpreter_code_dropped_while_it_waits(ocirt, make_bundle, idle_interpreter_rss):
    if os.uname().machine not in monitor.CONTEXT_STRIDE:
        pytest.skip("the chained wait needs glibc's ucontext layout of x86_64 or aarch64, not %s" % os.uname().machine)
    cid = new_id("mk")
    ocirt("run", "--detach", "--bundle", make_bundle(["sleep", "1000"]), cid)
    monitor_pid = ocirt.state(cid)["monitorPid"]
    # Dropped from Python, the drops were undone at once by the way back into the wait (0.8-1 MiB
    # of the interpreter's code, about 30 % of an idle interpreter's); from the chain, almost none.
    kept = poll(lambda: when(interpreter_rss(monitor_pid), lambda rss: rss <= 0.05 * idle_interpreter_rss),
                "the monitor's interpreter code to stay dropped while it waits")
    assert kept <= 0.05 * idle_interpreter_rss, (kept, idle_interpreter_rss)
    tracked = [(monitor_pid, proc_start_time(monitor_pid))]
    ocirt("delete", "--force", cid)
    assert_all_gone(ocirt.root, tracked)


def test_an_idle_monitor_releases_and_a_restart_after_it_works_and_releases_again(
        ocirt, make_bundle, idle_interpreter_rss):
    cid = new_id("mr")
    bundle = make_bundle(["sh", "-c", "echo started; exec sleep 1000"])
    ocirt("run", "--detach", "--restart", "always", "--bundle", bundle, cid)
    first = ocirt.state(cid)
    wait_released(first["monitorPid"], idle_interpreter_rss, "after settling")
    os.kill(first["pid"], signal.SIGKILL)
    again = poll(lambda: when(ocirt.state(cid), lambda s: s["status"] == "running" and s["restartCount"] == 1),
                 "the released monitor to restart the container")
    assert again["pid"] != first["pid"] and again["lastExitCode"] == 137, again
    assert again["monitorPid"] == first["monitorPid"]
    poll(lambda: ocirt("logs", cid).stdout.count("started") == 2, "both starts in the log")
    wait_released(again["monitorPid"], idle_interpreter_rss, "after the restart")
    tracked = [(pid, proc_start_time(pid)) for pid in (first["monitorPid"], again["pid"])]
    ocirt("delete", "--force", cid)
    assert_all_gone(ocirt.root, tracked)


def test_a_released_monitor_runs_health_checks_and_releases_after_each(state_root, make_bundle,
                                                                       idle_interpreter_rss):
    cid = new_id("mh")
    bundle = make_bundle(["sleep", "999"])
    flag = os.path.join(rootfs_of(bundle), "ok")
    open(flag, "w").close()
    # An interval longer than RELEASE_IDLE: the monitor is idle, and released, between checks.
    check = {"test": ["test", "-e", "/ok"], "interval": "1.5s", "timeout": "5s", "retries": 1}
    made = container_state.run(params(state_root, cid, bundle, healthcheck=check, wait="healthy", timeout=60))
    monitor_pid = made["container"]["monitor_pid"]
    wait_released(monitor_pid, idle_interpreter_rss, "between health checks")
    checked = container_state.observe(state_root, cid)[0]["health"]["lastCheck"]
    # A check after the release runs and is recorded; then the monitor releases again.
    newer = poll(lambda: when(container_state.observe(state_root, cid)[0]["health"],
                              lambda h: h["lastCheck"] != checked), "a health check after the release")
    assert newer["status"] == "healthy" and newer["lastExitCode"] == 0, newer
    wait_released(monitor_pid, idle_interpreter_rss, "after a health check")
    os.unlink(flag)
    state = poll(lambda: when(container_state.observe(state_root, cid)[0],
                              lambda s: s["health"]["status"] == "unhealthy"), "the failing check to count")
    assert state["health"]["lastExitCode"] == 1, state
    tracked = [(monitor_pid, proc_start_time(monitor_pid))]
    container_state.run(params(state_root, cid, bundle, state="absent"))
    assert_all_gone(state_root, tracked)


def test_a_released_monitor_logs_rotates_and_records_the_exit(ocirt, make_bundle, idle_interpreter_rss):
    cid = new_id("ml")
    # Silent until the test creates /go: the monitor has nothing to do, and releases, before the output.
    bundle = make_bundle(["sh", "-c", "while [ ! -e /go ]; do sleep 0.1; done; seq 1 2000; exit 3"])
    ocirt("run", "--detach", "--log-max-size", "4k", "--log-max-files", "3", "--bundle", bundle, cid)
    state = ocirt.state(cid)
    wait_released(state["monitorPid"], idle_interpreter_rss, "before the output")
    open(os.path.join(rootfs_of(bundle), "go"), "w").close()
    assert ocirt("wait", "--timeout", "60", cid, check=False).returncode == 3
    path = os.path.join(ocirt.root, cid, "container.log")
    for name in (path, path + ".1", path + ".2"):
        assert os.path.isfile(name), "%s is missing: the released monitor did not rotate" % name
    numbers = [int(line) for line in ocirt("logs", cid).stdout.split()]
    assert numbers and numbers[-1] == 2000 and numbers == list(range(numbers[0], 2001)), numbers[:5]
    assert numbers[0] > 1, "nothing was rotated away"
    ocirt("delete", cid)
