# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle operations after create: start, state, kill, delete, list (run, which creates, is run.py).

Each takes the state root and an id, holds the id's lock for its whole
length, and raises OCIError naming the id at fault. create, which forks the
container, lives in create.py and is imported only by the commands that
create: reading or signalling a container imports none of its machinery.
"""
import os
# The C module: the signal module builds enums at import, 3 ms of every command.
import _signal as signal
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import (
    CREATED, EXEC_FIFO, PAUSED, RUNNING, STOPPED, Container, process_start_time, utc_now,
    wait_for_exit)
# list_containers is a state reader, in state.py so that what only reads (oci_bundle) need not ship this
# file; lifecycle.list_containers, as `ocirt list` and callers know it, is the same function.
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import list_containers  # noqa: F401  # pylint: disable=unused-import


def start(root, container_id):
    with Container.open(root, container_id) as container:
        status = container.status()
        if status != CREATED:
            raise OCIError("container %s: cannot start a container that is %s (it must be created)"
                           % (container_id, status))
        fifo = container.path(EXEC_FIFO)
        # poststart hooks get the state of the start, even when the process has exited by then.
        started_state = container.oci_state()
        answer = _release(container, fifo)
        os.unlink(fifo)
        started = utc_now()
        container.update(status=RUNNING, started=started)
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import FIFO_FAILED
        if answer.startswith(FIFO_FAILED):
            # A startContainer hook failed: the process exits; report it as start's failure.
            wait_for_exit(container.read()["pid"], start_time=container.read().get("pidStartTime"))
            raise OCIError("container %s: %s" % (container_id, answer[1:].decode("utf-8", "replace")))
        config = container.config()
        if (config.get("hooks") or {}).get("poststart"):
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
            hooks.run_reporting(config["hooks"], "poststart", dict(started_state, status=RUNNING, started=started),
                                _warn)


def _release(container, fifo):
    """Open the exec fifo: the waiting process goes on; return what it says (protocol.FIFO_STARTED, or
    protocol.FIFO_FAILED and an error).

    It writes its answer after the startContainer hooks and closes the fifo
    by exec, so reading to the end waits for exactly that.
    """
    import select
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    answer = b""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            events = poller.poll(100)
            if events:
                chunk = os.read(fd, 65536)
                if chunk:
                    answer += chunk
                    continue
                if answer:
                    return answer
            if not container.is_alive():
                if answer:
                    return answer
                raise OCIError("container %s: its process exited before start" % container.id)
    finally:
        os.close(fd)


def _warn(message):
    sys.stderr.write("ocirt: %s\n" % message)


def state(root, container_id):
    with Container.open(root, container_id) as container:
        return container.oci_state()


def _pids_in_namespace(record):
    """Every pid in the container's own pid namespace (for kill --all before cgroups).

    Empty once the init is gone: its pid, and the /proc/<pid>/ns paths
    recorded with it, may belong to another process by now.
    """
    if process_start_time(record.get("pid") or 0) != record.get("pidStartTime") or not record.get("pid"):
        return []
    ns_path = (record.get("namespaces") or {}).get("pid")
    try:
        target = os.stat(ns_path) if ns_path else None
    except OSError:
        target = None
    if target is None:
        return [record["pid"]]
    try:
        own = os.stat("/proc/self/ns/pid")
    except OSError:
        own = None
    if own is not None and (own.st_ino, own.st_dev) == (target.st_ino, target.st_dev):
        return [record["pid"]]  # shares our pid namespace: only its own process
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                st = os.stat("/proc/%s/ns/pid" % name)
            except OSError:
                continue
            if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
                pids.append(int(name))
    return pids


def _recovered_cgroup(pending, container_id=None):
    """The cgroup a create recorded it was about to make, as far as it is ours to remove: all of
    it at the runtime's default path, only the directories it was about to make elsewhere; or None."""
    if not pending:
        return None
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.cgroup import Cgroup
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Layout, resolve_path
    layout = Layout.detect()
    path = pending.get("path") or resolve_path(None, container_id)
    recovered = Cgroup.recover(layout, path)
    if not pending.get("owned"):
        # A given cgroupsPath: only the directories create was about to make are ours; the
        # container's own directory among them is where its processes are (create records the
        # cgroup itself only with `created`, so a create killed while its process waits ends here).
        made = [d for d in pending.get("dirs") or [] if os.path.isdir(d)]
        if not made:
            return None
        leaves = dict((name, d) for name, d in recovered.dirs.items() if d in made)
        return Cgroup(leaves or dict((str(index), d) for index, d in enumerate(made)), made, layout.mode,
                      pending.get("unit"))
    if not recovered.dirs:
        return None
    return Cgroup(recovered.dirs, recovered.created, recovered.mode, pending.get("unit"))


def _signal_all(container, signum):
    """Signal every process of the container: through its cgroup, else its pid namespace."""
    cgroup = container.cgroup() or _recovered_cgroup(container.read().get("cgroupPending"))
    if cgroup is not None:
        cgroup.signal_all(signum)
        return
    for pid in _pids_in_namespace(container.read()):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _kill_and_wait(cgroup):
    """SIGKILL every process of CGROUP and wait, bounded, until each has exited.

    The kernel takes a dying process out of its cgroup before it has finished
    exiting: an empty cgroup (the rmdir that follows succeeding) does not yet
    mean the processes are gone, and delete --force must not return before.
    """
    doomed = [(pid, process_start_time(pid)) for pid in cgroup.procs()]
    cgroup.signal_all(signal.SIGKILL)
    for pid, start_time in doomed:
        if start_time is not None:
            wait_for_exit(pid, start_time=start_time)


def kill(root, container_id, signum, all_processes=False):
    with Container.open(root, container_id) as container:
        status = container.status()
        if status not in (CREATED, RUNNING, PAUSED):
            raise OCIError("container %s: cannot kill a container that is %s" % (container_id, status))
        if signum not in NOT_STOPPING:
            request_stop(container)
        if all_processes:
            _signal_all(container, signum)
        else:
            try:
                os.kill(container.read()["pid"], signum)
            except ProcessLookupError:
                pass
        if status == PAUSED and signum == signal.SIGKILL:
            # A frozen process dies only once thawed (cgroup v1 freezer), as runc does.
            container.cgroup().freeze(False)


def delete(root, container_id, force=False, exit_fields=None):
    """Remove a stopped container (FORCE: any); EXIT_FIELDS (run's exitCode and finished) go into
    the state the poststop hooks see, without a write of a record that is about to go."""
    try:
        container = Container.open(root, container_id)
    except NotFound:
        if force:
            return  # as runc: --force makes deleting what is not there a success
        raise
    with container:
        try:
            if exit_fields:
                container.stage(**exit_fields)
            status = container.status()
        except OCIError:
            if not force:
                raise
            status = None  # unreadable state: --force removes what is there
        if status is not None and (status == STOPPED or force):
            request_stop(container)
        if status not in (STOPPED, None):
            if not force:
                raise OCIError("container %s: cannot delete a container that is %s "
                               "(stop it first, or use --force)" % (container_id, status))
            record = container.read()
            _signal_all(container, signal.SIGKILL)
            if not wait_for_exit(record["pid"], start_time=record.get("pidStartTime")):
                raise OCIError("container %s: process %d did not exit after SIGKILL"
                               % (container_id, record["pid"]))
        elif status == STOPPED:
            # Processes the init left behind (no pid namespace of its own) go too.
            _signal_all(container, signal.SIGKILL)
        final_state = None
        if status is not None:
            _stop_monitor(container)
            cgroup = container.cgroup() or _recovered_cgroup(container.read().get("cgroupPending"))
            if cgroup is not None:
                cgroup.destroy()
            final_state = container.oci_state()
        else:
            # The state cannot be read: what the container had in the default place goes.
            cgroup = _recovered_cgroup({"path": None, "owned": True}, container_id)
            if cgroup is not None:
                _kill_and_wait(cgroup)
                cgroup.destroy()
        config = container.config()
        container.remove()
    if final_state is not None and (config.get("hooks") or {}).get("poststop"):
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
        hooks.run_reporting(config["hooks"], "poststop", final_state, _warn)


MONITOR_EXIT_WAIT_SECONDS = 2.0
# Signals that ask a process for something other than its end: they do not stop supervision.
NOT_STOPPING = frozenset([0, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT,
                          signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU])


def cancel_restart(root, container_id):
    """A stopped container whose monitor waits out a restart's backoff stays stopped: the stop is requested
    (kill refuses a stopped container). Nothing happens to a container that is not stopped."""
    with Container.open(root, container_id) as container:
        if container.status() == STOPPED:
            request_stop(container)


def request_stop(container):
    """Tell the monitor that the container is being stopped on purpose: a supervising one must not
    restart it, and the monitor then ends with 0, not the container's code (a supervisor above it,
    systemd's Restart=, must not restart it either).

    The marker is written under the lock, before the signal; SIGUSR2 wakes a
    monitor that waits out a restart's backoff (only a supervising monitor
    handles it: the record says so).
    """
    record = container.read()
    if not record.get("monitor"):
        return
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import STOP_MARKER
    try:
        os.close(os.open(container.path(STOP_MARKER), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise OCIError("container %s: cannot record the stop for its monitor: %s" % (container.id, exc.strerror))
    if record.get("supervision") and container.monitor_alive():
        try:
            os.kill(record["monitor"]["pid"], signal.SIGUSR2)
        except ProcessLookupError:
            pass


# In the state the poststop hooks of a restart read on stdin (clear_for_restart).
RESTARTING_ANNOTATION = "org.daemonless.oci.restarting"


def clear_for_restart(container):
    """What a stopped container leaves before its monitor creates it again: processes, cgroup, fifo, exit
    record; its poststop hooks run, as at delete."""
    _signal_all(container, signal.SIGKILL)
    cgroup = container.cgroup() or _recovered_cgroup(container.read().get("cgroupPending"))
    if cgroup is not None:
        cgroup.destroy()
    final_state = container.oci_state()
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import EXIT_FILE
    for name in (EXEC_FIFO, EXIT_FILE):
        try:
            os.unlink(container.path(name))
        except FileNotFoundError:
            pass
    hooks_config = container.config().get("hooks") or {}
    if hooks_config.get("poststop"):
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
        # The container is created again at once from the same config: the hooks are told, so that one
        # that releases what the next incarnation reuses (the CNI hook: the network namespace, its
        # address and published ports) keeps it. A delete later runs them without the mark.
        annotations = dict(final_state.get("annotations") or {}, **{RESTARTING_ANNOTATION: "true"})
        hooks.run_reporting(hooks_config, "poststop", dict(final_state, annotations=annotations), _warn)


def _stop_monitor(container):
    """Give the monitor a moment to log the last output and record the exit, then end it."""
    monitor = container.read().get("monitor")
    if not monitor or not container.monitor_alive():
        return
    if not wait_for_exit(monitor["pid"], start_time=monitor.get("startTime"),
                         seconds=MONITOR_EXIT_WAIT_SECONDS):
        try:
            os.kill(monitor["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for_exit(monitor["pid"], start_time=monitor.get("startTime"))


def wait(root, container_id, timeout=None, interval=0.02):
    """Block until the container stops (and its exit is recorded); return its state."""
    import time
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with Container.open(root, container_id) as container:
            if container.status() == STOPPED and not container.monitor_alive():
                return container.oci_state()
        if deadline is not None and time.monotonic() >= deadline:
            raise OCIError("container %s: still running after %s seconds" % (container_id, timeout))
        time.sleep(interval)


def container_config(root, container_id):
    """The config.json a container was created from."""
    with Container.open(root, container_id) as container:
        return container.config()


def log_source(root, container_id):
    """(log path, max files, still-running callable) of a monitored container."""
    with Container.open(root, container_id) as container:
        monitor = container.read().get("monitor")
        if not monitor:
            raise OCIError("container %s: has no log (it was created without a monitor: "
                           "use create --monitor or run --detach)" % container_id)

    def still_running():
        try:
            with Container.open(root, container_id) as current:
                return current.monitor_alive()
        except OCIError:
            return False
    return monitor["logPath"], monitor.get("logMaxFiles", 1), still_running


def pause(root, container_id, frozen=True):
    with Container.open(root, container_id) as container:
        status = container.status()
        wanted = RUNNING if frozen else PAUSED
        if status != wanted:
            raise OCIError("container %s: cannot %s a container that is %s"
                           % (container_id, "pause" if frozen else "resume", status))
        cgroup = container.cgroup()
        if cgroup is None:
            raise OCIError("container %s: has no cgroup to freeze" % container_id)
        cgroup.freeze(frozen)


def processes(root, container_id):
    with Container.open(root, container_id) as container:
        if container.status() == STOPPED:
            raise OCIError("container %s: is stopped" % container_id)
        cgroup = container.cgroup()
        if cgroup is not None:
            return sorted(cgroup.procs())
        return sorted(_pids_in_namespace(container.read()))


def update(root, container_id, resources):
    """Apply RESOURCES (linux.resources form) to a live container, in place, and record them."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Layout
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import plan_devices, plan_resources
    with Container.open(root, container_id) as container:
        status = container.status()
        if status == STOPPED:
            raise OCIError("container %s: cannot update a stopped container" % container_id)
        cgroup = container.cgroup()
        if cgroup is None:
            raise OCIError("container %s: has no cgroup to update" % container_id)
        layout = Layout.detect()
        writes = plan_resources(resources, layout, current=container.read().get("resources"))
        if resources.get("devices") is not None:
            writes += plan_devices(resources["devices"], layout)
        cgroup.apply(writes, layout)
        record = container.read()
        container.update(resources=jsonio.merge(record.get("resources") or {}, resources))
