# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one setup sequence after the root switch, for the container's first process and for exec.

runc calls it finalizeNamespace. create's process (container_init.py) runs it
after pivot_root, exec's process (operations/container_exec.py) after joining
the container's namespaces. What must be made while the host is still in
reach comes in a `Prepared`: the sealed trampoline, the compiled linux.seccomp
filter (its listener connected), the LSM attr files, the last capability
number. The caller's `sync` tells the runtime where the sequence is (create:
READY then the exec fifo; exec: READY and a status pipe; see protocol.py).

The order, written down here only; the kernel dictates most of it:
 1. process.rlimits: raising a hard limit needs the privileges still held.
 2. process.ioPriority, process.scheduler, linux.personality,
    linux.memoryPolicy (sched.py): a real-time policy or a negative nice
    needs CAP_SYS_NICE.
 3. linux.seccomp, when process.noNewPrivileges is false: without
    no_new_privs installing a filter needs CAP_SYS_ADMIN, so it goes in
    before the capabilities go, as runc does; all below runs filtered.
 4. process.env, with HOME from the user's entry in the container's
    /etc/passwd when the env has none or an empty one (as runc; "/" when
    the user has no entry), read as root before the ids change.
 5. process.capabilities.bounding dropped; process.user additionalGids,
    gid, uid switched with KEEPCAPS; effective, permitted, inheritable,
    then ambient (process.py).
 6. process.user.umask (0022 when unset).
 7. process.cwd, entered as the container's user.
 8. process.args[0], found in the env's PATH as the container's user.
 9. process.noNewPrivileges.
10. descriptors: only 0-2 and the preserved ones survive the exec.
11. sync.ready(): the runtime learns the process is set up; create's
    process then waits on the exec fifo until `start`.
12. process.apparmorProfile, process.selinuxLabel: written now, applied at exec.
13. process.execCPUAffinity.final.
14. linux.seccomp, when process.noNewPrivileges is true: as late as
    possible, so that the fewest of the runtime's own calls run filtered.
15. hooks.startContainer (create only): as the container's process runs,
    under its user, capabilities, label and seccomp filter, each exec'd
    through the sealed trampoline (a hook naming #!/proc/self/exe must not
    reach the host's interpreter, CVE-2019-5736), as runc does.
16. sync.released(): create's process answers `start`.
17. every signal to its default action, none blocked.
18. exec of process.args through the sealed trampoline (trampoline.py).
A failure at any step goes to sync.failed(), which reports it and exits.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import process, trampoline

EXTRA_PROCESS_FIELDS = ("ioPriority", "scheduler", "execCPUAffinity")
EXTRA_LINUX_FIELDS = ("personality", "memoryPolicy")


def needs_sched(proc, linux):
    """Whether sched.py has anything to apply (it is imported only then)."""
    return (any(proc.get(key) for key in EXTRA_PROCESS_FIELDS)
            or any((linux or {}).get(key) for key in EXTRA_LINUX_FIELDS))


def _sched_module():
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import sched
    return sched


def initial_affinity(proc, linux):
    """process.execCPUAffinity.initial: the first thing each process does, before its setup."""
    if needs_sched(proc, linux):
        _sched_module().set_affinity(proc, "initial")


class Prepared:
    """What the sequence needs that is made before the root switch (or before exec joins the
    container's mount namespace): after it the runtime's files and the host's /proc are gone.

    SECCOMP_FILTER: a prepared seccomp.Filter or None; LABELS: an lsm.ExecLabels or None;
    START_HOOKS: (config hooks, state) when startContainer hooks are to run (create only).
    """

    def __init__(self, proc, linux, last_cap, preserve_fds, seccomp_filter=None, labels=None, start_hooks=None):
        self.proc = proc
        self.linux = linux or {}
        self.last_cap = last_cap
        self.preserve_fds = preserve_fds
        self.seccomp = seccomp_filter
        self.labels = labels
        self.start_hooks = start_hooks
        # Imported now: once the root has changed, only sys.modules has it.
        self.sched = _sched_module() if needs_sched(proc, self.linux) else None
        # Made now, before any seccomp filter or dropped capability could forbid it.
        self.exec_via = trampoline.sealed_fd()


def finalize(prepared, sync):
    """Run steps 1-18 of the module docstring in this process. Never returns."""
    proc = prepared.proc
    nnp = bool(proc.get("noNewPrivileges"))
    user = proc.get("user") or {}
    try:
        process.set_rlimits(proc.get("rlimits"))
        if prepared.sched is not None:
            prepared.sched.apply(proc, prepared.linux)
        if prepared.seccomp is not None and not nnp:
            prepared.seccomp.load()
        env = process.environment(proc.get("env"))
        if not env.get("HOME"):
            env["HOME"] = process.home_directory(user.get("uid", 0))
        process.set_user_and_capabilities(user, proc.get("capabilities"), prepared.last_cap)
        syscalls.umask(user["umask"] if user.get("umask") is not None else 0o022)
        process.change_directory(proc["cwd"])
        executable = process.find_executable(proc["args"], env)
        if nnp:
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        process.keep_only_stdio_and_preserved(prepared.preserve_fds)
        sync.ready()
        if prepared.labels is not None:
            prepared.labels.apply()
        if prepared.sched is not None:
            prepared.sched.set_affinity(proc, "final")
        if prepared.seccomp is not None and nnp:
            prepared.seccomp.load()
        if prepared.start_hooks is not None:
            # Already imported by container_init before the root switch (the only caller that sets them).
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
            hooks.run(prepared.start_hooks[0], "startContainer", prepared.start_hooks[1],
                      exec_via=prepared.exec_via)
        sync.released()
        syscalls.reset_signals()
    except BaseException as exc:
        sync.failed(exc)
        os._exit(1)
    try:
        trampoline.execute(prepared.exec_via, executable, proc["args"], env)
    except OSError as exc:
        sync.exec_failed(executable, exc)
    os._exit(127)
