# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rootfs copied from a directory tree through the writer, xattrs included."""
import errno
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import (
    fd_path)
from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import Entry, Writer, open_dest, reason, walk_at


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

    def enter(rel, st):
        if st.st_dev == root_st.st_dev:
            return True
        warnings.add("mount point", OSError(errno.EXDEV, "contents on another filesystem not copied"), rel)
        return False

    for dfd, rel, name, st in walk_at(srcfd, enter):
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
        elif stat.S_ISLNK(st.st_mode):
            yield Entry("symlink", rel, linkname=os.readlink(name, dir_fd=dfd), xattrs=xattrs, **common)
        elif stat.S_ISREG(st.st_mode):
            yield Entry("file", rel, xattrs=xattrs, content=_opener(dfd, name), **common)
        else:
            kind = {stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}[stat.S_IFMT(st.st_mode)]
            yield Entry(kind, rel, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                        xattrs=xattrs, **common)


def _opener(dfd, name):
    def content():
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        return os.fdopen(fd, "rb", buffering=0)
    return content


def copy_directory(source, dest, max_size=None):
    """Copy the root filesystem directory SOURCE into DEST (created, or empty).

    Owners, modes, times, symlinks (as links), hard links and fifos are
    kept, xattrs where the destination takes them; device nodes and sockets
    are skipped (the writer's rules) and mount points below SOURCE are not
    crossed. MAX_SIZE as for unpack_tarball. Returns dict(warnings=[...]).
    """
    try:
        srcfd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("source %s: %s" % (source, reason(exc)))
    try:
        source_real = os.readlink(fd_path(srcfd)).rstrip("/") + "/"
        dest_real = os.path.realpath(dest).rstrip("/") + "/"
        if dest_real.startswith(source_real):
            raise OCIError("dest %s: inside the source %s" % (dest, source))
        rootfd = open_dest(dest)
        try:
            writer = Writer(rootfd, max_size)
            label = "copy of %s" % source
            entries = _walk_source(srcfd, writer.warnings)
            try:
                while True:
                    try:
                        entry = next(entries, None)
                    except OSError as exc:
                        raise OCIError("%s: reading: %s" % (label, reason(exc)))
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
