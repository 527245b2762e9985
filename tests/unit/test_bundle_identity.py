"""oci_bundle's fast path: an unchanged rootfs tarball is known by its recorded identity, not re-read.

The digest function is wrapped to count its calls: the fast path is the
absence of a read, observed, not timed. Every change a stat can see (new
mtime, size, inode) reads the file again; rootfs_check=digest always does.
"""
import io
import os
import tarfile

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle as bundle_mod
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def write_rootfs_tarball(path, text):
    with tarfile.open(path, "w") as tar:
        for name, data in (("bin/", None), ("etc/motd", text.encode())):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
            info.mode = 0o755 if data is None else 0o644
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


@pytest.fixture
def reads(monkeypatch):
    """The paths bundle.py computed a digest of, in order."""
    seen = []
    real = bundle_mod._sha256_file

    def counting(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(bundle_mod, "_sha256_file", counting)
    return seen


def motd(bundle):
    with open(os.path.join(bundle, "rootfs", "etc", "motd")) as handle:
        return handle.read()


def test_an_unchanged_tarball_is_not_read_again_and_any_change_a_stat_sees_is(tmp_path, reads):
    source, bundle = str(tmp_path / "rootfs.tar"), str(tmp_path / "bundle")
    write_rootfs_tarball(source, "one")
    first = bundle_mod.ensure(bundle, {}, source=source)
    assert first["changed"] and reads == [source] and motd(bundle) == "one"
    second = bundle_mod.ensure(bundle, {}, source=source)
    assert second["changed"] is False and second["actions"] == [] and reads == [source]
    assert second["image_digest"] == first["image_digest"]

    # Touched only (new mtime and ctime, same content): read again, nothing to unpack.
    st = os.stat(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000000))
    third = bundle_mod.ensure(bundle, {}, source=source)
    assert third["changed"] is False and reads == [source] * 2
    assert bundle_mod.ensure(bundle, {}, source=source)["changed"] is False and reads == [source] * 2

    # Replaced by another file (new inode) with new content: read and unpacked.
    write_rootfs_tarball(source + ".new", "two")
    os.rename(source + ".new", source)
    fourth = bundle_mod.ensure(bundle, {}, source=source)
    assert fourth["changed"] and any(a.startswith("unpack ") for a in fourth["actions"])
    assert reads == [source] * 3 and motd(bundle) == "two"

    # Rewritten in place, with its mtime set back to the recorded one: ctime still tells.
    recorded = os.stat(source)
    write_rootfs_tarball(source, "six")
    os.utime(source, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    fifth = bundle_mod.ensure(bundle, {}, source=source)
    assert fifth["changed"] and reads == [source] * 4 and motd(bundle) == "six"


def test_rootfs_check_digest_reads_every_time_and_a_bad_value_is_named(tmp_path, reads):
    source, bundle = str(tmp_path / "rootfs.tar"), str(tmp_path / "bundle")
    write_rootfs_tarball(source, "one")
    bundle_mod.ensure(bundle, {}, source=source)
    assert bundle_mod.ensure(bundle, {}, source=source, rootfs_check="digest")["changed"] is False
    assert reads == [source] * 2
    with pytest.raises(OCIError, match="rootfs_check: must be one of identity, digest, not 'stat'"):
        bundle_mod.ensure(bundle, {}, source=source, rootfs_check="stat")


def test_a_stamp_without_identity_or_for_another_source_is_not_trusted(tmp_path, reads):
    source, other, bundle = str(tmp_path / "a.tar"), str(tmp_path / "b.tar"), str(tmp_path / "bundle")
    write_rootfs_tarball(source, "one")
    write_rootfs_tarball(other, "two")
    bundle_mod.ensure(bundle, {}, source=source)
    # The same identity fields cannot be claimed by another path: the stamp names its source.
    changed = bundle_mod.ensure(bundle, {}, source=other)
    assert changed["changed"] and reads == [source, other] and motd(bundle) == "two"
    # A stamp written before identities were recorded (or edited by hand) is read again.
    stamp = bundle_mod.read_stamp(bundle)
    del stamp["identity"]
    with open(os.path.join(bundle, bundle_mod.STAMP), "w") as handle:
        handle.write(__import__("json").dumps(stamp))
    assert bundle_mod.ensure(bundle, {}, source=other)["changed"] is False and reads == [source, other, other]
    assert "identity" in bundle_mod.read_stamp(bundle)
