# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-namespace kernel settings: hostname, domainname, linux.sysctl, process.oomScoreAdj.

Written by the container's first process before the root switch, through the
host's /proc (not one the image could fake), and only for settings the
kernel keeps per namespace: anything else would change the host.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# Sysctls the kernel keeps per IPC namespace.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check(config, plan):
    """Refuse, before anything runs, settings the container's namespaces cannot hold."""
    if (config.get("hostname") or config.get("domainname")) and "uts" not in plan.new:
        field = "hostname" if config.get("hostname") else "domainname"
        raise OCIError("%s: setting it needs a new uts namespace in linux.namespaces" % field)
    for key in ((config.get("linux") or {}).get("sysctl") or {}):
        field = "linux.sysctl.%s" % key
        if not key or ".." in key or key.startswith(("/", ".")) or key.endswith(("/", ".")):
            raise OCIError("%s: not a sysctl name" % field)
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in plan.new:
                raise OCIError("%s: needs a new ipc namespace" % field)
        elif key.startswith("net."):
            if "network" not in plan.new and not plan.has("network"):
                raise OCIError("%s: needs a network namespace of the container's own" % field)
        elif key in ("kernel.hostname", "kernel.domainname"):
            if "uts" not in plan.new:
                raise OCIError("%s: needs a new uts namespace" % field)
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
