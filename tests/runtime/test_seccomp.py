"""linux.seccomp in real containers: what the container's process may call.

Each test runs a busybox container through the installed `ocirt` (fixtures
`ocirt` and `make_bundle`; the state root is force-cleaned and audited for
leftovers afterwards) under a seccomp profile, and checks what the process
saw: errno values, a kill by SIGSYS (exit 159 from `ocirt run`), arguments
compared as 64-bit values, when the filter is installed, and the notify fd
handed to a listener with the container's state.
"""
import array
import errno
import fcntl
import json
import os
import select
import socket
import struct
import threading

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux._syscall_table import TABLES
from helpers import new_id, wait_stopped

MACHINE_TABLES = {"x86_64": "x86_64", "aarch64": "aarch64"}
pytestmark = pytest.mark.skipif(os.uname().machine not in MACHINE_TABLES, reason="seccomp tables for x86_64 and aarch64")

SIGSYS_EXIT = 128 + 31


def profile(rules, default="SCMP_ACT_ALLOW", **extra):
    result = {"defaultAction": default, "syscalls": rules}
    result.update(extra)
    return result


def bundle_with(make_bundle, command, seccomp, **process):
    config = {"root": {"readonly": False}, "linux": {"seccomp": seccomp}}
    if process:
        config["process"] = process
    return make_bundle(["sh", "-c", command], config=config)


def run(ocirt, bundle):
    result = ocirt.run(bundle)
    return result.returncode, result.stdout, result.stderr


MKDIR = ["mkdir", "mkdirat"]  # busybox uses one or the other depending on the architecture


# --------------------------------------------------------------------------
# actions


def test_errno_ret_is_what_the_call_returns(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo absent",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "Function not implemented" in err
    assert "rc=1" in out and "absent" in out


def test_errno_without_errno_ret_is_eperm(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "mkdir /tmp/x",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]))
    code, out, err = run(ocirt, bundle)
    assert code == 1 and "Operation not permitted" in err


def test_default_errno_ret_with_an_allow_list(ocirt, make_bundle):
    allowed = sorted(set(TABLES[MACHINE_TABLES[os.uname().machine]]) - set(MKDIR))
    bundle = bundle_with(make_bundle, "mkdir /tmp/x; echo rc=$?; echo still running",
                         profile([{"names": allowed, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO",
                                 defaultErrnoRet=errno.EACCES))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "Permission denied" in err
    assert "rc=1" in out and "still running" in out


def test_kill_process_kills_the_container_with_sigsys(ocirt, make_bundle):
    # The shell runs applets in children: exec, so the container's own process makes the call.
    bundle = bundle_with(make_bundle, "echo before; exec sync",
                         profile([{"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}]))
    code, out, err = run(ocirt, bundle)
    assert code == SIGSYS_EXIT, (out, err)
    assert "before" in out


def test_trap_raises_sigsys(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "sync; echo status=$?; exec sync", profile([{"names": ["sync"], "action": "SCMP_ACT_TRAP"}]))
    code, out, err = run(ocirt, bundle)
    assert "status=%d" % SIGSYS_EXIT in out  # the shell saw its child die of SIGSYS
    assert code == SIGSYS_EXIT


def test_log_lets_the_call_succeed(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "mkdir /tmp/x && test -d /tmp/x && echo made",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_LOG"}], flags=["SECCOMP_FILTER_FLAG_LOG"]))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "made" in out


# --------------------------------------------------------------------------
# arguments


def test_a_rule_with_an_argument(ocirt, make_bundle):
    # personality(PER_LINUX32 = 8) is refused, personality(PER_LINUX = 0) is not.
    bundle = bundle_with(make_bundle, "linux32 true; echo linux32=$?; linux64 true; echo linux64=$?",
                         profile([{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                                   "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "linux32=1" in out and "linux64=0" in out
    assert "Permission denied" in err


def test_64_bit_arguments_compare_beyond_4_gib(ocirt, make_bundle):
    # ftruncate's length is a 64-bit argument: 4 GiB - 1 passes, 4 GiB does not.
    bundle = bundle_with(make_bundle, "truncate -s 4294967295 /tmp/a; echo small=$?; truncate -s 4294967296 /tmp/b; echo big=$?;"
                         " truncate -s 8589934591 /tmp/c; echo bigger=$?",
                         profile([{"names": ["ftruncate"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EFBIG,
                                   "args": [{"index": 1, "value": 0xFFFFFFFF, "op": "SCMP_CMP_GT"}]}]))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "small=0" in out and "big=1" in out and "bigger=1" in out
    assert "File too large" in err


def test_two_args_are_anded(ocirt, make_bundle):
    # kill(pid, SIGUSR1) with pid 1 is refused; kill(1, 0) and kill(other pid, SIGUSR1) are not.
    command = ("trap 'echo got usr1' USR1; kill -0 1; echo probe=$?; kill -USR1 1; echo usr1=$?; "
               "sleep 10 & kill -USR1 $!; echo other=$?")
    bundle = bundle_with(make_bundle, command,
                         profile([{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                            {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}]))
    code, out, err = run(ocirt, bundle)
    assert code == 0, err
    assert "probe=0" in out and "usr1=1" in out and "other=0" in out


# --------------------------------------------------------------------------
# when the filter is installed


def seccomp_mode(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return None


def test_with_no_new_privileges_the_filter_comes_at_start(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "grep -E '^Seccomp:' /proc/self/status > /tmp/status; mkdir /tmp/x 2>> /tmp/status",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]))
    container_id = new_id("nnp")
    ocirt("create", "--bundle", bundle, container_id)
    assert seccomp_mode(ocirt.state(container_id)["pid"]) == 0  # the runtime's code, waiting for start
    ocirt("start", container_id)
    wait_stopped(ocirt, container_id)
    ocirt("delete", container_id)
    with open(os.path.join(bundle, "rootfs", "tmp", "status")) as handle:
        status = handle.read()
    assert "Seccomp:\t2" in status and "Function not implemented" in status


def test_without_no_new_privileges_the_filter_is_loaded_before_capabilities_go(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "grep NoNewPrivs /proc/self/status; grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/x",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]),
                         noNewPrivileges=False, user={"uid": 1000, "gid": 1000})
    code, out, err = run(ocirt, bundle)
    assert "NoNewPrivs:\t0" in out
    assert "Seccomp:\t2" in out
    assert code == 1 and "Function not implemented" in err


def test_without_no_new_privileges_the_filter_is_there_at_create(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "true", profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]),
                         noNewPrivileges=False)
    container_id = new_id("nonnp")
    ocirt("create", "--bundle", bundle, container_id)
    try:
        assert seccomp_mode(ocirt.state(container_id)["pid"]) == 2
    finally:
        ocirt("delete", "--force", container_id)


def test_flags_are_accepted(ocirt, make_bundle):
    bundle = bundle_with(make_bundle, "mkdir /tmp/x",
                         profile([{"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}],
                                 flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                        "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    code, out, err = run(ocirt, bundle)
    assert code == 1 and "Function not implemented" in err


# --------------------------------------------------------------------------
# bad profiles: create fails naming the field, nothing left behind


BAD = [
    ("unknown-name", profile([{"names": ["read", "mkdri"], "action": "SCMP_ACT_ERRNO"}]),
     "linux.seccomp.syscalls[0].names[1]: unknown syscall 'mkdri'"),
    ("unknown-action", profile([{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]), "linux.seccomp.syscalls[0].action"),
    ("bad-arch", profile([], architectures=["SCMP_ARCH_PDP11"]), "linux.seccomp.architectures[0]"),
    ("bad-op", profile([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}]}]), "linux.seccomp.syscalls[0].args[0].op"),
    ("bad-index", profile([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]), "linux.seccomp.syscalls[0].args[0].index"),
    ("errno-with-allow", profile([{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}], default="SCMP_ACT_LOG"),
     "linux.seccomp.syscalls[0].errnoRet"),
    ("notify-without-listener", profile([{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]), "linux.seccomp.listenerPath"),
    ("unreachable-listener", profile([{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}], listenerPath="/nonexistent/agent.sock"),
     "linux.seccomp.listenerPath /nonexistent/agent.sock: cannot connect"),
]


@pytest.mark.parametrize("command", ["run", "create"])
@pytest.mark.parametrize("seccomp, needle", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_profiles_fail_naming_the_field(ocirt, make_bundle, command, seccomp, needle):
    bundle = bundle_with(make_bundle, "echo ran", seccomp)
    container_id = new_id("bad")
    result = ocirt(command, "--bundle", bundle, container_id, check=False)
    assert result.returncode != 0
    assert "ran" not in (result.stdout or "")
    assert "Traceback" not in result.stderr
    assert needle in result.stderr, result.stderr
    assert ocirt.ids() == []
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))


# --------------------------------------------------------------------------
# SCMP_ACT_NOTIFY: the fd and the state go to the listener


SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes


class Agent(threading.Thread):
    """A seccomp agent: takes one connection, its fd and state, then answers notifications with EACCES."""

    def __init__(self, path):
        threading.Thread.__init__(self, daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(20)
        self.state = None
        self.fd_kind = None
        self.notified = []
        self.error = None
        self.stop = threading.Event()

    def run(self):
        try:
            connection, _address = self.server.accept()
            with connection:
                connection.settimeout(20)
                fds = array.array("i")
                data, ancillary, _flags, _address = connection.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                while True:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.state = json.loads(data.decode("utf-8"))
            assert len(fds) == 1, fds
            notify_fd = fds[0]
            self.fd_kind = os.readlink("/proc/self/fd/%d" % notify_fd)
            try:
                self.answer(notify_fd)
            finally:
                os.close(notify_fd)
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.server.close()

    def answer(self, notify_fd):
        while not self.stop.is_set():
            ready, _w, _x = select.select([notify_fd], [], [], 0.1)
            if not ready:
                continue
            request = bytearray(80)
            try:
                fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, request, True)
            except OSError:
                return  # the filter's last user is gone
            notification_id, pid, _flags, number = struct.unpack_from("<QIIi", request)
            self.notified.append(number)
            response = bytearray(struct.pack("<QqiI", notification_id, 0, -errno.EACCES, 0))
            try:
                fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, response, True)
            except OSError:
                pass  # the caller went away meanwhile


@pytest.mark.parametrize("no_new_privileges", [True, False])
def test_notify_hands_the_fd_and_the_state_to_the_listener(ocirt, make_bundle, scratch, no_new_privileges):
    path = os.path.join(scratch, "agent.sock")
    agent = Agent(path)
    agent.start()
    try:
        bundle = bundle_with(make_bundle, "mkdir /tmp/x; echo rc=$?",
                             profile([{"names": MKDIR, "action": "SCMP_ACT_NOTIFY"}], listenerPath=path,
                                     listenerMetadata="MKNOD=/dev/null;X=1"),
                             noNewPrivileges=no_new_privileges)
        container_id = new_id("notify")
        result = ocirt.run(bundle, container_id)
    finally:
        agent.stop.set()
        agent.join(30)
    assert agent.error is None, agent.error
    assert result.returncode == 0, result.stderr
    assert "Permission denied" in result.stderr  # the agent's answer
    assert "rc=1" in result.stdout
    assert agent.fd_kind == "anon_inode:seccomp notify"
    table = TABLES[MACHINE_TABLES[os.uname().machine]]
    assert agent.notified and set(agent.notified) <= set(table[name] for name in MKDIR if name in table)
    message = agent.state
    assert message["fds"] == ["seccompFd"]
    assert message["metadata"] == "MKNOD=/dev/null;X=1"
    assert message["ociVersion"]
    state = message["state"]
    assert state["id"] == container_id
    assert state["bundle"] == bundle
    assert state["status"] == "creating"
    assert isinstance(state["pid"], int) and state["pid"] > 0 and message["pid"] == state["pid"]


@pytest.mark.parametrize("how", ["run", "exec"])
def test_default_allow_with_errno_rules_without_no_new_privileges(ocirt, make_bundle, how):
    """runtime-tools' seccomp test: allow by default, getcwd refused with EPERM, no noNewPrivileges.

    The filter is loaded before the capabilities go, so the runtime's own last steps run under it:
    they must not need getcwd (the check that process.cwd lies in the container walks '..' instead).
    """
    seccomp = profile([{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
    command = "cd /tmp && /bin/pwd; echo rc=$?; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"
    if how == "run":
        code, out, err = run(ocirt, bundle_with(make_bundle, command, seccomp, noNewPrivileges=False, cwd="/tmp"))
    else:
        bundle = bundle_with(make_bundle, "exec sleep 1000", seccomp, noNewPrivileges=False, cwd="/tmp")
        container_id = new_id("getcwd")
        ocirt("run", "--detach", "--bundle", bundle, container_id)
        try:
            result = ocirt("exec", container_id, "sh", "-c", command, check=False)
        finally:
            ocirt("delete", "--force", container_id)
        code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 0, err
    assert "rc=1" in out and "Operation not permitted" in err, (out, err)
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t0" in out, out
