# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""create: validate the bundle, fork the container, and leave it waiting for start.

The runtime's side of the conversation with the processes it forks (their
side is container_init.py; the messages are named and described in
protocol.py): write the id maps when asked, record the container's pid and
start time, send GO, wait for READY. create leaves
nothing behind when it fails: the half-made process is killed (its mounts
live only in its own mount namespace and go with it) and the state
directory removed.
"""
import os
import sys

# The C module: the signal module builds enums at import, 3 ms of every create.
import _signal as signal

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import kernel_settings
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.cgroup import Cgroup
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import (
    Layout, refuse_taken_default, resolve_path, systemd_scope)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import plan_devices, plan_resources
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import protocol
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.protocol import Channel
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
# The log defaults live in a leaf so that the modules' options need not import this file; create.DEFAULT_LOG_* still work.
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.defaults import DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.namespaces import (
    NamespacePlan, forks_once, host_id, namespace_paths, pid_namespace_for_children, write_id_maps)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import (
    CONFIG_COPY, CREATED, CREATING, EXEC_FIFO, STOPPED, INTERNAL_PREFIX, Container, directory_name,
    process_start_time, utc_now, wait_for_exit, write_json_atomic)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import validate_id


def _check_config(config, plan, console_socket, terminal_handler):
    if config["process"].get("terminal"):
        if not console_socket and terminal_handler is None:
            raise OCIError("process.terminal: a terminal needs --console-socket to hand its master side "
                           "to (or run it in the foreground with `ocirt run`, or with a monitor)")
        if not plan.has("mount"):
            raise OCIError("process.terminal: needs a mount namespace (the pty is made on the container's devpts)")
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import terminal
        terminal.check(config.get("mounts"))
    elif console_socket:
        raise OCIError("--console-socket: given, but process.terminal is false")
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
    proc = config["process"]
    if proc.get("apparmorProfile") or proc.get("selinuxLabel") or (config.get("linux") or {}).get("mountLabel"):
        # Imported only for a config that names a label: most never do, and every import costs start-up.
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
        lsm.check(config)


def _hooks():
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
    return hooks


def _root_ids(plan):
    """The host uid and gid of the container's root, for files its root must open."""
    if not plan.new_user:
        return 0, 0
    return host_id(plan.uid_mappings) or 0, host_id(plan.gid_mappings) or 0


def create(root, container_id, bundle, pid_file=None, console_socket=None, preserve_fds=0,
           terminal_handler=None, monitor_record=None, systemd_cgroup=False, config=None, supervision=None,
           reuse=None):
    """Create the container and leave its process waiting for start; return its pid.

    SUPERVISION (supervise.checked_supervision's record) is stored in the
    state for the monitor's restarts and checks. REUSE: the locked Container
    of a stopped container that its monitor creates again (a restart): its
    directory, log and supervision record stay, and a failure leaves it stopped.

    With process.terminal, the pty's master goes to CONSOLE_SOCKET, or to
    TERMINAL_HANDLER(master fd) (run's relay, the monitor). MONITOR_RECORD,
    from create_monitored, is stored in the state: this process will become
    the container's monitor. SYSTEMD_CGROUP: the systemd cgroup driver
    (systemd.driver_path); the config kept with the state records the
    cgroupsPath it gave, so the container's scope is in its config.
    CONFIG, when given, replaces BUNDLE/config.json (never from the command
    line: `ocirt create` reads the bundle, as runc does); a layer above the
    runtime passes the bundle's config with what it adds (spec.checked_bundle_config).
    """
    bundle = os.path.abspath(bundle)
    config, rootfs = spec.load_bundle(bundle) if config is None else spec.checked_bundle_config(bundle, config)
    plan = NamespacePlan(config)
    _check_config(config, plan, console_socket, terminal_handler)
    if (supervision or {}).get("restart") and config["process"].get("terminal"):
        raise OCIError("restart_policy: a container with process.terminal cannot be restarted by its monitor")
    if config.get("hooks") is not None:
        _hooks().validate(config["hooks"], check_executable=True)
    if (config.get("linux") or {}).get("seccomp") is not None:
        # A bad profile fails here, before any hook runs or anything exists.
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp
        seccomp.validate(config["linux"]["seccomp"])
    linux = config.get("linux") or {}
    if systemd_cgroup:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
        linux = dict(linux, cgroupsPath=systemd.driver_path(linux.get("cgroupsPath"), container_id))
        config["linux"] = linux
    resources = linux.get("resources") or {}
    layout = Layout.detect()
    # Planned before anything exists, so a bad limit fails with nothing to undo.
    cgroup_writes = (plan_resources(resources, layout)
                     + plan_devices(resources.get("devices"), layout))
    cgroup_path = resolve_path(linux.get("cgroupsPath"), container_id)
    scope = systemd_scope(linux.get("cgroupsPath"), container_id)
    # Before the state directory is made; the id first, so that a bad one ('..') is named as such.
    if not linux.get("cgroupsPath") and not os.path.lexists(os.path.join(root, directory_name(validate_id(container_id)))):
        refuse_taken_default(layout, cgroup_path, container_id)
    container = Container.new(root, container_id) if reuse is None else reuse
    cgroup = None
    hook_state = None  # set once hooks may have run: a failure then still owes the poststop hooks
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
            # The cgroup about to be made, recorded before anything exists: a create killed at any
            # point after this leaves delete --force enough to find and remove it.
            "cgroupPending": {"path": cgroup_path, "owned": not linux.get("cgroupsPath"),
                              "unit": scope.unit if scope else None,
                              "dirs": Cgroup.missing_dirs(layout, cgroup_path)},
        }
        if monitor_record is not None:
            record["monitor"] = monitor_record
        if supervision:
            record["supervision"] = supervision
        container.write(record)
        _failpoint("after-state")
        write_json_atomic(container.path(CONFIG_COPY), config)
        fifo = container.path(EXEC_FIFO)
        os.mkfifo(fifo, 0o600)
        # The container's process opens it (through its fd) after taking the
        # configured user, so that user must be able to write it: 0622, as
        # runc does. The directory around it is 0700, so only that fd reaches it.
        os.chmod(fifo, 0o622)
        uid, gid = _root_ids(plan)
        if uid or gid:
            os.chown(fifo, uid, gid)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        if scope is None:
            # Made (empty, with its limits) before the fork, as cgroupPending on disk already says:
            # the container's process then knows its cgroup directories from the start and makes its
            # mounts (a cgroup mount binds them) while the runtime records its pid and joins it to
            # them. The systemd driver needs the pid to make the scope: that cgroup comes after.
            cgroup = _make_cgroup(container, layout, cgroup_path, linux, cgroup_writes, None, None)
        channel, child_channel = Channel.pair()
        joined = plan.open_joins()
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import container_init
        args = container_init.InitArgs(config, rootfs, bundle, plan, child_channel, fifo_fd,
                                       joined, preserve_fds, cgroup.dirs if cgroup is not None else None)
        args.cgroup_hierarchies = layout.hierarchies
        once = forks_once(plan)
        _flush_stdio()
        restore = pid_namespace_for_children() if once and "pid" in plan.new else None
        try:
            child_pid = os.fork()
            if child_pid == 0:
                channel.close()
                (container_init.first_process if once else container_init.intermediate)(args)
        finally:
            if restore is not None:
                restore()  # hooks and later children of this process stay in its pid namespace
        for entry in joined:
            os.close(entry[2])
        child_channel.close()
        if once:
            init_pid, child_pid = child_pid, None
        else:
            init_pid = _intermediate_reports(channel, plan, config, bundle, child_pid)
        _failpoint("after-fork")
        if child_pid is not None:
            _reap(child_pid)
            child_pid = None
        start_time = process_start_time(init_pid)
        # Written now, not with `created`: a create killed from here on leaves a live process that
        # state must report (creating) and delete --force must find.
        container.update(pid=init_pid, pidStartTime=start_time, namespaces=namespace_paths(init_pid))
        if cgroup is None:
            cgroup = _make_cgroup(container, layout, cgroup_path, linux, cgroup_writes, init_pid, scope)
        # The process joins its cgroups while it sets up its mounts: a first write to a v1
        # cgroup.procs waits on the kernel (RCU, often 10 ms or more), and the setup overlaps it.
        # Nothing of the image runs before create returns, by when the process has joined.
        hook_state = container.oci_state()
        runtime_hooks = any((config.get("hooks") or {}).get(kind) for kind in ("prestart", "createRuntime"))
        channel.send(protocol.GO, cgroups=cgroup.dirs, state=hook_state, runtime_hooks=runtime_hooks)
        try:
            cgroup.add_process(init_pid)
        except OCIError:
            channel.raise_peer_error()  # the process failed first (and exited): its reason counts
            raise
        channel.send(protocol.JOINED)
        _failpoint("during-mounts")
        if runtime_hooks:
            channel.expect(protocol.MOUNTED, "create")
            # prestart sees "created", as runtime-tools' hooks_stdin expects (crun passes it).
            _hooks().run(config["hooks"], "prestart", dict(hook_state, status=CREATED))
            _hooks().run(config["hooks"], "createRuntime", hook_state)
            channel.send(protocol.CONTINUE)
        ready = channel.expect(protocol.READY, "create")
        _failpoint("before-created")
        for master in ready.get("fds", []):
            if console_socket:
                from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import terminal
                try:
                    terminal.send_to_console_socket(console_socket, master)
                finally:
                    os.close(master)
            else:
                terminal_handler(master)
        container.update(status=CREATED)
        if pid_file:
            write_pid_file(pid_file, init_pid)
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
        if reuse is None:
            container.remove()
        else:
            container.update(status=STOPPED)  # a failed restart: the container stays, stopped
        if hook_state is not None and (config.get("hooks") or {}).get("poststop"):
            # The spec's failed create hook "continues the lifecycle at delete": poststop undoes what they set up.
            _hooks().run_reporting(config["hooks"], "poststop", dict(hook_state, status="stopped"),
                                   lambda message: sys.stderr.write("ocirt: %s\n" % message))
        raise
    finally:
        for item in (channel, child_channel):
            if item is not None:
                item.close()
        if fifo_fd is not None:
            os.close(fifo_fd)
        container.close()


def _intermediate_reports(channel, plan, config, bundle, child_pid):
    """The runtime's side of the intermediate process's work: the id maps, then the init's pid."""
    message = channel.expect(protocol.USERNS, "create") if plan.new_user else None
    if message is not None:
        write_id_maps(child_pid, plan)
        # An image's overlay root: its layers id-mapped for the new namespace (setup/mounts.py).
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import mounts
        overlay_fds = mounts.userns_overlay_fds(config, bundle, child_pid)
        try:
            channel.send(protocol.ACK, fds=overlay_fds)
        finally:
            for fd in overlay_fds:
                os.close(fd)
    return channel.expect(protocol.PID, "create")["pid"]


def _make_cgroup(container, layout, path, linux, writes, pid, scope):
    """Make the container's cgroup and write its limits; the record waits for the next state write."""
    _failpoint("before-cgroups")
    cgroup = Cgroup.create(layout, path, owned=not linux.get("cgroupsPath"), pid=pid, scope=scope)
    _failpoint("after-cgroups")
    # Kept for the `created` write: until then cgroupPending on disk says where the cgroup is.
    container.stage(cgroup=cgroup.to_record(), cgroupPath=path, oomFile=cgroup.oom_file(layout))
    try:
        cgroup.apply(writes, layout)
    except BaseException:
        try:
            cgroup.destroy()  # the caller never sees this cgroup: it is undone here
        except OCIError:
            pass  # the error that brought us here matters more
        raise
    return cgroup


def _failpoint(name):
    """Die here, as a crash would, when OCIRT_FAILPOINT names this point: the crash-recovery
    tests kill create at each phase this way and check that state and delete --force hold up."""
    if os.environ.get("OCIRT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


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


def write_pid_file(path, pid):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
    atomicfile.write(os.path.abspath(path), str(pid))


LOG_FILE = "container.log"


def create_monitored(root, container_id, bundle, pid_file=None, preserve_fds=0, log_path=None,
                     log_max_size=DEFAULT_LOG_MAX_SIZE, log_max_files=DEFAULT_LOG_MAX_FILES, systemd_cgroup=False,
                     config=None, supervision=None):
    """create, with a monitor as the container's parent: it logs its output and records its exit.

    SUPERVISION (supervise.checked_supervision's record, or None): the
    monitor restarts the container by its policy and runs its health check.

    The caller forks once more so the monitor is orphaned at once (no
    zombie for a long-lived caller); the monitor starts a new session, becomes
    subreaper, points fds 0-2 at /dev/null and the log pipes, runs create
    (so the container's process is its descendant), reports the outcome over a
    pipe, and finally execs a fresh interpreter running monitor.py's source.
    Nothing of the caller's (its stdout, an Ansible module's pipes) stays open
    in the monitor or the container. CONFIG: as create's.
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    if log_max_size < 0 or log_max_files < 1:
        raise OCIError("log rotation: max size must be >= 0 and max files >= 1")
    if supervision and systemd_cgroup:
        supervision = dict(supervision, systemdCgroup=True)  # a restart creates it with the same driver
    return _detached_monitor(container_id, "the monitor", lambda result_w: _become_monitor(
        root, container_id, bundle, pid_file, preserve_fds, log_path, log_max_size, log_max_files, result_w,
        monitor, syscalls, systemd_cgroup, config, supervision))


def _detached_monitor(container_id, what, become):
    """Fork twice so that BECOME(result pipe's write end) runs in a new session, orphaned at once (no
    zombie for a long-lived caller), and return the init pid it reports (MONITOR_OK), or raise its error."""
    result_r, result_w = os.pipe()
    _flush_stdio()
    first = os.fork()
    if first == 0:
        try:
            os.close(result_r)
            os.setsid()
            if os.fork():
                os._exit(0)
            become(result_w)
        except BaseException as exc:
            try:
                os.write(result_w, (protocol.MONITOR_ERROR + _message(exc)).encode("utf-8", "replace"))
            except OSError:
                pass
        os._exit(1)
    os.close(result_w)
    try:
        os.waitpid(first, 0)
        answer = protocol.read_to_eof(result_r).decode("utf-8", "replace")
    finally:
        os.close(result_r)
    if answer.startswith(protocol.MONITOR_OK):
        return int(answer[len(protocol.MONITOR_OK):])
    if answer.startswith(protocol.MONITOR_ERROR):
        raise OCIError(answer[len(protocol.MONITOR_ERROR):])
    raise OCIError("container %s: %s exited before reporting (%r)" % (container_id, what, answer))


def _message(exc):
    if isinstance(exc, OCIError):
        return str(exc)
    if isinstance(exc, OSError):
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else str(exc.strerror or exc)
    return "%s: %s" % (type(exc).__name__, exc)


def _become_monitor(root, container_id, bundle, pid_file, preserve_fds, log_path, log_max_size,
                    log_max_files, result_w, monitor, syscalls, systemd_cgroup, config, supervision):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.process import close_fds_except
    preserved = set(range(3, 3 + preserve_fds))
    # Whatever the caller had open (an Ansible module's pipes) must not live on in the monitor.
    close_fds_except(set([0, 1, 2, result_w]) | preserved)
    # kill and delete wake a supervising monitor with SIGUSR2 (lifecycle.request_stop): until monitor.py
    # handles it, it must not end this process (the stop marker is read on the container's exit anyway).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    for fd in (out_w, err_w):
        os.close(fd)
    state_dir = os.path.join(root, directory_name(container_id))
    log_path = os.path.abspath(log_path) if log_path else os.path.join(state_dir, LOG_FILE)
    record = {"pid": os.getpid(), "startTime": process_start_time(os.getpid()), "logPath": log_path,
              "logMaxSize": log_max_size, "logMaxFiles": log_max_files}
    masters = []
    init_pid = create(root, container_id, bundle, pid_file=pid_file, preserve_fds=preserve_fds,
                      terminal_handler=masters.append, monitor_record=record, systemd_cgroup=systemd_cgroup,
                      config=config, supervision=supervision)
    if masters:
        # A terminal merges the streams: the monitor logs the pty as stdout.
        os.close(out_r)
        os.close(err_r)
        out_r, err_r = masters[0], -1
    with Container.open(root, container_id) as container:
        oom_file = container.read().get("oomFile") or ""
    # Counted now, while the process waits for start: once MONITOR_OK is sent, start may release
    # it, and an OOM kill before the new monitor read the counter would go unrecorded.
    oom_before = monitor.oom_kills(oom_file)
    # The container holds the write ends now; the monitor must not, or it never sees EOF.
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    for fd in preserved:
        os.close(fd)
    options = []
    if supervision:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import snapshot
        options = snapshot.monitor_options(root, container_id, supervision)
    command = _monitor_command(root, monitor, [init_pid, out_r, err_r, state_dir, log_path, log_max_size,
                                               log_max_files, oom_file, "" if oom_before is None else oom_before]
                               + options)
    os.write(result_w, (protocol.MONITOR_OK + str(init_pid)).encode())
    os.close(result_w)
    os.execv(command[0], command)


def _monitor_command(root, monitor, argv):
    """The command line that makes this process the monitor (to exec): a fresh interpreter running
    monitor.py's source alone, with ARGV (its main's), its stream descriptors made inheritable.

    Made before MONITOR_OK is sent: from then on the caller may exit, and an
    Ansible module's exit removes the zip payload the sources are read from."""
    for fd in argv[1:3]:
        if fd >= 0:
            os.set_inheritable(fd, True)
    directory, name = _monitor_module(root, monitor, "ocirt_monitor_")
    python = sys.executable or "/usr/bin/python3"
    return ([python, "-I", "-S", "-c",
             "import sys; sys.path[:0] = [%r]; import %s as m; sys.exit(m.main(sys.argv[1:]))" % (directory, name)]
            + [str(arg) for arg in argv] + _memory_release_options(root))


def _memory_release_options(root):
    """The monitor's options for MemoryRelease: where _cffi_backend is (-S leaves site-packages off
    its path) and the libc FFI tables' module, beside monitor.py's; none without cffi."""
    backend = getattr(sys.modules.get("_cffi_backend"), "__file__", None)
    if not backend:
        return []
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import _libc_ffi
    return ["cffi=" + backend, "ffi=" + _monitor_module(root, _libc_ffi, "ocirt_libc_ffi_")[1]]


def _monitor_module(root, module, prefix):
    """MODULE's source (monitor.py's, or the FFI tables the monitor loads) as a file under the state
    root, named PREFIX + its hash.

    The monitor imports it from there rather than compiling it from -c: the
    interpreter then loads cached bytecode, and a compile would cost each
    monitor about 1.3 MB of memory it never gives back. The source comes
    from the loader, so this works inside an Ansible module's zip payload too.
    """
    import hashlib
    source = module.__loader__.get_source(module.__name__)
    name = prefix + hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    directory = os.path.join(root, INTERNAL_PREFIX + "monitor")
    path = os.path.join(directory, name + ".py")
    if not os.path.exists(path):
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomicfile.write(path, source)
    # Compiled here, by the process about to become the monitor, whose memory the exec gives back:
    # else the first monitor of a state root compiles it and keeps the cost (5.1 MiB of PSS, not 3).
    import importlib.util
    cache = importlib.util.cache_from_source(path)
    if not os.path.exists(cache):
        # Into a name of this process's own, then renamed: py_compile's temporary name is made from
        # id() of a string, which forked processes (oci_containers' workers) share, so two
        # first monitors of a state root would write, or rename away, each other's file.
        import py_compile
        mine = "%s.%d.tmp" % (cache, os.getpid())
        try:
            py_compile.compile(path, cfile=mine, doraise=True)
            os.replace(mine, cache)
        except (OSError, py_compile.PyCompileError):
            # Only the memory of this monitor depends on it: without the cache it compiles the source.
            try:
                os.unlink(mine)
            except OSError:
                pass
    return directory, name


def adopt_monitored(root, container_id):
    """Put a new monitor in charge of a running container whose monitor is gone (killed); return its pid.

    It cannot be the container's parent any more: it learns of the exit
    through a pidfd (the exit code stays unknown, and the state says why),
    reopens the container's stdout and stderr pipes through /proc to go on
    logging, and, being subreaper, is the parent of what its restarts create.
    A container whose monitor lives, or that is not running, is an error.
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    with Container.open(root, container_id) as container:
        _check_adoptable(container)
    return _detached_monitor(container_id, "the new monitor",
                             lambda result_w: _become_adopter(root, container_id, result_w, monitor, syscalls))


def _check_adoptable(container):
    record = container.read()
    if not record.get("monitor"):
        raise OCIError("container %s: was created without a monitor; there is none to replace" % container.id)
    if container.monitor_alive():
        raise OCIError("container %s: its monitor (pid %d) is alive" % (container.id, record["monitor"]["pid"]))
    if not container.is_alive():
        raise OCIError("container %s: is not running; there is nothing to supervise" % container.id)


def _become_adopter(root, container_id, result_w, monitor, syscalls):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.process import close_fds_except
    close_fds_except(set([0, 1, 2, result_w]))
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # as in _become_monitor
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    with Container.open(root, container_id) as container:
        _check_adoptable(container)  # again, under the lock: two converges must not both adopt
        record = container.read()
        pid = record["pid"]
        streams = [_reopen_pipe(pid, fd) for fd in (1, 2)]
        old = record["monitor"]
        container.update(monitor=dict(old, pid=os.getpid(), startTime=process_start_time(os.getpid()),
                                      adopted=utc_now()))
        oom_file = record.get("oomFile") or ""
        supervision = record.get("supervision")
        state_dir = container.dir
    options = ["adopt=1"]
    if supervision:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import snapshot
        options += snapshot.monitor_options(root, container_id, supervision)
    # The container ran unobserved: OOM kills from then are not this monitor's to report.
    oom_before = monitor.oom_kills(oom_file)
    command = _monitor_command(root, monitor, [pid, streams[0], streams[1], state_dir, old["logPath"],
                                               old.get("logMaxSize", DEFAULT_LOG_MAX_SIZE),
                                               old.get("logMaxFiles", DEFAULT_LOG_MAX_FILES),
                                               oom_file, "" if oom_before is None else oom_before] + options)
    os.write(result_w, (protocol.MONITOR_OK + str(os.getpid())).encode())
    os.close(result_w)
    os.execv(command[0], command)


def _reopen_pipe(pid, fd):
    """A new read end of the pipe that is PID's descriptor FD, or -1 (not a pipe, or gone)."""
    import stat
    path = "/proc/%d/fd/%d" % (pid, fd)
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return -1
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1
