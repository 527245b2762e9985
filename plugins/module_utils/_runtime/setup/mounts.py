# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container's filesystem view: root.*, mounts, linux.maskedPaths,
linux.readonlyPaths, linux.rootfsPropagation, and the switch of root.

Runs in the container's first process, inside its new mount namespace, in
the order of the runtime sequence: rootfs private + self-bind, the config's
mounts, (devices elsewhere), masked and read-only paths, read-only remounts,
then pivot_root. Every container path goes through paths.open_in_root.

The annotation org.daemonless.oci.rootfs.overlay (OVERLAY_ANNOTATION; set
by oci_bundle for bundles made from a stored image, as crun reads its own
run.oci.* annotations) makes the root an overlayfs mount of an image's
unpacked layers, mounted here, inside the container's new mount namespace,
before the config's mounts: no host mount exists, and a crash leaves nothing
mounted. Its value is JSON: {"lower": [layer dirs, topmost first], "upper":
dir, "work": dir}, the layers absolute paths IMAGE_ROOT/layers/sha256/<hex>
of one store, upper and work relative to the bundle.

With a new user namespace (linux.namespaces user, linux.uidMappings and
linux.gidMappings) the layers, owned by the host's root, would show as
nobody's and could not be copied up. The runtime, still the host's root,
makes an idmapped detached mount of each layer for the container's user
namespace, and a detached (not idmapped) mount of the bundle
(userns_overlay_fds, after it wrote the mappings), and hands them to the
container's init. overlayfs takes only layers of the mounter's own mount
namespace: the init attaches them there, stacked under the overlay on the
rootfs mount point (gone with the old root at pivot_root), and names them
/proc/self/fd/N, so no directory on the way to the store needs to be
searchable by the container's root. The overlay is mounted with `userxattr`
(trusted.* xattrs are the host's). The directories from the bundle to upper
and work are given to the container's root (its host ids from the
mappings): it writes the upper directory as itself.
"""
import errno
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
# The annotation's name and parser are in a leaf that the config validator (spec.py) and oci_bundle import
# without this file; mounts.OVERLAY_ANNOTATION and mounts.parse_overlay are the same.
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.overlay import OVERLAY_ANNOTATION, parse_overlay  # noqa: F401
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import (
    ensure_in_root, fd_path, open_in_root)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# option -> (clear the flag?, flag)
FLAG_OPTIONS = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME), "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
}
PROPAGATION_OPTIONS = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# Options the runtime spec lists that only some runtimes act on; accepted, no effect here.
IGNORED_OPTIONS = ("tmpcopyup", "notmpcopyup")

# statvfs f_flag bits -> mount flags that a bind remount must repeat (the
# kernel refuses to clear them in a user namespace: they are locked).
_LOCKED_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                 (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                 (os.ST_RELATIME, MS_RELATIME))


def parse_options(options, field="mounts[].options"):
    """(flags, propagation flags, data string) from a mount's options."""
    flags = 0
    propagation = 0
    data = []
    for option in options or []:
        if option in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION_OPTIONS:
            propagation |= PROPAGATION_OPTIONS[option]
        elif option in IGNORED_OPTIONS:
            continue
        elif option in ("idmap", "ridmap") or option.startswith(("idmap=", "ridmap=")):
            raise OCIError("%s: idmapped mounts (%s) are not supported" % (field, option))
        else:
            data.append(option)
    return flags, propagation, ",".join(data) or None


def _locked_flags(path):
    vfs = os.statvfs(path).f_flag
    return sum(mount_flag for st_flag, mount_flag in _LOCKED_FLAGS if vfs & st_flag)


def remount(path, flags):
    """Bind-remount PATH with FLAGS, repeating the flags the kernel keeps locked."""
    syscalls.mount(None, path, None, MS_BIND | MS_REMOUNT | flags | _locked_flags(path))


def _mount_point_of(path):
    """The mount point under which PATH lives, from mountinfo (longest prefix)."""
    best = "/"
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best = point
    return best


def prepare_root(rootfs, propagation):
    """Stop mount events reaching the host, then make ROOTFS a mount point (pivot_root needs it)."""
    flags = PROPAGATION_OPTIONS.get(propagation or "rslave")
    syscalls.mount(None, "/", None, flags | MS_REC)
    # pivot_root refuses a new root whose parent mount is shared.
    syscalls.mount(None, _mount_point_of(os.path.dirname(rootfs)), None, MS_PRIVATE)
    syscalls.mount(rootfs, rootfs, None, MS_BIND | MS_REC)


# -- the overlay root (annotation org.daemonless.oci.rootfs.overlay; parsed in _runtime/overlay.py) ----


def _checked_overlay_dirs(bundle, overlay):
    """(lower, upper, work) as absolute paths, each a real directory (no planted symlink)."""
    lower, upper, work = overlay
    field = 'annotations["%s"]' % OVERLAY_ANNOTATION
    for path in lower:
        # Real directories, not symlinks planted to point elsewhere on the host.
        if os.path.realpath(path) != path or not os.path.isdir(path):
            raise OCIError("%s: layer directory %s is missing or a symbolic link" % (field, path))
    bundle_real = os.path.realpath(bundle)
    dirs = []
    for path in (upper, work):
        full = os.path.join(bundle_real, path)
        if os.path.realpath(full) != full or not os.path.isdir(full):
            raise OCIError("%s: %s is missing, not a directory, or leaves the bundle through a link" % (field, full))
        dirs.append(full)
    return lower, dirs[0], dirs[1]


def _host_root(mappings, field):
    for mapping in mappings or []:
        if mapping["containerID"] == 0:
            return mapping["hostID"]
    raise OCIError("%s: no mapping for the container's root (0), which owns the overlay root's upper directory"
                   % field)


def userns_overlay_fds(config, bundle, pid):
    """The detached mounts for an overlay root in PID's new user namespace (its maps written), [] without one.

    One per layer, topmost first, idmapped for the namespace; then one of the bundle directory. The
    directories from the bundle to upper and work are given to the container's root first."""
    overlay = parse_overlay(config.get("annotations"))
    if overlay is None:
        return []
    field = 'annotations["%s"]' % OVERLAY_ANNOTATION
    lower, upper, work = _checked_overlay_dirs(bundle, overlay)
    linux = config.get("linux") or {}
    uid = _host_root(linux.get("uidMappings"), "linux.uidMappings")
    gid = _host_root(linux.get("gidMappings"), "linux.gidMappings")
    bundle_real = os.path.realpath(bundle)
    fds = []
    try:
        userns = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for path in lower:
                try:
                    fds.append(syscalls.open_tree(path, syscalls.OPEN_TREE_CLONE))
                    syscalls.mount_setattr_idmap(fds[-1], userns)
                except OSError as exc:
                    raise OCIError(
                        "%s: layer %s cannot be id-mapped for the container's user namespace (%s): an overlay root "
                        "in a user namespace needs idmapped mounts of its layers (Linux 5.19 or later, on a "
                        "filesystem that supports them); run it without a user namespace" % (
                            field, path, exc.strerror or exc))
        finally:
            os.close(userns)
        fds.append(syscalls.open_tree(bundle_real, syscalls.OPEN_TREE_CLONE))
        for path in (upper, work):
            while path != bundle_real:
                os.lchown(path, uid, gid)
                path = os.path.dirname(path)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _mount_overlay_userns(rootfs, overlay, fds):
    """The container's side of userns_overlay_fds: attach the detached mounts, mount through /proc/self/fd."""
    lower, upper, work = overlay
    if len(fds) != len(lower) + 1:
        raise OCIError("overlay root: %d descriptors for %d layers" % (len(fds), len(lower)))
    try:
        for fd in fds:
            # Stacked on the rootfs mount point, under the overlay: overlayfs takes only layers of the
            # mounter's own namespace, and these go with the old root at pivot_root.
            syscalls.move_mount(fd, rootfs)
        data = "lowerdir=%s,upperdir=/proc/self/fd/%d/%s,workdir=/proc/self/fd/%d/%s,userxattr" % (
            ":".join("/proc/self/fd/%d" % fd for fd in fds[:-1]), fds[-1], upper, fds[-1], work)
        syscalls.mount("overlay", rootfs, "overlay", 0, data)
    finally:
        for fd in fds:
            os.close(fd)


def mount_overlay_root(rootfs, bundle, annotations, userns_fds=None):
    """Mount the overlay the annotation describes on ROOTFS (in the container's mount namespace).

    USERNS_FDS: what userns_overlay_fds made for a container in a new user namespace."""
    overlay = parse_overlay(annotations)
    if overlay is None:
        return
    if userns_fds:
        _mount_overlay_userns(rootfs, overlay, userns_fds)
        return
    lower, upper, work = _checked_overlay_dirs(bundle, overlay)
    store = os.path.dirname(lower[0])
    # Relative lower dirs keep the option string short (one page): mount resolves them from the cwd.
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(store)
        data = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(os.path.basename(p) for p in lower), upper, work)
        syscalls.mount("overlay", rootfs, "overlay", 0, data)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


class MountContext:
    """What the mount phase needs: the rootfs fd, the bundle (relative bind sources),
    userns-ness, and the container's cgroup directories (Cgroup.dirs)."""

    def __init__(self, rootfs, bundle, in_user_namespace, cgroups, mount_label=None, cgroup_hierarchies=None):
        self.rootfs = rootfs
        self.mount_label = mount_label  # linux.mountLabel: context= on the mounts that take it
        self.cgroups = cgroups
        # The host's cgroup hierarchies as the runtime read them before the fork (None: read them again).
        self.cgroup_hierarchies = cgroup_hierarchies
        self.bundle = bundle
        self.in_user_namespace = in_user_namespace
        self.rootfd = None
        self.deferred_remounts = []  # (container path, flags, subtree or None), applied last: finish_readonly

    def __enter__(self):
        self.rootfd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, *exc):
        os.close(self.rootfd)


def mount_all(ctx, mounts):
    for index, mount in enumerate(mounts or []):
        try:
            _mount_one(ctx, mount, "mounts[%d]" % index)
        except OSError as exc:
            raise OCIError("mounts[%d] (%s on %s): %s" % (index, mount.get("source") or mount.get("type"),
                                                          mount["destination"], exc.strerror or exc))


def _mount_one(ctx, mount, field):
    destination = mount["destination"]
    mtype = mount.get("type") or ""
    flags, propagation, data = parse_options(mount.get("options"), field + ".options")
    if mtype == "bind":
        flags |= MS_BIND
    if flags & MS_BIND:
        _bind(ctx, mount, destination, flags, propagation, field)
        return
    if mtype == "cgroup":
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.mount import mount_cgroup_fs
        ctx.deferred_remounts.extend(mount_cgroup_fs(ctx.rootfd, destination, flags, ctx.cgroups,
                                                     ctx.cgroup_hierarchies))
        return
    if not mtype:
        raise OCIError("%s.type: required for a mount that is not a bind mount" % field)
    if ctx.mount_label:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
        data = lsm.mount_data(data, mtype, ctx.mount_label)
    target = ensure_in_root(ctx.rootfd, destination)
    try:
        if mtype == "tmpfs" and flags & MS_RDONLY:
            # Later mounts and devices may need to create entries in it.
            ctx.deferred_remounts.append((destination, flags & ~MS_REMOUNT, None))
            flags &= ~MS_RDONLY
        try:
            syscalls.mount(mount.get("source") or mtype, fd_path(target), mtype, flags, data)
        except OSError as exc:
            if mtype == "sysfs" and exc.errno == errno.EPERM and ctx.in_user_namespace:
                # sysfs needs a network namespace owned by our user namespace: fall back to the host's.
                syscalls.mount("/sys", fd_path(target), None, MS_BIND | MS_REC)
                ctx.deferred_remounts.append((destination, flags | MS_RDONLY, None))
            else:
                raise
    finally:
        os.close(target)
    if propagation:
        _set_propagation(ctx, destination, propagation)


def _bind(ctx, mount, destination, flags, propagation, field):
    source = mount.get("source")
    if not source:
        raise OCIError("%s.source: required for a bind mount" % field)
    if not os.path.isabs(source):
        source = os.path.join(ctx.bundle, source)
    try:
        source_is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as exc:
        raise OCIError("%s.source %s: %s" % (field, source, exc.strerror))
    target = ensure_in_root(ctx.rootfd, destination, directory=source_is_dir,
                            mode=0o755 if source_is_dir else 0o644)
    try:
        syscalls.mount(source, fd_path(target), None, MS_BIND | (flags & MS_REC))
    finally:
        os.close(target)
    extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if extra:
        target = open_in_root(ctx.rootfd, destination)
        try:
            remount(fd_path(target), extra)
        finally:
            os.close(target)
    if propagation:
        _set_propagation(ctx, destination, propagation)


def _set_propagation(ctx, destination, propagation):
    target = open_in_root(ctx.rootfd, destination)
    try:
        syscalls.mount(None, fd_path(target), None, propagation)
    finally:
        os.close(target)


def _existing(ctx, paths, field):
    """(index, path, O_PATH fd) for each of PATHS that exists in the root; missing ones are skipped,
    as the spec says; the caller closes each fd."""
    for index, path in enumerate(paths or []):
        try:
            target = open_in_root(ctx.rootfd, path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OCIError("%s[%d] %s: %s" % (field, index, path, exc.strerror))
        yield index, path, target


def mask_paths(ctx, paths):
    """linux.maskedPaths: /dev/null over files, an empty read-only tmpfs over directories."""
    for index, path, target in _existing(ctx, paths, "linux.maskedPaths"):
        try:
            if stat.S_ISDIR(os.fstat(target).st_mode):
                syscalls.mount("tmpfs", fd_path(target), "tmpfs", MS_RDONLY, "size=0,mode=555")
            else:
                syscalls.mount("/dev/null", fd_path(target), None, MS_BIND)
        except OSError as exc:
            raise OCIError("linux.maskedPaths[%d] %s: %s" % (index, path, exc.strerror))
        finally:
            os.close(target)


def readonly_paths(ctx, paths):
    """linux.readonlyPaths: bind each onto itself, then remount it read-only."""
    for index, path, target in _existing(ctx, paths, "linux.readonlyPaths"):
        try:
            syscalls.mount(fd_path(target), fd_path(target), None, MS_BIND | MS_REC)
            os.close(target)
            # The old fd names what lies beneath the new mount: reopen to reach the bind itself.
            target = open_in_root(ctx.rootfd, path)
            remount(fd_path(target), MS_RDONLY | MS_REC)
        except OSError as exc:
            raise OCIError("linux.readonlyPaths[%d] %s: %s" % (index, path, exc.strerror))
        finally:
            os.close(target)


_mount_setattr_missing = False


def finish_readonly(ctx, root_readonly):
    """The last mount step: deferred read-only remounts, then root.readonly.

    A deferred SUBTREE (the v1 cgroup tmpfs and its binds) takes its flags in
    one recursive mount_setattr rather than a remount per mount; where the
    kernel lacks that call (before 5.12), each of its mounts is remounted."""
    global _mount_setattr_missing
    for destination, flags, subtree in ctx.deferred_remounts:
        if subtree is not None and not _mount_setattr_missing:
            target = open_in_root(ctx.rootfd, destination)
            try:
                syscalls.mount_setattr(target, flags & ~MS_REMOUNT)
                continue
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise OCIError("mounts: read-only remount of %s and what is below it: %s"
                                   % (destination, exc.strerror))
                _mount_setattr_missing = True
            finally:
                os.close(target)
        for path, path_flags in subtree or [(destination, flags)]:
            target = open_in_root(ctx.rootfd, path)
            try:
                remount(fd_path(target), path_flags & ~MS_REMOUNT)
            except OSError as exc:
                raise OCIError("mounts: read-only remount of %s: %s" % (path, exc.strerror))
            finally:
                os.close(target)
    if root_readonly:
        try:
            remount(ctx.rootfs, MS_RDONLY)
        except OSError as exc:
            raise OCIError("root.readonly: %s" % exc.strerror)


def pivot(rootfs, propagation):
    """pivot_root into ROOTFS, detaching the old root so no host path stays reachable."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.fchdir(new_root)
        # pivot_root(".", ".") stacks the old root on top of the new one: no
        # directory for it is needed inside the image.
        syscalls.pivot_root(".", ".")
        syscalls.fchdir(old_root)
        # The unmount must not propagate to the host's mounts.
        syscalls.mount(None, ".", None, MS_SLAVE | MS_REC)
        syscalls.umount2(".", MNT_DETACH)
    except OSError as exc:
        raise OCIError("pivot_root into %s: %s" % (rootfs, exc.strerror))
    finally:
        os.close(old_root)
        os.close(new_root)
    syscalls.chdir("/")
    if propagation in ("shared", "rshared", "private", "rprivate", "unbindable", "runbindable"):
        syscalls.mount(None, "/", None, PROPAGATION_OPTIONS[propagation])


def chroot(rootfs):
    try:
        syscalls.chroot(rootfs)
    except OSError as exc:
        raise OCIError("chroot into %s: %s" % (rootfs, exc.strerror))
    syscalls.chdir("/")
