"""image: root filesystems from rootfs tarballs, OCI image layouts and directories.

Everything is real: tarballs and layouts are built here with tarfile, gzip
and the zstd command, unpacked as root into tmp_path, and the result is read
back from the filesystem. Hostile archives must leave the host untouched: a
temporary host directory, the rest of tmp_path and /etc/passwd are compared
before and after.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import directory, oci_layout, tarball
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import paths
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MTIME = 1600000000
ZSTD = shutil.which("zstd")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users, mknod and the hostile-path checks need root")
needs_zstd = pytest.mark.skipif(ZSTD is None, reason="the zstd command is not installed (apt-get install zstd)")

pytestmark = needs_root


# ---------------------------------------------------------------------------
# Building archives

def member(name, kind="file", data=b"", mode=None, uid=0, gid=0, mtime=MTIME, link="", major=0, minor=0,
           xattrs=None):
    """A (TarInfo, data) pair; NAME is written as given, hostile or not."""
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE,
                 "block": tarfile.BLKTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    info.linkname = link
    info.devmajor, info.devminor = major, minor
    if kind == "file":
        info.size = len(data)
    if xattrs:
        info.pax_headers = dict(("SCHILY.xattr." + key, value) for key, value in xattrs.items())
    return info, (data if kind == "file" else None)


def tar_bytes(members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def compress(data, kind):
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "zstd":
        return subprocess.run([ZSTD, "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
    if kind == "bzip2":
        import bz2
        return bz2.compress(data)
    if kind == "xz":
        import lzma
        return lzma.compress(data)
    raise ValueError(kind)


def write_tarball(path, members, compression="none"):
    data = compress(tar_bytes(members), compression)
    with open(path, "wb") as handle:
        handle.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# Reading results back

def sha256_file(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def user_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return dict((name, os.getxattr(path, name, follow_symlinks=False)) for name in names
                if name.startswith("user."))


def describe(root, times=True):
    """Everything copy/unpack must keep, per path; hard links as groups."""
    tree, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        entries = [dirpath] if dirpath == root else []
        entries += [os.path.join(dirpath, n) for n in dirnames + filenames]
        for path in entries:
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            info = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
                    "uid": st.st_uid, "gid": st.st_gid, "xattrs": user_xattrs(path)}
            if times:
                info["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISLNK(st.st_mode):
                info["target"] = os.readlink(path)
                del info["mode"]
            elif stat.S_ISREG(st.st_mode):
                info["sha256"] = sha256_file(path)
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            tree[rel] = info
    for group in inodes.values():
        if len(group) > 1:
            for rel in group:
                tree[rel]["links"] = sorted(group)
    return tree


def user_xattrs_work(directory):
    probe = os.path.join(directory, ".xattr-probe")
    with open(probe, "w"):
        pass
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


# ---------------------------------------------------------------------------
# The host guard

def snapshot(path, skip=None):
    """Path -> (type, mode, uid, gid, size, content hash or link target) for PATH and below, SKIP excluded."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        if skip and os.path.abspath(dirpath) == os.path.abspath(os.path.dirname(skip)):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != skip]
        for full in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                extra = sha256_file(full)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            else:
                extra = None
            found[full] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                           extra)
    return found


def file_state(path):
    st = os.lstat(path)
    return (st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, sha256_file(path))


class HostGuard(object):
    """A host directory an archive aims at, and what must not change: it, tmp_path outside dest, /etc/passwd."""

    def __init__(self, tmp_path):
        self.tmp_path = str(tmp_path)
        self.dest = os.path.join(self.tmp_path, "a", "b", "dest")
        os.makedirs(self.dest)  # empty; made now so that its parent's link count does not change later
        self.dir = tempfile.mkdtemp(prefix="image-host-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "keep"), "w") as handle:
            handle.write("host file\n")
        os.mkdir(os.path.join(self.dir, "sub"))
        with open(os.path.join(self.dir, "sub", "file"), "w") as handle:
            handle.write("host sub file\n")
        self.token = uuid.uuid4().hex[:10]
        self.before = None

    def arm(self):
        """Record the state, once the archives are written."""
        self.before = (snapshot(self.dir), snapshot(self.tmp_path, skip=self.dest),
                       file_state("/etc/passwd"), file_state("/etc/shadow") if os.path.exists("/etc/shadow") else None)

    def check(self):
        after = (snapshot(self.dir), snapshot(self.tmp_path, skip=self.dest),
                 file_state("/etc/passwd"), file_state("/etc/shadow") if os.path.exists("/etc/shadow") else None)
        assert after[0] == self.before[0], "the host directory %s changed" % self.dir
        assert after[1] == self.before[1], "tmp_path changed outside dest"
        assert after[2] == self.before[2], "/etc/passwd changed"
        assert after[3] == self.before[3], "/etc/shadow changed"
        for stray in ("/" + self.token, "/tmp/" + self.token, "/escape-" + self.token,
                      "/tmp/escape-" + self.token, os.path.join(self.tmp_path, "escape-" + self.token),
                      os.path.join(self.tmp_path, "a", "escape-" + self.token)):
            assert not os.path.lexists(stray), stray

    def inside(self, path):
        """Where host path PATH lands when resolved inside dest."""
        return os.path.join(self.dest, path.lstrip("/"))


@pytest.fixture(params=["openat2", "component-walk"])
def guard(request, tmp_path, monkeypatch):
    """The host guard, under both resolvers of paths.open_in_root (walk_in_root: kernels before 5.6)."""
    if request.param == "component-walk":
        monkeypatch.setattr(paths, "_openat2_missing", True)
    host = HostGuard(tmp_path)
    yield host
    try:
        if host.before is not None:
            host.check()
    finally:
        shutil.rmtree(host.dir)


# ---------------------------------------------------------------------------
# Tarballs: contents

def standard_members():
    return [
        member("./", "dir", mode=0o755),
        member("bin", "dir", mode=0o755, mtime=MTIME + 5),
        member("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o4755, uid=1000, gid=1000),
        member("bin/tool2", "hardlink", link="bin/tool"),
        member("bin/link", "symlink", link="tool", uid=1000, gid=1000),
        member("abs", "symlink", link="/etc/conf"),
        member("etc", "dir", mode=0o755, mtime=MTIME + 7),
        member("etc/conf", data=b"setting=1\n", mode=0o640, gid=42),
        member("tmp", "dir", mode=0o1777),
        member("run/fifo", "fifo", mode=0o620),
        member("dev", "dir", mode=0o755),
        member("dev/null", "char", mode=0o666, major=1, minor=3),
        member("home/app", "dir", mode=0o750, uid=1000, gid=1000),
        member("sgid", data=b"x", mode=0o2711, uid=1000, gid=42),
    ]


def check_standard_tree(dest):
    tool = os.path.join(dest, "bin", "tool")
    st = os.lstat(tool)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o4755, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert st.st_mtime == MTIME
    with open(tool, "rb") as handle:
        assert handle.read() == b"#!/bin/sh\necho tool\n"
    link_st = os.lstat(os.path.join(dest, "bin", "tool2"))
    assert (link_st.st_ino, link_st.st_nlink) == (st.st_ino, 2)
    assert os.readlink(os.path.join(dest, "bin", "link")) == "tool"
    assert os.lstat(os.path.join(dest, "bin", "link")).st_uid == 1000
    assert os.readlink(os.path.join(dest, "abs")) == "/etc/conf"
    conf = os.lstat(os.path.join(dest, "etc", "conf"))
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid) == (0o640, 0, 42)
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "tmp")).st_mode) == 0o1777
    fifo = os.lstat(os.path.join(dest, "run", "fifo"))
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620
    null = os.lstat(os.path.join(dest, "dev", "null"))
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    app = os.lstat(os.path.join(dest, "home", "app"))
    assert (stat.S_IMODE(app.st_mode), app.st_uid) == (0o750, 1000)
    # A parent made because a member needed it: 0755 root, whatever the umask.
    home = os.lstat(os.path.join(dest, "home"))
    assert (stat.S_IMODE(home.st_mode), home.st_uid) == (0o755, 0)
    sgid = os.lstat(os.path.join(dest, "sgid"))
    assert (stat.S_IMODE(sgid.st_mode), sgid.st_uid, sgid.st_gid) == (0o2711, 1000, 42)
    # Directory times are set after their children are written.
    assert os.lstat(os.path.join(dest, "bin")).st_mtime == MTIME + 5
    assert os.lstat(os.path.join(dest, "etc")).st_mtime == MTIME + 7
    assert os.lstat(dest).st_mtime == MTIME


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd", "bzip2", "xz"])
def test_tarball_contents(tmp_path, compression):
    if compression == "zstd" and ZSTD is None:
        pytest.skip("the zstd command is not installed (apt-get install zstd)")
    tar_path = str(tmp_path / "rootfs.bin")  # no telling suffix: compression is told by magic bytes
    digest = write_tarball(tar_path, standard_members(), compression)
    dest = str(tmp_path / "dest")
    old_umask = os.umask(0o077)
    try:
        result = tarball.unpack_tarball(tar_path, dest)
    finally:
        os.umask(old_umask)
    assert result["digest"] == digest
    assert result["compression"] == compression
    assert result["warnings"] == []
    check_standard_tree(dest)


def test_tarball_xattrs(tmp_path):
    if not user_xattrs_work(str(tmp_path)):
        pytest.skip("the filesystem of %s refuses user.* xattrs" % tmp_path)
    tar_path = str(tmp_path / "x.tar")
    binary = b"\x00\xff\x01binary"
    write_tarball(tar_path, [
        member("file", data=b"data", xattrs={"user.test": "hello", "user.bin": binary.decode("utf-8", "surrogateescape")}),
        member("dir", "dir", xattrs={"user.test": "on a dir"}),
        # security.* depends on the host's LSM: set when possible, else skipped with a warning.
        member("labelled", data=b"x", xattrs={"security.nosuchlsm": "value"}),
        # user.* is refused on symlinks: skipped with a warning, not an error.
        member("link", "symlink", link="file", xattrs={"user.test": "on a link"}),
    ])
    dest = str(tmp_path / "dest")
    result = tarball.unpack_tarball(tar_path, dest)
    assert os.getxattr(os.path.join(dest, "file"), "user.test") == b"hello"
    assert os.getxattr(os.path.join(dest, "file"), "user.bin") == binary
    assert os.getxattr(os.path.join(dest, "dir"), "user.test") == b"on a dir"
    labelled = os.path.join(dest, "labelled")
    assert os.path.isfile(labelled)
    if "security.nosuchlsm" not in os.listxattr(labelled):
        assert any("security.nosuchlsm" in text for text in result["warnings"]), result["warnings"]
    assert any("xattr user.test" in text and "/link" in text for text in result["warnings"]), result["warnings"]


def test_tarball_replacements(tmp_path):
    tar_path = str(tmp_path / "r.tar")
    write_tarball(tar_path, [
        member("d", "dir", mode=0o755),
        member("d/old", data=b"old"),
        member("d", "dir", mode=0o700, uid=1000),          # over a directory: contents kept, mode/owner updated
        member("f", data=b"first"),
        member("f", data=b"second", mode=0o600),            # a file replaces a file
        member("tree", "dir"),
        member("tree/sub", "dir"),
        member("tree/sub/x", data=b"x"),
        member("tree", data=b"now a file"),                 # a file replaces a whole directory
        member("wasfile", data=b"file"),
        member("wasfile", "dir", mode=0o711),               # a directory replaces a file
        member("l", "symlink", link="f"),
        member("l", "symlink", link="d"),                   # a symlink replaces a symlink
    ])
    dest = str(tmp_path / "dest")
    tarball.unpack_tarball(tar_path, dest)
    st = os.lstat(os.path.join(dest, "d"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 1000)
    assert os.listdir(os.path.join(dest, "d")) == ["old"]
    with open(os.path.join(dest, "f")) as handle:
        assert handle.read() == "second"
    with open(os.path.join(dest, "tree")) as handle:
        assert handle.read() == "now a file"
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "wasfile")).st_mode) == 0o711
    assert os.readlink(os.path.join(dest, "l")) == "d"


def test_tarball_made_by_gnu_tar_matches_its_source(tmp_path):
    """GNU tar writes the archive (PAX, with xattrs): unpacking gives the source tree back."""
    tar_cmd = shutil.which("tar")
    if tar_cmd is None:
        pytest.skip("GNU tar is not installed")
    src = str(tmp_path / "src")
    build_source_tree(src, xattrs=user_xattrs_work(str(tmp_path)))
    os.unlink(os.path.join(src, "sock"))  # tar skips sockets
    tar_path = str(tmp_path / "gnu.tar.gz")
    subprocess.run([tar_cmd, "--format=posix", "--xattrs", "--xattrs-include=user.*", "--numeric-owner",
                    "-C", src, "-czpf", tar_path, "."], check=True)
    dest = str(tmp_path / "dest")
    tarball.unpack_tarball(tar_path, dest)
    assert describe(dest) == describe(src)


@needs_zstd
def test_zstd_without_the_command(tmp_path, monkeypatch):
    tar_path = str(tmp_path / "r.tar.zst")
    write_tarball(tar_path, [member("f", data=b"x")], "zstd")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(OCIError, match="zstd command is not installed.*package zstd"):
        tarball.unpack_tarball(tar_path, str(tmp_path / "dest"))


def test_tarball_bad_inputs(tmp_path):
    dest = str(tmp_path / "dest")
    with pytest.raises(OCIError, match="nothere.tar"):
        tarball.unpack_tarball(str(tmp_path / "nothere.tar"), dest)
    assert not os.path.exists(dest)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(OCIError, match="junk.tar"):
        tarball.unpack_tarball(str(junk), dest)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(gzip.compress(tar_bytes([member("big", data=os.urandom(100000))]))[:2000])
    with pytest.raises(OCIError, match="truncated.tar.gz"):
        tarball.unpack_tarball(str(truncated), str(tmp_path / "dest2"))
    root_file = str(tmp_path / "rootfile.tar")
    write_tarball(root_file, [member("..", data=b"x")])
    with pytest.raises(OCIError, match="the root can only be a directory"):
        tarball.unpack_tarball(root_file, str(tmp_path / "dest3"))


def test_dest_must_be_empty(tmp_path):
    tar_path = str(tmp_path / "r.tar")
    write_tarball(tar_path, [member("f", data=b"x")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale").write_text("old")
    with pytest.raises(OCIError, match="not empty"):
        tarball.unpack_tarball(tar_path, str(dest))
    empty = tmp_path / "empty"
    empty.mkdir()
    tarball.unpack_tarball(tar_path, str(empty))
    assert os.listdir(str(empty)) == ["f"]


# ---------------------------------------------------------------------------
# Tarballs: hostile members

def test_hostile_dotdot_and_absolute_names(tmp_path, guard):
    host_rel = guard.dir.lstrip("/")
    tar_path = str(tmp_path / "h.tar")
    write_tarball(tar_path, [
        member("../../escape-" + guard.token, data=b"escaped?"),
        member(guard.dir + "/abs", data=b"absolute?"),
        member("/" + guard.token + "/deep/../../../../x", data=b"dots"),
    ])
    names = [info.name for info in tarfile.open(tar_path)]
    assert names[0].startswith("../../") and names[1].startswith("/")
    guard.arm()
    tarball.unpack_tarball(tar_path, guard.dest)
    with open(os.path.join(guard.dest, "escape-" + guard.token)) as handle:
        assert handle.read() == "escaped?"
    with open(os.path.join(guard.dest, host_rel, "abs")) as handle:
        assert handle.read() == "absolute?"
    assert os.path.isfile(os.path.join(guard.dest, "x"))


def test_hostile_symlink_then_member_below_it(tmp_path, guard):
    tar_path = str(tmp_path / "h.tar")
    write_tarball(tar_path, [
        member("evil", "symlink", link=guard.dir),
        member("evil/owned", data=b"owned?"),
        member("evil/keep", data=b"overwritten?"),
        member("evil/sub", "dir", mode=0o777),
    ])
    guard.arm()
    tarball.unpack_tarball(tar_path, guard.dest)
    assert os.readlink(os.path.join(guard.dest, "evil")) == guard.dir
    with open(os.path.join(guard.inside(guard.dir), "owned")) as handle:
        assert handle.read() == "owned?"
    with open(os.path.join(guard.inside(guard.dir), "keep")) as handle:
        assert handle.read() == "overwritten?"


def test_hostile_relative_symlink_escape(tmp_path, guard):
    tar_path = str(tmp_path / "h.tar")
    write_tarball(tar_path, [
        member("up", "symlink", link="../../../.."),
        member("up/tmp/%s/owned" % os.path.basename(guard.dir), data=b"owned?"),
        member("deepup", "symlink", link="../" * 30),
        member("deepup" + guard.dir + "/owned2", data=b"owned2?"),
        member("deepup" + guard.dir + "/keep", data=b"overwritten?"),
        member("dir", "dir"),
        member("dir/back", "symlink", link="../../../../../../../../../../tmp"),
        member("dir/back/%s/owned3" % os.path.basename(guard.dir), data=b"owned3?"),
    ])
    guard.arm()
    tarball.unpack_tarball(tar_path, guard.dest)
    inside = guard.inside(guard.dir)
    assert sorted(os.listdir(inside)) == ["keep", "owned", "owned2", "owned3"]


def test_hostile_hardlinks(tmp_path, guard):
    passwd_before = file_state("/etc/passwd")
    absolute = str(tmp_path / "abs.tar")
    write_tarball(absolute, [member("stolen", "hardlink", link="/etc/passwd")])
    relative = str(tmp_path / "rel.tar")
    write_tarball(relative, [member("stolen", "hardlink", link="../../../../../../etc/passwd")])
    via_symlink = str(tmp_path / "via.tar")
    write_tarball(via_symlink, [member("hostetc", "symlink", link="/etc"),
                                member("stolen", "hardlink", link="hostetc/passwd")])
    host_file = str(tmp_path / "hostfile.tar")
    write_tarball(host_file, [member("stolen", "hardlink", link=guard.dir + "/keep")])
    own = str(tmp_path / "own.tar")
    write_tarball(own, [member("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
                        member("a", "hardlink", link="/etc/passwd"),
                        member("b", "hardlink", link="../../etc/passwd"),
                        member("lnk", "symlink", link="/etc/passwd"),
                        member("c", "hardlink", link="lnk")])
    guard.arm()
    for position, tar_path in enumerate((absolute, relative, via_symlink, host_file)):
        dest = os.path.join(guard.dest, str(position))
        with pytest.raises(OCIError, match="hard link target .* not found"):
            tarball.unpack_tarball(tar_path, dest)
        assert not os.path.lexists(os.path.join(dest, "stolen"))
    assert file_state("/etc/passwd") == passwd_before

    # With the image's own /etc/passwd, the same names link to it.
    dest = os.path.join(guard.dest, "own")
    tarball.unpack_tarball(own, dest)
    inode = os.lstat(os.path.join(dest, "etc", "passwd")).st_ino
    assert os.lstat(os.path.join(dest, "a")).st_ino == inode
    assert os.lstat(os.path.join(dest, "b")).st_ino == inode
    assert os.lstat(os.path.join(dest, "etc", "passwd")).st_nlink == 3
    # A hard link to a symlink is the symlink itself, never what it points at.
    assert os.readlink(os.path.join(dest, "c")) == "/etc/passwd"
    assert file_state("/etc/passwd") == passwd_before


def test_hostile_replace_symlink_to_host(tmp_path, guard):
    """Members over symlinks that point at the host replace the symlinks; nothing is written through them."""
    tar_path = str(tmp_path / "h.tar")
    write_tarball(tar_path, [
        member("passwd", "symlink", link="/etc/passwd"),
        member("passwd", data=b"mine\n", mode=0o4755),
        member("hostdir", "symlink", link=guard.dir),
        member("hostdir", "dir", mode=0o700, uid=1000),
        member("keep", "symlink", link=guard.dir + "/keep"),
        member("keep", "fifo"),
        member("sub", "symlink", link=guard.dir + "/sub"),
        member("sub", "char", major=1, minor=3),
    ])
    guard.arm()
    tarball.unpack_tarball(tar_path, guard.dest)
    assert stat.S_ISREG(os.lstat(os.path.join(guard.dest, "passwd")).st_mode)
    assert stat.S_ISDIR(os.lstat(os.path.join(guard.dest, "hostdir")).st_mode)
    assert stat.S_ISFIFO(os.lstat(os.path.join(guard.dest, "keep")).st_mode)
    assert stat.S_ISCHR(os.lstat(os.path.join(guard.dest, "sub")).st_mode)


# ---------------------------------------------------------------------------
# OCI image layouts

class Layout(object):
    """An OCI image layout written by hand: blobs with their real digests, manifests, configs, index.json."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(os.path.join(self.root, "blobs", "sha256"))
        with open(os.path.join(self.root, "oci-layout"), "w") as handle:
            json.dump({"imageLayoutVersion": "1.0.0"}, handle)

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", digest), "wb") as handle:
            handle.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def blob_path(self, desc):
        return os.path.join(self.root, "blobs", *desc["digest"].split(":"))

    def layer(self, members, compression="gzip"):
        raw = tar_bytes(members)
        suffix = {"none": "", "gzip": "+gzip", "zstd": "+zstd"}[compression]
        desc = self.blob(compress(raw, compression), "application/vnd.oci.image.layer.v1.tar" + suffix)
        return desc, "sha256:" + hashlib.sha256(raw).hexdigest()

    def image(self, layers, config=None, arch="amd64"):
        """An image manifest from LAYERS [(desc, diff_id)]; returns its descriptor."""
        image_config = {
            "architecture": arch, "os": "linux",
            "config": config if config is not None else {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for desc, diff_id in layers]},
        }
        config_desc = self.blob(json.dumps(image_config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [desc for desc, diff_id in layers]}
        return self.blob(json.dumps(manifest).encode(), manifest["mediaType"])

    def index_blob(self, manifests):
        """A nested image index; MANIFESTS [(desc, platform dict)]."""
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [dict(desc, platform=platform) for desc, platform in manifests]}
        return self.blob(json.dumps(index).encode(), index["mediaType"])

    def write_index(self, entries):
        """index.json; ENTRIES [(desc, tag or None)]."""
        manifests = []
        for desc, tag in entries:
            item = dict(desc)
            if tag:
                item["annotations"] = {"org.opencontainers.image.ref.name": tag}
            manifests.append(item)
        with open(os.path.join(self.root, "index.json"), "w") as handle:
            json.dump({"schemaVersion": 2, "manifests": manifests}, handle)


def read(path):
    with open(path) as handle:
        return handle.read()


def test_layers_whiteouts_and_opaque_directories(tmp_path):
    layout = Layout(tmp_path / "layout")
    first = layout.layer([
        member("etc", "dir"), member("etc/a", data=b"a"), member("etc/b", data=b"old b"),
        member("opq", "dir", mode=0o750), member("opq/old1", data=b"1"), member("opq/sub", "dir"),
        member("opq/sub/old2", data=b"2"), member("opq/oldlink", "symlink", link="/etc"),
        member("gone", "dir"), member("gone/deep", "dir"), member("gone/deep/file", data=b"g"),
        member("keep", "dir"), member("keep/file", data=b"k"),
    ])
    second = layout.layer([
        member("etc/.wh.a", data=b""),                     # a whiteout file
        member("etc/b", data=b"new b"),                     # a file over a lower file
        member("etc/c", data=b"c"),
        member("etc/.wh.c", data=b""),                      # same layer: does not hide c
        member("opq/new2", data=b"added before the marker"),
        member("opq", "dir", mode=0o700),
        member("opq/.wh..wh..opq", data=b""),               # opaque: lower contents go, this layer's stay
        member("opq/new", data=b"added after the marker"),
        member("opq/sub/added", data=b"implicit parent"),
        member(".wh.gone", data=b""),                       # a whole lower directory
        member("keep/.wh..wh.plnk", data=b""),              # aufs metadata: ignored
        member(".wh.nothere", data=b""),                    # nothing to hide: fine
    ], compression="none")
    desc = layout.image([first, second])
    layout.write_index([(desc, "latest")])
    dest = str(tmp_path / "dest")
    result = oci_layout.unpack_oci_layout(layout.root, dest)
    assert result["digest"] == desc["digest"]
    assert result["layers"] == [first[0]["digest"], second[0]["digest"]]
    assert sorted(os.listdir(os.path.join(dest, "etc"))) == ["b", "c"]
    assert read(os.path.join(dest, "etc", "b")) == "new b"
    assert sorted(os.listdir(os.path.join(dest, "opq"))) == ["new", "new2", "sub"]
    assert os.listdir(os.path.join(dest, "opq", "sub")) == ["added"]
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "opq")).st_mode) == 0o700
    assert not os.path.lexists(os.path.join(dest, "gone"))
    assert os.listdir(os.path.join(dest, "keep")) == ["file"]
    assert sorted(os.listdir(dest)) == ["etc", "keep", "opq"]


@needs_zstd
def test_zstd_layer(tmp_path):
    layout = Layout(tmp_path / "layout")
    layers = [layout.layer([member("a", data=b"gz")], "gzip"), layout.layer([member("b", data=b"zst")], "zstd"),
              layout.layer([member("c", data=b"plain")], "none")]
    layout.write_index([(layout.image(layers), "latest")])
    dest = str(tmp_path / "dest")
    oci_layout.unpack_oci_layout(layout.root, dest, "latest")
    assert [read(os.path.join(dest, name)) for name in "abc"] == ["gz", "zst", "plain"]


def two_tags(tmp_path):
    layout = Layout(tmp_path / "layout")
    v1 = layout.image([layout.layer([member("version", data=b"1")])], config={"Cmd": ["one"]})
    v2 = layout.image([layout.layer([member("version", data=b"2")])],
                      config={"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "A=b"],
                              "WorkingDir": "/srv", "User": "1000:1000"})
    layout.write_index([(v1, "v1"), (v2, "v2")])
    return layout, v1, v2


def test_tag_and_digest_selection_and_config(tmp_path):
    layout, v1, v2 = two_tags(tmp_path)
    result = oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "d2"), reference="v2")
    assert result["digest"] == v2["digest"]
    assert read(str(tmp_path / "d2" / "version")) == "2"
    assert result["config"] == {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "A=b"],
                                "WorkingDir": "/srv", "User": "1000:1000"}
    assert result["platform"] == {"os": "linux", "architecture": "amd64"}
    by_digest = oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "d1"), reference=v1["digest"])
    assert by_digest["digest"] == v1["digest"]
    assert by_digest["config"] == {"Cmd": ["one"]}
    assert read(str(tmp_path / "d1" / "version")) == "1"


def test_reference_errors_list_the_tags(tmp_path):
    layout, v1, v2 = two_tags(tmp_path)
    with pytest.raises(OCIError, match=r"no image tagged 'v3'; available: v1, v2"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "d"), reference="v3")
    with pytest.raises(OCIError, match=r"2 images; choose one by tag or digest: v1, v2"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "d"))
    with pytest.raises(OCIError, match="no manifest with digest sha256:" + "0" * 64):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "d"), reference="sha256:" + "0" * 64)
    assert not os.path.exists(str(tmp_path / "d"))


def multi_platform(tmp_path):
    layout = Layout(tmp_path / "layout")
    per_arch = {}
    entries = []
    for arch in ("amd64", "arm64"):
        desc = layout.image([layout.layer([member("arch", data=arch.encode())])], arch=arch)
        per_arch[arch] = desc
        entries.append((desc, {"os": "linux", "architecture": arch}))
    entries.append((layout.image([layout.layer([member("arch", data=b"attestation")])]),
                    {"os": "unknown", "architecture": "unknown"}))
    index = layout.index_blob(entries)
    layout.write_index([(index, "multi")])
    return layout, per_arch, index


def test_platform_index_picks_the_host(tmp_path):
    host_arch = oci_layout.host_platform()["architecture"]
    if host_arch not in ("amd64", "arm64"):
        pytest.skip("the test index has amd64 and arm64 images; this host is %s" % host_arch)
    layout, per_arch, index = multi_platform(tmp_path)
    result = oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "host"), reference="multi")
    assert read(str(tmp_path / "host" / "arch")) == host_arch
    assert result["digest"] == per_arch[host_arch]["digest"]
    # Only one entry in index.json: no reference needed.
    oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "noref"))
    assert read(str(tmp_path / "noref" / "arch")) == host_arch


def test_platform_index_explicit_choices(tmp_path):
    layout, per_arch, index = multi_platform(tmp_path)
    for position, platform in enumerate(("linux/arm64", {"os": "linux", "architecture": "arm64"}, "linux/arm64/v8")):
        dest = str(tmp_path / ("arm%d" % position))
        result = oci_layout.unpack_oci_layout(layout.root, dest, reference="multi", platform=platform)
        assert result["digest"] == per_arch["arm64"]["digest"]
        assert read(os.path.join(dest, "arch")) == "arm64"
    # The digest of one platform's manifest, found inside the nested index.
    result = oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "bydigest"), reference=per_arch["amd64"]["digest"])
    assert read(str(tmp_path / "bydigest" / "arch")) == "amd64"
    # The index's own digest, then the platform.
    result = oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "byindex"), reference=index["digest"],
                                          platform="linux/amd64")
    assert result["digest"] == per_arch["amd64"]["digest"]
    with pytest.raises(OCIError, match="no manifest for platform linux/s390x; it has: linux/amd64, linux/arm64"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "none"), platform="linux/s390x")
    with pytest.raises(OCIError, match="platform 'arm64'"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "none"), platform="arm64")


@pytest.mark.parametrize("which", ["layer", "config", "manifest"])
def test_corrupted_blob_is_named(tmp_path, which):
    layout = Layout(tmp_path / "layout")
    layer = layout.layer([member("f", data=b"content")])
    desc = layout.image([layer])
    layout.write_index([(desc, "latest")])
    with open(layout.blob_path(desc)) as handle:
        config_desc = json.load(handle)["config"]
    target = {"layer": layer[0], "config": config_desc, "manifest": desc}[which]
    path = layout.blob_path(target)
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    with pytest.raises(OCIError, match="blob %s .*does not match its digest" % target["digest"]):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))


def test_blob_size_and_presence(tmp_path):
    layout = Layout(tmp_path / "layout")
    layer = layout.layer([member("f", data=b"content")])
    desc = layout.image([layer])
    layout.write_index([(desc, "latest")])
    with open(layout.blob_path(layer[0]), "ab") as handle:
        handle.write(b"more")
    with pytest.raises(OCIError, match="blob %s .*%d bytes, its descriptor says %d"
                       % (layer[0]["digest"], layer[0]["size"] + 4, layer[0]["size"])):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))
    os.unlink(layout.blob_path(layer[0]))
    with pytest.raises(OCIError, match="blob %s .*No such file" % layer[0]["digest"]):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest2"))


def test_diff_id_mismatch(tmp_path):
    layout = Layout(tmp_path / "layout")
    layer = layout.layer([member("f", data=b"content")])
    desc = layout.image([(layer[0], "sha256:" + "1" * 64)])
    layout.write_index([(desc, None)])
    with pytest.raises(OCIError, match="layer %s .*rootfs.diff_ids\\[0\\] says sha256:1111" % layer[0]["digest"]):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))


def test_layout_bad_descriptors(tmp_path):
    layout = Layout(tmp_path / "layout")
    layout.write_index([({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": "sha256:../../../../etc/passwd", "size": 10}, "evil")])
    with pytest.raises(OCIError, match=r"index.json manifests\[0\].digest: .* is not a sha256"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))
    layer = layout.blob(b"not a layer", "application/vnd.example.artifact")
    layout.write_index([(layout.image([(layer, "sha256:" + "0" * 64)]), "artifact")])
    with pytest.raises(OCIError, match="media type application/vnd.example.artifact is not a layer"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))
    os.unlink(os.path.join(layout.root, "oci-layout"))
    with pytest.raises(OCIError, match="oci-layout"):
        oci_layout.unpack_oci_layout(layout.root, str(tmp_path / "dest"))


def test_hostile_layers(tmp_path, guard):
    """Symlinks planted by a lower layer, then used as directories, whiteouts and opaque markers by the next."""
    base = os.path.basename(guard.dir)
    layout = Layout(tmp_path / "layout")
    first = layout.layer([
        member(guard.dir + "/lowerfile", data=b"lower"),         # dest/tmp/<base>/..., for the whiteouts below
        member(guard.dir + "/sub/file", data=b"lower"),
        member("lib", "symlink", link=guard.dir),
        member("rel", "symlink", link="../" * 20 + guard.dir.lstrip("/")),
        member("up", "symlink", link="../../../.."),
        member("opq", "symlink", link=guard.dir + "/sub"),
        member("passwd", "symlink", link="/etc/passwd"),
    ])
    second = layout.layer([
        member("lib/owned", data=b"owned?"),
        member("lib/keep", data=b"overwritten?"),
        member("rel/owned2", data=b"owned2?"),
        member("up/tmp/%s/owned3" % base, data=b"owned3?"),
        member("up/tmp/%s/.wh.lowerfile" % base, data=b""),      # whiteouts through links: inside dest
        member("up/tmp/%s/.wh.keep" % base, data=b""),           # keep: this layer wrote it, so it stays
        member("rel/sub/.wh.file", data=b""),
        member("opq/.wh..wh..opq", data=b""),                     # opaque through a link: inside dest
        member("passwd", data=b"image passwd\n"),
        member("../../../.wh.escape-" + guard.token, data=b""),
        member(".wh...", data=b""),
    ])
    layout.write_index([(layout.image([first, second]), "latest")])
    guard.arm()
    oci_layout.unpack_oci_layout(layout.root, guard.dest, "latest")
    inside = guard.inside(guard.dir)
    assert sorted(os.listdir(inside)) == ["keep", "owned", "owned2", "owned3", "sub"]
    assert read(os.path.join(inside, "keep")) == "overwritten?"
    assert os.listdir(os.path.join(inside, "sub")) == []
    assert read(os.path.join(guard.dest, "passwd")) == "image passwd\n"
    assert os.readlink(os.path.join(guard.dest, "lib")) == guard.dir


# ---------------------------------------------------------------------------
# Directories

def build_source_tree(src, xattrs):
    os.makedirs(src)
    os.chmod(src, 0o755)
    for name, mode in (("bin", 0o755), ("etc", 0o750), ("tmp", 0o1777), ("dev", 0o755), ("home", 0o755),
                       ("home/app", 0o700), ("empty", 0o555)):
        os.mkdir(os.path.join(src, name))
        os.chmod(os.path.join(src, name), mode)
    tool = os.path.join(src, "bin", "tool")
    with open(tool, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chown(tool, 1000, 1000)
    os.chmod(tool, 0o4755)
    os.link(tool, os.path.join(src, "bin", "tool-hardlink"))
    with open(os.path.join(src, "etc", "passwd"), "w") as handle:
        handle.write("root:x:0:0::/root:/bin/sh\n")
    os.chown(os.path.join(src, "home", "app"), 1000, 1000)
    os.symlink("tool", os.path.join(src, "bin", "relative"))
    os.symlink("/etc/passwd", os.path.join(src, "bin", "absolute"))
    os.symlink("/", os.path.join(src, "evil"))
    os.symlink("../../../../../..", os.path.join(src, "bin", "evil-up"))
    os.lchown(os.path.join(src, "bin", "relative"), 1000, 1000)
    os.mkfifo(os.path.join(src, "tmp", "fifo"), 0o600)
    os.mknod(os.path.join(src, "dev", "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(os.path.join(src, "dev", "null"), 0o666)
    import socket
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(src, "sock"))
    sock.close()
    if xattrs:
        os.setxattr(tool, "user.test", b"tool xattr")
        os.setxattr(os.path.join(src, "etc"), "user.test", b"dir xattr")
    # Times last, deepest first, so creating children does not change them.
    stamp = MTIME * 10 ** 9 + 123456789
    for dirpath, dirnames, filenames in sorted(os.walk(src), key=lambda item: -item[0].count("/")):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(stamp, stamp), follow_symlinks=False)
            stamp += 1000
    os.utime(src, ns=(stamp, stamp))


def test_copy_directory(tmp_path):
    src = str(tmp_path / "src")
    build_source_tree(src, xattrs=user_xattrs_work(str(tmp_path)))
    dest = str(tmp_path / "dest")
    before = describe(src)
    result = directory.copy_directory(src, dest)
    expected = dict(before)
    del expected["sock"]
    assert describe(dest) == expected
    assert any("socket" in text for text in result["warnings"])
    assert describe(src) == before
    tool = os.lstat(os.path.join(dest, "bin", "tool"))
    assert (stat.S_IMODE(tool.st_mode), tool.st_uid, tool.st_nlink) == (0o4755, 1000, 2)


def test_copy_directory_refusals(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").write_text("old")
    with pytest.raises(OCIError, match="not empty"):
        directory.copy_directory(str(src), str(dest))
    with pytest.raises(OCIError, match="inside the source"):
        directory.copy_directory(str(src), str(src / "sub"))
    with pytest.raises(OCIError, match="nothere"):
        directory.copy_directory(str(tmp_path / "nothere"), str(tmp_path / "dest2"))
