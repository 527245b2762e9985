# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The processes create forks: the intermediate one, and the container's first process.

runtime ──fork──> intermediate: setns/unshare, id maps (written by the runtime),
                  forks again because pid and time namespaces apply to children,
                  reports the child's pid, exits.
                  └─fork──> container init: waits for "go" (the runtime has
                  recorded it), mounts, /dev, kernel settings, root switch,
                  process settings, reports "ready", then blocks on the exec
                  fifo until `start` and execs process.args.
Neither ever returns into the caller's code: both leave with os._exit or exec.
"""
import errno
import os

# The C module: the signal module builds enums at import, 3 ms of every create.
import _signal as signal

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import (
    devices, hooks, kernel_settings, mounts, namespaces, process, terminal, trampoline)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import report_and_exit
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


class InitArgs:
    """Everything the forked processes need, gathered by the runtime before forking."""

    def __init__(self, config, rootfs, bundle, plan, channel, fifo_fd, joined, preserve_fds):
        self.config = config
        self.rootfs = rootfs
        self.bundle = bundle
        self.plan = plan
        self.channel = channel
        self.fifo_fd = fifo_fd
        self.joined = joined  # [(type, path, fd)] opened before forking
        self.preserve_fds = preserve_fds


def intermediate(args):
    """Child of the runtime: enter the namespaces, fork the container init, report it."""
    try:
        keep = set([0, 1, 2, args.channel.fileno(), args.fifo_fd])
        keep.update(range(3, 3 + args.preserve_fds))
        keep.update(entry[2] for entry in args.joined)
        process.close_fds_except(keep)
        # Die with the runtime rather than linger half set up.
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        namespaces.enter(args.plan, args.joined)
        if args.plan.new_user:
            args.channel.send("userns")
            args.channel.expect("ack", "user namespace")
        if args.plan.in_user_namespace:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        pid = os.fork()
        if pid == 0:
            container_init(args)
        args.channel.send("pid", pid=pid)
    except BaseException as exc:
        report_and_exit(args.channel, exc)
    os._exit(0)


def _check_fifo_writable(proc_fds, fifo_fd):
    """Fail now, while create still listens, if the process could not open the exec fifo at start.

    A non-blocking open for writing answers at once: ENXIO (no reader yet)
    means it is allowed; EACCES means the configured user may not write it.
    """
    try:
        os.close(os.open(str(fifo_fd), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=proc_fds))
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise OCIError("the container's process (as process.user) cannot open the exec fifo: %s"
                           % exc.strerror)


def default_signals():
    """The container's process starts with every signal at its default and none blocked.

    Python ignores SIGPIPE and SIGXFSZ at start-up, and an ignored signal stays
    ignored across exec: `yes | head` inside would loop on EPIPE forever.
    """
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(signum) != signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            # 32 and 33, which the C library keeps for itself, but which the
            # caller may have left ignored: the kernel takes SIG_DFL for them.
            syscalls.reset_signal_to_default(signum)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


EXTRA_PROCESS_FIELDS = ("ioPriority", "scheduler", "execCPUAffinity")
EXTRA_LINUX_FIELDS = ("personality", "memoryPolicy")


def needs_sched(proc, linux):
    """Whether sched.py has anything to apply (it is imported only then)."""
    return any(proc.get(key) for key in EXTRA_PROCESS_FIELDS) or any(linux.get(key) for key in EXTRA_LINUX_FIELDS)


def container_init(args):
    """The container's first process: set everything up, wait for start, exec."""
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)
        # Until exec, /proc/<pid>/exe is the host's interpreter: keep it
        # unreachable to the container's other processes (CVE-2019-5736).
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        go = args.channel.expect("go", "container init")
        os.setsid()
        config = args.config
        linux = config.get("linux") or {}
        proc = config["process"]
        extras = needs_sched(proc, linux)
        if extras:
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import sched
            sched.set_affinity(proc, "initial")
        os.umask(0)
        master = None
        if args.plan.has("mount"):
            mounts.prepare_root(args.rootfs, linux.get("rootfsPropagation"))
            with mounts.MountContext(args.rootfs, args.bundle, args.plan.in_user_namespace,
                                     go["cgroups"], linux.get("mountLabel")) as ctx:
                mounts.mount_all(ctx, config.get("mounts"))
                if devices.runtime_populates_dev(config.get("mounts")):
                    devices.populate(ctx.rootfd, linux.get("devices"), args.plan.in_user_namespace)
                if proc.get("terminal"):
                    master, slave = terminal.open_pty(ctx.rootfd, proc.get("consoleSize"))
                    terminal.become_controlling(slave)
                mounts.mask_paths(ctx, linux.get("maskedPaths"))
                mounts.readonly_paths(ctx, linux.get("readonlyPaths"))
                mounts.finish_readonly(ctx, config["root"].get("readonly"))
        kernel_settings.apply(config)
        # In its cgroups from here on: what follows (hooks, scheduling, the process settings)
        # runs under the container's limits; a real-time policy could not even join them.
        args.channel.expect("joined", "container init")
        if go.get("runtime_hooks"):
            # prestart and createRuntime run now, in the runtime's namespaces, by the runtime.
            args.channel.send("mounted")
            args.channel.expect("continue", "container init")
        if (config.get("hooks") or {}).get("createContainer"):
            hooks.run(config["hooks"], "createContainer", go["state"])
        # The exec fifo is reopened through this host /proc directory after the
        # root switch, so the container needs no /proc of its own for it.
        proc_fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        labels = None
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            # Their attr files are opened now, from the host's /proc, never from the image's.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
            labels = lsm.ExecLabels(proc)
        last_cap = process.last_capability()
        # Made now, before any seccomp filter or dropped capability could forbid it.
        exec_via = trampoline.sealed_fd()
        seccomp_filter = None
        if linux.get("seccomp") is not None:
            # Checked, compiled and its listener (a host path) connected before the root switch.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp
            seccomp_filter = seccomp.prepare(linux["seccomp"], go["state"])
        if args.plan.has("mount"):
            mounts.pivot(args.rootfs, linux.get("rootfsPropagation"))
        else:
            mounts.chroot(args.rootfs)
        process.set_rlimits(proc.get("rlimits"))
        if extras:
            sched.apply(proc, linux)  # privileged and unfiltered yet: a real-time policy needs CAP_SYS_NICE
        user = proc.get("user") or {}
        if seccomp_filter is not None and not proc.get("noNewPrivileges"):
            seccomp_filter.load()  # needs CAP_SYS_ADMIN: before the capabilities go (the steps below run filtered)
        process.set_user_and_capabilities(user, proc.get("capabilities"), last_cap)
        os.umask(user.get("umask", 0o022) if user.get("umask") is not None else 0o022)
        process.change_directory(proc["cwd"])
        env = process.environment(proc.get("env"))
        executable = process.find_executable(proc["args"], env)
        if proc.get("noNewPrivileges"):
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        process.keep_only_stdio_and_preserved(args.preserve_fds)
        _check_fifo_writable(proc_fds, args.fifo_fd)
        if master is not None:
            args.channel.send("ready", fds=[master])
            os.close(master)
        else:
            args.channel.send("ready")
        # Blocks until `start` opens the fifo for reading.
        fifo = os.open(str(args.fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_fds)
    except BaseException as exc:
        report_and_exit(args.channel, exc)
    # From here `start` is the one listening, on the fifo: "0" means the
    # startContainer hooks passed and exec follows (the fifo closes with it);
    # "E" and a message is a failure that start reports.
    try:
        if (config.get("hooks") or {}).get("startContainer"):
            hooks.run(config["hooks"], "startContainer", dict(go["state"], status="created"))
        if labels is not None:
            labels.apply()  # takes effect at the exec below
        if extras:
            sched.set_affinity(proc, "final")  # the last change before exec (errors still reach `start`)
        if seccomp_filter is not None and proc.get("noNewPrivileges"):
            seccomp_filter.load()  # as late as it can fail to `start`: the answer, signal resets and exec follow
        os.write(fifo, b"0")
    except BaseException as exc:
        try:
            os.write(fifo, b"E" + str(exc).encode("utf-8", "replace"))
        finally:
            os._exit(1)
    default_signals()
    try:
        trampoline.execute(exec_via, executable, proc["args"], env)
    except OSError as exc:
        os.write(2, ("ocirt: exec %s: %s\n" % (executable, exc.strerror)).encode())
    os._exit(127)
