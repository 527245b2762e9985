"""What the test files share: one copy of each helper, imported as `from helpers import ...`.

The fixtures built on these (`state_root`, `ocirt`, `make_bundle`, ...) are in
conftest.py. Everything here reads the host
on its own (from /proc, /sys/fs/cgroup and the `ocirt` command's output),
never through the runtime's code, so a bug in the runtime cannot hide itself
from the tests.

Waiting is always a bounded poll (POLL_TRIES x POLL_DELAY, a hang detector,
never a measurement) that fails naming what it waited for.
"""
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".venv", "collections")
OCIRT = os.path.join(REPO, ".venv", "bin", "ocirt")
CGROUP_BASE = "/sys/fs/cgroup"

POLL_TRIES = 1200
POLL_DELAY = 0.05
HANG_SECONDS = 60  # a hang detector for one command, not a timing assertion
TIOCSWINSZ = 0x5414
# A long-running command that ends at once on SIGTERM: sleep as a container's PID 1 ignores SIGTERM, so
# stopping it waits out the whole stop timeout before SIGKILL.
SERVICE = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
TIOCGPTN = 0x80045430


# --------------------------------------------------------------------------
# ids and waiting

def new_id(prefix="c"):
    """A container id no other test (or engineer on this machine) uses: PREFIX-<12 hex digits>."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def poll(predicate, what, tries=POLL_TRIES, delay=POLL_DELAY):
    """Call PREDICATE up to TRIES times; return its first truthy value or fail naming WHAT."""
    value = None
    for dummy in range(tries):
        value = predicate()
        if value:
            return value
        time.sleep(delay)
    pytest.fail("gave up waiting (%d polls) for %s; last value: %r" % (tries, what, value))


# --------------------------------------------------------------------------
# processes, from /proc

def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (bytes; [0] is the state), or None when gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(b")") + 2:].split()


def proc_start_time(pid):
    """Start time of PID in clock ticks, or None when it is gone or a zombie."""
    fields = proc_stat(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def proc_state(pid):
    """The state letter of PID ('R', 'S', 'D', 'Z', ...), or None when it is gone."""
    fields = proc_stat(pid)
    return None if fields is None else fields[0].decode()


def gone(pid, start_time):
    """True once PID no longer names the process that started at START_TIME (exited, reaped or reused)."""
    return proc_start_time(pid) != start_time


def alive(pid, start_time):
    """True while PID is still the (non-zombie) process that started at START_TIME."""
    return bool(pid) and start_time is not None and not gone(pid, start_time)


def living(pids):
    """PIDS without the gone and the zombies (a killed container init stays in its cgroup until reaped)."""
    return [pid for pid in pids if proc_start_time(pid) is not None]


def wait_gone(pid, start_time):
    poll(lambda: gone(pid, start_time), "process %d to exit" % pid)


def cmdline(pid):
    """PID's arguments as a list of str, or None when it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return None


def fd_targets(pid):
    """{fd: link target} of PID's open descriptors, seen from the host."""
    path = "/proc/%d/fd" % pid
    targets = {}
    for name in os.listdir(path):
        try:
            targets[int(name)] = os.readlink(os.path.join(path, name))
        except OSError:
            continue  # closed while we listed
    return targets


def pid_namespace_of(pid):
    """(st_dev, st_ino) of PID's pid namespace, or None when it is gone."""
    try:
        st = os.stat("/proc/%d/ns/pid" % pid)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_pid_namespace(key):
    """Live pids (zombies are dead, waiting for their reaper) whose pid namespace is KEY, a (st_dev, st_ino)."""
    return sorted(int(name) for name in os.listdir("/proc")
                  if name.isdigit() and pid_namespace_of(int(name)) == key and proc_start_time(int(name)) is not None)


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


# --------------------------------------------------------------------------
# cgroups and mounts, from the host

def runtime_cgroups():
    """Cgroup directories below the runtime's parent (/ocirt) in every hierarchy."""
    found = set()
    for hierarchy in os.listdir(CGROUP_BASE):
        parent = os.path.join(CGROUP_BASE, hierarchy, "ocirt")
        if os.path.isdir(parent):
            for dirpath, dirnames, _files in os.walk(parent):
                found.update(os.path.join(dirpath, d) for d in dirnames)
    return found


def cgroup_dirs(path):
    """The directories of cgroup PATH (e.g. /ocirt/<id>) that exist now: per v1 hierarchy, unified, or a v2 root."""
    relative = path.lstrip("/")
    candidates = [os.path.join(CGROUP_BASE, relative)]
    candidates += [os.path.join(CGROUP_BASE, hierarchy, relative) for hierarchy in os.listdir(CGROUP_BASE)]
    return sorted(c for c in candidates if os.path.isdir(c))


def unescape_mountinfo(field):
    """A mountinfo field with its octal escapes (\\040 for a space, ...) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text):
    """[{id, parent, root, point, opts, fstype, source, super}] from /proc/<pid>/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        mounts.append({
            "id": fields[0],
            "parent": fields[1],
            "root": unescape_mountinfo(fields[3]),
            "point": unescape_mountinfo(fields[4]),
            "opts": set(fields[5].split(",")),
            "fstype": fields[sep + 1],
            "source": fields[sep + 2],
            "super": set(fields[sep + 3].split(",")),
        })
    return mounts


def host_mount_points():
    """The set of mount points the host (this process's mount namespace) sees now."""
    return set(m["point"] for m in parse_mountinfo(read_text("/proc/self/mountinfo")))


# --------------------------------------------------------------------------
# files and bundles

def read_text(path):
    with open(path) as handle:
        return handle.read()


def write_file(path, text, mode=0o644):
    """Write TEXT to PATH (making its parent directories), then set MODE."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def state_entries(root):
    """The names in state root ROOT but the monitor's code cache "=monitor": the containers' directories,
    and "=network/ID" for a container's network left behind (its namespace, cache and files; the
    network area's own copy of cni.py, the poststop hook's script, is the runtime's like "=monitor")."""
    if not os.path.isdir(root):
        return []
    names = [name for name in os.listdir(root) if name not in ("=monitor", "=network")]
    area = os.path.join(root, "=network")
    if os.path.isdir(area):
        names.extend("=network/" + name for name in os.listdir(area) if name != "cni.py")
    return sorted(names)


def state_path(root, container_id):
    """Where the runtime keeps CONTAINER_ID's record (a plain id's directory is its name)."""
    return os.path.join(root, container_id, "state.json")


def state_record(root, container_id):
    """state.json as the runtime wrote it, read from disk (None when it is missing or not JSON)."""
    try:
        with open(state_path(root, container_id), "rb") as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):
        return None


def rootfs_of(bundle):
    return os.path.join(bundle, "rootfs")


def edit_config(bundle, change):
    """Load BUNDLE/config.json, call CHANGE(config) on it, write it back."""
    path = os.path.join(bundle, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    change(config)
    with open(path, "w") as handle:
        json.dump(config, handle, indent=2)


def script(*parts):
    """A `sh -c` command printing each (name, command) pair under a '==name==' header."""
    body = "; ".join("echo ==%s==; %s" % (name, command) for name, command in parts)
    return ["sh", "-c", body + "; true"]


def sections(text):
    """Split output made of '==NAME==' header lines (from `script`) into {NAME: text}."""
    found = {}
    name = None
    for line in text.splitlines(True):
        if line.startswith("==") and line.rstrip("\n").endswith("==") and len(line.strip()) > 4:
            name = line.strip()[2:-2]
            found[name] = ""
        elif name is not None:
            found[name] += line
    return found


# --------------------------------------------------------------------------
# the `ocirt` command

# Every word passed to `ocirt` per state root: the audit looks for leftover
# cgroups of these ids only, so tests run at the same time elsewhere (other
# state roots) are not blamed on this one.
WORDS_BY_ROOT = {}


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
    """`ocirt` bound to one state root (the `ocirt` fixture): ocirt("kill", cid, "KILL", check=False)."""

    def __init__(self, state_root):
        self.root = state_root

    def __call__(self, *args, **kwargs):
        return ocirt_cmd(self.root, *args, **kwargs)

    def state(self, container_id):
        """`ocirt state ID`, parsed."""
        return json.loads(self("state", container_id).stdout)

    def run(self, bundle, container_id=None, **kwargs):
        """`ocirt run` in the foreground; returns CompletedProcess (check=False by default)."""
        kwargs.setdefault("check", False)
        return self("run", "--bundle", bundle, container_id or new_id("run"), **kwargs)

    def ids(self):
        return sorted(s["id"] for s in json.loads(self("list", "--format", "json").stdout))


# Moves the descriptors named on its command line to FIRST, FIRST + 1, ... (in order), closes the
# originals, then execs the rest of its arguments: `python -c _FD_MOVER FIRST COUNT FD... ARGV...`.
_FD_MOVER = r"""
import fcntl, os, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
originals = [int(fd) for fd in sys.argv[3:3 + count]]
copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in originals]
for fd in originals:
    os.close(fd)
for target, fd in enumerate(copies, first):
    os.dup2(fd, target)
for fd in copies:
    os.close(fd)
argv = sys.argv[3 + count:]
os.execv(argv[0], argv)
"""


def ocirt_with_fds(ocirt, fds, *args, **kwargs):
    """Run `ocirt ARGS` with the open descriptors FDS at FIRST (keyword, default 3), FIRST + 1, ...

    What a caller such as podman's conmon does with --preserve-fds, or a
    careless caller that leaks descriptors. check=False unless given.
    """
    first = kwargs.pop("first", 3)
    argv = [sys.executable, "-c", _FD_MOVER, str(first), str(len(fds))] + [str(fd) for fd in fds]
    argv += [OCIRT, "--root", ocirt.root] + [str(a) for a in args]
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    check = kwargs.pop("check", False)
    return subprocess.run(argv, pass_fds=tuple(fds), check=check, **kwargs)


def run_ok(ocirt, bundle, **kwargs):
    """Run BUNDLE in the foreground to completion; assert it exited 0; return its stdout."""
    result = ocirt.run(bundle, **kwargs)
    assert result.returncode == 0, "container failed (%d)\nstdout: %s\nstderr: %s" % (
        result.returncode, result.stdout, result.stderr)
    return result.stdout


def create_and_start(ocirt, bundle, container_id, running=True):
    """`ocirt create` + `ocirt start` (no monitor); return the pid that create recorded.

    RUNNING: the command is long-lived and must be running now, as that pid (a
    short one may already have stopped)."""
    ocirt("create", "--bundle", bundle, container_id)
    pid = ocirt.state(container_id)["pid"]
    ocirt("start", container_id)
    if running:
        state = ocirt.state(container_id)
        assert state["status"] == "running", state
        assert state["pid"] == pid, state
    return pid


def wait_status(ocirt, container_id, wanted):
    """Poll `ocirt state` until the container's status is WANTED; return that state."""
    def check():
        state = ocirt.state(container_id)
        return state if state["status"] == wanted else None
    return poll(check, "container %s to be %s" % (container_id, wanted))


def wait_stopped(ocirt, container_id):
    return wait_status(ocirt, container_id, "stopped")


# --------------------------------------------------------------------------
# the modules' parameters, for tests that call the glue (container_state.run) without Ansible

def container_state_params(state_root, container_id, /, **overrides):
    """oci_container_state's parameters as AnsibleModule fills them in (its argument spec's defaults) for
    CONTAINER_ID in STATE_ROOT, with OVERRIDES (which may name another id or state_root); the audit of the
    state_root fixture (STATE_ROOT) is told of the id."""
    # Imported here: the rest of this file reads the host on its own, never through the collection's code.
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
        container_state_argument_spec)
    params = dict((name, option.get("default")) for name, option in container_state_argument_spec().items())
    params.update(id=container_id, state_root=state_root)
    params.update(overrides)
    # The audit looks for cgroups named after the ids it was told of.
    WORDS_BY_ROOT.setdefault(state_root, set()).add(params["id"])
    return params


# --------------------------------------------------------------------------
# what a failed command must say and leave

def assert_error(result, *needles):
    """RESULT failed, and its stderr holds every NEEDLE."""
    assert result.returncode != 0, "expected a failure, got rc 0: %r %r" % (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, "%r not in the error output %r" % (needle, result.stderr)


def _plain_name(container_id):
    return bool(container_id) and "/" not in container_id and container_id not in (".", "..")


def assert_failed_cleanly(ocirt, result, container_id, *needles):
    """A refused command: non-zero (not killed), one `ocirt: ` message naming NEEDLES, no traceback,
    and no state, listing or cgroup of CONTAINER_ID left."""
    assert result.returncode not in (0, -9), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("ocirt: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, "error does not name %r: %r" % (needle, result.stderr)
    listed = ocirt.ids()
    assert container_id not in listed, listed
    # Names starting with '=' are the runtime's own (the monitor cache, hashed long ids).
    stray = [name for name in state_entries(ocirt.root) if not name.startswith("=") and name not in listed]
    assert stray == [], "state left in %s: %s" % (ocirt.root, stray)
    if _plain_name(container_id):
        assert not os.path.lexists(os.path.join(ocirt.root, container_id))
        assert cgroup_dirs("/ocirt/" + container_id) == []


def assert_create_fails(ocirt, bundle, *needles):
    """`ocirt create` of BUNDLE must fail naming every NEEDLE, and leave no container, state, process,
    mount or cgroup behind."""
    container_id = new_id("bad")
    mounts_before = host_mount_points()
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert result.returncode != 0, "create unexpectedly succeeded: %s%s" % (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, "error does not name %r: %r" % (needle, result.stderr)
    assert ocirt.ids() == []
    assert not os.path.exists(os.path.join(ocirt.root, container_id))
    assert processes_rooted_under(bundle) == []
    assert host_mount_points() - mounts_before == set()
    assert cgroup_dirs("/ocirt/" + container_id) == []
    return result


def assert_gone(ocirt, container_id):
    """CONTAINER_ID has no state, no listing, no process and no cgroup left."""
    assert_error(ocirt("state", container_id, check=False), container_id, "does not exist")
    assert container_id not in ocirt.ids()
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))
    assert processes_in_cgroups_named([container_id]) == []
    assert [path for path in runtime_cgroups() if os.path.basename(path) == container_id] == []


# --------------------------------------------------------------------------
# the host audit behind the `state_root` fixture

def _under(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class HostAudit:
    """What a test may not leave behind: mounts, cgroups, processes inside its bundles, state directories.

    Only what is the test's own counts: the engineers on this machine run
    tests at the same time, and their mounts, cgroups and processes come and
    go meanwhile. A mount is the test's when it lies in its scratch directory
    (the bundles: where a mount propagated out of a container would show) or
    in its state root; a cgroup or a process when it bears an id the test
    gave `ocirt`, or a process when its root or cwd is in the bundles.
    """

    def __init__(self, state_root, scratch):
        self.state_root = state_root
        self.scratch = scratch
        self.mounts_before = self._mounts()
        self.cgroups_before = runtime_cgroups()

    @staticmethod
    def _mounts():
        return set((m["point"], m["root"]) for m in parse_mountinfo(read_text("/proc/self/mountinfo")))

    def leftovers(self):
        problems = []
        new_mounts = sorted(m for m in self._mounts() - self.mounts_before
                            if _under(m[0], self.scratch) or _under(m[0], self.state_root))
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
        entries = state_entries(self.state_root)
        if entries:
            problems.append("state left in %s: %s" % (self.state_root, entries))
        return problems


# --------------------------------------------------------------------------
# terminals, for the terminal and exec tests

# A shell loop that waits until its terminal has ROWS x COLUMNS, then prints MARK.
WAIT_FOR_SIZE = 'until [ "$(stty size 2>/dev/null)" = "%d %d" ]; do sleep 0.05; done; echo %s'


def default_terminal_attributes():
    """The attributes every new pty starts with (what a caller's terminal must be left with here)."""
    master, slave = os.openpty()
    try:
        return termios.tcgetattr(slave)
    finally:
        os.close(master)
        os.close(slave)


def in_terminal(argv, size=None, steps=()):
    """Run ARGV as a session leader whose controlling terminal is a new pty (pty.fork), as in a shell.

    SIZE: (rows, columns) of that terminal. STEPS: [(needle, action)]: once
    NEEDLE has been read (after the previous one), ACTION(master) runs.
    Returns (exit code, output, the terminal's attributes after ARGV exited);
    fails if ARGV exits before every needle was read.
    """
    pid, master = pty.fork()
    if pid == 0:
        try:
            if size:
                fcntl.ioctl(0, TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    # The slave, held open here too, so that the terminal outlives ARGV for the checks after it.
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open("/dev/pts/%d" % number, os.O_RDWR | os.O_NOCTTY)
    status = None
    output = b""
    pending = list(steps)
    position = 0
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while status is None:
            if time.monotonic() > deadline:
                pytest.fail("%s did not return (waiting for %r); output so far: %r"
                            % (argv[3:], pending[0][0] if pending else "its exit", output))
            if select.select([master], [], [], 0.1)[0]:
                output += os.read(master, 65536)
            while pending and output.find(pending[0][0], position) >= 0:
                position = output.find(pending[0][0], position) + len(pending[0][0])
                pending.pop(0)[1](master)
            done, waited = os.waitpid(pid, os.WNOHANG)
            if done:
                status = waited
        while select.select([master], [], [], 0)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            output += chunk
        after = termios.tcgetattr(slave)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
        os.close(slave)
    assert not pending, "%s exited before %r was read; output: %r" % (argv[3:], pending[0][0], output)
    return os.waitstatus_to_exitcode(status), output, after


def resize(rows, columns):
    """A step action: the caller's terminal changes size (the kernel sends SIGWINCH to its foreground)."""
    def action(master):
        fcntl.ioctl(master, TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return action


def typing(data):
    """A step action: DATA typed on the caller's terminal."""
    def action(master):
        os.write(master, data)
    return action


def ansible_env(stdout_callback="ansible.builtin.default", collections_path=None, drop=("ANSIBLE_",), **extra):
    """The environment of an ansible/ansible-playbook run of this checkout's collection (or of the one under
    COLLECTIONS_PATH): nothing of the caller's PYTHONPATH or variables beginning with DROP, those collections
    only, no warnings or colours to parse around; EXTRA on top."""
    env = dict((key, value) for key, value in os.environ.items()
               if key != "PYTHONPATH" and not key.startswith(tuple(drop)))
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path or os.path.join(REPO, ".venv", "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_NOCOLOR="true")
    if stdout_callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = stdout_callback
    env.update(extra)
    return env
