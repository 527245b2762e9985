# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's cgroup layout, and where a container's cgroup goes: linux.cgroupsPath.

The layout is read from /proc/self/mountinfo (which hierarchies are mounted
where, with which controllers), /proc/cgroups and the unified hierarchy's
cgroup.controllers, never guessed:
- v1: one hierarchy per controller (or per group of co-mounted ones);
- v2: one unified hierarchy;
- hybrid: v1 hierarchies plus a cgroup2 mount that may hold some controllers.
Each controller is driven where the host has it: its v1 hierarchy when there
is one, else the unified hierarchy.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import directory_name

# Where containers without linux.cgroupsPath go, and what a relative path is relative to.
RUNTIME_PARENT = "/ocirt"


class Hierarchy:
    """One mounted cgroup hierarchy: v1 (with its controllers) or the v2 unified one."""

    def __init__(self, mountpoint, root, version, controllers):
        self.mountpoint = mountpoint
        self.root = root
        self.version = version
        self.controllers = controllers

    @property
    def name(self):
        """The key of this hierarchy: 'cpu,cpuacct', 'systemd', or 'unified'."""
        if self.version == 2:
            return "unified"
        return ",".join(c[len("name="):] if c.startswith("name=") else c for c in self.controllers)

    def __repr__(self):
        return "Hierarchy(%r, v%d, %s)" % (self.mountpoint, self.version, self.controllers)


def _unescape(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def known_controllers():
    """Controller names the kernel has, from /proc/cgroups."""
    with open("/proc/cgroups") as handle:
        return set(line.split()[0] for line in handle if not line.startswith("#"))


def hierarchies(mountinfo="/proc/self/mountinfo"):
    found = []
    controllers_known = None
    seen = set()
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mountpoint = _unescape(fields[4])
            if fstype == "cgroup":
                if controllers_known is None:
                    controllers_known = known_controllers()
                controllers = [o for o in options.split(",")
                               if o in controllers_known or o.startswith("name=")]
                hierarchy = Hierarchy(mountpoint, _unescape(fields[3]), 1, controllers)
            else:
                hierarchy = Hierarchy(mountpoint, _unescape(fields[3]), 2, [])
            # A hierarchy mounted twice (bind mounts) is still one hierarchy.
            if hierarchy.name not in seen:
                seen.add(hierarchy.name)
                found.append(hierarchy)
    return found


class Layout:
    """The host's cgroup layout: which hierarchy drives each controller."""

    def __init__(self, found, unified_controllers=None):
        self.hierarchies = found
        self.v1 = [h for h in found if h.version == 1]
        self.unified = next((h for h in found if h.version == 2), None)
        if unified_controllers is None and self.unified is not None:
            try:
                with open(os.path.join(self.unified.mountpoint, "cgroup.controllers")) as handle:
                    unified_controllers = handle.read().split()
            except OSError:
                unified_controllers = []
        self.unified_controllers = set(unified_controllers or [])
        if not self.v1:
            self.mode = "v2" if self.unified else "none"
        else:
            self.mode = "hybrid" if self.unified else "v1"

    @classmethod
    def detect(cls):
        return cls(hierarchies())

    def hierarchy_for(self, controller):
        """The hierarchy that drives CONTROLLER, or None when the host lacks it."""
        for hierarchy in self.v1:
            if controller in hierarchy.controllers:
                return hierarchy
        if self.unified is not None and controller in self.unified_controllers:
            return self.unified
        return None

    def describe(self):
        return {
            "mode": self.mode,
            "v1": dict((h.name, h.mountpoint) for h in self.v1),
            "unified": self.unified.mountpoint if self.unified else None,
            "unified_controllers": sorted(self.unified_controllers),
        }


def resolve_path(cgroups_path, container_id):
    """The cgroup path (inside every hierarchy) for linux.cgroupsPath, or the default.

    The systemd form slice:prefix:name is the path of its scope (systemd_scope).
    """
    if not cgroups_path:
        return RUNTIME_PARENT + "/" + directory_name(container_id)
    scope = systemd_scope(cgroups_path, container_id)
    if scope is not None:
        return scope.path
    parts = [p for p in cgroups_path.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise OCIError("linux.cgroupsPath %r: must be a path without '.' or '..' components" % cgroups_path)
    if cgroups_path.startswith("/"):
        return "/" + "/".join(parts)
    return RUNTIME_PARENT + "/" + "/".join(parts)


def refuse_taken_default(layout, path, container_id):
    """Refuse, before anything is made, a container whose default cgroup PATH (RUNTIME_PARENT/<id>) holds
    processes: the same id's container of another state root runs there. The default path is kept
    the same for every state root (runc's and every existing container's), so two roots share it."""
    for hierarchy in layout.hierarchies:
        procs = os.path.join(hierarchy.mountpoint, path.lstrip("/"), "cgroup.procs")
        try:
            with open(procs) as handle:
                taken = bool(handle.read().strip())
        except OSError:
            continue
        if taken:
            raise OCIError("container %s: its cgroup %s is in use by a container of the same id in another state "
                           "root; delete that one, choose another id, or give this one its own linux.cgroupsPath "
                           "(oci_bundle's cgroups_path)" % (container_id, path))


def systemd_scope(cgroups_path, container_id):
    """The systemd scope (systemd.Scope) linux.cgroupsPath names in the form slice:prefix:name,
    or None for a plain path; an error where no systemd manager is reachable."""
    # The test of systemd.is_systemd_form, inline: that module is not imported for a plain path.
    if not cgroups_path or cgroups_path.startswith("/") or cgroups_path.count(":") != 2:
        return None
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
    scope = systemd.parse(cgroups_path, container_id)
    reason = systemd.available()
    if reason:
        raise OCIError("linux.cgroupsPath %r: the systemd form slice:prefix:name needs systemd to make the "
                       "scope, and %s; use a path such as /machine/%s"
                       % (cgroups_path, reason, scope.unit[:-len(".scope")]))
    return scope
