# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root filesystems from images: rootfs tarballs, OCI image layouts, directories.

Everything written into a destination goes through one writer (_Writer), fed
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
"""
import bz2
import contextlib
import errno
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib

from ansible_collections.daemonless.oci.plugins.module_utils.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils.paths import (
    ensure_in_root, fd_path, open_in_root)

CHUNK = 1 << 20
MAX_JSON_BLOB = 32 << 20
MAX_INDEX_DEPTH = 8

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

MEDIA_INDEX = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MEDIA_MANIFEST = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MEDIA_CONFIG = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
MEDIA_LAYER = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST_HEX = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}

# os.uname().machine -> (GOARCH, variant), the names image indexes use.
_ARCH = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "i386": ("386", None), "i586": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None),
}
# The variant an index entry without one means (as containerd normalizes them).
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}

# Errors a decompressor or tarfile raises on bad input (OSError covers gzip.BadGzipFile).
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# ---------------------------------------------------------------------------
# Entries and the one writer

class Entry(object):
    """One thing to create in the destination, whatever it was read from.

    kind: dir, file, symlink, hardlink, char, block or fifo. path: the
    cleaned container path without leading "/" ("" is the root itself).
    content: for files, a callable returning a binary reader.
    """

    __slots__ = ("kind", "path", "mode", "uid", "gid", "mtime_ns", "atime_ns", "linkname",
                 "devmajor", "devminor", "xattrs", "content")

    def __init__(self, kind, path, mode=0o644, uid=0, gid=0, mtime_ns=None, atime_ns=None,
                 linkname=None, devmajor=0, devminor=0, xattrs=None, content=None):
        self.kind = kind
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        self.atime_ns = mtime_ns if atime_ns is None else atime_ns
        self.linkname = linkname
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs or {}
        self.content = content


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


def _split(path):
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


class _Writer(object):
    """Creates entries under ROOTFD, never outside it.

    With begin_layer() it also applies whiteouts: it remembers what the
    current layer added, since whiteouts hide only what lower layers put
    there ("Files that are present in the same layer as a whiteout file can
    only be hidden by whiteout files in subsequent layers", image-spec
    layer.md), whatever the member order inside the layer.
    """

    def __init__(self, rootfd):
        self.rootfd = rootfd
        self.dev = os.fstat(rootfd).st_dev
        self.root_real = os.readlink(fd_path(rootfd)).rstrip("/")
        self.dir_times = {}
        self.warnings = _Warnings()
        self.added = None

    # -- public steps

    def begin_layer(self):
        self.added = set()

    def add(self, entry, label):
        try:
            self._add(entry)
        except OCIError:
            raise
        except _READ_ERRORS + (ValueError,) as exc:  # ValueError: a NUL byte in a name
            raise OCIError("%s: /%s: %s" % (label, entry.path, _reason(exc)))

    def whiteout(self, parent, name, label):
        """`.wh.NAME` in PARENT: hide NAME of the lower layers."""
        try:
            self._whiteout(parent, name)
        except OSError as exc:
            raise OCIError("%s: whiteout of /%s: %s" % (label, "/".join(filter(None, (parent, name))),
                                                        _reason(exc)))

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
            raise OCIError("%s: opaque whiteout of /%s: %s" % (label, parent, _reason(exc)))

    def finish(self):
        """Directory times last: creating their children changed them."""
        for path in sorted(self.dir_times, reverse=True):
            atime, mtime = self.dir_times[path]
            try:
                if not path:
                    os.utime(fd_path(self.rootfd), ns=(atime, mtime))
                    continue
                parent, name = _split(path)
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
                self._set_metadata(fd, entry)
            finally:
                os.close(fd)
            return
        parent, name = _split(entry.path)
        pfd = self._dir_fd(parent)
        try:
            if self.added is not None:
                self._mark_added(_join(self._canon(pfd), name))
            if entry.kind == "hardlink":
                self._hardlink(pfd, name, entry)
                return
            existing = _lstat(pfd, name)
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
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
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
                    _copy_to_fd(reader, fd)
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
        kinds = {"char": stat.S_IFCHR, "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}
        kind = kinds[entry.kind]
        device = os.makedev(entry.devmajor, entry.devminor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(name, kind | 0o600, device, dir_fd=pfd)
        except PermissionError as exc:
            if kind == stat.S_IFIFO:
                raise
            # No CAP_MKNOD (a user namespace): the runtime populates /dev anyway.
            self.warnings.add("device node", exc, entry.path)
            return
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
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
        tparent, tname = _split(target)
        try:
            tfd = open_in_root(self.rootfd, tparent or "/")
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "hard link target /%s not found" % target)
        try:
            tst = _lstat(tfd, tname)
            if tst is None:
                raise OSError(errno.ENOENT, "hard link target /%s not found" % target)
            if stat.S_ISDIR(tst.st_mode):
                raise OSError(errno.EPERM, "hard link target /%s is a directory" % target)
            existing = _lstat(pfd, name)
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
                        made = os.open(part, _DIR_FLAGS, dir_fd=fd)
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
            st = _lstat(fd, name)
            if st is None:
                return
            path = _join(self._canon(fd), name)
            if path not in self.added:
                self._remove(fd, name, st)
            elif stat.S_ISDIR(st.st_mode):
                # This layer made NAME too: only the lower layers' part of it goes.
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    self._hide_lower(sub, path)
                finally:
                    os.close(sub)
        finally:
            os.close(fd)

    def _hide_lower(self, fd, canon):
        """Remove below directory FD (container path CANON) what this layer did not add."""
        stack = []
        try:
            first = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            stack.append((first, canon, iter(sorted(os.listdir(first)))))
            while stack:
                dfd, base, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(dfd)
                    stack.pop()
                    continue
                path = _join(base, name)
                st = _lstat(dfd, name)
                if st is None:
                    continue
                if path not in self.added:
                    self._remove(dfd, name, st)
                elif stat.S_ISDIR(st.st_mode) and st.st_dev == self.dev:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                    stack.append((sub, path, iter(sorted(os.listdir(sub)))))
        finally:
            for item in stack:
                os.close(item[0])

    def _remove(self, pfd, name, st):
        """Remove NAME in PFD (already lstat'ed as ST): never following a symlink, never crossing a mount."""
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=pfd)
            return
        if st.st_dev != self.dev:
            raise OSError(errno.EXDEV, "/%s is a mount point" % name)
        stack = []
        try:
            top = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            stack.append((top, None, iter(os.listdir(top))))
            while stack:
                dfd, dname, names = stack[-1]
                child = next(names, None)
                if child is None:
                    os.close(dfd)
                    stack.pop()
                    if dname is not None:
                        os.rmdir(dname, dir_fd=stack[-1][0])
                    continue
                cst = _lstat(dfd, child)
                if cst is None:
                    continue
                if stat.S_ISDIR(cst.st_mode):
                    if cst.st_dev != self.dev:
                        raise OSError(errno.EXDEV, "%s is a mount point" % child)
                    sub = os.open(child, _DIR_FLAGS, dir_fd=dfd)
                    stack.append((sub, child, iter(os.listdir(sub))))
                else:
                    os.unlink(child, dir_fd=dfd)
        finally:
            for item in stack:
                os.close(item[0])
        os.rmdir(name, dir_fd=pfd)


def _join(base, name):
    return base.rstrip("/") + "/" + name


def _lstat(dirfd, name):
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _reason(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _copy_to_fd(reader, fd):
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _open_dest(dest):
    """A directory fd on DEST, created when missing; an existing DEST must be empty.

    Unpacking over an old tree would mix its files with the image's, and
    "lower layer" would then mean whatever was there.
    """
    try:
        os.makedirs(dest, 0o755)
        os.chmod(dest, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OCIError("dest %s: %s" % (dest, _reason(exc)))
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("dest %s: %s" % (dest, _reason(exc)))
    try:
        if os.readlink(fd_path(fd)) == "/":
            raise OCIError("dest %s: refusing to unpack onto the host's /" % dest)
        if os.listdir(fd):
            raise OCIError("dest %s: not empty; unpack into a new or empty directory" % dest)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---------------------------------------------------------------------------
# Tar streams

class _HashingReader(object):
    """A reader that hashes what passes through (the layer's uncompressed digest, its diff_id)."""

    def __init__(self, raw):
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, size=-1):
        data = self.raw.read(size)
        self.hash.update(data)
        return data

    def drain(self):
        while self.read(CHUNK):
            pass


@contextlib.contextmanager
def _decompressed(fileobj, label):
    """Yield (compression, reader) for FILEOBJ (at offset 0), the compression told by magic bytes."""
    magic = fileobj.read(6)
    fileobj.seek(0)
    with contextlib.ExitStack() as stack:
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            kind, reader = "zstd", stack.enter_context(_zstd_reader(fileobj, label))
        elif magic.startswith(b"\x1f\x8b"):
            kind, reader = "gzip", stack.enter_context(gzip.GzipFile(fileobj=fileobj, mode="rb"))
        elif magic.startswith(b"BZh"):
            kind, reader = "bzip2", stack.enter_context(bz2.BZ2File(fileobj, mode="rb"))
        elif magic.startswith(b"\xfd7zXZ\x00"):
            kind, reader = "xz", stack.enter_context(lzma.LZMAFile(fileobj, mode="rb"))
        else:
            kind, reader = "none", fileobj
        yield kind, reader


@contextlib.contextmanager
def _zstd_reader(fileobj, label):
    # The standard library has no zstd before Python 3.14: the zstd command decompresses.
    exe = shutil.which("zstd")
    if exe is None:
        raise OCIError("%s: zstd-compressed, and the zstd command is not installed "
                       "(Debian/Ubuntu package zstd); Python's standard library cannot decompress zstd" % label)
    # The child reads the fd itself: the Python buffer's idea of the offset does not count.
    os.lseek(fileobj.fileno(), 0, os.SEEK_SET)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([exe, "-d", "-c", "-q"], stdin=fileobj, stdout=subprocess.PIPE,
                                stderr=errors, close_fds=True)
        try:
            yield proc.stdout
        except BaseException:
            proc.stdout.close()
            proc.kill()
            proc.wait()
            raise
        proc.stdout.close()
        if proc.wait() != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            raise OCIError("%s: zstd -d failed (exit %d): %s" % (label, proc.returncode, message))


def _time_ns(member, key):
    """A PAX time (decimal seconds, exact to the ns) or the header's integer mtime."""
    text = member.pax_headers.get(key)
    if text is not None:
        sign = -1 if text.startswith("-") else 1
        seconds, dot, fraction = text.lstrip("-").partition(".")
        if seconds.isdigit() and (not fraction or fraction.isdigit()):
            return sign * (int(seconds) * 10 ** 9 + int((fraction + "000000000")[:9]))
    if key == "mtime":
        return int(member.mtime) * 10 ** 9
    return None


def _entry_from_member(tar, member):
    if member.isdir():
        kind = "dir"
    elif member.issym():
        kind = "symlink"
    elif member.islnk():
        kind = "hardlink"
    elif member.ischr():
        kind = "char"
    elif member.isblk():
        kind = "block"
    elif member.isfifo():
        kind = "fifo"
    else:
        kind = "file"  # regular, contiguous, sparse, and unknown types (POSIX: read as regular)
    xattrs = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr.") and len(key) > 13:
            # tarfile decoded the raw value with surrogateescape: this gives the bytes back.
            xattrs[key[13:]] = value.encode("utf-8", "surrogateescape")
    content = _member_opener(tar, member) if kind == "file" else None
    return Entry(kind, clean_path(member.name), mode=member.mode, uid=member.uid, gid=member.gid,
                 mtime_ns=_time_ns(member, "mtime"), atime_ns=_time_ns(member, "atime"),
                 linkname=member.linkname, devmajor=member.devmajor, devminor=member.devminor,
                 xattrs=xattrs, content=content)


def _member_opener(tar, member):
    def content():
        return tar.extractfile(member)
    return content


def _apply_tar(stream, writer, label, layer):
    """Every member of the tar STREAM through WRITER; with LAYER, `.wh.` names are whiteouts."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
    except _READ_ERRORS as exc:
        raise OCIError("%s: not a tar archive: %s" % (label, _reason(exc)))
    try:
        while True:
            try:
                member = tar.next()
            except _READ_ERRORS as exc:
                raise OCIError("%s: bad tar archive: %s" % (label, _reason(exc)))
            if member is None:
                return
            del tar.members[:]  # streamed: no need to keep every header
            entry = _entry_from_member(tar, member)
            base = entry.path.rpartition("/")[2]
            if layer and base.startswith(WHITEOUT_PREFIX):
                parent = _split(entry.path)[0]
                if base == WHITEOUT_OPAQUE:
                    writer.opaque(parent, label)
                elif base.startswith(WHITEOUT_META_PREFIX):
                    continue  # other aufs metadata (.wh..wh.plnk, ...): not content
                elif base[len(WHITEOUT_PREFIX):] not in ("", ".", ".."):
                    writer.whiteout(parent, base[len(WHITEOUT_PREFIX):], label)
                continue
            writer.add(entry, label)
    finally:
        tar.close()


def _sha256_of(fileobj):
    digest = hashlib.sha256()
    while True:
        chunk = fileobj.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
    fileobj.seek(0)
    return "sha256:" + digest.hexdigest()


def unpack_tarball(tar_path, dest):
    """Unpack a rootfs tarball (plain, gzip, zstd, bzip2 or xz, told by magic bytes) into DEST.

    Returns dict(digest="sha256:<hex of the file as given>", compression, warnings).
    DEST is created, or must be empty.
    """
    try:
        fileobj = open(tar_path, "rb")
    except OSError as exc:
        raise OCIError("tarball %s: %s" % (tar_path, _reason(exc)))
    with fileobj:
        digest = _sha256_of(fileobj)
        rootfd = _open_dest(dest)
        try:
            writer = _Writer(rootfd)
            label = "tarball %s" % tar_path
            with _decompressed(fileobj, label) as (compression, reader):
                _apply_tar(reader, writer, label, layer=False)
                _drain(reader, label)
            writer.finish()
        finally:
            os.close(rootfd)
    return dict(digest=digest, compression=compression, warnings=writer.warnings.render())


def _drain(reader, label):
    # The rest of the stream (tar padding) is read so a zstd child can exit cleanly.
    try:
        while reader.read(CHUNK):
            pass
    except _READ_ERRORS as exc:
        raise OCIError("%s: %s" % (label, _reason(exc)))


# ---------------------------------------------------------------------------
# OCI image layouts

def host_platform():
    """The platform images are chosen for by default: linux and this machine's architecture."""
    machine = os.uname().machine
    arch, variant = _ARCH.get(machine, (machine, None))
    platform = {"os": "linux", "architecture": arch}
    if variant:
        platform["variant"] = variant
    return platform


def _want_platform(platform):
    if platform is None:
        return host_platform()
    if isinstance(platform, str):
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise OCIError("platform %r: give os/architecture[/variant], such as linux/amd64" % platform)
        platform = dict(zip(("os", "architecture", "variant"), parts))
    if not isinstance(platform, dict) or not platform.get("os") or not platform.get("architecture"):
        raise OCIError("platform %r: needs os and architecture" % (platform,))
    return platform


def _platform_text(platform):
    if not isinstance(platform, dict):
        return "unknown"
    parts = [str(platform.get("os", "?")), str(platform.get("architecture", "?"))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def _platform_matches(want, have):
    if not isinstance(have, dict):
        return False
    if have.get("os") != want["os"] or have.get("architecture") != want["architecture"]:
        return False
    if not want.get("variant"):
        return True
    default = _DEFAULT_VARIANT.get(want["architecture"])
    return (have.get("variant") or default) == want["variant"]


def _check_descriptor(desc, where):
    if not isinstance(desc, dict):
        raise OCIError("%s: not a descriptor object" % where)
    digest = desc.get("digest")
    algorithm, sep, hexpart = digest.partition(":") if isinstance(digest, str) else ("", "", "")
    pattern = _DIGEST_HEX.get(algorithm)
    # Also what keeps a digest like "sha256:../../x" from naming a file outside blobs/.
    if pattern is None or not pattern.match(hexpart):
        raise OCIError("%s.digest: %r is not a sha256 or sha512 digest" % (where, digest))
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OCIError("%s.size: %r is not a byte count" % (where, size))


class _Layout(object):
    """An OCI image layout directory: oci-layout, index.json, blobs/<alg>/<hex>."""

    def __init__(self, path):
        self.path = path
        marker = self._read_json_file("oci-layout")
        if not isinstance(marker, dict) or not str(marker.get("imageLayoutVersion", "")).startswith("1."):
            raise OCIError("OCI layout %s: oci-layout has no imageLayoutVersion 1.x" % path)
        self.index = self._read_json_file("index.json")
        self.manifests = self._manifest_list(self.index, "index.json")

    def _read_json_file(self, name):
        path = os.path.join(self.path, name)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_JSON_BLOB + 1)
        except OSError as exc:
            raise OCIError("OCI layout %s: %s: %s" % (self.path, name, _reason(exc)))
        return self._parse(data, name)

    def _parse(self, data, where):
        if len(data) > MAX_JSON_BLOB:
            raise OCIError("OCI layout %s: %s: larger than %d bytes" % (self.path, where, MAX_JSON_BLOB))
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise OCIError("OCI layout %s: %s: invalid JSON: %s" % (self.path, where, exc))

    def _manifest_list(self, index, where):
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise OCIError("OCI layout %s: %s: no manifests list" % (self.path, where))
        for position, desc in enumerate(manifests):
            _check_descriptor(desc, "%s manifests[%d]" % (where, position))
        return manifests

    def open_blob(self, desc, where):
        """The blob DESC names, opened and checked against its size and digest, at offset 0."""
        _check_descriptor(desc, where)
        digest, size = desc["digest"], desc["size"]
        algorithm, hexpart = digest.split(":", 1)
        path = os.path.join(self.path, "blobs", algorithm, hexpart)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise OCIError("OCI layout %s: blob %s (%s): %s" % (self.path, digest, where, _reason(exc)))
        try:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OCIError("OCI layout %s: blob %s (%s): not a regular file" % (self.path, digest, where))
            if st.st_size != size:
                raise OCIError("OCI layout %s: blob %s (%s): %d bytes, its descriptor says %d"
                               % (self.path, digest, where, st.st_size, size))
            hasher = hashlib.new(algorithm)
            total = 0
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                hasher.update(chunk)
            if total != size or hasher.hexdigest() != hexpart:
                raise OCIError("OCI layout %s: blob %s (%s): content does not match its digest (%d bytes hashing "
                               "to %s:%s)" % (self.path, digest, where, total, algorithm, hasher.hexdigest()))
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    def read_json_blob(self, desc, where):
        if desc.get("size", 0) > MAX_JSON_BLOB:
            raise OCIError("OCI layout %s: blob %s (%s): larger than %d bytes"
                           % (self.path, desc.get("digest"), where, MAX_JSON_BLOB))
        with self.open_blob(desc, where) as handle:
            data = handle.read()
        value = self._parse(data, "blob %s (%s)" % (desc["digest"], where))
        if not isinstance(value, dict):
            raise OCIError("OCI layout %s: blob %s (%s): not a JSON object" % (self.path, desc["digest"], where))
        return value

    # -- choosing the manifest

    def select(self, reference, platform):
        """(descriptor, manifest) for REFERENCE (tag, digest or None) and PLATFORM."""
        where = "index.json"
        if reference is None:
            if len(self.manifests) != 1:
                raise OCIError("OCI layout %s: %d images; choose one by tag or digest: %s"
                               % (self.path, len(self.manifests), self._available()))
            desc, where = self.manifests[0], "index.json manifests[0]"
        elif _looks_like_digest(reference):
            found = self._find_digest(self.manifests, reference, where, 0)
            if found is None:
                raise OCIError("OCI layout %s: no manifest with digest %s; available: %s"
                               % (self.path, reference, self._available()))
            desc, where = found
        else:
            matches = [(position, desc) for position, desc in enumerate(self.manifests)
                       if _annotation(desc, REF_NAME) == reference or _annotation(desc, CONTAINERD_NAME) == reference]
            if not matches:
                raise OCIError("OCI layout %s: no image tagged %r; available: %s"
                               % (self.path, reference, self._available()))
            if len(set(desc["digest"] for position, desc in matches)) > 1:
                # Several entries for one tag: per-platform manifests listed directly in index.json.
                want = _want_platform(platform)
                matches = [item for item in matches if _platform_matches(want, item[1].get("platform"))]
                if len(matches) != 1:
                    raise OCIError("OCI layout %s: tag %r names several manifests, %d of them for %s"
                                   % (self.path, reference, len(matches), _platform_text(want)))
            desc, where = matches[0][1], "index.json manifests[%d]" % matches[0][0]
        return self._resolve(desc, where, platform)

    def _available(self):
        names = []
        for desc in self.manifests:
            name = _annotation(desc, REF_NAME) or _annotation(desc, CONTAINERD_NAME)
            names.append(name if name else desc["digest"] + " (untagged)")
        return ", ".join(names) if names else "none"

    def _find_digest(self, manifests, digest, where, depth):
        for position, desc in enumerate(manifests):
            if desc["digest"] == digest:
                return desc, "%s manifests[%d]" % (where, position)
        if depth >= MAX_INDEX_DEPTH:
            return None
        for position, desc in enumerate(manifests):
            if desc.get("mediaType") in MEDIA_INDEX:
                inner_where = "%s manifests[%d]" % (where, position)
                inner = self.read_json_blob(desc, inner_where)
                found = self._find_digest(self._manifest_list(inner, "index " + desc["digest"]), digest,
                                          "index " + desc["digest"], depth + 1)
                if found is not None:
                    return found
        return None

    def _resolve(self, desc, where, platform):
        """Follow image indexes down to an image manifest, choosing by platform."""
        for depth in range(MAX_INDEX_DEPTH + 1):
            blob = self.read_json_blob(desc, where)
            media = desc.get("mediaType") or blob.get("mediaType")
            if media in MEDIA_INDEX or (media is None and "manifests" in blob):
                label = "index " + desc["digest"]
                manifests = self._manifest_list(blob, label)
                want = _want_platform(platform)
                chosen = [(position, item) for position, item in enumerate(manifests)
                          if _platform_matches(want, item.get("platform"))]
                if not chosen:
                    offered = ", ".join(_platform_text(item.get("platform")) for item in manifests) or "none"
                    raise OCIError("OCI layout %s: %s (%s) has no manifest for platform %s; it has: %s"
                                   % (self.path, label, where, _platform_text(want), offered))
                desc, where = chosen[0][1], "%s manifests[%d]" % (label, chosen[0][0])
                continue
            if media in MEDIA_MANIFEST or (media is None and "layers" in blob):
                return desc, blob, where
            raise OCIError("OCI layout %s: %s (%s): media type %s is not an image manifest or index"
                           % (self.path, desc["digest"], where, media))
        raise OCIError("OCI layout %s: image indexes nested deeper than %d" % (self.path, MAX_INDEX_DEPTH))


def _looks_like_digest(reference):
    algorithm = reference.partition(":")[0]
    return algorithm in _DIGEST_HEX and ":" in reference


def _annotation(desc, key):
    annotations = desc.get("annotations")
    if isinstance(annotations, dict):
        value = annotations.get(key)
        return value if isinstance(value, str) else None
    return None


def unpack_oci_layout(layout_dir, dest, reference=None, platform=None):
    """Unpack an image of the OCI layout LAYOUT_DIR into DEST, layer by layer.

    REFERENCE: a tag (org.opencontainers.image.ref.name), a manifest digest,
    or None when the layout holds one image. PLATFORM: "os/arch[/variant]"
    or a dict (os, architecture, variant); default the host's.
    Returns dict(digest=<manifest digest>, config=<the image config's
    "config" object>, layers=[digests], config_digest, platform, warnings).
    DEST is created, or must be empty.
    """
    layout = _Layout(layout_dir)
    desc, manifest, where = layout.select(reference, platform)
    label = "manifest " + desc["digest"]
    config_desc = manifest.get("config")
    _check_descriptor(config_desc, label + " config")
    if config_desc.get("mediaType") not in MEDIA_CONFIG:
        raise OCIError("OCI layout %s: %s: config media type %s: not a container image"
                       % (layout_dir, label, config_desc.get("mediaType")))
    config = layout.read_json_blob(config_desc, label + " config")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise OCIError("OCI layout %s: %s: no layers list" % (layout_dir, label))
    for position, layer in enumerate(layers):
        _check_descriptor(layer, "%s layers[%d]" % (label, position))
        if layer.get("mediaType") not in MEDIA_LAYER:
            raise OCIError("OCI layout %s: %s layers[%d] (%s): media type %s is not a layer this runtime unpacks"
                           % (layout_dir, label, position, layer["digest"], layer.get("mediaType")))
    rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is not None and (not isinstance(diff_ids, list) or len(diff_ids) != len(layers)):
        raise OCIError("OCI layout %s: config %s: rootfs.diff_ids does not list one digest per layer (%d layers)"
                       % (layout_dir, config_desc["digest"], len(layers)))

    rootfd = _open_dest(dest)
    try:
        writer = _Writer(rootfd)
        for position, layer in enumerate(layers):
            layer_label = "layer %s (%s layers[%d])" % (layer["digest"], label, position)
            with layout.open_blob(layer, "%s layers[%d]" % (label, position)) as blob:
                with _decompressed(blob, layer_label) as (compression, reader):
                    hashed = _HashingReader(reader)
                    writer.begin_layer()
                    _apply_tar(hashed, writer, layer_label, layer=True)
                    _drain(hashed, layer_label)
            if diff_ids is not None and diff_ids[position] != "sha256:" + hashed.hash.hexdigest():
                raise OCIError("%s: uncompressed content is sha256:%s, config rootfs.diff_ids[%d] says %s"
                               % (layer_label, hashed.hash.hexdigest(), position, diff_ids[position]))
        writer.finish()
    finally:
        os.close(rootfd)
    image_config = config.get("config")
    image_platform = dict((key, config[key]) for key in ("os", "architecture", "variant") if config.get(key))
    return dict(digest=desc["digest"], config=image_config if isinstance(image_config, dict) else {},
                layers=[layer["digest"] for layer in layers], config_digest=config_desc["digest"],
                platform=image_platform, warnings=writer.warnings.render())


# ---------------------------------------------------------------------------
# Directories

def _read_xattrs(path, warnings, rel):
    """Xattrs of PATH: an fd, or a path whose last component is not followed."""
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path) if follow else os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name) if follow else os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            warnings.add("reading xattr %s" % name, exc, rel)
    return values


def _walk_source(srcfd, warnings):
    """Entries of the tree under SRCFD, parents first; symlinks never followed, mounts not crossed."""
    root_st = os.fstat(srcfd)
    yield Entry("dir", "", mode=stat.S_IMODE(root_st.st_mode), uid=root_st.st_uid, gid=root_st.st_gid,
                mtime_ns=root_st.st_mtime_ns, atime_ns=root_st.st_atime_ns,
                xattrs=_read_xattrs(srcfd, warnings, ""))
    links = {}
    stack = []
    try:
        top = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=srcfd)
        stack.append((top, "", iter(sorted(os.listdir(top)))))
        while stack:
            dfd, base, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dfd)
                stack.pop()
                continue
            st = _lstat(dfd, name)
            if st is None:
                continue
            rel = base + "/" + name if base else name
            source_path = fd_path(dfd) + "/" + name
            common = dict(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                          mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns)
            if stat.S_ISSOCK(st.st_mode):
                warnings.add("socket", OSError(errno.EOPNOTSUPP, "sockets are not copied"), rel)
                continue
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    yield Entry("hardlink", rel, linkname=links[key])
                    continue
                links[key] = rel
            xattrs = _read_xattrs(source_path, warnings, rel)
            if stat.S_ISDIR(st.st_mode):
                yield Entry("dir", rel, xattrs=xattrs, **common)
                if st.st_dev != root_st.st_dev:
                    warnings.add("mount point", OSError(errno.EXDEV, "contents on another filesystem not copied"),
                                 rel)
                    continue
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                stack.append((sub, rel, iter(sorted(os.listdir(sub)))))
            elif stat.S_ISLNK(st.st_mode):
                yield Entry("symlink", rel, linkname=os.readlink(name, dir_fd=dfd), xattrs=xattrs, **common)
            elif stat.S_ISREG(st.st_mode):
                yield Entry("file", rel, xattrs=xattrs, content=_opener(dfd, name), **common)
            else:
                kind = {stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}[stat.S_IFMT(st.st_mode)]
                yield Entry(kind, rel, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                            xattrs=xattrs, **common)
    finally:
        for item in stack:
            os.close(item[0])


def _opener(dfd, name):
    def content():
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        return os.fdopen(fd, "rb", buffering=0)
    return content


def copy_directory(source, dest):
    """Copy the root filesystem directory SOURCE into DEST (created, or empty).

    Owners, modes, times, symlinks (as links), hard links, device nodes and
    fifos are kept, xattrs where the destination takes them; sockets are
    skipped and mount points below SOURCE are not crossed. Returns
    dict(warnings=[...]).
    """
    try:
        srcfd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("source %s: %s" % (source, _reason(exc)))
    try:
        source_real = os.readlink(fd_path(srcfd)).rstrip("/") + "/"
        dest_real = os.path.realpath(dest).rstrip("/") + "/"
        if dest_real.startswith(source_real):
            raise OCIError("dest %s: inside the source %s" % (dest, source))
        rootfd = _open_dest(dest)
        try:
            writer = _Writer(rootfd)
            label = "copy of %s" % source
            entries = _walk_source(srcfd, writer.warnings)
            try:
                while True:
                    try:
                        entry = next(entries, None)
                    except OSError as exc:
                        raise OCIError("%s: reading: %s" % (label, _reason(exc)))
                    if entry is None:
                        break
                    writer.add(entry, label)
            finally:
                entries.close()
            writer.finish()
        finally:
            os.close(rootfd)
    finally:
        os.close(srcfd)
    return dict(warnings=writer.warnings.render())
