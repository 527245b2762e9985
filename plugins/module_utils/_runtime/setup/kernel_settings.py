# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostname, domainname, linux.sysctl, process.oomScoreAdj: the per-namespace kernel settings.

Written by the container's first process before the root switch, through the
host's /proc (not one the image could fake), and only into namespaces that
are the container's: ones it made, or ones it joined by path that are not
the runtime's own (runc refuses net.* in the host's network namespace the same
way). Anything else would change the host.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# Sysctls the kernel keeps per IPC namespace.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _require_own(plan, kind, field):
    """Refuse FIELD unless the container's namespace of KIND is not the runtime's."""
    if kind in plan.new:
        return
    path = plan.joined_path(kind)
    if path is None:
        raise OCIError("%s: needs a %s namespace of the container's own in linux.namespaces" % (field, kind))
    if plan.joins_runtimes(kind):
        raise OCIError("%s: not allowed in the runtime's own %s namespace (linux.namespaces joins it by %s): "
                       "it would change the host's" % (field, kind, path))


def check(config, plan):
    """Refuse, before anything runs, settings the container's namespaces cannot hold."""
    for field in ("hostname", "domainname"):
        if config.get(field):
            _require_own(plan, "uts", field)
    for key in ((config.get("linux") or {}).get("sysctl") or {}):
        field = "linux.sysctl.%s" % key
        if not key or ".." in key or key.startswith(("/", ".")) or key.endswith(("/", ".")):
            raise OCIError("%s: not a sysctl name" % field)
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            _require_own(plan, "ipc", field)
        elif key.startswith("net."):
            _require_own(plan, "network", field)
        elif key in ("kernel.hostname", "kernel.domainname"):
            _require_own(plan, "uts", field)
        else:
            raise OCIError("%s: not a namespaced sysctl; it would change the host" % field)


def apply(config):
    if config.get("hostname"):
        syscalls.sethostname(config["hostname"])
    if config.get("domainname"):
        syscalls.setdomainname(config["domainname"])
    for key, value in ((config.get("linux") or {}).get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise OCIError("linux.sysctl.%s=%s: %s" % (key, value, exc.strerror))
    adj = (config.get("process") or {}).get("oomScoreAdj")
    if adj is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as handle:
                handle.write(str(adj))
        except OSError as exc:
            raise OCIError("process.oomScoreAdj=%d: %s" % (adj, exc.strerror))
