# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""exec: another process inside a running container.

runtime ──fork──> joiner: waits until the runtime has put it in the
                  container's cgroups, enters the container's namespaces
                  (user first, mount last), forks (pid and time namespaces
                  apply to children) and reports the pid.
                  └─fork──> the process: opens its pty if it has one, then
                  runs finalize.py's sequence, the same as create's process
                  (rlimits, seccomp, user, capabilities, umask, cwd, env,
                  noNewPrivileges, ..., exec). Its exec closes a status
                  pipe: the runtime learns "it runs" or the error.
In the foreground the runtime is subreaper, waits, and returns the exit
code; --detach returns once the process runs.
"""
import os
import signal

# Everything the forked processes use is imported here: once they have
# joined the container's mount namespace, the runtime's files are gone.
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import finalize, namespaces, process, terminal
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import protocol
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import Channel, report_and_exit
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import (
    CREATED, RUNNING, Container, process_start_time)


def build_process(config, overrides, process_file=None):
    """The process to run: PROCESS_FILE (a process JSON) if given, else the container's
    process with OVERRIDES (args, env list appended, cwd, user, terminal, capabilities, noNewPrivileges)."""
    if process_file is not None:
        try:
            with open(process_file) as handle:
                proc = jsonio.loads(handle.read())
        except (OSError, ValueError) as exc:
            raise OCIError("--process %s: %s" % (process_file, exc))
        if not isinstance(proc, dict):
            raise OCIError("--process %s: must hold a JSON object (a config.json process)" % process_file)
        # As runc: what the process file leaves out of its privileges is the container's, never more.
        for key in ("capabilities", "noNewPrivileges"):
            if proc.get(key) is None and (config.get("process") or {}).get(key) is not None:
                proc[key] = (config.get("process") or {})[key]
    else:
        proc = dict(config.get("process") or {})
        proc["terminal"] = False
        for key in ("args", "cwd", "user", "terminal", "capabilities", "noNewPrivileges"):
            if overrides.get(key) is not None:
                proc[key] = overrides[key]
        if overrides.get("env"):
            proc["env"] = list(proc.get("env") or []) + list(overrides["env"])
    spec.validate_process(spec.Checker(), proc)
    return proc


def exec_process(root, container_id, proc, detach=False, pid_file=None, preserve_fds=0, console_socket=None):
    """Run PROC in the container; return its exit code (foreground) or 0 (detached)."""
    with Container.open(root, container_id) as container:
        status = container.status()
        if status not in (CREATED, RUNNING):
            raise OCIError("container %s: cannot exec in a container that is %s" % (container_id, status))
        record = container.read()
        config = container.config()
        cgroup = container.cgroup()
    if proc.get("terminal") and detach and not console_socket:
        raise OCIError("process.terminal: a detached exec with a terminal needs --console-socket")
    joins = _namespaces_to_join(record)
    last_cap = process.last_capability()
    linux = config.get("linux") or {}
    host_proc = None
    if finalize.needs_sched(proc, linux):
        # Imported now: the forked process finds it in sys.modules once the runtime's files are out of reach.
        __import__("ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.sched")
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
        lsm.check_process(proc)
        # The process opens its attr files through the host's /proc, never the container's.
        host_proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    seccomp = (config.get("linux") or {}).get("seccomp")
    seccomp_filter = None
    if seccomp is not None:
        # Compiled, and its notify listener (a host path) connected, before the mount namespace changes.
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp as seccomp_module
        with Container.open(root, container_id) as container:
            seccomp_filter = seccomp_module.prepare(seccomp, container.oci_state())
    if not detach:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    # Signals to a foreground exec belong to the process: caught from now on, delivered once it exists.
    forwarder = _Forwarder(active=not detach)
    channel, child_channel = Channel.pair()
    status_r, status_w = os.pipe()
    opened = []
    child = None
    try:
        for kind, path in joins:
            opened.append((kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        # The init must still be the one the namespace paths belong to.
        if process_start_time(record["pid"]) != record.get("pidStartTime"):
            raise OCIError("container %s: its process exited" % container_id)
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            channel.close()
            os.close(status_r)
            _joiner(child_channel, opened, proc, seccomp_filter, preserve_fds, status_w, last_cap, (linux, host_proc))
        child_channel.close()
        os.close(status_w)
        status_w = None
        for entry in opened:
            os.close(entry[2])
        opened = []
        if cgroup is not None:
            cgroup.add_process(child)
        channel.send(protocol.GO)
        # PID (from the joiner) and READY (from the process it forked) may come in either order.
        messages = {}
        while len(messages) < 2:
            message = channel.recv()
            if message is None:
                raise OCIError("exec in container %s: the process exited before it was set up" % container_id)
            if message["type"] == protocol.ERROR:
                raise OCIError(message["message"])
            messages[message["type"]] = message
        pid = messages[protocol.PID]["pid"]
        forwarder.target(pid)
        os.waitpid(child, 0)
        child = None
        masters = messages[protocol.READY].get("fds", [])
        error = protocol.read_to_eof(status_r)
        if error:
            raise OCIError("exec in container %s: %s" % (container_id, error.decode("utf-8", "replace")))
        if pid_file:
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.create import write_pid_file
            write_pid_file(pid_file, pid)
        if detach:
            for master in masters:
                try:
                    terminal.send_to_console_socket(console_socket, master)
                finally:
                    os.close(master)
            return 0
        return _wait_foreground(pid, masters)
    finally:
        forwarder.restore()
        if host_proc is not None:
            os.close(host_proc)
        for entry in opened:
            os.close(entry[2])
        if status_w is not None:
            os.close(status_w)
        os.close(status_r)
        channel.close()
        if child:
            try:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
            except OSError:
                pass


def _namespaces_to_join(record):
    """(type, path) of each namespace of the container that is not the runtime's own, in join order."""
    joins = []
    paths = record.get("namespaces") or {}
    for kind in namespaces.JOIN_ORDER:
        path = paths.get(kind)
        if not path:
            continue
        name = namespaces.NAMESPACES[kind][1]
        try:
            theirs = os.stat(path)
            ours = os.stat("/proc/self/ns/%s" % name)
        except OSError:
            continue
        if (theirs.st_ino, theirs.st_dev) != (ours.st_ino, ours.st_dev):
            joins.append((kind, path))
    return joins


def _joiner(channel, opened, proc, seccomp, preserve_fds, status_w, last_cap, extras):
    try:
        keep = set([0, 1, 2, channel.fileno(), status_w] + [entry[2] for entry in opened])
        if extras[1] is not None:
            keep.add(extras[1])
        if seccomp is not None and seccomp.listener is not None:
            keep.add(seccomp.listener.fileno())
        keep.update(range(3, 3 + preserve_fds))
        process.close_fds_except(keep)
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        channel.expect(protocol.GO, "exec")
        for kind, path, fd in opened:
            try:
                syscalls.setns(fd, namespaces.NAMESPACES[kind][0])
            except OSError as exc:
                raise OCIError("cannot join the container's %s namespace %s: %s" % (kind, path, exc.strerror))
            os.close(fd)
        if any(entry[0] == "user" for entry in opened):
            syscalls.setresgid(0, 0, 0)
            syscalls.setresuid(0, 0, 0)
        pid = os.fork()
        if pid == 0:
            _process(channel, proc, seccomp, preserve_fds, status_w, last_cap, extras)
        channel.send(protocol.PID, pid=pid)
    except BaseException as exc:
        report_and_exit(channel, exc)
    os._exit(0)


class _ExecSync:
    """exec's side of finalize's sequence: READY (with the pty master) on the channel; errors
    go to the status pipe too, which the exec closes."""

    def __init__(self, channel, status_w, master):
        self.channel = channel
        self.status_w = status_w
        self.master = master

    def ready(self):
        # A preserved descriptor number may be the status pipe's: it must still close at exec.
        os.set_inheritable(self.status_w, False)
        self.channel.send_ready(self.master)
        self.master = None

    def released(self):
        pass

    def failed(self, exc):
        try:
            os.write(self.status_w, str(exc).encode("utf-8", "replace"))
        finally:
            report_and_exit(self.channel, exc)

    def exec_failed(self, executable, exc):
        os.write(self.status_w, ("exec %s: %s" % (executable, exc.strerror)).encode())


def _process(channel, proc, seccomp, preserve_fds, status_w, last_cap, extras):
    """SECCOMP: the container's prepared seccomp.Filter, or None.
    EXTRAS: (the container's linux object, a descriptor of the host's /proc or None)."""
    sync = _ExecSync(channel, status_w, None)
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        linux, host_proc = extras
        finalize.initial_affinity(proc, linux)
        labels = None
        if host_proc is not None:
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
            labels = lsm.ExecLabels(proc, proc_dir=host_proc)
            os.close(host_proc)
        prepared = finalize.Prepared(proc, linux, last_cap, preserve_fds, seccomp, labels)
        syscalls.setsid()
        if proc.get("terminal"):
            root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                sync.master, slave = terminal.open_pty(root, proc.get("consoleSize"), console=False)
            finally:
                os.close(root)
            terminal.become_controlling(slave)
    except BaseException as exc:
        sync.failed(exc)
    finalize.finalize(prepared, sync)


class _Forwarder:
    """Relays the usual termination and job-control signals to the exec'd process; those that
    arrive before its pid is known are kept and delivered then."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self, active):
        self.pid = None
        self.pending = []
        self.previous = {}
        if active:
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        if self.pid is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum):
        try:
            os.kill(self.pid, signum)
        except OSError:
            pass

    def target(self, pid):
        self.pid = pid
        for signum in self.pending:
            self._send(signum)
        self.pending = []

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def _wait_foreground(pid, masters):
    """Relay a terminal if there is one, then wait for the process; its exit code (128+N for signal N)."""
    for master in masters:
        try:
            terminal.relay(master)
        finally:
            os.close(master)
    while True:
        try:
            waited, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise OCIError("lost track of the exec'd process %d" % pid)
        if waited == pid:
            break
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
