# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle operations: create, start, state, kill, delete, run, list.

Each takes the state root and an id, holds the id's lock for its whole
length, and raises OCIError naming the id or field at fault. create leaves
nothing behind when it fails: the half-made process is killed (its mounts
live only in its own mount namespace and go with it) and the state
directory removed.
"""
import os
import select
import signal
import time

from ansible_collections.daemonless.oci.plugins.module_utils import kernel_settings, spec
from ansible_collections.daemonless.oci.plugins.module_utils.cgroups import process_cgroups
from ansible_collections.daemonless.oci.plugins.module_utils.channel import Channel
from ansible_collections.daemonless.oci.plugins.module_utils.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils.namespaces import (
    NamespacePlan, namespace_paths, write_id_maps)
from ansible_collections.daemonless.oci.plugins.module_utils.state import (
    CONFIG_COPY, CREATED, CREATING, EXEC_FIFO, RUNNING, STOPPED,
    Container, container_ids, process_start_time, utc_now, write_json_atomic)
from ansible_collections.daemonless.oci.plugins.module_utils import syscalls

# How long delete --force waits for a killed container to be gone.
KILL_WAIT_SECONDS = 10.0


def _check_config(config, plan, console_socket, detached):
    if config["process"].get("terminal") and not console_socket and detached:
        raise OCIError("process.terminal: a terminal needs --console-socket when the runtime detaches "
                       "(terminals are not supported yet: set process.terminal to false)")
    if config["process"].get("terminal"):
        raise OCIError("process.terminal: terminals are not supported yet; set it to false")
    if not plan.has("mount"):
        linux = config.get("linux") or {}
        for field, value in (("mounts", config.get("mounts")),
                             ("linux.maskedPaths", linux.get("maskedPaths")),
                             ("linux.readonlyPaths", linux.get("readonlyPaths")),
                             ("root.readonly", config["root"].get("readonly"))):
            if value:
                raise OCIError("%s: needs a mount namespace in linux.namespaces "
                               "(without one it would change the host's mounts)" % field)
    kernel_settings.check(config, plan)


def _root_ids(plan):
    """The host uid and gid of the container's root, for files its root must open."""
    def host_id(mappings):
        for mapping in mappings:
            if mapping["containerID"] <= 0 < mapping["containerID"] + mapping["size"]:
                return mapping["hostID"] - mapping["containerID"]
        return 0
    if not plan.new_user:
        return 0, 0
    return host_id(plan.uid_mappings), host_id(plan.gid_mappings)


def create(root, container_id, bundle, pid_file=None, console_socket=None, preserve_fds=0,
           detached=True):
    """Create the container and leave its process waiting for start; return its pid."""
    bundle = os.path.abspath(bundle)
    config, rootfs = spec.load_bundle(bundle)
    plan = NamespacePlan(config)
    _check_config(config, plan, console_socket, detached)
    container = Container.new(root, container_id)
    child_pid = None
    init_pid = None
    channel = child_channel = None
    fifo_fd = None
    try:
        record = {
            "ociVersion": config["ociVersion"],
            "id": container_id,
            "status": CREATING,
            "pid": 0,
            "bundle": bundle,
            "rootfs": rootfs,
            "created": utc_now(),
            "annotations": config.get("annotations") or {},
        }
        container.write(record)
        write_json_atomic(container.path(CONFIG_COPY), config)
        fifo = container.path(EXEC_FIFO)
        os.mkfifo(fifo, 0o600)
        uid, gid = _root_ids(plan)
        if uid or gid:
            os.chown(fifo, uid, gid)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        channel, child_channel = Channel.pair()
        joined = plan.open_joins()
        from ansible_collections.daemonless.oci.plugins.module_utils import container_init
        args = container_init.InitArgs(config, rootfs, bundle, plan, child_channel, fifo_fd,
                                       joined, preserve_fds)
        _flush_stdio()
        child_pid = os.fork()
        if child_pid == 0:
            channel.close()
            container_init.intermediate(args)
        for entry in joined:
            os.close(entry[2])
        child_channel.close()
        message = channel.expect("userns", "create") if plan.new_user else None
        if message is not None:
            write_id_maps(child_pid, plan)
            channel.send("ack")
        init_pid = channel.expect("pid", "create")["pid"]
        _reap(child_pid)
        child_pid = None
        start_time = process_start_time(init_pid)
        container.update(pid=init_pid, pidStartTime=start_time, namespaces=namespace_paths(init_pid))
        channel.send("go", cgroups=process_cgroups(init_pid))
        channel.expect("ready", "create")
        container.update(status=CREATED)
        if pid_file:
            _write_pid_file(pid_file, init_pid)
        return init_pid
    except BaseException:
        for pid in (child_pid, init_pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if child_pid:
            _reap(child_pid)
        if init_pid:
            _wait_gone(init_pid, reap=True)
        container.remove()
        raise
    finally:
        for item in (channel, child_channel):
            if item is not None:
                item.close()
        if fifo_fd is not None:
            os.close(fifo_fd)
        container.close()


def _flush_stdio():
    import sys
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_pid_file(path, pid):
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), ".%s.%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as handle:
        handle.write(str(pid))
    os.rename(tmp, path)


def start(root, container_id):
    with Container.open(root, container_id) as container:
        status = container.status()
        if status != CREATED:
            raise OCIError("container %s: cannot start a container that is %s (it must be created)"
                           % (container_id, status))
        fifo = container.path(EXEC_FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            while True:
                if poller.poll(100) and os.read(fd, 1):
                    break
                if not container.is_alive():
                    raise OCIError("container %s: its process exited before start" % container_id)
        finally:
            os.close(fd)
        os.unlink(fifo)
        container.update(status=RUNNING, started=utc_now())


def state(root, container_id):
    with Container.open(root, container_id) as container:
        return container.oci_state()


def list_containers(root):
    states = []
    for container_id in container_ids(root):
        try:
            with Container.open(root, container_id) as container:
                states.append(container.oci_state())
        except OCIError:
            continue  # deleted meanwhile, or unreadable: `state ID` says which
    return states


def _pids_in_namespace(record):
    """Every pid in the container's own pid namespace (for kill --all before cgroups)."""
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


def kill(root, container_id, signum, all_processes=False):
    with Container.open(root, container_id) as container:
        status = container.status()
        if status not in (CREATED, RUNNING):
            raise OCIError("container %s: cannot kill a container that is %s" % (container_id, status))
        record = container.read()
        pids = _pids_in_namespace(record) if all_processes else [record["pid"]]
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def delete(root, container_id, force=False):
    with Container.open(root, container_id) as container:
        try:
            status = container.status()
        except OCIError:
            if not force:
                raise
            status = STOPPED  # unreadable state: --force removes what is there
        if status != STOPPED:
            if not force:
                raise OCIError("container %s: cannot delete a container that is %s "
                               "(stop it first, or use --force)" % (container_id, status))
            record = container.read()
            for pid in _pids_in_namespace(record):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not _wait_gone(record["pid"], start_time=record.get("pidStartTime")):
                raise OCIError("container %s: process %d did not exit after SIGKILL"
                               % (container_id, record["pid"]))
        container.remove()


def _wait_gone(pid, start_time=None, reap=False):
    """Wait (bounded) for PID to exit; reap it when it is our child."""
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while time.monotonic() < deadline:
        if reap:
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
                if done:
                    return True
            except ChildProcessError:
                pass
        current = process_start_time(pid)
        if current is None or (start_time is not None and current != start_time):
            return True
        time.sleep(0.005)
    return False


def run(root, container_id, bundle, pid_file=None, preserve_fds=0, detach=False, keep=False):
    """create + start; in the foreground also wait, delete (unless KEEP) and return the exit code."""
    if detach:
        create(root, container_id, bundle, pid_file=pid_file, preserve_fds=preserve_fds)
        start(root, container_id)
        return 0
    # As subreaper the runtime inherits the container's process when the
    # intermediate child exits, and so can wait for it.
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    pid = create(root, container_id, bundle, pid_file=pid_file, preserve_fds=preserve_fds,
                 detached=False)
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                 signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
    previous = {}

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    for signum in forwarded:
        previous[signum] = signal.signal(signum, forward)
    try:
        start(root, container_id)
        status = _wait_child(pid)
    except BaseException:
        try:
            delete(root, container_id, force=True)
        except OCIError:
            pass
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    if code < 0:
        code = 128 - code
    with Container.open(root, container_id) as container:
        container.update(exitCode=code, finished=utc_now())
    if not keep:
        delete(root, container_id, force=True)
    return code


def _wait_child(pid):
    while True:
        try:
            waited, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise OCIError("lost track of the container process %d" % pid)
        except InterruptedError:
            continue
        if waited == pid:
            return status
