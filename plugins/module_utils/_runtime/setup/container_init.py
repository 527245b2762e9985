# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The processes create forks: the intermediate one, and the container's first process.

runtime ──fork──> intermediate: setns/unshare, id maps (written by the runtime),
                  forks again because pid and time namespaces apply to children,
                  reports the child's pid, exits.
                  └─fork──> container init: waits for GO (the runtime has
                  recorded it), mounts, /dev, kernel settings, root switch,
                  then finalize.py's sequence (the same as exec's): process
                  settings, READY, the exec fifo until `start`, exec.
Without a user namespace and with no namespace joined by path, the runtime
forks the container init directly (first_process; namespaces.forks_once).
The messages are named and described in protocol.py.
Neither ever returns into the caller's code: both leave with os._exit or exec.
"""
import errno
import os

# The C module: the signal module builds enums at import, 3 ms of every create.
import _signal as signal

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import (
    devices, finalize, kernel_settings, mounts, namespaces, process)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import protocol
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import report_and_exit
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


class InitArgs:
    """Everything the forked processes need, gathered by the runtime before forking."""

    def __init__(self, config, rootfs, bundle, plan, channel, fifo_fd, joined, preserve_fds, cgroups=None):
        self.config = config
        self.rootfs = rootfs
        self.bundle = bundle
        self.plan = plan
        self.channel = channel
        self.fifo_fd = fifo_fd
        self.joined = joined  # [(type, path, fd)] opened before forking
        self.preserve_fds = preserve_fds
        # {hierarchy: directory} of the cgroup made before the fork, or None: GO carries them then.
        self.cgroups = cgroups
        self.overlay_fds = None  # an overlay root's descriptors, with a new user namespace
        # The host's cgroup hierarchies (Layout.hierarchies) read before the fork: a cgroup mount
        # needs them, and the container's process would read mountinfo and /proc/cgroups again.
        self.cgroup_hierarchies = None


def intermediate(args):
    """Child of the runtime: enter the namespaces, fork the container init, report it."""
    try:
        _close_inherited(args)
        # Die with the runtime rather than linger half set up.
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        namespaces.enter(args.plan, args.joined)
        if args.plan.new_user:
            args.channel.send(protocol.USERNS)
            args.overlay_fds = args.channel.expect(protocol.ACK, "user namespace").get("fds")
        if args.plan.in_user_namespace:
            syscalls.setresgid(0, 0, 0)
            syscalls.setresuid(0, 0, 0)
        pid = os.fork()
        if pid == 0:
            container_init(args)
        args.channel.send(protocol.PID, pid=pid)
    except BaseException as exc:
        report_and_exit(args.channel, exc)
    os._exit(0)


def first_process(args):
    """Child of the runtime when one fork is enough (namespaces.forks_once): the intermediate's
    own work, without its fork, then the container init. The runtime made the pid namespace."""
    try:
        _close_inherited(args)
        namespaces.enter(args.plan, args.joined, made=namespaces.CLONE_NEWPID)
    except BaseException as exc:
        report_and_exit(args.channel, exc)
    container_init(args)


def _close_inherited(args):
    keep = set([0, 1, 2, args.channel.fileno(), args.fifo_fd])
    keep.update(range(3, 3 + args.preserve_fds))
    keep.update(entry[2] for entry in args.joined)
    process.close_fds_except(keep)


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


class _InitSync:
    """create's side of finalize's sequence: READY (with the pty master) on the channel, then
    the exec fifo, which `start` opens (see protocol.py)."""

    def __init__(self, channel, proc_fds, fifo_fd, master):
        self.channel = channel
        self.proc_fds = proc_fds  # the host's /proc/self/fd: the container needs no /proc of its own
        self.fifo_fd = fifo_fd
        self.master = master
        self.fifo = None

    def ready(self):
        _check_fifo_writable(self.proc_fds, self.fifo_fd)
        self.channel.send_ready(self.master)
        self.master = None
        # Blocks until `start` opens the fifo for reading; from here `start` is the one listening.
        self.fifo = os.open(str(self.fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.proc_fds)

    def released(self):
        os.write(self.fifo, protocol.FIFO_STARTED)

    def failed(self, exc):
        if self.fifo is None:
            report_and_exit(self.channel, exc)
        try:
            os.write(self.fifo, protocol.FIFO_FAILED + str(exc).encode("utf-8", "replace"))
        finally:
            os._exit(1)

    def exec_failed(self, executable, exc):
        os.write(2, ("ocirt: exec %s: %s\n" % (executable, exc.strerror)).encode())


def container_init(args):
    """The container's first process: set everything up, wait for start, exec."""
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)
        # Until exec, /proc/<pid>/exe is the host's interpreter: keep it
        # unreachable to the container's other processes (CVE-2019-5736).
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        # With its cgroup made before the fork the process needs nothing from the runtime for its
        # mounts, and makes them while the runtime records its pid and joins it to the cgroup; GO
        # is read after them. (The systemd driver makes the cgroup once the pid is known: GO first.)
        go = None if args.cgroups is not None else args.channel.expect(protocol.GO, "container init")
        syscalls.setsid()
        config = args.config
        linux = config.get("linux") or {}
        proc = config["process"]
        finalize.initial_affinity(proc, linux)
        syscalls.umask(0)
        master = None
        if args.plan.has("mount"):
            mounts.prepare_root(args.rootfs, linux.get("rootfsPropagation"))
            mounts.mount_overlay_root(args.rootfs, args.bundle, config.get("annotations"), args.overlay_fds)
            with mounts.MountContext(args.rootfs, args.bundle, args.plan.in_user_namespace,
                                     args.cgroups if go is None else go["cgroups"],
                                     linux.get("mountLabel"), args.cgroup_hierarchies) as ctx:
                mounts.mount_all(ctx, config.get("mounts"))
                if devices.runtime_populates_dev(config.get("mounts")):
                    devices.populate(ctx.rootfd, linux.get("devices"), args.plan.in_user_namespace)
                if proc.get("terminal"):
                    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import terminal
                    master, slave = terminal.open_pty(ctx.rootfd, proc.get("consoleSize"))
                    terminal.become_controlling(slave)
                mounts.mask_paths(ctx, linux.get("maskedPaths"))
                mounts.readonly_paths(ctx, linux.get("readonlyPaths"))
                mounts.finish_readonly(ctx, config["root"].get("readonly"))
        if go is None:
            go = args.channel.expect(protocol.GO, "container init")
        kernel_settings.apply(config)
        # In its cgroups from here on: what follows (hooks, scheduling, the process settings)
        # runs under the container's limits; a real-time policy could not even join them.
        args.channel.expect(protocol.JOINED, "container init")
        namespaces.enter_cgroup(args.plan)
        if go.get("runtime_hooks"):
            # prestart and createRuntime run now, in the runtime's namespaces, by the runtime.
            args.channel.send(protocol.MOUNTED)
            args.channel.expect(protocol.CONTINUE, "container init")
        if (config.get("hooks") or {}).get("createContainer"):
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
            hooks.run(config["hooks"], "createContainer", go["state"])
        # The exec fifo is reopened through this host /proc directory after the
        # root switch, so the container needs no /proc of its own for it.
        proc_fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        labels = None
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            # Their attr files are opened now, from the host's /proc, never from the image's.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
            labels = lsm.ExecLabels(proc)
        seccomp_filter = None
        if linux.get("seccomp") is not None:
            # Checked, compiled and its listener (a host path) connected before the root switch.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp
            seccomp_filter = seccomp.prepare(linux["seccomp"], go["state"])
        start_hooks = None
        if (config.get("hooks") or {}).get("startContainer"):
            # Imported before the root switch: finalize runs them after it, when the host's files are out of reach.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks  # noqa: F401
            start_hooks = (config["hooks"], dict(go["state"], status="created"))
        prepared = finalize.Prepared(proc, linux, process.last_capability(), args.preserve_fds,
                                     seccomp_filter, labels, start_hooks)
        if args.plan.has("mount"):
            mounts.pivot(args.rootfs, linux.get("rootfsPropagation"))
        else:
            mounts.chroot(args.rootfs)
        sync = _InitSync(args.channel, proc_fds, args.fifo_fd, master)
    except BaseException as exc:
        report_and_exit(args.channel, exc)
    finalize.finalize(prepared, sync)
