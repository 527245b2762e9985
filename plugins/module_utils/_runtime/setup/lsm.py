# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux security modules: process.apparmorProfile, process.selinuxLabel, linux.mountLabel.

A host without the module refuses the field at create (and exec), before
anything exists: a container silently left unconfined would be worse than
none. Where the module is there, the exec-time label is written to the
process's own /proc/self/attr file just before exec; that file is opened
from the host's /proc before the root switch (never a /proc the image could
fake) and must be on procfs. The mount label goes into the data of the
mounts that take a context= option.
"""
import errno
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

PROC_SUPER_MAGIC = 0x9fa0
LABELLED_MOUNT_TYPES = ("tmpfs", "mqueue", "devpts")
# Newer kernels give AppArmor its own directory; the shared file is the fallback.
APPARMOR_ATTRS = ("self/attr/apparmor/exec", "self/attr/exec")
SELINUX_ATTRS = ("self/attr/exec",)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def apparmor_enabled():
    return (os.path.isdir("/sys/kernel/security/apparmor")
            and "apparmor" in _read("/sys/kernel/security/lsm").strip().split(","))


def selinux_enabled():
    return os.path.exists("/sys/fs/selinux/enforce")


def check_process(proc, prefix="process"):
    """Refuse PROC's LSM fields that the host cannot honour."""
    if proc.get("apparmorProfile") and not apparmor_enabled():
        raise OCIError("%s.apparmorProfile: %r is set, but AppArmor is not enabled on this host "
                       "(no /sys/kernel/security/apparmor, or not in /sys/kernel/security/lsm)"
                       % (prefix, proc["apparmorProfile"]))
    if proc.get("selinuxLabel") and not selinux_enabled():
        raise OCIError("%s.selinuxLabel: %r is set, but SELinux is not enabled on this host (no /sys/fs/selinux/enforce)"
                       % (prefix, proc["selinuxLabel"]))


def check(config):
    """create's refusal: every LSM field the host cannot honour fails here, naming it."""
    check_process(config.get("process") or {})
    label = (config.get("linux") or {}).get("mountLabel")
    if label and not selinux_enabled():
        raise OCIError("linux.mountLabel: %r is set, but SELinux is not enabled on this host (no /sys/fs/selinux/enforce)"
                       % label)


def wanted(proc):
    return bool(proc.get("apparmorProfile") or proc.get("selinuxLabel"))


def mount_data(data, mtype, label):
    """Mount DATA with context="LABEL" added for the filesystems that take it."""
    if not label or mtype not in LABELLED_MOUNT_TYPES:
        return data
    context = 'context="%s"' % label
    return "%s,%s" % (data, context) if data else context


def verify_procfs(fd, what):
    """Raise OCIError unless FD lies on procfs."""
    try:
        kind = syscalls.fstatfs_type(fd)
    except OSError as exc:
        raise OCIError("%s: cannot check its filesystem: %s" % (what, exc.strerror))
    if kind != PROC_SUPER_MAGIC:
        raise OCIError("%s: not a procfs file (filesystem type 0x%x, procfs is 0x%x): refusing to write a label there"
                       % (what, kind, PROC_SUPER_MAGIC))


def _open_attr(candidates, proc_dir, field):
    last = None
    for name in candidates:
        path = "/proc/" + name
        try:
            if proc_dir is None:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            else:
                fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_dir)
        except OSError as exc:
            last = exc
            if exc.errno == errno.ENOENT:
                continue
            break
        try:
            verify_procfs(fd, "%s: %s" % (field, path))
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise OCIError("%s: cannot open %s: %s" % (field, "/proc/" + candidates[-1], last.strerror))


class ExecLabels:
    """The exec-time labels of PROC, their attr files opened now (before the root switch).

    PROC_DIR: a descriptor of the host's /proc for a process already in the
    container's mount namespace (exec); None means the /proc this process sees.
    """

    def __init__(self, proc, proc_dir=None):
        self.writes = []
        try:
            if proc.get("apparmorProfile"):
                fd = _open_attr(APPARMOR_ATTRS, proc_dir, "process.apparmorProfile")
                self.writes.append((fd, "exec " + proc["apparmorProfile"], "process.apparmorProfile"))
            if proc.get("selinuxLabel"):
                fd = _open_attr(SELINUX_ATTRS, proc_dir, "process.selinuxLabel")
                self.writes.append((fd, proc["selinuxLabel"], "process.selinuxLabel"))
        except BaseException:
            self.close()
            raise

    def apply(self):
        """Write the labels: they take effect at this process's next exec."""
        for fd, value, field in self.writes:
            try:
                os.write(fd, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                raise OCIError("%s %r: %s" % (field, value, exc.strerror))
        self.close()

    def close(self):
        for fd, _value, _field in self.writes:
            try:
                os.close(fd)
            except OSError:
                pass
        self.writes = []
