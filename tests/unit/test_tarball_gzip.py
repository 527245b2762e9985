"""The gzip reader of tarball.py (zlib in bounded steps instead of gzip.GzipFile) and the tar loop it feeds.

Real archives made here with gzip and tarfile; hostile ones are cut,
corrupted, padded, concatenated and bombed. Whatever comes in, the reader
yields exactly what gzip.decompress yields or raises one of the READ_ERRORS
(turned into an OCIError naming the archive), never holds more than one
step of output, and the tar members it feeds go through the writer's
defences as before: the tree unpacked from a hostile gzip archive is the
tree unpacked from the same archive uncompressed, and nothing outside it
changes.
"""
import gzip
import hashlib
import io
import os
import shutil
import struct
import tempfile
import zlib

import pytest

import test_image
from test_image import member, snapshot, tar_bytes
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs, tarball
from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import CHUNK, READ_ERRORS
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


guard = test_image.guard  # the host guard fixture, under both path resolvers


def read_all(data, size):
    reader = tarball.GzipReader(io.BytesIO(data))
    parts = []
    while True:
        part = reader.read(size)
        assert len(part) <= size
        if not part:
            return b"".join(parts)
        parts.append(part)


@pytest.mark.parametrize("size", [1, 512, 10240, 1 << 16, CHUNK, 3 * CHUNK])
def test_the_reader_reads_what_gzip_reads(size):
    payload = os.urandom(300000) + b"\0" * (2 * CHUNK) + b"text " * 50000
    single = gzip.compress(payload, mtime=0)
    # Several members, zero padding between and after them (GzipFile reads both).
    multi = gzip.compress(payload[:1000]) + gzip.compress(payload[1000:200000]) + b"\0" * 700 + \
        gzip.compress(payload[200000:]) + b"\0" * 3
    if size == 1:
        single, multi, payload = gzip.compress(payload[:5000]), \
            gzip.compress(payload[:10]) + b"\0\0" + gzip.compress(payload[10:5000]), payload[:5000]
    assert read_all(single, size) == payload
    assert read_all(multi, size) == payload
    assert tarball.GzipReader(io.BytesIO(multi)).read() == payload


def test_a_bomb_is_never_held_whole():
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < (1 << 20)
    reader = tarball.GzipReader(io.BytesIO(bomb))
    total = 0
    while True:
        part = reader.read(1 << 16)
        assert len(reader.out) <= CHUNK and len(reader.input) <= CHUNK
        if not part:
            break
        total += len(part)
    assert total == 64 << 20


def _corrupt_crc(data):
    return data[:-8] + struct.pack("<I", zlib.crc32(b"other") & 0xffffffff) + data[-4:]


def _corrupt_length(data):
    return data[:-4] + struct.pack("<I", (struct.unpack("<I", data[-4:])[0] + 1) & 0xffffffff)


HOSTILE_STREAMS = {
    "cut short": lambda good: good[:len(good) // 2],
    "cut in the trailer": lambda good: good[:-3],
    "wrong crc": _corrupt_crc,
    "wrong length": _corrupt_length,
    "a flipped byte": lambda good: good[:200] + bytes([good[200] ^ 0x55]) + good[201:],
    "garbage after the member": lambda good: good + b"this is not gzip",
    "a second member cut short": lambda good: good + gzip.compress(b"more" * 1000)[:30],
}


@pytest.mark.parametrize("name", sorted(HOSTILE_STREAMS))
def test_a_hostile_stream_raises_a_read_error(name):
    good = gzip.compress(tar_bytes([member("f", data=os.urandom(100000))]))
    with pytest.raises(READ_ERRORS):
        gzip.decompress(HOSTILE_STREAMS[name](good))  # what GzipFile said of it too
    with pytest.raises(READ_ERRORS):
        read_all(HOSTILE_STREAMS[name](good), 1 << 16)


@pytest.mark.parametrize("name", sorted(HOSTILE_STREAMS))
def test_a_hostile_tarball_is_refused_by_name(tmp_path, name):
    good = gzip.compress(tar_bytes([member("f", data=os.urandom(100000)), member("g", data=b"g")]))
    path = tmp_path / "hostile.tgz"
    path.write_bytes(HOSTILE_STREAMS[name](good))
    with pytest.raises(OCIError, match="tarball %s: " % path):
        tarball.unpack_tarball(str(path), str(tmp_path / "dest"))


def _gzip_in_pieces(data, cuts):
    """DATA as consecutive gzip members split at CUTS (tar headers and contents split across members)."""
    bounds = [0] + list(cuts) + [len(data)]
    return b"".join(gzip.compress(data[a:b]) for a, b in zip(bounds, bounds[1:]))


def hostile_members(guard):
    base = os.path.basename(guard.dir)
    return [
        member("../../escape-" + guard.token, data=b"escaped?"),
        member(guard.dir + "/abs", data=b"absolute?"),
        member("evil", "symlink", link=guard.dir),
        member("evil/owned", data=b"owned?" * 5000),
        member("up", "symlink", link="../../../.."),
        member("up/tmp/%s/owned2" % base, data=b"owned2?"),
        member("passwd", "symlink", link="/etc/passwd"),
        member("passwd", data=b"mine\n", mode=0o4755),
        member("dev/sda", "block", major=8, minor=0, mode=0o666),
        member("dev/mem", "char", major=1, minor=1, mode=0o666),
        member("big", data=os.urandom(3 * CHUNK + 77)),
        member("stolen", "hardlink", link="../../../../../../etc/passwd"),
    ]


def test_hostile_members_through_the_gzip_loop_land_as_uncompressed_ones_do(tmp_path, guard):
    members = hostile_members(guard)
    raw = tar_bytes(members)
    plain = tmp_path / "h.tar"
    plain.write_bytes(raw)
    packed = tmp_path / "h.tar.gz"
    packed.write_bytes(_gzip_in_pieces(raw, (100, 513, 1024 + 7, len(raw) // 2)))
    reference = tempfile.mkdtemp(prefix="gzip-reference-", dir="/tmp")
    try:
        with pytest.raises(OCIError) as plain_error:
            tarball.unpack_tarball(str(plain), os.path.join(reference, "dest"))
        guard.arm()
        with pytest.raises(OCIError) as packed_error:
            tarball.unpack_tarball(str(packed), guard.dest)
        # The same refusal at the same member (the hard link out), and the same tree up to it.
        assert "hard link target /etc/passwd not found" in str(packed_error.value)
        assert str(plain_error.value).split(": ", 1)[1] == str(packed_error.value).split(": ", 1)[1]

        def relative(tree, root):
            return dict((os.path.relpath(path, root), value[:5] + value[6:]) for path, value in tree.items())
        assert relative(snapshot(guard.dest), guard.dest) == \
            relative(snapshot(os.path.join(reference, "dest")), os.path.join(reference, "dest"))
        inside = guard.inside(guard.dir)
        assert sorted(os.listdir(inside)) == ["abs", "owned", "owned2"]
        assert not os.path.lexists(os.path.join(guard.dest, "dev", "sda"))
        assert not os.path.lexists(os.path.join(guard.dest, "dev", "mem"))
        assert os.path.getsize(os.path.join(guard.dest, "big")) == 3 * CHUNK + 77
    finally:
        shutil.rmtree(reference)


def _layer(store, raw, compressed):
    digest = "sha256:" + hashlib.sha256(compressed).hexdigest()
    store.ensure_dirs()
    store.put_bytes(digest, compressed)
    return dict(digest=digest, size=len(compressed), diff_id="sha256:" + hashlib.sha256(raw).hexdigest(),
                media_type="application/vnd.oci.image.layer.v1.tar+gzip")


def test_a_layer_unpacks_through_the_gzip_loop_with_its_whiteouts(tmp_path):
    store = Store(str(tmp_path / "images"))
    raw = tar_bytes([member("etc", "dir"), member("etc/.wh.gone", data=b""), member("opt", "dir"),
                     member("opt/.wh..wh..opq", data=b""), member("opt/new", data=b"new" * 70000),
                     member("bin/sh", data=os.urandom(CHUNK + 5), mode=0o755)])
    layer = _layer(store, raw, _gzip_in_pieces(raw, (512, 2048, len(raw) - 600)))
    assert image_rootfs.unpack_layer(store, layer, "layer under test") == []
    tree = store.layer_path(layer["diff_id"])
    gone = os.lstat(os.path.join(tree, "etc", "gone"))
    assert (gone.st_mode & 0o170000) == 0o020000 and gone.st_rdev == 0  # overlayfs's whiteout
    assert os.getxattr(os.path.join(tree, "opt"), "trusted.overlay.opaque") == b"y"
    with open(os.path.join(tree, "opt", "new"), "rb") as handle:
        assert handle.read() == b"new" * 70000
    assert os.listdir(os.path.join(store.root, "tmp")) == []


@pytest.mark.parametrize("name", ["wrong crc", "cut in the trailer", "garbage after the member"])
def test_a_layer_with_a_hostile_gzip_stream_leaves_no_layer(tmp_path, name):
    """Its blob's digest matched (the registry hashed what it served): the gzip stream itself is bad."""
    store = Store(str(tmp_path / "images"))
    raw = tar_bytes([member("etc/hosts", data=b"x" * 50000)])
    layer = _layer(store, raw, HOSTILE_STREAMS[name](gzip.compress(raw)))
    with pytest.raises(OCIError, match="layer under test"):
        image_rootfs.unpack_layer(store, layer, "layer under test")
    assert not store.has_layer(layer["diff_id"])
    assert os.listdir(os.path.join(store.root, "layers", "sha256")) == []
    assert os.listdir(os.path.join(store.root, "tmp")) == []
