# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One image layer unpacked alone, as an overlayfs lower directory.

The layer goes through the bundle writer (_bundle/writer.py: nothing outside
the destination, no device nodes, the size limit) with two differences that
overlayfs needs, since the layers are stacked by the kernel at mount time
rather than applied one over the other here:

- a whiteout `.wh.NAME` becomes what overlayfs reads as one: a character
  device 0:0 named NAME; an opaque whiteout `.wh..wh..opq` becomes the
  xattrs trusted.overlay.opaque=y and user.overlay.opaque=y on its
  directory (the second is what an overlay mounted with `userxattr`, in a
  container's user namespace, reads);
- an image's own trusted.overlay.* and user.overlay.* xattrs are dropped:
  they steer overlayfs (redirect, metacopy, opaque) and a layer must not
  choose where the merged tree looks.
"""
import errno
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import (
    Writer, _join, fd_path, lstat_at, reason)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class OverlayLayerWriter(Writer):
    """A Writer for one layer into an empty directory, whiteouts kept in overlayfs form."""

    def whiteout(self, parent, name, label):
        try:
            pfd = self._dir_fd(parent)
            try:
                existing = lstat_at(pfd, name)
                if existing is None:
                    os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
                    self._mark_added(_join(self._canon(pfd), name))
                elif stat.S_ISDIR(existing.st_mode):
                    # This layer made NAME too: only what lower layers put there is hidden.
                    self._set_opaque_at(pfd, name)
                # A file this layer made replaces the lower one anyway.
            finally:
                os.close(pfd)
        except OSError as exc:
            raise OCIError("%s: whiteout of /%s: %s" % (label, "/".join(filter(None, (parent, name))), reason(exc)))

    def opaque(self, parent, label):
        try:
            fd = self._dir_fd(parent)
            try:
                _set_opaque(fd)
                self._mark_added(self._canon(fd))
            finally:
                os.close(fd)
        except OSError as exc:
            raise OCIError("%s: opaque whiteout of /%s: %s" % (label, parent, reason(exc)))

    def _set_opaque_at(self, pfd, name):
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            _set_opaque(fd)
        finally:
            os.close(fd)

    def _directory(self, pfd, name, entry, existing):
        whited_out = existing is not None and stat.S_ISCHR(existing.st_mode) and existing.st_rdev == 0
        Writer._directory(self, pfd, name, entry, existing)
        if whited_out:
            # `.wh.NAME` then NAME/ in one layer: a new directory that must not show the lower one's content.
            self._set_opaque_at(pfd, name)

    def _set_xattrs(self, target, entry, follow):
        for key in [k for k in entry.xattrs if k.startswith(OVERLAY_XATTR_PREFIXES)]:
            self.warnings.add("xattr %s" % key, OSError(errno.EPERM, "overlayfs xattrs from images are not kept"),
                              entry.path)
            del entry.xattrs[key]
        Writer._set_xattrs(self, target, entry, follow)


def _set_opaque(fd):
    for key in OPAQUE_XATTRS:
        os.setxattr(fd_path(fd), key, b"y")
