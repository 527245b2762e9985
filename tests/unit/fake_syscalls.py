"""A recording stand-in for the runtime's syscall boundary (_runtime/linux/syscalls.py).

`RecordingSyscalls(log).install()` replaces every public function of the
syscalls module, in this process, by one with the same name that appends
[pid, name, args] to LOG (a JSON line, O_APPEND: forked children record into
the same log, in order) and changes nothing. The setup code looks each
function up on the module at call time, so it runs unchanged, as any user,
and the test reads back which kernel calls it would have made, in which
order, with which arguments.

What stays real: the calls that only look (LOOKS_ONLY), and the plain file
work the setup does through `os` (opening inside the rootfs, creating mount
points and /dev symlinks in a scratch directory). Return values: the ids set
last for getresuid/getresgid, 0o022 for umask, 0 for the rest; execve records
and ends the process with status 0, as a successful exec would end the setup.
Run the setup in a forked child (`run_forked`), never in the test's process.
"""
import json
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls

# Queries with no effect on the process or the system: made for real.
LOOKS_ONLY = frozenset(("libc", "number", "openat2", "fstatfs_type", "capget",
                        "seccomp_action_available", "seccomp_flags_supported"))


def public_functions():
    """The names of the boundary's functions (what the fake must stand in for)."""
    return sorted(name for name, value in vars(syscalls).items()
                  if callable(value) and not name.startswith("_") and not isinstance(value, type)
                  and getattr(value, "__module__", None) == syscalls.__name__)


def _plain(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):
        return dict((str(key), _plain(item)) for key, item in value.items())
    if value is None or isinstance(value, (int, str, float, bool)):
        return value
    return repr(value)


class RecordingSyscalls:
    def __init__(self, log):
        self.log = str(log)
        self.uids = os.getresuid()
        self.gids = os.getresgid()

    def record(self, name, *args):
        line = json.dumps([os.getpid(), name, _plain(list(args))]) + "\n"
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _recorder(self, name):
        def call(*args, **kwargs):
            self.record(name, *(list(args) + [kwargs] if kwargs else args))
            return 0
        call.__name__ = name
        return call

    # The calls whose answer the setup reads back.

    def setresuid(self, ruid, euid, suid):
        self.record("setresuid", ruid, euid, suid)
        self.uids = (ruid, euid, suid)

    def setresgid(self, rgid, egid, sgid):
        self.record("setresgid", rgid, egid, sgid)
        self.gids = (rgid, egid, sgid)

    def getresuid(self):
        return self.uids

    def getresgid(self):
        return self.gids

    def umask(self, mask):
        self.record("umask", mask)
        return 0o022

    def execve(self, executable, args, env):
        self.record("execve", executable, list(args), dict(env))
        os._exit(0)

    def install(self, setattr_=setattr):
        """Put the fake in place of every public function of syscalls (SETATTR_: monkeypatch.setattr
        for a test that must undo it)."""
        for name in public_functions():
            if name in LOOKS_ONLY:
                continue
            own = getattr(type(self), name, None)
            setattr_(syscalls, name, getattr(self, name) if own is not None else self._recorder(name))
        return self

    def calls(self):
        """[(pid, name, args)] in the order they were made."""
        if not os.path.exists(self.log):
            return []
        with open(self.log) as handle:
            return [tuple(json.loads(line)) for line in handle]


def names(calls):
    return [call[1] for call in calls]


def index_of(calls, name, predicate=None, last=False):
    """Position of the first (or LAST) call NAME whose args satisfy PREDICATE; ValueError if none."""
    found = [i for i, call in enumerate(calls) if call[1] == name and (predicate is None or predicate(call[2]))]
    if not found:
        raise ValueError("no %s call%s among %s" % (name, " matching" if predicate else "", names(calls)))
    return found[-1] if last else found[0]


def run_forked(fake, child, parent=None):
    """Run CHILD() in a forked process under FAKE (it must end by the fake's execve or exit);
    PARENT(pid), if given, plays the runtime meanwhile. Return (exit status, recorded calls)."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            fake.install()
            child()
        except BaseException:  # pragma: no cover -- reported through the exit status
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        if parent is not None:
            parent(pid)
    except BaseException:
        os.kill(pid, 9)  # it may be waiting for what the failed parent never sends
        raise
    finally:
        status = os.waitpid(pid, 0)[1]
    return os.waitstatus_to_exitcode(status), fake.calls()
