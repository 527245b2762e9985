"""`ocirt exec` into real running containers, and `ocirt features`.

The exec'd process must be where the container's first process is (every
namespace, every cgroup, the same mount table) and must get process.*
as the container's process does (capabilities, user, env, cwd), with the
overrides of the command line applied to it alone. Expected behaviour is
runc's (`runc exec`) and the runtime-spec's.

Every wait is bounded (a poll, or a subprocess timeout used as a hang
detector); nothing asserts on durations.
"""
import json
import os
import re
import select
import signal
import subprocess

import pytest

from helpers import (
    HANG_SECONDS, OCIRT, WAIT_FOR_SIZE, assert_error, default_terminal_attributes, in_terminal, new_id, poll,
    proc_start_time, processes_in_cgroups_named, read_text, resize, typing)

DEFAULT_CAPS = 0x20000420  # CAP_AUDIT_WRITE | CAP_KILL | CAP_NET_BIND_SERVICE, the default config's
CAP_SYS_ADMIN = 1 << 21
NAMESPACES = ("pid", "mnt", "net", "ipc", "uts")
# What exec says when the process's "ready" overtakes the forked helper's "pid" on their shared channel.
MESSAGE_RACE = "unexpected message {'type': 'ready'}"
RACE_TRIES = 100  # it loses between 1 in 200 and 1 in 15 here, depending on the load


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def cap_fields(status_text):
    """{'CapEff': int, ...} from /proc/PID/status text."""
    return dict((line.split(":")[0], int(line.split()[1], 16))
                for line in status_text.splitlines() if line.startswith("Cap"))


def mount_table(text):
    """[(mount id, mount point)] of mountinfo text."""
    return [(line.split()[0], line.split()[4]) for line in text.splitlines() if line.strip()]


class Running:
    """A running busybox container (sleep 1000) with its own hostname."""

    def __init__(self, ocirt, bundle, cid, hostname):
        self.ocirt = ocirt
        self.bundle = bundle
        self.id = cid
        self.hostname = hostname
        ocirt("create", "--bundle", bundle, cid, timeout=HANG_SECONDS)
        ocirt("start", cid, timeout=HANG_SECONDS)
        self.pid = ocirt.state(cid)["pid"]
        assert proc_start_time(self.pid) is not None

    def exec(self, *command, **kwargs):
        """`ocirt exec [FLAGS] ID COMMAND...`, FLAGS from the keyword argument `flags`; check=False.

        Retried when it failed only by the message race that
        test_exec_reports_a_successful_start_every_time is about, so that the
        other tests here keep testing what they are named after.
        """
        flags = list(kwargs.pop("flags", []))
        kwargs.setdefault("check", False)
        kwargs.setdefault("timeout", HANG_SECONDS)
        for dummy in range(5):
            result = self.ocirt("exec", *(flags + [self.id] + list(command)), **kwargs)
            if MESSAGE_RACE not in (result.stderr or ""):
                break
        return result

    def exec_ok(self, *command, **kwargs):
        result = self.exec(*command, **kwargs)
        assert result.returncode == 0, "exec %s %s failed (%d): %s%s" % (
            kwargs.get("flags", []), command, result.returncode, result.stdout, result.stderr)
        return result.stdout

    def host_view(self, name):
        return read_text("/proc/%d/%s" % (self.pid, name))


@pytest.fixture
def running(ocirt, make_bundle):
    hostname = new_id("ex")
    bundle = make_bundle(["sleep", "1000"], config={"hostname": hostname})
    return Running(ocirt, bundle, new_id(), hostname)


# --------------------------------------------------------------------------
# 1. where the exec'd process is
# --------------------------------------------------------------------------

def test_exec_sees_the_containers_hostname(running):
    assert running.exec_ok("hostname") == running.hostname + "\n"


def test_exec_joins_the_containers_cgroups(running):
    inside = running.exec_ok("cat", "/proc/self/cgroup")
    assert inside == running.host_view("cgroup"), "the exec'd process is not in the init's cgroups"
    paths = [line.split(":", 2)[2] for line in inside.splitlines()]
    assert paths and all(path == "/ocirt/%s" % running.id for path in paths), inside


def test_exec_sees_the_init_mount_table(running):
    out = running.exec_ok("sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/1/mountinfo; echo ==; "
                                      "cat /proc/self/mountinfo")
    first, rest = out.split("\n", 1)
    assert first.strip() == "sleep 1000", "pid 1 of the exec'd process is not the container's init: %r" % first
    init_view, own_view = rest.split("==\n")
    assert mount_table(own_view) == mount_table(init_view)
    assert mount_table(own_view) == mount_table(running.host_view("mountinfo"))
    assert ("/" in [point for ident, point in mount_table(own_view)]
            and "/proc" in [point for ident, point in mount_table(own_view)])


def test_exec_joins_every_namespace_of_the_init(running):
    script = "; ".join("readlink /proc/self/ns/%s; readlink /proc/1/ns/%s" % (kind, kind) for kind in NAMESPACES)
    lines = running.exec_ok("sh", "-c", script).split()
    assert len(lines) == 2 * len(NAMESPACES), lines
    for index, kind in enumerate(NAMESPACES):
        own, init = lines[2 * index], lines[2 * index + 1]
        expected = os.readlink("/proc/%d/ns/%s" % (running.pid, kind))
        assert own == init == expected, (kind, own, init, expected)
        assert own != os.readlink("/proc/self/ns/%s" % kind), "%s: still the host's namespace" % kind


def test_exec_relays_stdin_and_stdout(running):
    result = running.exec("cat", input="line one\nline two\n", stdin=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line one\nline two\n"


# --------------------------------------------------------------------------
# 2. exit codes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 7", 7), ("kill -KILL $$", 128 + 9),
                                         ("kill -TERM $$", 128 + 15)])
def test_exec_returns_the_exit_code(running, script, code):
    result = running.exec("sh", "-c", script)
    assert result.returncode == code, result.stderr
    assert running.ocirt.state(running.id)["status"] == "running"


# --------------------------------------------------------------------------
# 3. process settings and overrides
# --------------------------------------------------------------------------

def test_env_adds_and_overrides_and_keeps_the_containers_env(running):
    out = running.exec_ok("sh", "-c", 'echo "$FOO|$TERM|$PATH"', flags=["--env", "FOO=bar", "--env", "TERM=dumb"])
    assert out == "bar|dumb|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    assert running.exec_ok("sh", "-c", 'echo "[$FOO]$TERM"') == "[]xterm\n", "the override outlived its exec"


def test_cwd(running):
    assert running.exec_ok("pwd") == "/\n"
    assert running.exec_ok("pwd", flags=["--cwd", "/tmp"]) == "/tmp\n"


@pytest.mark.parametrize("umask, expected", [(None, "0022"), (0o027, "0027")])
def test_exec_and_the_containers_process_agree_on_umask_and_cwd(ocirt, make_bundle, umask, expected):
    """One setup sequence: without --cwd an exec starts in process.cwd, with process.user.umask
    (0022 when unset), exactly as the container's own process did."""
    user = {"uid": 0, "gid": 0}
    if umask is not None:
        user["umask"] = umask
    bundle = make_bundle(["sh", "-c", "{ umask; pwd; } > /init-view.tmp && mv /init-view.tmp /init-view; exec sleep 1000"],
                         config={"root": {"readonly": False}, "process": {"cwd": "/tmp", "user": user}})
    running = Running(ocirt, bundle, new_id(), None)
    view = os.path.join(bundle, "rootfs", "init-view")
    init_view = poll(lambda: os.path.exists(view) and read_text(view), "the container process's umask and cwd")
    assert init_view == "%s\n/tmp\n" % expected
    assert running.exec_ok("sh", "-c", "umask; pwd") == init_view


def test_cwd_that_does_not_exist_is_an_error(running):
    result = running.exec("pwd", flags=["--cwd", "/no/such/dir"])
    assert_error(result, "process.cwd", "/no/such/dir")


def test_user(running):
    assert running.exec_ok("sh", "-c", "id -u; id -g; id -G", flags=["--user", "1000:1000"]) == "1000\n1000\n1000\n"
    assert running.exec_ok("sh", "-c", "id -u; id -g") == "0\n0\n"


def test_capabilities_are_the_configured_set(running):
    caps = cap_fields(running.exec_ok("cat", "/proc/self/status"))
    init_caps = cap_fields(running.host_view("status"))
    assert init_caps["CapBnd"] == DEFAULT_CAPS and init_caps["CapEff"] == DEFAULT_CAPS, init_caps
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[field] == DEFAULT_CAPS, "%s %#x is not the configured %#x" % (field, caps[field], DEFAULT_CAPS)
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, caps
    # Without CAP_SYS_ADMIN, sethostname is refused.
    assert running.exec("hostname", "not-allowed").returncode != 0
    assert running.exec_ok("hostname") == running.hostname + "\n"


@pytest.mark.parametrize("flag", ["CAP_SYS_ADMIN", "sys_admin"])
def test_cap_adds_a_capability_to_the_exec_d_process_only(running, flag):
    caps = cap_fields(running.exec_ok("cat", "/proc/self/status", flags=["--cap", flag]))
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[field] == DEFAULT_CAPS | CAP_SYS_ADMIN, "%s %#x" % (field, caps[field])
    assert running.exec_ok("sh", "-c", "hostname changed-by-exec && hostname", flags=["--cap", flag]) \
        == "changed-by-exec\n"
    # The init, and the next exec, keep the configured set.
    init_caps = cap_fields(running.host_view("status"))
    assert init_caps["CapEff"] == DEFAULT_CAPS and init_caps["CapBnd"] == DEFAULT_CAPS, init_caps
    later = cap_fields(running.exec_ok("cat", "/proc/self/status"))
    assert later["CapEff"] == DEFAULT_CAPS and later["CapBnd"] == DEFAULT_CAPS, later


def write_process(scratch, process):
    path = os.path.join(scratch, new_id("process") + ".json")
    with open(path, "w") as handle:
        json.dump(process, handle)
    return path


def test_process_file(running, scratch):
    path = write_process(scratch, {
        "args": ["sh", "-c", 'echo "$FROM_FILE|[$TERM]"; id -u; id -g; pwd; grep ^CapBnd /proc/self/status'],
        "env": ["PATH=/bin", "FROM_FILE=yes"], "cwd": "/home/app", "user": {"uid": 1000, "gid": 1000},
        "terminal": False,
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}})
    lines = running.exec_ok(flags=["--process", path]).splitlines()
    # The file is the whole process: the container's TERM is not there.
    assert lines[:4] == ["yes|[]", "1000", "1000", "/home/app"], lines
    assert int(lines[4].split()[1], 16) == 1 << 5, lines[4]


def test_process_file_without_capabilities_gets_the_containers_not_more(running, scratch):
    """runc falls back to the container's capabilities when the process has none (finalizeNamespace)."""
    path = write_process(scratch, {"args": ["cat", "/proc/self/status"], "env": ["PATH=/bin"], "cwd": "/"})
    caps = cap_fields(running.exec_ok(flags=["--process", path]))
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[field] & ~DEFAULT_CAPS == 0, \
            "%s %#x is more than the container's %#x" % (field, caps[field], DEFAULT_CAPS)


def test_process_file_that_is_not_json_is_an_error(running, scratch):
    path = os.path.join(scratch, "broken.json")
    with open(path, "w") as handle:
        handle.write("{not json")
    assert_error(running.exec(flags=["--process", path]), "--process", path)


def test_process_file_with_a_bad_field_is_an_error(running, scratch):
    path = write_process(scratch, {"args": "sh", "cwd": "/"})
    assert_error(running.exec(flags=["--process", path]), "process.args")


def test_rlimits_and_no_new_privileges_of_the_config(running):
    assert running.exec_ok("sh", "-c", "ulimit -n") == "1024\n"
    status = running.exec_ok("cat", "/proc/self/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status


def test_only_stdio_reaches_the_exec_d_process(running):
    """No descriptor of the runtime (state, lock, channel, status pipe) leaks into the container."""
    # "; true": a lone command would be exec'd by sh, and ls would list its own directory descriptor.
    assert running.exec_ok("sh", "-c", "ls /proc/$$/fd; true").split() == ["0", "1", "2"]


def test_signals_to_a_foreground_exec_are_forwarded(running):
    """Once the process runs (it has printed), a SIGTERM to `ocirt exec` reaches it, and exec returns its code.

    Repeated: runc installs its forwarding before the process starts; a
    runtime that installs it later loses some signals (and itself) to the window.
    """
    argv = [OCIRT, "--root", running.ocirt.root, "exec", running.id,
            "sh", "-c", 'trap "exit 9" TERM; echo ready; while :; do sleep 0.1; done']
    codes = []
    for dummy in range(8):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ready = select.select([proc.stdout], [], [], HANG_SECONDS)[0]
            assert ready and proc.stdout.readline() == b"ready\n", proc.stderr.read() if not ready else ""
            proc.send_signal(signal.SIGTERM)
            codes.append(proc.wait(timeout=HANG_SECONDS))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    assert codes == [9] * len(codes), \
        "SIGTERM was not forwarded (-15: it killed ocirt exec itself, the process lives on): %s" % codes
    poll(lambda: processes_in_cgroups_named([running.id]) == [running.pid], "the exec'd shells to be gone")


def test_exec_reports_a_successful_start_every_time(running):
    """The forked helper's "pid" and the process's "ready" share one channel: "ready" must not be
    taken for a failure when it comes first. Repeated because it is a race."""
    failures = []
    for index in range(RACE_TRIES):
        result = running.ocirt("exec", running.id, "true", check=False, timeout=HANG_SECONDS)
        if result.returncode != 0:
            failures.append((index, result.returncode, result.stderr.strip()))
    assert failures == [], "exec of `true` failed %d times in %d: %s" % (len(failures), RACE_TRIES, failures[:3])


# --------------------------------------------------------------------------
# 4. --detach, --pid-file
# --------------------------------------------------------------------------

def test_detach_with_pid_file(running, scratch):
    pid_file = os.path.join(scratch, "exec.pid")
    out_path = os.path.join(scratch, "exec-detach.out")
    with open(out_path, "w") as out:
        result = running.exec("sleep", "999", flags=["--detach", "--pid-file", pid_file],
                              stdout=out, stderr=subprocess.STDOUT, capture_output=False)
    assert result.returncode == 0, read_text(out_path)
    pid = int(read_text(pid_file))
    start = proc_start_time(pid)
    assert start is not None, "the pid %d in the pid file is not alive" % pid
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        assert handle.read().split(b"\0")[:-1] == [b"sleep", b"999"]
    assert read_text("/proc/%d/cgroup" % pid) == running.host_view("cgroup")
    assert os.readlink("/proc/%d/ns/pid" % pid) == os.readlink("/proc/%d/ns/pid" % running.pid)
    assert pid in processes_in_cgroups_named([running.id])
    listed = json.loads(running.ocirt("ps", "--format", "json", running.id).stdout)
    assert running.pid in listed and pid in listed, listed
    running.ocirt("delete", "--force", running.id)
    poll(lambda: proc_start_time(pid) != start, "the detached exec'd process to go with its container")


# --------------------------------------------------------------------------
# 5. errors
# --------------------------------------------------------------------------

def test_exec_in_a_stopped_container_is_an_error(ocirt, make_bundle):
    cid = new_id()
    ocirt("create", "--bundle", make_bundle(["true"]), cid, timeout=HANG_SECONDS)
    ocirt("start", cid)
    poll(lambda: ocirt.state(cid)["status"] == "stopped", "the container to stop")
    result = ocirt("exec", cid, "true", check=False, timeout=HANG_SECONDS)
    assert_error(result, cid, "stopped")
    ocirt("delete", cid)


def test_exec_in_an_unknown_container_is_an_error(ocirt):
    cid = new_id()
    result = ocirt("exec", cid, "true", check=False, timeout=HANG_SECONDS)
    assert_error(result, cid, "does not exist")


@pytest.mark.parametrize("command", ["/no/such/program", "no-such-program"])
def test_a_missing_executable_is_an_error_naming_process_args(running, command):
    result = running.exec(command)
    assert_error(result, "process.args[0]", command)
    assert running.ocirt.state(running.id)["status"] == "running"
    poll(lambda: processes_in_cgroups_named([running.id]) == [running.pid], "the failed exec to leave nothing behind")


def test_exec_without_a_command_is_a_usage_error(running):
    result = running.ocirt("exec", running.id, check=False)
    assert result.returncode == 2, result
    assert "exec" in result.stderr


# --------------------------------------------------------------------------
# 6. --tty
# --------------------------------------------------------------------------


def test_tty_under_a_terminal(running):
    script = "; ".join(["tty", "[ -t 0 ] && echo stdin-is-a-tty", "[ -t 1 ] && echo stdout-is-a-tty",
                        WAIT_FOR_SIZE % (37, 111, "caller-size-seen"), WAIT_FOR_SIZE % (45, 140, "new-size-seen"),
                        "read line", "echo got-$line", "exit 3"])
    argv = [OCIRT, "--root", running.ocirt.root, "exec", "--tty", running.id, "sh", "-c", script]
    for dummy in range(5):  # retried on the message race only (test_exec_reports_a_successful_start_every_time)
        try:
            code, output, after = in_terminal(argv, size=(37, 111), steps=[
                (b"caller-size-seen", resize(45, 140)), (b"new-size-seen", typing(b"typed\r"))])
        except AssertionError as exc:
            if MESSAGE_RACE in str(exc):
                continue
            raise
        break
    text = output.decode("utf-8", "replace")
    assert code == 3, text
    # The exec's own pty on the container's devpts.
    assert re.search(r"^/dev/pts/\d+\r?$", text, re.M), text
    assert "stdin-is-a-tty" in text and "stdout-is-a-tty" in text and "got-typed" in text, text
    assert after == default_terminal_attributes(), "exec --tty left the caller's terminal changed"
    poll(lambda: processes_in_cgroups_named([running.id]) == [running.pid], "the exec'd shell to be gone")


def test_without_tty_the_process_has_no_terminal(running):
    out = running.exec_ok("sh", "-c", "[ -t 0 ] || echo no-tty")
    assert out == "no-tty\n"


# --------------------------------------------------------------------------
# 7. features
# --------------------------------------------------------------------------

def test_features_document():
    result = subprocess.run([OCIRT, "features"], capture_output=True, text=True, check=False, timeout=HANG_SECONDS)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    for key in ("ociVersionMin", "ociVersionMax"):
        assert re.match(r"^\d+\.\d+\.\d+", document[key]), document[key]
    assert tuple(int(part) for part in document["ociVersionMin"].split(".")[:3]) \
        <= tuple(int(part) for part in document["ociVersionMax"].split(".")[:3])
    assert sorted(document["hooks"]) == sorted(
        ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"])
    options = document["mountOptions"]
    assert isinstance(options, list) and all(isinstance(option, str) for option in options)
    assert set(["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "rprivate"]) <= set(options), options
    linux = document["linux"]
    assert set(["pid", "network", "mount", "ipc", "uts", "user", "cgroup"]) <= set(linux["namespaces"])
    capabilities = linux["capabilities"]
    assert all(re.match(r"^CAP_[A-Z_]+$", cap) for cap in capabilities), capabilities
    assert set(["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]) <= set(capabilities)
    assert len(set(capabilities)) == len(capabilities)
