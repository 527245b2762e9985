# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_container_exec's work: a command in a running container, its output and exit code as a result.

The command runs through the runtime's own exec (operations/container_exec,
the code path of `ocirt exec`), in a forked child of the module whose
descriptors 0, 1 and 2 are files: the module's own stdout is its JSON
result, and exec makes its caller the subreaper and catches signals, which
must not outlive the call. Files rather than pipes, so that a process that
leaves a background child holding its stdout never blocks the module.

A nonzero exit code is the command's result, not the task's failure (as
podman_container_exec and docker_container_exec): a playbook decides with
failed_when. What fails the task is what prevents running the command: an
unknown or non-running container, a bad option, a program that cannot be
executed at all (missing, not executable: the runtime's error, with the
reason, where podman reports exit code 126 or 127).
"""
import json
import os
import shlex
import sys
import tempfile

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import STATE_ROOT_ARGSPEC
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import env_file
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import protocol
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import validate_id
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import (
    RUNNING, Container, process_start_time)


def argument_spec():
    """oci_container_exec's argument_spec (a new dict each call)."""
    spec = dict(
        id=dict(type='str', required=True, aliases=['name']),
        argv=dict(type='list', elements='str'),
        command=dict(type='str'),
        env=dict(type='dict', default={}),
        user=dict(type='str'),
        workdir=dict(type='str', aliases=['cwd', 'chdir']),
        stdin=dict(type='str'),
        stdin_add_newline=dict(type='bool', default=True),
        strip_empty_ends=dict(type='bool', default=True),
        tty=dict(type='bool', default=False),
        detach=dict(type='bool', default=False),
    )
    spec.update(STATE_ROOT_ARGSPEC)
    return spec


MUTUALLY_EXCLUSIVE = [('argv', 'command')]
REQUIRED_ONE_OF = [('argv', 'command')]


def command_argv(params):
    """The command as a list: argv as given, or command split as a POSIX shell would (no shell runs it)."""
    if params.get("argv") is not None:
        argv = [str(arg) for arg in params["argv"]]
        field = "argv"
    else:
        field = "command"
        try:
            argv = shlex.split(params.get("command") or "")
        except ValueError as exc:
            raise OCIError("command: cannot split %r: %s" % (params.get("command"), exc))
    if not argv or not argv[0]:
        raise OCIError("%s: must name a program to run" % field)
    if any("\0" in arg for arg in argv):
        raise OCIError("%s: an argument holds a NUL byte" % field)
    return argv


def env_list(env):
    """env as process.env entries, under oci_bundle's rules for its env: what execve cannot take, or a
    YAML value that is not the text it looks like, is the option's error."""
    return ["%s=%s" % entry for entry in env_file.option_entries(env)]


def running_container(root, container_id):
    """(its state record, its config) when it runs; OCIError naming the id otherwise."""
    try:
        with Container.open(root, container_id) as container:
            status = container.status()
            if status != RUNNING:
                raise OCIError("container %s: is %s, not running; exec needs a running container"
                               % (container_id, status))
            return container.read(), container.config()
    except NotFound:
        raise OCIError("container %s: no such container in state root %s" % (container_id, root))


def container_user(record, value):
    """process.user for VALUE (a name or number, as oci_bundle's user), names from the container's own files.

    They are read through /proc/PID/root, the running container's root with
    its mounts, resolved inside it (users.resolve); the process must still
    be the container's init once it is open, or the root could be another's.
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import users
    pid = record["pid"]
    try:
        rootfd = os.open("/proc/%d/root" % pid, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("user: cannot open the container's root: %s" % exc.strerror)
    try:
        if process_start_time(pid) != record.get("pidStartTime"):
            raise OCIError("user: the container's process exited")
        return users.resolve(rootfd, value, "user")
    finally:
        os.close(rootfd)


def _lines(text):
    return text.splitlines()


def _strip(text, strip):
    return text.rstrip("\r\n") if strip else text


def run(params, check_mode=False):
    """Run the command; return the module's result (OCIError when it cannot run)."""
    root = params["state_root"]
    container_id = params["id"]
    validate_id(container_id)
    argv = command_argv(params)
    env = env_list(params.get("env"))
    if params.get("detach") and params.get("stdin") is not None:
        raise OCIError("stdin: cannot be given with detach=true (nothing would read it)")
    overrides = {"args": argv, "env": env, "cwd": params.get("workdir"), "terminal": bool(params.get("tty"))}
    if overrides["cwd"] is not None and not overrides["cwd"].startswith("/"):
        raise OCIError("workdir: must be an absolute path inside the container, not %r" % overrides["cwd"])
    result = dict(changed=True, argv=argv)
    if check_mode:
        # Nothing runs, and a container that a check-mode task before would have started may not exist yet.
        try:
            running_container(root, container_id)
            state = "running"
        except OCIError as exc:
            state = str(exc)
        result["msg"] = "check mode: would run %s in container %s (%s); nothing ran" % (
            shlex.join(argv), container_id, state)
        return result
    record, config = running_container(root, container_id)
    if params.get("user") is not None:
        overrides["user"] = container_user(record, params["user"])
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec
    proc = container_exec.build_process(config, overrides)
    if params.get("detach"):
        pid = _exec_detached(root, container_id, proc)
        message = "started %s in container %s as process %d" % (shlex.join(argv), container_id, pid)
        result.update(pid=pid, msg=message)
        return result
    stdin = params.get("stdin")
    if stdin is not None and params.get("stdin_add_newline", True):
        stdin += "\n"
    rc, stdout, stderr = _exec_foreground(root, container_id, proc, stdin)
    strip = params.get("strip_empty_ends", True)
    stdout, stderr = _strip(stdout, strip), _strip(stderr, strip)
    result.update(rc=rc, stdout=stdout, stderr=stderr, stdout_lines=_lines(stdout), stderr_lines=_lines(stderr),
                  msg="%s in container %s exited with %d" % (shlex.join(argv), container_id, rc))
    return result


def _in_child(work, stdio):
    """Run WORK() in a forked child with descriptors 0, 1, 2 on STDIO; return what WORK returned (JSON),
    or raise the OCIError it raised. The child's signal handlers and subreaper flag die with it."""
    sys.stdout.flush()
    sys.stderr.flush()
    result_r, result_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(result_r)
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            outcome = {"value": work()}
        except OCIError as exc:
            outcome = {"error": str(exc)}
        except BaseException as exc:  # a child must never return into the module's own code
            outcome = {"error": "%s: %s" % (type(exc).__name__, exc)}
        try:
            data = json.dumps(outcome).encode("utf-8")
            while data:
                data = data[os.write(result_w, data):]
        finally:
            os._exit(0)
    os.close(result_w)
    try:
        data = protocol.read_to_eof(result_r)
    finally:
        os.close(result_r)
        os.waitpid(child, 0)
    try:
        outcome = json.loads(data.decode("utf-8"))
    except ValueError:
        raise OCIError("exec: the runtime's child ended without a result")
    if "error" in outcome:
        raise OCIError(outcome["error"])
    return outcome["value"]


def _exec_foreground(root, container_id, proc, stdin):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec
    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        if stdin is not None:
            inp.write(stdin.encode("utf-8", "surrogateescape"))
            inp.flush()
            inp.seek(0)
        rc = _in_child(lambda: container_exec.exec_process(root, container_id, proc),
                       (inp.fileno(), out.fileno(), err.fileno()))
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


def _exec_detached(root, container_id, proc):
    """Start PROC in the background, its stdio on /dev/null (nothing is there to read it); its host pid."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec
    scratch = tempfile.mkdtemp(prefix="oci-exec-")
    pid_file = os.path.join(scratch, "pid")
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        _in_child(lambda: container_exec.exec_process(root, container_id, proc, detach=True, pid_file=pid_file),
                  (null, null, null))
        with open(pid_file) as handle:
            return int(handle.read().strip())
    finally:
        os.close(null)
        try:
            os.unlink(pid_file)
        except OSError:
            pass
        os.rmdir(scratch)
