# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""create: validate the bundle, fork the container, and leave it waiting for start.

The runtime's side of the conversation with the processes it forks (their
side is container_init.py): write the id maps when asked, record the
container's pid and start time, send "go", wait for "ready". create leaves
nothing behind when it fails: the half-made process is killed (its mounts
live only in its own mount namespace and go with it) and the state
directory removed.
"""
import os
import signal
import sys

from ansible_collections.daemonless.oci.plugins.module_utils import kernel_settings, spec
from ansible_collections.daemonless.oci.plugins.module_utils import cgroups
from ansible_collections.daemonless.oci.plugins.module_utils.channel import Channel
from ansible_collections.daemonless.oci.plugins.module_utils.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils.namespaces import (
    NamespacePlan, namespace_paths, write_id_maps)
from ansible_collections.daemonless.oci.plugins.module_utils.state import (
    CONFIG_COPY, CREATED, CREATING, EXEC_FIFO, Container, process_start_time, utc_now,
    wait_for_exit, write_json_atomic)


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
    linux = config.get("linux") or {}
    resources = linux.get("resources") or {}
    layout = cgroups.Layout.detect()
    # Planned before anything exists, so a bad limit fails with nothing to undo.
    cgroup_writes = (cgroups.plan_resources(resources, layout)
                     + cgroups.plan_devices(resources.get("devices"), layout))
    cgroup_path = cgroups.resolve_path(linux.get("cgroupsPath"), container_id)
    container = Container.new(root, container_id)
    cgroup = None
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
            "resources": resources,
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
        # The process joins its cgroups and gets its limits before it runs a line of the image.
        cgroup = cgroups.Cgroup.create(layout, cgroup_path, owned=not linux.get("cgroupsPath"))
        container.update(cgroup=cgroup.to_record(), cgroupPath=cgroup_path)
        cgroup.add_process(init_pid)
        cgroup.apply(cgroup_writes, layout)
        channel.send("go", cgroups=cgroups.process_cgroups(init_pid))
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
            wait_for_exit(init_pid, reap=True)
        if cgroup is not None:
            try:
                cgroup.destroy()
            except OCIError:
                pass  # the error that brought us here matters more
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
