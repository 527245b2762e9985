# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one writer of root filesystems from images: tar members and directory entries into a destination.

Everything written into a destination goes through one writer (Writer), fed
by tar members (tarballs and image layers alike) or by a directory walk. The
writer treats the destination as "/": every parent directory is resolved with
paths.open_in_root (symlinks resolved inside the destination), and the last
component is created relative to that directory fd with O_NOFOLLOW-style calls.
A symlink an earlier member or layer planted (etc -> /etc, x -> ../../..) thus
never leads outside, and hard link targets are resolved the same way: the
class of Docker's CVE-2014-6407 (symlink and hard link attacks in image
archives) and CVE-2014-9356 (absolute symlinks in layers followed on the host).

Nothing here is trusted: the tar member names, link targets, whiteouts, the
layout's index and manifests. Blobs are checked against their descriptor's
size and digest before their content is used.

What an image may not bring onto the host (docs/security.md, "Image
unpacking"): device nodes are not created (the runtime makes /dev itself; a
0666 block device in a bundle would be a raw disk for whoever reaches it);
the root's mode from an image's "." entry keeps no group or other write bit
nor any setuid, setgid or sticky bit; and the unpacked size is limited
(SizeLimit: by default the destination's free space less 5 %), so a small
compressed archive cannot fill the disk. setuid/setgid files and
security.capability xattrs are kept, as the container may need them: the
bundle directory around the root filesystem keeps other users out
(bundle.py).
"""
import dataclasses
import errno
import lzma
import os
import stat
import tarfile
import zlib
from typing import BinaryIO, Callable, Dict, Optional

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import (
    ensure_in_root, fd_path, open_in_root)

CHUNK = 1 << 20

# Errors a decompressor or tarfile raises on bad input (OSError covers gzip.BadGzipFile).
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# What an entry costs besides its content: a tar header's size, so that an
# archive of millions of empty files counts too.
ENTRY_COST = 512
# The default limit leaves this share of the filesystem free.
FREE_MARGIN_DIVISOR = 20
ROOT_MODE_MASK = 0o755
DEFAULT_ROOT_MODE = 0o755


class SizeLimit(object):
    """How many bytes an unpack may write, and why (for the error that stops it)."""

    def __init__(self, max_bytes, why):
        self.max_bytes = max_bytes
        self.why = why

    @classmethod
    def for_dest(cls, rootfd, max_size=None):
        """MAX_SIZE bytes (the max_unpacked_size option), or by default the free space less 5 %."""
        if max_size is not None:
            return cls(max_size, "max_unpacked_size=%d bytes" % max_size)
        st = os.fstatvfs(rootfd)
        free = st.f_bavail * st.f_frsize
        margin = st.f_blocks * st.f_frsize // FREE_MARGIN_DIVISOR
        limit = max(0, free - margin)
        return cls(limit, "%d bytes, the free space of the destination's filesystem less 5 %% (the default "
                          "max_unpacked_size; give max_unpacked_size to change it)" % limit)


class _LimitReached(Exception):
    pass


# ---------------------------------------------------------------------------
# Entries and the one writer

@dataclasses.dataclass
class Entry:
    """One thing to create in the destination, whatever it was read from.

    kind: dir, file, symlink, hardlink, char, block or fifo. path: the
    cleaned container path without leading "/" ("" is the root itself).
    atime_ns: mtime_ns when not given. content: for files, a callable
    returning a binary reader.
    """

    kind: str
    path: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: Optional[int] = None
    atime_ns: Optional[int] = None
    linkname: Optional[str] = None
    devmajor: int = 0
    devminor: int = 0
    xattrs: Optional[Dict[str, bytes]] = None
    content: Optional[Callable[[], BinaryIO]] = None

    def __post_init__(self):
        if self.atime_ns is None:
            self.atime_ns = self.mtime_ns
        if self.xattrs is None:
            self.xattrs = {}


def clean_path(name):
    """NAME as a path inside the destination: no leading "/", no ".", ".." never above the root.

    Member names with ".." or a leading "/" are resolved inside the
    destination rather than refused: the destination is the image's "/", as
    it is for every container path the runtime resolves, so "/etc/x" and
    "../../etc/x" both mean the image's etc/x. GNU tar strips leading "/" the
    same way and containerd cleans names against the root; refusing would
    reject archives made with absolute names (tar -P) for no safety gain,
    since the result can never leave the destination either way.
    """
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def split_path(path):
    parent, sep, name = path.rpartition("/")
    return parent, name


class _Warnings(object):
    """Things skipped on purpose (an xattr the filesystem refuses, a device node without CAP_MKNOD), counted."""

    def __init__(self):
        self.seen = {}
        self.order = []

    def add(self, what, exc, path):
        key = (what, getattr(exc, "strerror", None) or str(exc))
        if key in self.seen:
            self.seen[key][0] += 1
        else:
            self.seen[key] = [1, path or "/"]
            self.order.append(key)

    def render(self):
        out = []
        for key in self.order:
            count, first = self.seen[key]
            out.append("%s skipped: %s (%d %s, first /%s)"
                       % (key[0], key[1], count, "entry" if count == 1 else "entries", first.lstrip("/")))
        return out


class Writer(object):
    """Creates entries under ROOTFD, never outside it.

    With begin_layer() it also applies whiteouts: it remembers what the
    current layer added, since whiteouts hide only what lower layers put
    there ("Files that are present in the same layer as a whiteout file can
    only be hidden by whiteout files in subsequent layers", image-spec
    layer.md), whatever the member order inside the layer.
    """

    def __init__(self, rootfd, max_size=None):
        self.rootfd = rootfd
        self.dev = os.fstat(rootfd).st_dev
        self.root_real = os.readlink(fd_path(rootfd)).rstrip("/")
        self.dir_times = {}
        self.warnings = _Warnings()
        self.added = None
        self.limit = SizeLimit.for_dest(rootfd, max_size)
        self.written = 0
        self.root_mode_set = False

    # -- public steps

    def begin_layer(self):
        self.added = set()

    def add(self, entry, label):
        try:
            self.charge(ENTRY_COST + len(entry.linkname or ""))
            self._add(entry)
        except OCIError:
            raise
        except _LimitReached as exc:
            raise OCIError("%s: /%s: unpacking stopped at %s" % (label, entry.path, exc))
        except READ_ERRORS + (ValueError,) as exc:  # ValueError: a NUL byte in a name
            raise OCIError("%s: /%s: %s" % (label, entry.path, reason(exc)))

    def charge(self, count):
        """Count COUNT more bytes written; past the limit, stop (before writing them)."""
        self.written += count
        if self.written > self.limit.max_bytes:
            raise _LimitReached(self.limit.why)

    def whiteout(self, parent, name, label):
        """`.wh.NAME` in PARENT: hide NAME of the lower layers."""
        try:
            self._whiteout(parent, name)
        except OSError as exc:
            raise OCIError("%s: whiteout of /%s: %s" % (label, "/".join(filter(None, (parent, name))),
                                                        reason(exc)))

    def opaque(self, parent, label):
        """`.wh..wh..opq` in PARENT: hide everything the lower layers put in PARENT."""
        try:
            fd = self._existing_dir(parent)
            if fd is None:
                return
            try:
                canon = self._canon(fd)
                self._mark_added(canon)
                self._hide_lower(fd, canon)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OCIError("%s: opaque whiteout of /%s: %s" % (label, parent, reason(exc)))

    def finish(self):
        """The root's mode when no entry gave it; directory times last (creating children changed them)."""
        if not self.root_mode_set:
            os.chmod(self.rootfd, DEFAULT_ROOT_MODE)
            self.root_mode_set = True
        for path in sorted(self.dir_times, reverse=True):
            atime, mtime = self.dir_times[path]
            try:
                if not path:
                    os.utime(fd_path(self.rootfd), ns=(atime, mtime))
                    continue
                parent, name = split_path(path)
                pfd = open_in_root(self.rootfd, parent or "/")
                try:
                    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                finally:
                    os.close(pfd)
                try:
                    if stat.S_ISDIR(os.fstat(fd).st_mode):
                        os.utime(fd_path(fd), ns=(atime, mtime))
                finally:
                    os.close(fd)
            except OSError:
                continue  # removed or replaced by a later member or layer
        self.dir_times = {}

    # -- creating entries

    def _add(self, entry):
        if not entry.path:
            if entry.kind != "dir":
                raise OSError(errno.EISDIR, "the root can only be a directory, not a %s" % entry.kind)
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.rootfd)
            try:
                # An image's "." may not open the root filesystem to other users (0777) nor make it setgid.
                root = Entry(entry.kind, entry.path, mode=entry.mode & ROOT_MODE_MASK, uid=entry.uid,
                             gid=entry.gid, mtime_ns=entry.mtime_ns, atime_ns=entry.atime_ns, xattrs=entry.xattrs)
                self._set_metadata(fd, root)
                self.root_mode_set = True
            finally:
                os.close(fd)
            return
        parent, name = split_path(entry.path)
        pfd = self._dir_fd(parent)
        try:
            if self.added is not None:
                self._mark_added(_join(self._canon(pfd), name))
            if entry.kind == "hardlink":
                self._hardlink(pfd, name, entry)
                return
            existing = lstat_at(pfd, name)
            if entry.kind == "dir":
                self._directory(pfd, name, entry, existing)
                return
            if existing is not None:
                self._remove(pfd, name, existing)
            if entry.kind == "file":
                self._file(pfd, name, entry)
            elif entry.kind == "symlink":
                self._symlink(pfd, name, entry)
            else:
                self._node(pfd, name, entry)
        finally:
            os.close(pfd)

    def _directory(self, pfd, name, entry, existing):
        # Over an existing directory the contents stay (a layer updates a
        # directory); over anything else, a symlink included, it replaces it.
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            if existing is not None:
                self._remove(pfd, name, existing)
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            self._set_metadata(fd, entry)
        finally:
            os.close(fd)

    def _file(self, pfd, name, entry):
        # 0600 until chown and chmod: no window where another user could open
        # it, nor a setuid bit before the owner is right.
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        try:
            if entry.content is not None:
                reader = entry.content()
                try:
                    _copy_to_fd(reader, fd, self.charge)
                finally:
                    reader.close()
            self._set_metadata(fd, entry)
        finally:
            os.close(fd)

    def _symlink(self, pfd, name, entry):
        # The target is only a string: the runtime resolves it inside the rootfs later.
        os.symlink(entry.linkname, name, dir_fd=pfd)
        os.chown(name, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        self._set_xattrs(fd_path(pfd) + "/" + name, entry, follow=False)
        if entry.mtime_ns is not None:
            os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _node(self, pfd, name, entry):
        if entry.kind != "fifo":
            # The runtime makes /dev itself; an image's node would only be a way onto a host device.
            self.warnings.add("device node", OSError(errno.EPERM, "device nodes from images are not created"),
                              entry.path)
            return
        os.mknod(name, stat.S_IFIFO | 0o600, 0, dir_fd=pfd)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise OSError(errno.EEXIST, "replaced while being created")
            # O_PATH fds take no fchown/fchmod: go through the magic link, which names this inode.
            self._set_metadata(fd_path(fd), entry)
        finally:
            os.close(fd)

    def _hardlink(self, pfd, name, entry):
        # The target is resolved inside the root like any path: /etc/shadow or
        # ../../etc/shadow name the image's file, never the host's.
        target = clean_path(entry.linkname or "")
        if not target:
            raise OSError(errno.EPERM, "hard link to the root directory")
        if target == entry.path:
            return
        tparent, tname = split_path(target)
        try:
            tfd = open_in_root(self.rootfd, tparent or "/")
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "hard link target /%s not found" % target)
        try:
            tst = lstat_at(tfd, tname)
            if tst is None:
                raise OSError(errno.ENOENT, "hard link target /%s not found" % target)
            if stat.S_ISDIR(tst.st_mode):
                raise OSError(errno.EPERM, "hard link target /%s is a directory" % target)
            existing = lstat_at(pfd, name)
            if existing is not None:
                if (existing.st_dev, existing.st_ino) == (tst.st_dev, tst.st_ino):
                    return
                self._remove(pfd, name, existing)
            # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _set_metadata(self, target, entry):
        """Owner, then mode (chown clears setuid bits), then xattrs (chown clears file capabilities), then times.

        TARGET is a real fd (fchown, fchmod, fsetxattr, futimens) or the
        /proc/self/fd path of an O_PATH fd.
        """
        os.chown(target, entry.uid, entry.gid)
        os.chmod(target, entry.mode & 0o7777)
        self._set_xattrs(target, entry, follow=True)
        if entry.mtime_ns is None:
            return
        if entry.kind == "dir":
            self.dir_times[entry.path] = (entry.atime_ns, entry.mtime_ns)
        else:
            os.utime(target, ns=(entry.atime_ns, entry.mtime_ns))

    def _set_xattrs(self, target, entry, follow):
        for key in sorted(entry.xattrs):
            try:
                if follow:
                    os.setxattr(target, key, entry.xattrs[key])
                else:
                    os.setxattr(target, key, entry.xattrs[key], follow_symlinks=False)
            except OSError as exc:
                # security.* (SELinux labels, capabilities) depends on the host's
                # LSM and privileges; EPERM/ENOTSUP mean the filesystem or the
                # file type takes no such xattr (user.* on a symlink or a device).
                if key.startswith("security.") or exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    self.warnings.add("xattr %s" % key, exc, entry.path)
                    continue
                raise OSError(exc.errno, "xattr %s: %s" % (key, exc.strerror))

    # -- resolving

    def _dir_fd(self, path):
        """O_PATH fd of the directory at container PATH, missing directories created (0755)."""
        try:
            fd = open_in_root(self.rootfd, path or "/")
        except FileNotFoundError:
            fd = self._make_dirs(path)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.ENOTDIR, "/%s is not a directory" % path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make_dirs(self, path):
        fd = open_in_root(self.rootfd, "/")
        prefix = ""
        try:
            for part in path.split("/"):
                prefix = prefix + "/" + part
                try:
                    nxt = open_in_root(self.rootfd, prefix)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        # A dangling symlink: its target is made, inside the root.
                        os.close(ensure_in_root(self.rootfd, prefix))
                    else:
                        made = os.open(part, DIR_FLAGS, dir_fd=fd)
                        try:
                            os.chmod(made, 0o755)  # whatever the umask
                        finally:
                            os.close(made)
                    nxt = open_in_root(self.rootfd, prefix)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _existing_dir(self, path):
        try:
            fd = open_in_root(self.rootfd, path or "/")
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def _canon(self, fd):
        """The container path of what FD names, symlinks resolved (for the layer's added set)."""
        host = os.readlink(fd_path(fd))
        if host == self.root_real or host == self.root_real + "/":
            return "/"
        if not host.startswith(self.root_real + "/"):
            raise OSError(errno.EXDEV, "%s is outside the destination" % host)
        return host[len(self.root_real):]

    def _mark_added(self, path):
        while path not in self.added and path not in ("/", ""):
            self.added.add(path)
            path = os.path.dirname(path)

    # -- removing

    def _whiteout(self, parent, name):
        fd = self._existing_dir(parent)
        if fd is None:
            return
        try:
            st = lstat_at(fd, name)
            if st is None:
                return
            path = _join(self._canon(fd), name)
            if path not in self.added:
                self._remove(fd, name, st)
            elif stat.S_ISDIR(st.st_mode):
                # This layer made NAME too: only the lower layers' part of it goes.
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
                try:
                    self._hide_lower(sub, path)
                finally:
                    os.close(sub)
        finally:
            os.close(fd)

    def _hide_lower(self, fd, canon):
        """Remove below directory FD (container path CANON) what this layer did not add."""
        def enter(rel, st):
            return _join(canon, rel) in self.added and st.st_dev == self.dev

        for dfd, rel, name, st in walk_at(fd, enter):
            if _join(canon, rel) not in self.added:
                self._remove(dfd, name, st)

    def _remove(self, pfd, name, st):
        """Remove NAME in PFD (already lstat'ed as ST): never following a symlink, never crossing a mount."""
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=pfd)
            return
        if st.st_dev != self.dev:
            raise OSError(errno.EXDEV, "/%s is a mount point" % name)

        def enter(rel, cst):
            if cst.st_dev != self.dev:
                raise OSError(errno.EXDEV, "/%s/%s is a mount point" % (name, rel))
            return True

        def leave(dfd, child):
            os.rmdir(child, dir_fd=dfd)

        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            for dfd, _rel, child, cst in walk_at(fd, enter, leave):
                if not stat.S_ISDIR(cst.st_mode):
                    os.unlink(child, dir_fd=dfd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=pfd)


def _join(base, name):
    return base.rstrip("/") + "/" + name


def walk_at(fd, enter, leave=None):
    """(dfd, rel, name, st) for each entry below directory FD, parents first, names sorted.

    rel is the path below FD without leading "/", st the entry's lstat. The
    walk goes into a directory only when ENTER(rel, st) is true, after the
    directory itself was yielded; once it has been walked (and its fd
    closed), LEAVE(parent dfd, name) is called. Symlinks are never followed.
    """
    stack = []
    try:
        top = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        stack.append((top, "", None, iter(sorted(os.listdir(top)))))
        while stack:
            dfd, base, dname, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dfd)
                stack.pop()
                if leave is not None and stack:
                    leave(stack[-1][0], dname)
                continue
            st = lstat_at(dfd, name)
            if st is None:
                continue
            rel = base + "/" + name if base else name
            yield dfd, rel, name, st
            if stat.S_ISDIR(st.st_mode) and enter(rel, st):
                sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
                stack.append((sub, rel, name, iter(sorted(os.listdir(sub)))))
    finally:
        for item in stack:
            os.close(item[0])


def lstat_at(dirfd, name):
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def reason(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _copy_to_fd(reader, fd, charge):
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            return
        charge(len(chunk))
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def open_dest(dest):
    """A directory fd on DEST, created when missing; an existing DEST must be empty.

    Unpacking over an old tree would mix its files with the image's, and
    "lower layer" would then mean whatever was there. DEST is 0700 while it
    fills; Writer.finish gives the root its mode.
    """
    try:
        os.makedirs(dest, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OCIError("dest %s: %s" % (dest, reason(exc)))
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("dest %s: %s" % (dest, reason(exc)))
    try:
        if os.readlink(fd_path(fd)) == "/":
            raise OCIError("dest %s: refusing to unpack onto the host's /" % dest)
        if os.listdir(fd):
            raise OCIError("dest %s: not empty; unpack into a new or empty directory" % dest)
        os.chmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path, label, dir_fd=None, follow=True):
    """A binary reader on PATH, which must be a regular file: a FIFO or a device is refused, never
    waited on or read (O_NONBLOCK); with FOLLOW false a symbolic link is refused too."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise OCIError("%s: a symbolic link, not a regular file" % label)
        raise OCIError("%s: %s" % (label, reason(exc)))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OCIError("%s: not a regular file" % label)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")
