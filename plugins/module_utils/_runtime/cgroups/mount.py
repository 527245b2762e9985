# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `cgroup` mount inside a container (a `mounts` entry of type cgroup).

v1 and hybrid: a tmpfs with one bind per hierarchy of the container's own
cgroups; pure v2: a bind of the container's own cgroup directory.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import ensure_in_root, fd_path
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import hierarchies

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384


# -- the `cgroup` mount inside a container -------------------------------------------------

def mount_cgroup_fs(rootfd, destination, flags, cgroup_dirs, found=None):
    """A `cgroup` mount: the container's own cgroups, read-only when FLAGS say so.

    CGROUP_DIRS is the container's Cgroup.dirs ({hierarchy name: host
    directory}) as the runtime made them, not what /proc/self/cgroup says
    from inside: from a new cgroup namespace every path reads "/", and the
    bind would expose the host's whole tree. FOUND: the host's hierarchies
    (layout.hierarchies() as the runtime read them before forking; read
    again when not given).

    v1 and hybrid: a tmpfs at DESTINATION with one bind per hierarchy, plus
    symlinks for the parts of combined names (cpu -> cpu,cpuacct). Pure v2:
    a bind of the container's own cgroup. Returns the remounts to make at
    the end, as mounts.finish_readonly takes them: (container path, flags,
    None) for one mount, or, for the tmpfs and its binds, (DESTINATION, flags,
    [(container path, flags), ...]): one recursive mount_setattr, or where
    the kernel lacks it those remounts one by one.
    """
    found = hierarchies() if found is None else found
    readonly = flags & MS_RDONLY
    keep = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    final_flags = keep | (MS_RDONLY if readonly else 0)
    if all(h.version == 2 for h in found):
        source = cgroup_dirs.get(found[0].name) if found else None
        target = ensure_in_root(rootfd, destination)
        try:
            syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
        return [(destination, final_flags, None)]
    target = ensure_in_root(rootfd, destination)
    try:
        syscalls.mount("tmpfs", fd_path(target), "tmpfs", keep, "mode=755")
    finally:
        os.close(target)
    # The tmpfs just mounted is empty and this process's alone: its entries are made by name under
    # one descriptor of it, with no resolution inside the image's tree to guard.
    tmpfs = ensure_in_root(rootfd, destination)
    subtree = [(destination, final_flags)]
    try:
        for hierarchy in found:
            source = cgroup_dirs.get(hierarchy.name)
            if source is None or not os.path.isdir(source):
                continue
            os.mkdir(hierarchy.name, 0o755, dir_fd=tmpfs)
            target = os.open(hierarchy.name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmpfs)
            try:
                syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
            finally:
                os.close(target)
            subtree.append((destination.rstrip("/") + "/" + hierarchy.name, final_flags))
            parts = hierarchy.name.split(",")
            for part in parts if len(parts) > 1 else ():
                try:
                    os.symlink(hierarchy.name, part, dir_fd=tmpfs)
                except FileExistsError:
                    pass
    finally:
        os.close(tmpfs)
    # One by one (without mount_setattr) innermost first, so the tmpfs goes read-only last.
    subtree.reverse()
    return [(destination, final_flags, subtree)]
