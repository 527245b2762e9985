# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files replaced whole or not at all: a temporary file beside the target, then a rename.

A reader (another ocirt command, conmon reading a pid file, a module
comparing a bundle's config.json) sees the old content or the new one,
never a torn or empty file, even when the writer dies or the disk is full;
files that must survive a crash of the machine are synced first. The one
writer for state.json, the config copy, pid files, the monitor's cached
source and bundles' config.json. The monitor writes its exit.json with a few
lines of its own: it runs as a standalone script that imports nothing of
this package (see monitor.py).

No config.json field is applied here.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def write(path, data, mode=0o666, durable=False):
    """Replace PATH with DATA (str or bytes), created with MODE less the umask, as open() would.

    DURABLE: flush the data to disk before the rename, for files that must
    outlive a crash of the machine (a bundle's config.json). State and pid
    files describe live processes, which such a crash ends anyway; where /run
    is on a disk, an fsync would cost milliseconds of every create.
    OCIError naming PATH when it cannot be written; the temporary file is gone then too.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory, name = os.path.split(path)
    # Hidden (a directory watched for *.pid never sees it) and per process (two writers never share it).
    tmp = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
    try:
        # O_NOFOLLOW: a symlink planted at the temporary name (a pid file in /tmp) is not written through.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                # Before the rename: a crash must not leave the new name on a file whose data never reached disk.
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OCIError("cannot write %s: %s" % (path, exc.strerror or exc))
