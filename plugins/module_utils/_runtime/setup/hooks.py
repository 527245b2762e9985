# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.json `hooks`: running them, with the state JSON on stdin, at their points in the lifecycle.

Where each kind runs (runtime-spec config.md, "POSIX-platform Hooks"):
- prestart, createRuntime: during create, after the container's environment
  is made and before pivot_root, by the runtime, in the runtime's namespaces;
- createContainer: right after, by the container's first process, in the
  container's namespaces but before pivot_root (so its path is a host path);
- startContainer: during start, in the container, after the root switch,
  just before process.args is executed, as that process will run (its
  user, capabilities, seccomp filter), exec'd through the sealed
  trampoline (finalize.py);
- poststart: by `start`, after the process is released;
- poststop: by `delete`, after the container is gone.
A failing prestart/createRuntime/createContainer/startContainer hook fails
the operation and the container is stopped and removed; a failing poststart
or poststop hook is only reported, and the lifecycle goes on.
"""
import os
import time

import _signal as signal  # the C module: no enum import for every create

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def validate(hooks, check_executable=False):
    """Raise OCIError naming the field of the first bad hook; with CHECK_EXECUTABLE, also
    refuse a runtime-namespace hook whose path is not an executable file here."""
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise OCIError("hooks: must be an object")
    for kind in KINDS:
        entries = hooks.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise OCIError("hooks.%s: must be a list" % kind)
        for index, hook in enumerate(entries):
            field = "hooks.%s[%d]" % (kind, index)
            if not isinstance(hook, dict):
                raise OCIError("%s: must be an object" % field)
            path = hook.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise OCIError("%s.path: must be an absolute path" % field)
            for key in ("args", "env"):
                value = hook.get(key)
                if value is not None and (not isinstance(value, list)
                                          or not all(isinstance(item, str) for item in value)):
                    raise OCIError("%s.%s: must be a list of strings" % (field, key))
            timeout = hook.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
                raise OCIError("%s.timeout: must be a positive number of seconds" % field)
            if check_executable and kind in ("prestart", "createRuntime", "createContainer", "poststart",
                                             "poststop") and not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise OCIError("%s.path: %s is not an executable file" % (field, path))


def run(hooks, kind, state, exec_via=None):
    """Run the hooks of KIND in order with STATE (a dict) on stdin; raise OCIError at the first failure.

    EXEC_VIA: the sealed trampoline's descriptor, for hooks that run in the container (see trampoline.py).
    """
    for index, hook in enumerate((hooks or {}).get(kind) or []):
        run_one(hook, "hooks.%s[%d]" % (kind, index), state, exec_via)


def run_reporting(hooks, kind, state, report):
    """Run hooks whose failure must not stop the lifecycle (poststart, poststop): REPORT each failure."""
    for index, hook in enumerate((hooks or {}).get(kind) or []):
        try:
            run_one(hook, "hooks.%s[%d]" % (kind, index), state)
        except OCIError as exc:
            report("warning: %s" % exc)


def run_one(hook, field, state, exec_via=None):
    stdin_r, stdin_w = os.pipe()
    err_r, err_w = os.pipe()
    args = hook.get("args") or [hook["path"]]
    env = dict(entry.partition("=")[::2] for entry in hook.get("env") or [])
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(stdin_r, 0)
            os.dup2(err_w, 2)
            devnull = os.open("/dev/null", os.O_WRONLY)
            os.dup2(devnull, 1)
            os.setsid()
            if exec_via is None:
                os.closerange(3, 65536)
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                os.execve(hook["path"], args, env)
            # In the container: finalize.py imported these before the root switch.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import trampoline
            # Kept at 3, close-on-exec: it goes at the trampoline's exec.
            if exec_via != 3:
                os.dup2(exec_via, 3, inheritable=False)
            os.closerange(4, 65536)
            syscalls.reset_signals()
            trampoline.execute(3, hook["path"], args, env)
        except BaseException as exc:
            os.write(2, ("cannot execute: %s" % getattr(exc, "strerror", exc)).encode())
        os._exit(127)
    os.close(stdin_r)
    os.close(err_w)
    try:
        try:
            os.write(stdin_w, jsonio.dumps(state).encode())
        except BrokenPipeError:
            pass  # the hook need not read its stdin
        os.close(stdin_w)
        stdin_w = None
        status, errors = _wait(pid, err_r, hook.get("timeout"), field)
    finally:
        if stdin_w is not None:
            os.close(stdin_w)
        os.close(err_r)
    if status != 0:
        detail = errors.decode("utf-8", "replace").strip()
        raise OCIError("%s (%s): %s%s" % (field, hook["path"], _describe(status),
                                          (": " + detail[-500:]) if detail else ""))


def _describe(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exited with %d" % os.WEXITSTATUS(status)


def _wait(pid, err_r, timeout, field):
    """Collect the hook's stderr until it exits; kill it (and its group) past TIMEOUT seconds."""
    import select
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks = []
    open_stream = True
    # Once its stderr is closed a hook has usually exited, but may not be reaped yet: a first short
    # sleep, doubling, instead of 50 ms at once (which every hook paid: most of a quick hook's cost).
    pause = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
        if not open_stream:
            wait, pause = min(wait, pause), pause * 2
        if open_stream:
            ready = select.select([err_r], [], [], wait)[0]
            if ready:
                chunk = os.read(err_r, 65536)
                if chunk:
                    chunks.append(chunk)
                else:
                    open_stream = False
        else:
            time.sleep(wait)
        if deadline is not None and time.monotonic() >= deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise OCIError("%s: did not finish within its timeout of %d seconds and was killed" % (field, timeout))
    while open_stream:
        chunk = os.read(err_r, 65536) if select.select([err_r], [], [], 0)[0] else b""
        if not chunk:
            break
        chunks.append(chunk)
    return status, b"".join(chunks)
