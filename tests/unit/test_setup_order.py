"""The order of the setup steps, checked without root through the recording fake of the syscall boundary.

The real code runs: create's container init (setup/container_init.py) and
exec's process (operations/container_exec.py), each in a forked child, with
the test playing the runtime's side of protocol.py. Only the kernel calls that
change something are replaced by fake_syscalls.RecordingSyscalls; the test
then reads which were made, in which order (runc's orders where the kernel
leaves a choice: seccomp before the capabilities drop without
noNewPrivileges, as late as possible with it).
"""
import copy
import os
import select

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import protocol, spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import Channel
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import container_init, mounts, process, seccomp
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.namespaces import NamespacePlan

from helpers import poll
from fake_syscalls import LOOKS_ONLY, RecordingSyscalls, index_of, names, public_functions, run_forked

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
MS_BIND = 4096
MS_REC = 16384
MS_REMOUNT = 32
MS_RDONLY = 1
MS_SLAVE = 1 << 19
MNT_DETACH = 2
CLOSE_RANGE_CLOEXEC = 4
START = "TEST:start"  # recorded by the test when it plays `start` (opens the exec fifo)
READY = "TEST:ready"  # recorded by the child as it sends READY
GO_SENT = "TEST:go"  # recorded by the test as it sends GO

# A profile that denies mkdir with EPERM and allows the rest (the shape of runtime-tools' test).
PROFILE = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}

pytestmark = pytest.mark.skipif(os.uname().machine not in seccomp.NATIVE,
                                reason="seccomp filters are compiled for x86_64, aarch64, x86 and arm only")


def make_bundle(tmp_path):
    """A bundle directory whose rootfs has the mount points and the paths the default config masks."""
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    for directory in ("proc/sys", "proc/acpi", "dev", "etc", "tmp", "sys"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "proc" / "kcore").write_text("")
    return str(bundle), str(rootfs)


def container_config(**process):
    """`runc spec`'s config (without the cgroup mount, which needs the runtime's cgroups), PROCESS merged."""
    config = spec.default_config(["/bin/sh", "-c", "true"])
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]
    config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 100]}
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
                                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    config["process"]["capabilities"]["ambient"] = ["CAP_KILL"]
    config["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
    config["process"].update(process)
    return config


def _read_fifo_until_closed(path, pid):
    """Play `start`: open the exec fifo, read the init's answer until it closes (or exits)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    answer = b""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            if poller.poll(100):
                chunk = os.read(fd, 65536)
                if chunk:
                    answer += chunk
                    continue
                if answer:
                    return answer
            if os.waitpid(pid, os.WNOHANG)[0]:
                raise AssertionError("the init exited without answering start (answer so far %r)" % answer)
    finally:
        os.close(fd)


def record_ready(channel, fake):
    """Have CHANNEL's READY recorded in the fake's log as it is sent, in the sender's order."""
    send = channel.send

    def recording_send(kind, fds=None, **fields):
        if kind == protocol.READY:
            fake.record(READY)
        return send(kind, fds, **fields)
    channel.send = recording_send


def run_create(tmp_path, config, cgroups_before_fork=False):
    """Run create's container init under the fake; return (exit code, calls, answer on the exec fifo).

    CGROUPS_BEFORE_FORK: the cgroup was made before the fork (its directories in InitArgs), as
    create does but with the systemd driver; the test then sends GO only once the init has made
    every mount, recording GO_SENT as it does, which would hang an init that waited for it first."""
    fake = RecordingSyscalls(tmp_path / "calls.log")
    bundle, rootfs = make_bundle(tmp_path)
    fifo = str(tmp_path / "exec.fifo")
    os.mkfifo(fifo, 0o622)
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    channel, child_channel = Channel.pair()
    args = container_init.InitArgs(config, rootfs, bundle, NamespacePlan(config), child_channel, fifo_fd, [], 0,
                                   {} if cgroups_before_fork else None)
    answer = []

    def child():
        channel.close()
        record_ready(child_channel, fake)
        container_init.container_init(args)

    def parent(pid):
        child_channel.close()
        if cgroups_before_fork:
            poll(lambda: _last_mount_made(fake.calls(), rootfs), "the init's mounts, made before GO")
            fake.record(GO_SENT)
        channel.send(protocol.GO, cgroups={}, state={"ociVersion": "1.0.2", "id": "order", "status": "creating",
                                                     "pid": pid, "bundle": bundle},
                     runtime_hooks=False)
        channel.send(protocol.JOINED)
        channel.expect(protocol.READY, "the init")
        fake.record(START)
        answer.append(_read_fifo_until_closed(fifo, pid))

    try:
        code, calls = run_forked(fake, child, parent)
    finally:
        os.close(fifo_fd)
        channel.close()
        child_channel.close()
    return code, calls, answer[0] if answer else None


def _last_mount_made(calls, rootfs):
    """Whether the init has made its last mount (root.readonly's remount of the rootfs)."""
    try:
        return index_of(calls, "mount", lambda a: a[3] & MS_RDONLY and a[1] == rootfs) >= 0
    except ValueError:
        return False


def run_exec(tmp_path, config):
    """Run exec's process (the one the joiner forks) under the fake; return (exit code, calls)."""
    fake = RecordingSyscalls(tmp_path / "calls.log")
    proc = copy.deepcopy(config["process"])
    linux = config.get("linux") or {}
    seccomp_filter = None
    if linux.get("seccomp") is not None:
        seccomp_filter = seccomp.prepare(linux["seccomp"])
    channel, child_channel = Channel.pair()
    status_r, status_w = os.pipe()
    last_cap = process.last_capability()

    def child():
        channel.close()
        os.close(status_r)
        record_ready(child_channel, fake)
        container_exec._process(child_channel, proc, seccomp_filter, 0, status_w, last_cap, (linux, None))

    def parent(_pid):
        child_channel.close()
        os.close(status_w)
        channel.expect(protocol.READY, "the exec'd process")
        with os.fdopen(status_r, "rb") as status:
            assert status.read() == b"", "the exec'd process reported a failure"

    try:
        code, calls = run_forked(fake, child, parent)
    finally:
        channel.close()
        child_channel.close()
    return code, calls


def run(how, tmp_path, config):
    if how == "create":
        code, calls, answer = run_create(tmp_path, config)
        assert answer == protocol.FIFO_STARTED, answer
    else:
        code, calls = run_exec(tmp_path, config)
    assert code == 0, calls
    assert names(calls)[-1] == "execve", names(calls)
    return calls


def prctl(option, arg=None):
    return lambda args: args[0] == option and (arg is None or args[1] == arg)


# --------------------------------------------------------------------------
# create: the filesystem before the root switch


def test_every_mount_comes_before_pivot_root_in_the_runtime_sequence_order(tmp_path):
    config = container_config()
    calls = run("create", tmp_path, config)
    rootfs = os.path.join(str(tmp_path), "bundle", "rootfs")
    # (source, target, type, flags, data): data is None when not given
    mount_calls = [(call[2] + [None])[:5] for call in calls if call[1] == "mount"]
    pivot = index_of(calls, "pivot_root")
    last_mount_before = index_of(calls, "mount", lambda a: a[3] & MS_RDONLY and a[1] == rootfs)
    # 1. the host's mount events stop at the container (rslave, recursive), the rootfs becomes a mount point
    assert mount_calls[0] == [None, "/", None, MS_SLAVE | MS_REC, None]
    assert mount_calls[2] == [rootfs, rootfs, None, MS_BIND | MS_REC, None]
    # 2. the config's mounts, in their order
    types = [a[2] for a in mount_calls if a[2] in ("proc", "tmpfs", "devpts", "mqueue", "sysfs")]
    assert types[:6] == ["proc", "tmpfs", "devpts", "tmpfs", "mqueue", "sysfs"], types
    # 3. /dev's nodes, after the /dev tmpfs; 4. masked and read-only paths after them
    first_node = index_of(calls, "mknodat")
    dev_tmpfs = index_of(calls, "mount", lambda a: a[2] == "tmpfs" and "size=65536k" in (a[4] or ""))
    masked_kcore = index_of(calls, "mount", lambda a: a[0] == "/dev/null")
    readonly_sys = index_of(calls, "mount", lambda a: a[3] == MS_BIND | MS_REC and a[0] == a[1] and a[0] != rootfs)
    assert dev_tmpfs < first_node < index_of(calls, "mknodat", last=True) < masked_kcore < readonly_sys
    assert [a[1] for a in (c[2] for c in calls if c[1] == "mknodat")][:6] == [
        "null", "zero", "full", "random", "urandom", "tty"]
    # 5. root.readonly last; hostname (kernel settings) after the mounts; then the root switch
    assert readonly_sys < last_mount_before < index_of(calls, "sethostname") < pivot
    assert calls[index_of(calls, "sethostname")][2] == ["ocirt"]
    assert all(i < pivot for i, call in enumerate(calls) if call[1] in ("mknodat", "fchownat", "sethostname"))
    # after pivot_root: the old root detached without propagating to the host, then cwd "/"
    after = names(calls[pivot:])
    assert after[:5] == ["pivot_root", "fchdir", "mount", "umount2", "chdir"], after
    assert calls[pivot][2] == [".", "."]
    assert calls[pivot + 2][2][:4] == [None, ".", None, MS_SLAVE | MS_REC]
    assert calls[pivot + 3][2] == [".", MNT_DETACH] and calls[pivot + 4][2] == ["/"]
    assert "chroot" not in names(calls)
    assert not [call for call in calls[pivot + 3:] if call[1] in ("mount", "mknodat", "pivot_root")]


def test_with_its_cgroup_made_before_the_fork_the_init_mounts_before_go_and_the_rest_waits_for_it(tmp_path):
    """create makes the cgroup before forking: the init's mounts overlap the runtime's bookkeeping
    and cgroup join, and only what needs the runtime (the kernel settings on: JOINED) waits."""
    code, calls, answer = run_create(tmp_path, container_config(), cgroups_before_fork=True)
    assert code == 0 and answer == protocol.FIFO_STARTED, (code, answer, names(calls))
    go = index_of(calls, GO_SENT)
    assert [c for c in calls[:go] if c[1] == "mount"], "no mount before GO"
    pivot = index_of(calls, "pivot_root")
    assert not [c for c in calls[go:pivot] if c[1] in ("mount", "mknodat")], names(calls[go:pivot])
    assert go < index_of(calls, "sethostname") < index_of(calls, "pivot_root") < index_of(calls, READY)


def test_without_a_mount_namespace_the_root_switch_is_a_chroot_and_nothing_is_mounted(tmp_path):
    config = container_config()
    config["mounts"] = []
    config["linux"]["namespaces"] = [{"type": "pid"}, {"type": "uts"}]
    config["linux"]["maskedPaths"] = config["linux"]["readonlyPaths"] = []
    config["root"]["readonly"] = False
    calls = run("create", tmp_path, config)
    rootfs = os.path.join(str(tmp_path), "bundle", "rootfs")
    assert not {"mount", "pivot_root", "umount2", "mknodat"} & set(names(calls))
    switch = index_of(calls, "chroot")
    assert calls[switch][2] == [rootfs] and calls[switch + 1][1:] == ("chdir", ["/"])
    assert switch < index_of(calls, "setrlimit")


# --------------------------------------------------------------------------
# the process settings: one sequence for create and exec


@pytest.mark.parametrize("how", ["create", "exec"])
def test_rlimits_then_groups_gid_uid_with_keepcaps_then_capabilities_then_exec(tmp_path, how):
    calls = run(how, tmp_path, container_config())
    rlimits = [call[2] for call in calls if call[1] == "setrlimit"]
    assert rlimits == [[7, 1024, 1024], [4, 0, 0]]
    last_rlimit = index_of(calls, "setrlimit", last=True)
    first_drop = index_of(calls, "prctl", prctl(PR_CAPBSET_DROP))
    keep = index_of(calls, "prctl", prctl(PR_SET_KEEPCAPS, 1))
    groups = index_of(calls, "setgroups")
    gid = index_of(calls, "setresgid", lambda a: a == [1000, 1000, 1000])
    uid = index_of(calls, "setresuid", lambda a: a == [1000, 1000, 1000])
    unkeep = index_of(calls, "prctl", prctl(PR_SET_KEEPCAPS, 0))
    capset = index_of(calls, "capset")
    ambient = index_of(calls, "prctl", prctl(PR_CAP_AMBIENT, 2))
    execve = index_of(calls, "execve")
    assert last_rlimit < first_drop < keep < groups < gid < uid < unkeep < capset < ambient < execve
    assert calls[groups][2] == [[5, 100]]
    # The bounding set keeps CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10) only.
    dropped = set(call[2][1] for call in calls if call[1] == "prctl" and call[2][0] == PR_CAPBSET_DROP)
    assert dropped == set(range(process.last_capability() + 1)) - {5, 10, 29}
    effective, permitted, inheritable = calls[capset][2]
    assert effective == permitted == (1 << 5) | (1 << 10) | (1 << 29) and inheritable == 1 << 5
    assert calls[ambient][2][2] == 5
    # Nothing changes ids or limits after the exec has been decided.
    assert not set(names(calls[uid + 1:])) & {"setresuid", "setresgid", "setgroups", "setrlimit"}


@pytest.mark.parametrize("how", ["create", "exec"])
def test_with_no_new_privileges_seccomp_loads_last_after_the_capabilities_and_start(tmp_path, how):
    config = container_config(noNewPrivileges=True)
    config["linux"]["seccomp"] = PROFILE
    calls = run(how, tmp_path, config)
    load = index_of(calls, "seccomp_set_mode_filter")
    assert len([name for name in names(calls) if name == "seccomp_set_mode_filter"]) == 1
    nnp = index_of(calls, "prctl", prctl(PR_SET_NO_NEW_PRIVS, 1))
    assert index_of(calls, "setresuid", last=True) < index_of(calls, "capset") < nnp < load
    assert index_of(calls, READY) < load < index_of(calls, "reset_signals") < index_of(calls, "execve")
    if how == "create":
        assert index_of(calls, START) < load
    assert calls[load][2][1] == 0  # no flags: prctl(PR_SET_SECCOMP), which needs no_new_privs here


@pytest.mark.parametrize("how", ["create", "exec"])
def test_without_no_new_privileges_seccomp_loads_before_the_capabilities_go(tmp_path, how):
    config = container_config(noNewPrivileges=False)
    config["linux"]["seccomp"] = PROFILE
    calls = run(how, tmp_path, config)
    load = index_of(calls, "seccomp_set_mode_filter")
    # Without no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter: it must come
    # before the bounding set, the ids and the capability sets change (runc's order).
    assert index_of(calls, "setrlimit", last=True) < load < index_of(calls, "prctl", prctl(PR_CAPBSET_DROP))
    assert load < index_of(calls, "setresuid", lambda a: a[0] == 1000) < index_of(calls, "capset")
    assert not [call for call in calls if call[1] == "prctl" and call[2][0] == PR_SET_NO_NEW_PRIVS]
    assert load < index_of(calls, READY)


@pytest.mark.parametrize("how", ["create", "exec"])
@pytest.mark.parametrize("umask, expected", [(None, 0o022), (0o027, 0o027), (0, 0)])
def test_umask_and_cwd_are_set_as_the_user_before_exec(tmp_path, how, umask, expected):
    user = {"uid": 1000, "gid": 1000}
    if umask is not None:
        user["umask"] = umask
    calls = run(how, tmp_path, container_config(user=user, cwd="/tmp"))
    uid = index_of(calls, "setresuid", lambda a: a[0] == 1000)
    set_umask = index_of(calls, "umask", last=True)
    chdir = index_of(calls, "chdir", lambda a: a == ["/tmp"])
    assert uid < set_umask < chdir < index_of(calls, "execve")
    assert calls[set_umask][2] == [expected]


def test_create_and_exec_make_the_same_calls_from_rlimits_to_exec(tmp_path):
    config = container_config(noNewPrivileges=True, cwd="/tmp")
    config["linux"]["seccomp"] = PROFILE
    (tmp_path / "create").mkdir()
    (tmp_path / "exec").mkdir()
    sequences = []
    for how in ("create", "exec"):
        calls = run(how, tmp_path / how, config)
        steps = calls[index_of(calls, "setrlimit"):]
        # The descriptor numbers (the trampoline's, in execve) may differ; the rest may not.
        sequences.append([(name, args[1:] if name == "execve" else args)
                          for _pid, name, args in steps if name not in (START, READY)])
    assert sequences[0] == sequences[1]
    execve = sequences[0][-1]
    assert execve[1][0] == ["/bin/sh", "/bin/sh", "-c", "true"]


def test_a_failing_step_is_reported_and_nothing_is_executed(tmp_path):
    config = container_config(cwd="/does-not-exist-here")
    fake = RecordingSyscalls(tmp_path / "calls.log")
    proc = config["process"]
    channel, child_channel = Channel.pair()
    status_r, status_w = os.pipe()
    last_cap = process.last_capability()

    def child():
        channel.close()
        os.close(status_r)
        # Unfaked, chdir would fail: the fake's success is turned back into the real answer here.
        fake_chdir = syscalls.chdir

        def chdir(path):
            fake_chdir(path)
            raise FileNotFoundError(2, "No such file or directory", path)
        syscalls.chdir = chdir
        container_exec._process(child_channel, proc, None, 0, status_w, last_cap, ({}, None))

    messages = []

    def parent(_pid):
        child_channel.close()
        os.close(status_w)
        messages.append(channel.recv())
        with os.fdopen(status_r, "rb") as status:
            messages.append(status.read())

    code, calls = run_forked(fake, child, parent)
    channel.close()
    assert code == 1
    assert messages[0]["type"] == protocol.ERROR and "process.cwd /does-not-exist-here" in messages[0]["message"]
    assert b"process.cwd /does-not-exist-here" in messages[1]
    assert "execve" not in names(calls)


# --------------------------------------------------------------------------
# the fake itself


def test_the_fake_stands_in_for_every_function_of_the_boundary(tmp_path, monkeypatch):
    originals = dict((name, getattr(syscalls, name)) for name in public_functions())
    for name in ("mount", "pivot_root", "setresuid", "setgroups", "setrlimit", "chroot", "mknodat", "umask",
                 "execve", "seccomp_set_mode_filter", "capset", "prctl", "set_controlling_terminal"):
        assert name in originals, name
    RecordingSyscalls(tmp_path / "calls.log").install(monkeypatch.setattr)
    for name, original in originals.items():
        replaced = getattr(syscalls, name) is not original
        assert replaced == (name not in LOOKS_ONLY), name
    syscalls.mount("none", "/nowhere", "tmpfs", 0)
    assert RecordingSyscalls(tmp_path / "calls.log").calls() == [(os.getpid(), "mount", ["none", "/nowhere", "tmpfs", 0])]
    assert not any(point == "/nowhere" for point in open("/proc/self/mounts").read().split())
    assert mounts.MS_BIND == MS_BIND


# --------------------------------------------------------------------------
# startContainer hooks: after the filter, through the trampoline (issue 15, item 1)


@pytest.mark.parametrize("nnp", [True, False])
def test_start_container_hooks_run_filtered_and_through_the_trampoline_just_before_exec(tmp_path, nnp):
    config = container_config(noNewPrivileges=nnp)
    config["linux"]["seccomp"] = PROFILE
    config["hooks"] = {"startContainer": [{"path": "/bin/hook", "args": ["hook", "one"], "env": ["A=b"]}]}
    calls = run("create", tmp_path, config)
    init = calls[index_of(calls, "execve", last=True)][0]
    hook_exec = index_of(calls, "execve", lambda a: a[1][:2] == ["/bin/hook", "hook"])
    hook_pid, _name, (executable, argv, env) = calls[hook_exec]
    assert hook_pid != init
    # The sealed memfd, not the hook's path, is what the kernel executes.
    assert isinstance(executable, int) and argv == ["/bin/hook", "hook", "one"] and env == {"A": "b"}
    load = index_of(calls, "seccomp_set_mode_filter")
    assert index_of(calls, "capset") < index_of(calls, START) < hook_exec
    assert load < hook_exec < index_of(calls, "reset_signals", last=True) < len(calls) - 1
    assert calls[-1][0] == init and calls[-1][1] == "execve"
    # The hook's process resets its signals too before its exec.
    assert [call[1] for call in calls if call[0] == hook_pid] == ["reset_signals", "execve"]


# --------------------------------------------------------------------------
# HOME (issue 15, item 11)


def test_home_directory_reads_the_entry_of_the_uid(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\nbroken line\napp:x:1000:1000::/home/app:/bin/sh\n"
                      "nohome:x:1001:1001:::/bin/sh\napp2:x:1000:1000::/second:/bin/sh\n")
    assert process.home_directory(0, str(passwd)) == "/root"
    assert process.home_directory(1000, str(passwd)) == "/home/app"  # the first entry wins
    assert process.home_directory(1001, str(passwd)) == "/"
    assert process.home_directory(4242, str(passwd)) == "/"
    assert process.home_directory(0, str(tmp_path / "missing")) == "/"
    assert process.home_directory(0, str(tmp_path)) == "/"  # a directory


def test_home_directory_of_a_fifo_passwd_is_root_without_waiting(tmp_path):
    fifo = str(tmp_path / "passwd")
    os.mkfifo(fifo)
    assert process.home_directory(0, fifo) == "/"


@pytest.mark.parametrize("how", ["create", "exec"])
def test_home_is_kept_when_given_else_taken_from_passwd(tmp_path, how):
    given = container_config(env=["PATH=/bin", "HOME=/given"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run(how, tmp_path / "a", given)[-1][2][2]["HOME"] == "/given"
    missing = container_config(env=["PATH=/bin"], user={"uid": 0, "gid": 0})
    expected = process.home_directory(0)  # the test's own root: the fake switches no root
    assert run(how, tmp_path / "b", missing)[-1][2][2]["HOME"] == expected
