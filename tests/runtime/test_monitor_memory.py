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

# The monitor's interpreter: the runtime execs sys.executable (create._exec_monitor).
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
        release.release()


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
