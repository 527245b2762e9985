# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.namespaces (type, path), linux.uidMappings, linux.gidMappings: which namespaces to
create, which to join by path, and the id maps.

Runs in the intermediate child of create, or in the container's process when
there is no intermediate (forks_once): joined namespaces
are entered with setns, new ones made with one unshare, so that every new
namespace is owned by the new user namespace when there is one.

A namespace joined by path is identified (its nsfs device and inode) when
the plan is made, before anything exists, and the descriptor opened later
must still be that namespace. Joining the runtime's own mount namespace, or
PID 1's, is refused: the root switch would re-root *that* namespace (the
host's). Whether a namespace is the runtime's own also decides what
kernel_settings may write into it.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Spec type -> (clone flag, name under /proc/<pid>/ns).
NAMESPACES = {
    "user": (CLONE_NEWUSER, "user"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "network": (CLONE_NEWNET, "net"),
    "pid": (CLONE_NEWPID, "pid"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
    "mount": (CLONE_NEWNS, "mnt"),
}
# setns order: the user namespace first (it grants the rights to join the
# others), the mount namespace last (it changes what later paths mean).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def _identity(st):
    return st.st_dev, st.st_ino


def runtime_namespace(kind, pid="self"):
    """The identity of PID's namespace of spec type KIND, or None when it cannot be seen."""
    try:
        return _identity(os.stat("/proc/%s/ns/%s" % (pid, NAMESPACES[kind][1])))
    except OSError:
        return None


class NamespacePlan:
    """What to do with each namespace type, decided from the config before forking."""

    def __init__(self, config):
        entries = dict((ns["type"], ns.get("path"))
                       for ns in (config.get("linux") or {}).get("namespaces") or [])
        self.new = [kind for kind, path in entries.items() if not path]
        self.join = [(kind, entries[kind]) for kind in JOIN_ORDER if entries.get(kind)]
        linux = (config.get("linux") or {})
        self.uid_mappings = linux.get("uidMappings") or []
        self.gid_mappings = linux.get("gidMappings") or []
        if "time" in self.new and not os.path.exists("/proc/self/ns/time"):
            raise OCIError("linux.namespaces: this kernel has no time namespace")
        self.identities = {}
        for kind, path in self.join:
            try:
                self.identities[kind] = _identity(os.stat(path))
            except OSError as exc:
                raise OCIError("linux.namespaces: %s namespace path %s: %s" % (kind, path, exc.strerror))
        if "mount" in self.identities:
            _refuse_host_mount(self.identities["mount"], dict(self.join)["mount"])

    def joins_runtimes(self, kind):
        """True when KIND is joined by a path that names the runtime's own namespace of that type."""
        return kind in self.identities and self.identities[kind] == runtime_namespace(kind)

    def joined_path(self, kind):
        return dict(self.join).get(kind)

    @property
    def new_user(self):
        return "user" in self.new

    @property
    def in_user_namespace(self):
        return self.has("user")

    def has(self, kind):
        return kind in self.new or any(entry[0] == kind for entry in self.join)

    def unshare_flags(self):
        flags = 0
        for kind in self.new:
            # A new cgroup namespace is rooted where its maker stands: the container's process
            # makes it once it is in its cgroups (enter_cgroup), as runc does.
            if kind != "cgroup":
                flags |= NAMESPACES[kind][0]
        return flags

    def open_joins(self):
        """Open every namespace path up front: a later setns (mount) changes what paths mean."""
        opened = []
        try:
            for kind, path in self.join:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise OCIError("linux.namespaces: %s namespace path %s: %s"
                                   % (kind, path, exc.strerror))
                opened.append((kind, path, fd))
                # What was checked is what is joined, even if the path was re-bound since.
                if _identity(os.fstat(fd)) != self.identities[kind]:
                    raise OCIError("linux.namespaces: %s namespace path %s: changed since the config was checked"
                                   % (kind, path))
        except Exception:
            for entry in opened:
                os.close(entry[2])
            raise
        return opened


def _refuse_host_mount(identity, path):
    # The root switch in a joined mount namespace re-roots that namespace: with the
    # runtime's own or PID 1's, the host's mount table and root would be the container's.
    for pid, whose in (("self", "the runtime's own"), ("1", "PID 1's")):
        if identity == runtime_namespace("mount", pid):
            raise OCIError("linux.namespaces: mount namespace path %s is %s mount namespace; joining it would "
                           "re-root the host" % (path, whose))


def enter(plan, opened, made=0):
    """Join the namespaces given by path, then unshare the new ones, in this process.

    MADE: clone flags of new namespaces already made for this process (the pid namespace the
    runtime made for its child: pid_namespace_for_children)."""
    for kind, path, fd in opened:
        try:
            syscalls.setns(fd, NAMESPACES[kind][0])
        except OSError as exc:
            raise OCIError("linux.namespaces: cannot join %s namespace %s: %s"
                           % (kind, path, exc.strerror))
        finally:
            os.close(fd)
    flags = plan.unshare_flags() & ~made
    if flags:
        try:
            syscalls.unshare(flags)
        except OSError as exc:
            raise OCIError("linux.namespaces: cannot create %s namespaces: %s"
                           % (", ".join(sorted(plan.new)), exc.strerror))


def forks_once(plan):
    """Whether create's child can be the container's process itself, with no intermediate process.

    The intermediate exists for what applies only to a process's children (a pid namespace
    joined by path, a time namespace) and for the user namespace's handshake (id maps written
    from outside, then the other namespaces made under it). Without a user namespace and with
    nothing joined, the one pid namespace to make is made by the runtime for its next child
    (pid_namespace_for_children), and the child unshares the rest itself: one fork, and one
    Python process fewer to copy, run and tear down before the container's exec."""
    return not plan.join and not plan.has("user") and "time" not in plan.new


def pid_namespace_for_children():
    """unshare(CLONE_NEWPID) in the runtime: its next child is PID 1 of a new pid namespace.

    Returns the function that points this process's later children back at its own pid
    namespace (setns to it), to call once that child is forked."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(CLONE_NEWPID)
    except OSError as exc:
        os.close(own)
        raise OCIError("linux.namespaces: cannot create the pid namespace: %s" % exc.strerror)

    def restore():
        try:
            syscalls.setns(own, CLONE_NEWPID)
        finally:
            os.close(own)
    return restore


def host_id(mappings, container_id=0):
    """The host id that CONTAINER_ID maps to under MAPPINGS (uidMappings or gidMappings), or None."""
    for mapping in mappings or []:
        if mapping["containerID"] <= container_id < mapping["containerID"] + mapping["size"]:
            return mapping["hostID"] + container_id - mapping["containerID"]
    return None


def enter_cgroup(plan):
    """Make the new cgroup namespace, in the container's process, once it is in its cgroups:
    its /proc/self/cgroup then reads "/" and cgroup mounts show its own cgroup as their root."""
    if "cgroup" in plan.new:
        try:
            syscalls.unshare(CLONE_NEWCGROUP)
        except OSError as exc:
            raise OCIError("linux.namespaces: cannot create the cgroup namespace: %s" % exc.strerror)


def write_id_maps(pid, plan):
    """Write uid_map and gid_map of PID's new user namespace, from outside it."""
    for name, mappings in (("uid_map", plan.uid_mappings), ("gid_map", plan.gid_mappings)):
        if not mappings:
            raise OCIError("linux.%s: a new user namespace needs mappings"
                           % ("uidMappings" if name == "uid_map" else "gidMappings"))
        text = "".join("%d %d %d\n" % (m["containerID"], m["hostID"], m["size"]) for m in mappings)
        try:
            with open("/proc/%d/%s" % (pid, name), "w") as handle:
                handle.write(text)
        except OSError as exc:
            raise OCIError("linux.%s: cannot write %s: %s"
                           % ("uidMappings" if name == "uid_map" else "gidMappings",
                              text.strip().replace("\n", ", "), exc.strerror))


def namespace_paths(pid):
    """{spec type: /proc/<pid>/ns/<name>}, recorded in the state for later joins."""
    return dict((kind, "/proc/%d/ns/%s" % (pid, entry[1])) for kind, entry in NAMESPACES.items())
