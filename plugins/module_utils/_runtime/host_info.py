# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this host offers containers, read from the kernel's own files.

Reported by oci_container_info / oci_container_facts as `host`, so a play
can decide (for example) whether user namespaces or a time namespace exist
before it asks for them.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Layout


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _status_field(name):
    for line in (_read("/proc/self/status") or "").splitlines():
        key, _sep, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def host_capabilities():
    layout = Layout.detect()
    max_userns = _read("/proc/sys/user/max_user_namespaces")
    lsm = _read("/sys/kernel/security/lsm")
    seccomp_actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    return {
        "kernel": os.uname().release,
        "architecture": os.uname().machine,
        "cgroup": layout.describe(),
        "user_namespaces": bool(max_userns and max_userns.isdigit() and int(max_userns) > 0),
        "time_namespace": os.path.exists("/proc/self/ns/time"),
        "cgroup_namespace": os.path.exists("/proc/self/ns/cgroup"),
        "seccomp": _status_field("Seccomp") is not None,
        "seccomp_actions": seccomp_actions.split() if seccomp_actions else [],
        "lsms": [name for name in (lsm or "").split(",") if name],
        "apparmor": os.path.isdir("/sys/kernel/security/apparmor"),
        "selinux": os.path.isdir("/sys/fs/selinux"),
    }
