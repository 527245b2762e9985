# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.devices (path, type, major, minor, fileMode, uid, gid): /dev inside the container, with
the default devices and the standard symlinks.

Applies when the runtime populates /dev itself, that is when /dev is not
bind-mounted from the host (as runc decides). In a user namespace mknod is
not allowed, so each device is an empty file with the host's node bound on
it; that host node must be a character or block device of the type and
numbers the config gives (runc binds whatever the path names, so a config
could bind any host file into the container this way).
"""
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import (
    ensure_in_root, fd_path, open_in_root)

MS_BIND = 4096

DEFAULT_DEVICES = (
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
)
SYMLINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
)
_KIND = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def runtime_populates_dev(mounts):
    """False when the config bind-mounts /dev from somewhere: then /dev is left as given."""
    for mount in mounts or []:
        if os.path.normpath(mount["destination"]) == "/dev":
            options = mount.get("options") or []
            if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
                return False
    return True


def populate(rootfd, config_devices, in_user_namespace):
    """Create the default devices (those the config does not name), linux.devices, the symlinks."""
    named = set(os.path.normpath(d["path"]) for d in config_devices or [])
    devices = [d for d in DEFAULT_DEVICES if d["path"] not in named]
    for index, device in enumerate(list(config_devices or [])):
        devices.append(dict(device, field="linux.devices[%d]" % index))
    for device in devices:
        try:
            _create(rootfd, device, in_user_namespace)
        except OSError as exc:
            raise OCIError("%s %s: %s" % (device.get("field", "default device"), device["path"],
                                          exc.strerror or exc))
    dev = ensure_in_root(rootfd, "/dev")
    try:
        for link, target in SYMLINKS:
            try:
                os.symlink(target, os.path.basename(link), dir_fd=dev)
            except FileExistsError:
                pass
        if os.path.exists("/proc/kcore"):
            try:
                os.symlink("/proc/kcore", "core", dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def _host_node(device):
    """An O_PATH fd on the host's node at the device's path, which must be that very device."""
    field = "%s %s" % (device.get("field", "default device"), device["path"])
    fd = os.open(device["path"], os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        kind = _KIND[device["type"]]
        if stat.S_IFMT(st.st_mode) != kind:
            raise OCIError("%s: not a %s device on the host; in a user namespace only host device nodes are bound"
                           % (field, "block" if kind == stat.S_IFBLK else "character"))
        have = (os.major(st.st_rdev), os.minor(st.st_rdev))
        want = (device.get("major", 0), device.get("minor", 0))
        if have != want:
            raise OCIError("%s: the host's node is %d:%d, not %d:%d" % ((field,) + have + want))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _create(rootfd, device, in_user_namespace):
    parent_path, name = os.path.split(os.path.normpath(device["path"]))
    parent = ensure_in_root(rootfd, parent_path)
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise OCIError("%s: a directory is in the way" % device["path"])
        mode = device.get("fileMode")
        if mode is None:
            mode = 0o666
        if in_user_namespace and device["type"] != "p":
            source = _host_node(device)
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=parent))
                node = open_in_root(rootfd, device["path"])
                try:
                    # The checked inode itself is bound, whatever the host path names by now.
                    syscalls.mount(fd_path(source), fd_path(node), None, MS_BIND)
                finally:
                    os.close(node)
            finally:
                os.close(source)
            return
        syscalls.mknodat(parent, name, _KIND[device["type"]] | (mode & 0o7777),
                         device.get("major", 0), device.get("minor", 0))
        syscalls.fchownat(parent, name, device.get("uid", 0), device.get("gid", 0))
    finally:
        os.close(parent)
