# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ocirt run`: create, start, and in the foreground wait, relay the terminal and delete.

No config.json field is applied here (create.py applies them). Apart from
lifecycle.py because run imports create, and with it the whole setup code:
what only reads, signals or deletes containers (oci_bundle's force, the
info modules) imports lifecycle and ships none of it in its Ansible payload.
"""
import os
# The C module: the signal module builds enums at import, 3 ms of every command.
import _signal as signal

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.lifecycle import delete, start
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container, utc_now


def run(root, container_id, bundle, pid_file=None, preserve_fds=0, detach=False, keep=False,
        log_options=None, systemd_cgroup=False):
    """create + start; in the foreground also wait, delete (unless KEEP) and return the exit code.

    Detached, the container gets a monitor (logging with LOG_OPTIONS, the
    keyword arguments of create_monitored); in the foreground the runtime
    itself waits for it and relays its output.
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.create import create, create_monitored
    if detach:
        create_monitored(root, container_id, bundle, pid_file=pid_file, preserve_fds=preserve_fds,
                         systemd_cgroup=systemd_cgroup, **(log_options or {}))
        start(root, container_id)
        return 0
    # As subreaper the runtime inherits the container's process when the
    # intermediate child exits (when there is one), and so can wait for it.
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    masters = []
    pid = create(root, container_id, bundle, pid_file=pid_file, preserve_fds=preserve_fds,
                 terminal_handler=masters.append, systemd_cgroup=systemd_cgroup)
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
        if masters:
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import terminal
            try:
                terminal.relay(masters[0])
            finally:
                os.close(masters[0])
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
    if not keep:
        # Nothing would read an exit record in a state directory about to go: no write for it.
        delete(root, container_id, force=True, exit_fields={"exitCode": code, "finished": utc_now()})
        return code
    try:
        with Container.open(root, container_id) as container:
            container.update(exitCode=code, finished=utc_now())
    except OCIError:
        pass  # deleted meanwhile (delete --force from elsewhere): the exit code still stands
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
