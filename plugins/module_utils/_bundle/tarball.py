# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rootfs tarballs and image layers: tar streams (plain, gzip, bzip2, xz, zstd) fed to the writer."""
import bz2
import contextlib
import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import (
    CHUNK, Entry, READ_ERRORS, Writer, clean_path, open_dest, open_regular, reason, split_path)

# tarfile's stream mode reads its input in blocks of this size (its default, 10 KiB, meant a
# decompress, a CRC and a hash call per 10 KiB: a third of a layer's unpack time went to calls).
TAR_BLOCK = 1 << 16
# zlib's window bits for a gzip member: header and trailer (CRC-32 and length) checked by zlib.
GZIP_WBITS = 16 + zlib.MAX_WBITS

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"


class HashingReader(object):
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


class GzipReader(object):
    """A gzip stream (one member or several, zero padding between them, as GzipFile reads)
    decompressed by zlib in CHUNK-sized steps: what gzip.GzipFile does, without its Python-level
    CRC pass and buffering layers. zlib checks each member's CRC-32 and length; output is bounded
    per step (a bomb never sits whole in memory). A stream cut short raises EOFError, corrupt
    data zlib.error: both READ_ERRORS."""

    def __init__(self, raw):
        self.raw = raw
        self.inflater = None      # None between members
        self.input = b""
        self.out = b""
        self.pos = 0
        self.ended = False

    def _fill(self):
        while not self.ended:
            if not self.input:
                self.input = self.raw.read(CHUNK)
                if not self.input:
                    if self.inflater is not None:
                        raise EOFError("compressed file ended before the end-of-stream marker was reached")
                    self.ended = True
                    return
            if self.inflater is None:
                self.input = self.input.lstrip(b"\0")
                if not self.input:
                    continue
                self.inflater = zlib.decompressobj(GZIP_WBITS)
            out = self.inflater.decompress(self.input, CHUNK)
            if self.inflater.eof:
                self.input = self.inflater.unused_data
                self.inflater = None
            else:
                self.input = self.inflater.unconsumed_tail
            if out:
                self.out, self.pos = out, 0
                return

    def read(self, size=-1):
        if size is None or size < 0:
            parts = []
            while True:
                part = self.read(CHUNK)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        if self.pos >= len(self.out):
            self._fill()
            if self.pos >= len(self.out):
                return b""
        if self.pos == 0 and size >= len(self.out):
            data = self.out
        else:
            data = self.out[self.pos:self.pos + size]
        self.pos += len(data)
        return data


@contextlib.contextmanager
def decompressed(fileobj, label):
    """Yield (compression, reader) for FILEOBJ (at offset 0), the compression told by magic bytes."""
    magic = fileobj.read(6)
    fileobj.seek(0)
    with contextlib.ExitStack() as stack:
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            kind, reader = "zstd", stack.enter_context(_zstd_reader(fileobj, label))
        elif magic.startswith(b"\x1f\x8b"):
            kind, reader = "gzip", GzipReader(fileobj)
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


# The writer's entry kinds, by tar member type; TarInfo.isdir() and the like test exactly these.
_KIND_BY_TYPE = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
                 tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def _entry_from_member(tar, member):
    # Any other type is a file: regular, contiguous, sparse, and unknown types (POSIX: read as regular).
    kind = _KIND_BY_TYPE.get(member.type, "file")
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


def apply_tar(stream, writer, label, layer):
    """Every member of the tar STREAM through WRITER; with LAYER, `.wh.` names are whiteouts."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape", bufsize=TAR_BLOCK)
    except READ_ERRORS as exc:
        raise OCIError("%s: not a tar archive: %s" % (label, reason(exc)))
    try:
        while True:
            try:
                member = tar.next()
            except READ_ERRORS as exc:
                raise OCIError("%s: bad tar archive: %s" % (label, reason(exc)))
            if member is None:
                return
            del tar.members[:]  # streamed: no need to keep every header
            entry = _entry_from_member(tar, member)
            base = entry.path.rpartition("/")[2]
            if layer and base.startswith(WHITEOUT_PREFIX):
                parent = split_path(entry.path)[0]
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


def unpack_tarball(tar_path, dest, max_size=None):
    """Unpack a rootfs tarball (plain, gzip, zstd, bzip2 or xz, told by magic bytes) into DEST.

    Returns dict(digest="sha256:<hex of the file as given>", compression, warnings).
    DEST is created, or must be empty. MAX_SIZE: bytes the unpacked tree may
    take (writer.SizeLimit; default the free space less 5 %).
    """
    fileobj = open_regular(tar_path, "tarball %s" % tar_path)
    with fileobj:
        digest = _sha256_of(fileobj)
        rootfd = open_dest(dest)
        try:
            writer = Writer(rootfd, max_size)
            label = "tarball %s" % tar_path
            with decompressed(fileobj, label) as (compression, reader):
                apply_tar(reader, writer, label, layer=False)
                drain(reader, label)
            writer.finish()
        finally:
            os.close(rootfd)
    return dict(digest=digest, compression=compression, warnings=writer.warnings.render())


def drain(reader, label):
    # The rest of the stream (tar padding) is read so a zstd child can exit cleanly.
    try:
        while reader.read(CHUNK):
            pass
    except READ_ERRORS as exc:
        raise OCIError("%s: %s" % (label, reason(exc)))
