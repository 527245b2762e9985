# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container paths resolved inside the rootfs, never outside it.

The only way the core touches the rootfs: every container path is opened
relative to a directory fd of the rootfs, with symlinks resolved as if that
directory were "/" (openat2 RESOLVE_IN_ROOT; a careful component walk on
kernels before 5.6), and mounts land on /proc/self/fd/N of what was opened.
This closes the symlink-escape class (a destination like /etc -> /host/etc or
../../ in the image; CVE-2019-19921, CVE-2021-30465).
"""
import errno
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls

MAX_SYMLINKS = 40
_openat2_missing = False


def fd_path(fd):
    """The magic-link path naming FD, usable as a mount source or target."""
    return "/proc/self/fd/%d" % fd


def _relative(path):
    return path.lstrip("/") or "."


def open_in_root(rootfd, path, flags=os.O_PATH):
    """Open container PATH under ROOTFD with every symlink resolved inside the root."""
    global _openat2_missing
    if not _openat2_missing:
        try:
            return syscalls.openat2(rootfd, _relative(path), flags | os.O_CLOEXEC,
                                    syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _openat2_missing = True
    return walk_in_root(rootfd, path, flags)


def walk_in_root(rootfd, path, flags=os.O_PATH):
    """open_in_root for kernels without openat2: one component at a time, O_NOFOLLOW.

    Resolves exactly as openat2 with RESOLVE_IN_ROOT does: '..' never climbs
    above the root, a symlink restarts from the root when absolute, and a
    component after a non-directory is ENOTDIR.
    """
    pending = [part for part in path.split("/") if part not in ("", ".")]
    wants_directory = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    stack = [os.dup(rootfd)]
    links = 0
    try:
        while pending:
            part = pending.pop(0)
            if not stat.S_ISDIR(os.fstat(stack[-1]).st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            stack.append(fd)
        if wants_directory and not stat.S_ISDIR(os.fstat(stack[-1]).st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        result = stack.pop()
        if flags == os.O_PATH:
            return result
        try:
            # Reopen what was found with the wanted flags, through its own fd.
            return os.open(fd_path(result), flags | os.O_CLOEXEC)
        finally:
            os.close(result)
    finally:
        for fd in stack:
            os.close(fd)


def ensure_in_root(rootfd, path, directory=True, mode=0o755, _depth=0):
    """Open container PATH (O_PATH), creating what is missing inside the root.

    Missing parents become directories; the last component becomes a
    directory or, with directory=False, an empty file. A dangling symlink is
    followed inside the root and its target created there. '..' and
    symlinks are resolved by the kernel's walk (open_in_root), never by
    string manipulation, so the parent is where the walk really leads.
    """
    if _depth > MAX_SYMLINKS:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    try:
        return open_in_root(rootfd, path)
    except FileNotFoundError:
        pass
    trimmed = path.rstrip("/")
    parent, name = trimmed.rsplit("/", 1) if "/" in trimmed else ("", trimmed)
    if name in ("", ".", ".."):
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    parent_fd = ensure_in_root(rootfd, parent or "/", True, 0o755, _depth + 1)
    try:
        try:
            if directory:
                os.mkdir(name, mode, dir_fd=parent_fd)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, mode, dir_fd=parent_fd))
        except FileExistsError:
            try:
                target = os.readlink(name, dir_fd=parent_fd)
            except OSError:
                target = None  # created by someone else meanwhile: open it below
            if target is not None:
                base = "/" if target.startswith("/") else (parent or "/")
                return ensure_in_root(rootfd, base.rstrip("/") + "/" + target, directory, mode, _depth + 1)
    finally:
        os.close(parent_fd)
    return open_in_root(rootfd, path)
