# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cgroup layout of the host, and the `cgroup` mount inside a container.

The layout is read from /proc/self/mountinfo (which hierarchies are mounted
where, with which controllers) and /proc/<pid>/cgroup (where a process sits
in each), never guessed.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils.paths import ensure_in_root, fd_path

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384


class Hierarchy:
    """One mounted cgroup hierarchy: v1 (with its controllers) or the v2 unified one."""

    def __init__(self, mountpoint, root, version, controllers):
        self.mountpoint = mountpoint
        self.root = root
        self.version = version
        self.controllers = controllers

    @property
    def name(self):
        """The directory name inside a container's cgroup mount: 'cpu,cpuacct', 'systemd', 'unified'."""
        if self.version == 2:
            return "unified"
        return ",".join(c[len("name="):] if c.startswith("name=") else c for c in self.controllers)


def _unescape(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def known_controllers():
    """Controller names the kernel has, from /proc/cgroups."""
    with open("/proc/cgroups") as handle:
        return set(line.split()[0] for line in handle if not line.startswith("#"))


def hierarchies(mountinfo="/proc/self/mountinfo"):
    found = []
    controllers_known = None
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            if fstype == "cgroup":
                if controllers_known is None:
                    controllers_known = known_controllers()
                controllers = [o for o in options.split(",")
                               if o in controllers_known or o.startswith("name=")]
                found.append(Hierarchy(_unescape(fields[4]), _unescape(fields[3]), 1, controllers))
            elif fstype == "cgroup2":
                found.append(Hierarchy(_unescape(fields[4]), _unescape(fields[3]), 2, []))
    return found


def process_cgroups(pid="self"):
    """{controller-list string or '' for v2: path} from /proc/<pid>/cgroup."""
    paths = {}
    with open("/proc/%s/cgroup" % pid) as handle:
        for line in handle:
            controllers, path = line.rstrip("\n").split(":", 2)[1:]
            paths[controllers] = path
    return paths


def _own_path(hierarchy, cgroups):
    key = "" if hierarchy.version == 2 else ",".join(hierarchy.controllers)
    path = cgroups.get(key)
    if path is None:
        return None
    # mountinfo's root says which part of the tree this mount shows.
    if hierarchy.root != "/" and path.startswith(hierarchy.root):
        path = path[len(hierarchy.root):] or "/"
    return os.path.join(hierarchy.mountpoint, path.lstrip("/"))


def mount_cgroup_fs(rootfd, destination, flags, cgroups):
    """A `cgroup` mount: the container's own cgroups, read-only when FLAGS say so.

    CGROUPS is /proc/<init>/cgroup as the runtime reads it from the host's
    cgroup namespace: read from inside a new cgroup namespace every path
    would be "/", and the bind would expose the host's whole tree.

    v1 and hybrid: a tmpfs at DESTINATION with one bind per hierarchy, plus
    symlinks for the parts of combined names (cpu -> cpu,cpuacct). Pure v2:
    a bind of the process's own cgroup. Returns the remounts to make read-only
    at the end (paths under /proc/self/fd would change meaning, so fds).
    """
    found = hierarchies()
    readonly = flags & MS_RDONLY
    keep = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if all(h.version == 2 for h in found):
        source = _own_path(found[0], cgroups) if found else None
        target = ensure_in_root(rootfd, destination)
        try:
            syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
        return [(destination, keep | (MS_RDONLY if readonly else 0))]
    target = ensure_in_root(rootfd, destination)
    try:
        syscalls.mount("tmpfs", fd_path(target), "tmpfs", keep, "mode=755")
    finally:
        os.close(target)
    deferred = [(destination, keep | (MS_RDONLY if readonly else 0))]
    for hierarchy in found:
        source = _own_path(hierarchy, cgroups)
        if source is None or not os.path.isdir(source):
            continue
        sub = destination.rstrip("/") + "/" + hierarchy.name
        target = ensure_in_root(rootfd, sub)
        try:
            syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
        deferred.append((sub, keep | (MS_RDONLY if readonly else 0)))
        parts = hierarchy.name.split(",")
        if len(parts) > 1:
            parent = ensure_in_root(rootfd, destination)
            try:
                for part in parts:
                    try:
                        os.symlink(hierarchy.name, part, dir_fd=parent)
                    except FileExistsError:
                        pass
            finally:
                os.close(parent)
    # Deferred remounts run innermost first so the tmpfs goes read-only last.
    deferred.reverse()
    return deferred
