"""Runtime hardening and conformance (issue 15): each test here failed before its fix.

Real containers through the installed `ocirt`, real bundles through
`_bundle.bundle.ensure` (and the `oci_bundle` module through `ansible`), real
users (`nobody` through setpriv), real namespaces made by `unshare`, a real
tmpfs for the free-space limit. The fixtures' host audit (conftest.HostAudit)
checks after every container test that no mount, cgroup, process or state
directory was left behind.

Sections follow the issue's items:
  2  image files that grant privilege on the host (bundle, staging, devices, the "." entry)
  3  net.* sysctls in a joined network namespace
  4  the pty only on a devpts the runtime mounted
  5  archives without limits (unpacked size, FIFO and symlinked blobs, clean-up)
  6  ids and stray entries in the state root
  7  config trust: joining the runtime's mount namespace, linux.devices in a user namespace
  8  the state hooks see (prestart: created; poststart: running and the pid)
  9  joining a UTS namespace by path
  10 a seccomp profile that denies getcwd, without noNewPrivileges
"""
import ctypes
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import tempfile
import uuid

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle as bundle_mod
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import tarball as tarball_mod
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
from helpers import REPO, ansible_env
import busybox_bundle

DEFAULT_MOUNTS = default_config()["mounts"]
DEFAULT_NAMESPACES = default_config()["linux"]["namespaces"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
USERNS_MAPS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
               "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


# --------------------------------------------------------------------------
# helpers


def new_id(prefix="hard"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def namespaces(**paths):
    """The default namespace list, with PATHS (type -> path) joined instead of made."""
    result = []
    for entry in DEFAULT_NAMESPACES:
        entry = dict(entry)
        if entry["type"] in paths:
            entry["path"] = paths.pop(entry["type"])
        result.append(entry)
    for kind, path in paths.items():
        result.append({"type": kind, "path": path})
    return result


def assert_refused(ocirt, result, container_id, *needles):
    """RESULT failed naming every NEEDLE, without a traceback, and left no container behind."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert container_id not in ocirt.ids()
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))


def read_text(path):
    with open(path) as handle:
        return handle.read()


def own_ns(kind):
    return os.readlink("/proc/self/ns/%s" % kind)


class Unshared:
    """A `sleep` in new namespaces made by unshare(1): a namespace that is neither ours nor the container's."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen(["unshare"] + list(flags) + ["sleep", "100000"],
                                     stdin=subprocess.DEVNULL)
        self.flags = flags

    def path(self, kind):
        """/proc/PID/ns/KIND once unshare has made it (it execs sleep after unsharing)."""
        path = "/proc/%d/ns/%s" % (self.proc.pid, kind)
        for dummy in range(100000):
            if os.readlink(path) != own_ns(kind):
                return path
            os.sched_yield()
        pytest.fail("unshare %s never left our %s namespace" % (" ".join(self.flags), kind))

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def unshared():
    made = []

    def make(*flags):
        made.append(Unshared(*flags))
        return made[-1]
    yield make
    for item in made:
        item.close()


@pytest.fixture
def open_dir():
    """A directory every user can traverse (/tmp/x, mode 0755), unlike pytest's 0700 tmp_path."""
    path = tempfile.mkdtemp(prefix="ocirt-hardening-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(*argv):
    return subprocess.run(NOBODY + list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)


# Archives

def tar_member(name, kind="file", data=b"", mode=None, uid=0, gid=0, major=0, minor=0, link="", xattrs=None):
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "char": tarfile.CHRTYPE,
                 "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid = uid, gid
    info.devmajor, info.devminor = major, minor
    info.linkname = link
    info.mtime = 1600000000
    if kind == "file":
        info.size = len(data)
    if xattrs:
        info.pax_headers = dict(("SCHILY.xattr." + key, value.decode("utf-8", "surrogateescape"))
                                for key, value in xattrs.items())
    return info, (data if kind == "file" else None)


def tar_bytes(members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


class ZeroStream(io.RawIOBase):
    """SIZE zero bytes, read lazily: a huge member without holding it in memory."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def write_bomb(path, size):
    """A gzip tarball holding one file of SIZE zero bytes (1000:1 and better)."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    with gzip.open(path, "wb", compresslevel=9) as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BufferedReader(ZeroStream(size), 1 << 20))
    return path


class Layout:
    """A hand-written OCI image layout with one image of one gzip layer."""

    def __init__(self, root, members=None, gzip_layer=None):
        """MEMBERS: the layer's tar members; or GZIP_LAYER, the layer's bytes as they are (no diff_ids then)."""
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        with open(os.path.join(root, "oci-layout"), "w") as handle:
            json.dump({"imageLayoutVersion": "1.0.0"}, handle)
        rootfs = {"type": "layers"}
        if gzip_layer is None:
            raw = tar_bytes(members)
            gzip_layer = gzip.compress(raw)
            rootfs["diff_ids"] = ["sha256:" + hashlib.sha256(raw).hexdigest()]
        self.layer = self.blob(gzip_layer, "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": rootfs}
        self.config = self.blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": self.config, "layers": [self.layer]}
        self.manifest = self.blob(json.dumps(manifest).encode(), manifest["mediaType"])
        with open(os.path.join(root, "index.json"), "w") as handle:
            json.dump({"schemaVersion": 2, "manifests": [dict(self.manifest, annotations={
                "org.opencontainers.image.ref.name": "latest"})]}, handle)

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", digest), "wb") as handle:
            handle.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def path_of(self, desc):
        return os.path.join(self.root, "blobs", "sha256", desc["digest"].split(":", 1)[1])


def bundle_leftovers(path):
    """What a failed unpack may not leave in the bundle directory."""
    if not os.path.isdir(path):
        return []
    return sorted(name for name in os.listdir(path) if name == "rootfs" or name.startswith(".rootfs"))


def file_capability(cap_number):
    """A security.capability value (VFS_CAP_REVISION_2, effective) granting CAP_NUMBER."""
    return struct.pack("<IIIII", 0x02000000 | 1, 1 << cap_number, 0, 0, 0)


# --------------------------------------------------------------------------
# 2. image files that grant privilege on the host


def privileged_image(path):
    members = [
        tar_member("./", "dir", mode=0o777),
        tar_member("bin", "dir"),
        tar_member("bin/suid", data=b"#!/bin/sh\nid\n", mode=0o4755),
        tar_member("bin/capped", data=b"#!/bin/sh\n", mode=0o755, xattrs={"security.capability": file_capability(13)}),
        tar_member("dev", "dir"),
        tar_member("dev/sda", "block", mode=0o666, major=8, minor=0),
        tar_member("dev/mem", "char", mode=0o666, major=1, minor=1),
        tar_member("dev/fifo", "fifo", mode=0o600),
    ]
    with open(path, "wb") as handle:
        handle.write(tar_bytes(members))
    return path


def test_privileged_image_files_are_out_of_reach_of_other_users(open_dir, monkeypatch):
    source = privileged_image(os.path.join(open_dir, "image.tar"))
    path = os.path.join(open_dir, "bundle")
    staging_modes = []
    real_unpack = tarball_mod.unpack_tarball

    def watching_unpack(tar_path, dest, **kwargs):
        staging_modes.append(stat.S_IMODE(os.stat(dest).st_mode))
        return real_unpack(tar_path, dest, **kwargs)
    monkeypatch.setattr(tarball_mod, "unpack_tarball", watching_unpack)
    bundle_mod.ensure(path, {}, source=source)

    assert staging_modes == [0o700], "the staging directory was %s while the image was unpacked" % staging_modes
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o700 and (st.st_uid, st.st_gid) == (0, 0), oct(st.st_mode)
    rootfs = os.path.join(path, "rootfs")
    # The image's "." (0777) does not make the root filesystem writable by everyone.
    assert stat.S_IMODE(os.stat(rootfs).st_mode) == 0o755
    # Device nodes are not created (the runtime makes /dev); fifos are harmless and kept.
    assert sorted(os.listdir(os.path.join(rootfs, "dev"))) == ["fifo"]
    assert stat.S_ISFIFO(os.lstat(os.path.join(rootfs, "dev", "fifo")).st_mode)
    # setuid bits and file capabilities are kept (the container may need them) ...
    suid = os.path.join(rootfs, "bin", "suid")
    assert stat.S_IMODE(os.stat(suid).st_mode) == 0o4755
    try:
        capability = os.getxattr(os.path.join(rootfs, "bin", "capped"), "security.capability")
    except OSError:
        capability = None  # a filesystem without file capabilities: nothing to keep
    assert capability in (None, file_capability(13))
    # ... and out of reach: nobody can traverse the bundle, so neither run nor read them.
    assert as_nobody("stat", open_dir).returncode == 0, "the test directory itself must be reachable"
    for argv in (["ls", path], ["stat", rootfs], ["stat", suid]):
        result = as_nobody(*argv)
        assert result.returncode != 0 and "Permission denied" in result.stderr, (argv, result)
    result = as_nobody(suid)
    assert result.returncode != 0 and "Permission denied" in result.stderr, result


def test_a_user_namespace_bundle_is_0710_for_the_container_root_group_only(open_dir, ocirt):
    """Docker's choice for its root with user namespaces: the mapped root's group may traverse, nobody else."""
    source = os.path.join(open_dir, "busybox")
    busybox_bundle.build_rootfs(source)
    path = os.path.join(open_dir, "bundle")
    options = {"args": ["sh", "-c", "id -u; cat /etc/hostname"],
               "namespaces": [entry["type"] for entry in DEFAULT_NAMESPACES] + ["user"],
               "config": {"linux": USERNS_MAPS}}
    bundle_mod.ensure(path, options, source=source, copy=True)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o710 and (st.st_uid, st.st_gid) == (0, 100000), (oct(st.st_mode), st.st_gid)
    result = as_nobody("stat", os.path.join(path, "rootfs"))
    assert result.returncode != 0 and "Permission denied" in result.stderr, result
    # The container's root (host uid and gid 100000) reaches its root filesystem through that group.
    run = ocirt.run(path, new_id("userns"))
    assert run.returncode == 0, run
    assert run.stdout == "0\nbusybox\n", run.stdout
    # Dropping the user namespace closes the bundle again.
    options["namespaces"] = [entry["type"] for entry in DEFAULT_NAMESPACES]
    options["config"] = {}
    bundle_mod.ensure(path, options)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_gid == 0, (oct(st.st_mode), st.st_gid)


# --------------------------------------------------------------------------
# 3. net.* sysctls in a joined network namespace

SYSCTL = "net.ipv4.ip_unprivileged_port_start"
SYSCTL_PATH = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def other_port_start():
    return "2047" if read_text(SYSCTL_PATH).strip() != "2047" else "2046"


def test_net_sysctl_in_the_runtimes_own_network_namespace_is_refused(ocirt, make_bundle):
    before = read_text(SYSCTL_PATH)
    # The test's network namespace is the runtime's own (ocirt is its child).
    bundle = make_bundle(["true"], config={"linux": {
        "namespaces": namespaces(network="/proc/%d/ns/net" % os.getpid()),
        "sysctl": {SYSCTL: other_port_start()}}})
    cid = new_id()
    result = ocirt("create", "--bundle", bundle, cid, check=False)
    try:
        assert_refused(ocirt, result, cid, "linux.sysctl.%s" % SYSCTL, "runtime's own network namespace")
    finally:
        if read_text(SYSCTL_PATH) != before:
            with open(SYSCTL_PATH, "w") as handle:
                handle.write(before)
    assert read_text(SYSCTL_PATH) == before


def test_net_sysctl_in_another_joined_network_namespace_is_written_there(ocirt, make_bundle, unshared):
    before = read_text(SYSCTL_PATH)
    wanted = other_port_start()
    other = unshared("--net")
    bundle = make_bundle(["cat", SYSCTL_PATH], config={"linux": {
        "namespaces": namespaces(network=other.path("net")), "sysctl": {SYSCTL: wanted}}})
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert result.stdout.strip() == wanted
    seen = subprocess.run(["nsenter", "-t", str(other.proc.pid), "-n", "cat", SYSCTL_PATH],
                          capture_output=True, text=True, check=True).stdout
    assert seen.strip() == wanted
    assert read_text(SYSCTL_PATH) == before


def test_ipc_sysctl_in_another_joined_ipc_namespace_is_written_there(ocirt, make_bundle, unshared):
    other = unshared("--ipc")
    before = read_text("/proc/sys/kernel/msgmax")
    bundle = make_bundle(["cat", "/proc/sys/kernel/msgmax"], config={"linux": {
        "namespaces": namespaces(ipc=other.path("ipc")), "sysctl": {"kernel.msgmax": "12345"}}})
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert result.stdout.strip() == "12345"
    assert read_text("/proc/sys/kernel/msgmax") == before


def test_ipc_sysctl_in_the_runtimes_own_ipc_namespace_is_refused(ocirt, make_bundle):
    before = read_text("/proc/sys/kernel/msgmax")
    bundle = make_bundle(["true"], config={"linux": {
        "namespaces": namespaces(ipc="/proc/%d/ns/ipc" % os.getpid()), "sysctl": {"kernel.msgmax": "12345"}}})
    cid = new_id()
    result = ocirt("create", "--bundle", bundle, cid, check=False)
    assert_refused(ocirt, result, cid, "linux.sysctl.kernel.msgmax", "runtime's own ipc namespace")
    assert read_text("/proc/sys/kernel/msgmax") == before


# --------------------------------------------------------------------------
# 4. the pty only on a devpts the runtime mounted

IN_OPEN = 0x20
IN_NONBLOCK = 0o4000


class OpenWatch:
    """inotify IN_OPEN on one path: did anything open it?"""

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert self.libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN) >= 0, os.strerror(ctypes.get_errno())

    def opened(self):
        try:
            return len(os.read(self.fd, 65536)) > 0
        except BlockingIOError:
            return False

    def close(self):
        os.close(self.fd)


@pytest.mark.parametrize("dev_mount", ["tmpfs", "none"])
def test_terminal_without_a_devpts_mount_is_refused_and_opens_no_image_node(ocirt, make_bundle, scratch, dev_mount):
    mounts = [m for m in DEFAULT_MOUNTS if m["destination"] != "/dev/pts"]
    if dev_mount == "none":
        mounts = [m for m in mounts if not m["destination"].startswith("/dev")]
    bundle = make_bundle(["true"], config={"process": {"terminal": True}, "mounts": mounts})
    # The image's own /dev/pts/ptmx, any device node it likes (here /dev/null's numbers).
    pts = os.path.join(bundle, "rootfs", "dev", "pts")
    os.makedirs(pts)
    node = os.path.join(pts, "ptmx")
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    watch = OpenWatch(node)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(scratch, "console.sock"))
    listener.listen(1)
    cid = new_id()
    try:
        result = ocirt("create", "--bundle", bundle, "--console-socket", os.path.join(scratch, "console.sock"), cid,
                       check=False)
        assert_refused(ocirt, result, cid, "process.terminal", "devpts", "/dev/pts")
        assert not watch.opened(), "the image's /dev/pts/ptmx was opened"
    finally:
        watch.close()
        listener.close()


def test_terminal_with_a_devpts_mount_still_works(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "tty; stat -f -c %T /dev/pts"], config={"process": {"terminal": True}})
    command = " ".join([os.path.join(REPO, ".venv", "bin", "ocirt"), "--root", ocirt.root, "run", "--bundle", bundle,
                        new_id()])
    # script(1) gives `ocirt run` a terminal of its own to relay.
    result = subprocess.run(["script", "-qec", command, "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result
    assert "/dev/pts/0" in result.stdout and "devpts" in result.stdout, result.stdout


# --------------------------------------------------------------------------
# 5. archives without limits

BOMB_SIZE = 64 << 20


@pytest.mark.parametrize("kind", ["tarball", "oci-layout", "directory"])
def test_max_unpacked_size_stops_a_bomb_and_leaves_nothing(tmp_path, kind):
    if kind == "tarball":
        source = write_bomb(str(tmp_path / "bomb.tar.gz"), BOMB_SIZE)
        assert os.path.getsize(source) < BOMB_SIZE // 500
    elif kind == "oci-layout":
        source = str(tmp_path / "layout")
        with open(write_bomb(str(tmp_path / "bomb.tar.gz"), BOMB_SIZE), "rb") as handle:
            Layout(source, gzip_layer=handle.read())
    else:
        source = str(tmp_path / "tree")
        os.makedirs(source)
        with open(os.path.join(source, "sparse"), "wb") as handle:
            handle.truncate(BOMB_SIZE)  # 64 MiB that take no room until copied
    path = str(tmp_path / "bundle")
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {}, source=source, copy=True, max_unpacked_size="8M")
    message = str(caught.value)
    assert "max_unpacked_size" in message and str(8 << 20) in message, message
    assert bundle_leftovers(path) == []


def test_max_unpacked_size_is_checked_before_anything_is_unpacked(tmp_path):
    source = privileged_image(str(tmp_path / "image.tar"))
    path = str(tmp_path / "bundle")
    for bad in ("lots", "-2", True):
        with pytest.raises(OCIError) as caught:
            bundle_mod.ensure(path, {}, source=source, max_unpacked_size=bad)
        assert "max_unpacked_size" in str(caught.value)
        assert not os.path.exists(path)
    # Under the limit it unpacks.
    bundle_mod.ensure(path, {}, source=source, max_unpacked_size="1M")
    assert os.path.isfile(os.path.join(path, "rootfs", "bin", "suid"))


@pytest.fixture
def small_tmpfs(tmp_path):
    point = str(tmp_path / "small")
    os.makedirs(point)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", point], check=True)
    yield point
    subprocess.run(["umount", "-l", point], check=True)


def test_default_limit_is_the_free_space_minus_a_margin(tmp_path, small_tmpfs):
    source = write_bomb(str(tmp_path / "bomb.tar.gz"), 32 << 20)
    path = os.path.join(small_tmpfs, "bundle")
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {}, source=source)
    message = str(caught.value)
    assert "max_unpacked_size" in message and "free space" in message, message
    assert bundle_leftovers(path) == []
    # What was written before the limit was reached is gone again.
    assert os.statvfs(small_tmpfs).f_bfree == os.statvfs(small_tmpfs).f_blocks


def test_a_fifo_blob_is_refused_without_hanging(tmp_path):
    source = str(tmp_path / "layout")
    layout = Layout(source, [tar_member("etc", "dir")])
    blob = layout.path_of(layout.layer)
    os.unlink(blob)
    os.mkfifo(blob)
    path = str(tmp_path / "bundle")
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {}, source=source)
    assert layout.layer["digest"] in str(caught.value) and "not a regular file" in str(caught.value)
    assert bundle_leftovers(path) == []


@pytest.mark.parametrize("name", ["index.json", "oci-layout"])
def test_a_fifo_layout_file_is_refused_without_hanging(tmp_path, name):
    source = str(tmp_path / "layout")
    Layout(source, [tar_member("etc", "dir")])
    os.unlink(os.path.join(source, name))
    os.mkfifo(os.path.join(source, name))
    path = str(tmp_path / "bundle")
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {}, source=source)
    assert name in str(caught.value) and "not a regular file" in str(caught.value)
    assert bundle_leftovers(path) == []


@pytest.mark.parametrize("what", ["blob", "blobs-directory", "algorithm-directory"])
def test_a_blob_reached_through_a_symlink_is_refused(tmp_path, what):
    source = str(tmp_path / "layout")
    layout = Layout(source, [tar_member("etc", "dir"), tar_member("etc/secret-copy", data=b"x")])
    outside = str(tmp_path / "outside")
    if what == "blob":
        os.makedirs(outside)
        blob = layout.path_of(layout.layer)
        shutil.move(blob, os.path.join(outside, "layer"))
        os.symlink(os.path.join(outside, "layer"), blob)
    else:
        moved = os.path.join(source, "blobs") if what == "blobs-directory" else os.path.join(source, "blobs", "sha256")
        shutil.move(moved, outside)
        os.symlink(outside, moved)
    path = str(tmp_path / "bundle")
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {}, source=source)
    assert "symbolic link" in str(caught.value) or "not a regular file" in str(caught.value), str(caught.value)
    assert bundle_leftovers(path) == []


def test_a_failed_unpack_keeps_the_previous_root_filesystem(tmp_path):
    good = privileged_image(str(tmp_path / "good.tar"))
    path = str(tmp_path / "bundle")
    bundle_mod.ensure(path, {}, source=good)
    bomb = write_bomb(str(tmp_path / "bomb.tar.gz"), BOMB_SIZE)
    with pytest.raises(OCIError):
        bundle_mod.ensure(path, {}, source=bomb, max_unpacked_size="1M")
    assert bundle_leftovers(path) == ["rootfs"]
    assert os.path.isfile(os.path.join(path, "rootfs", "bin", "suid"))
    assert bundle_mod.read_stamp(path)["source"] == good


def run_module(args):
    """The module as an ad-hoc task on localhost: (CompletedProcess, its result as a dict, "failed" added)."""
    result = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-c", "local",
                             "-m", "daemonless.oci.oci_bundle", "-a", json.dumps(args)],
                            env=ansible_env(stdout_callback=None), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    # The ad-hoc (minimal) callback prints "localhost | STATUS => {json}".
    text = result.stdout[result.stdout.index("localhost | "):]
    outcome = json.loads(text[text.index("=>") + 2:])
    outcome["failed"] = text.startswith("localhost | FAILED")
    return result, outcome


def test_the_module_takes_max_unpacked_size(tmp_path):
    bomb = write_bomb(str(tmp_path / "bomb.tar.gz"), 16 << 20)
    path = str(tmp_path / "bundle")
    result, outcome = run_module({"path": path, "rootfs_from": bomb, "max_unpacked_size": "1M"})
    assert result.returncode != 0 and outcome.get("failed"), outcome
    assert "max_unpacked_size" in outcome["msg"] and "Traceback" not in outcome["msg"], outcome
    assert "module_stderr" not in outcome, outcome
    assert bundle_leftovers(path) == []
    result, outcome = run_module({"path": path, "rootfs_from": bomb, "max_unpacked_size": "17M"})
    assert result.returncode == 0 and outcome["changed"], outcome
    assert os.path.getsize(os.path.join(path, "rootfs", "zeros")) == 16 << 20


# --------------------------------------------------------------------------
# 6. ids and stray entries in the state root


@pytest.mark.parametrize("bad_id", ["a\nb", "forged\nrow   created", "tab\there", "esc\x1b[2J", "sp ace", "caf\u00e9",
                                    "a,b", "semi;colon", "a:b"],
                         ids=["newline", "forged-row", "tab", "escape", "space", "unicode", "comma", "semicolon",
                              "colon"])
def test_ids_outside_runcs_alphabet_are_refused(ocirt, make_bundle, bad_id):
    result = ocirt("create", "--bundle", make_bundle(["true"]), bad_id, check=False)
    assert result.returncode != 0
    assert "container id" in result.stderr and "A-Za-z0-9" in result.stderr, result.stderr
    assert repr(bad_id) in result.stderr  # named escaped: no raw control character reaches the terminal
    assert not os.path.isdir(ocirt.root) or os.listdir(ocirt.root) in ([], ["=monitor"])


@pytest.mark.parametrize("good_id", ["a+b", "A.b_c-d", "x" * 300], ids=["plus", "mixed", "long-hashed"])
def test_ids_inside_the_alphabet_work(ocirt, make_bundle, good_id):
    ocirt("create", "--bundle", make_bundle(["true"]), good_id)
    assert ocirt.ids() == [good_id]
    assert ocirt.state(good_id)["status"] == "created"
    if len(good_id) > 200:
        assert not os.path.exists(os.path.join(ocirt.root, good_id))
    ocirt("delete", "--force", good_id)
    assert ocirt.ids() == []


@pytest.fixture
def stray_entries(ocirt, tmp_path):
    """A file, a dangling symlink and a symlink to a fake container directory, in the state root."""
    os.makedirs(ocirt.root, exist_ok=True)
    fake = tmp_path / "fake-container"
    fake.mkdir()
    (fake / "state.json").write_text(json.dumps({"id": "stray-link", "status": "running", "pid": os.getpid(),
                                                 "bundle": "/"}))
    entries = {"stray-file": None, "stray-link": str(fake), "stray-dangling": "/nonexistent-" + uuid.uuid4().hex}
    for name, target in entries.items():
        full = os.path.join(ocirt.root, name)
        if target is None:
            with open(full, "w") as handle:
                handle.write("not a container\n")
        else:
            os.symlink(target, full)
    yield sorted(entries)
    for name in entries:
        os.unlink(os.path.join(ocirt.root, name))
    assert os.listdir(str(fake)) == ["state.json"]


def test_list_skips_and_reports_entries_that_are_not_container_directories(ocirt, make_bundle, stray_entries):
    cid = new_id()
    ocirt("create", "--bundle", make_bundle(["true"]), cid)
    for output in ("table", "json"):
        result = ocirt("list", "--format", output)
        assert "Traceback" not in result.stderr
        for name in stray_entries:
            assert name not in result.stdout, result.stdout
            assert name in result.stderr and "not a container directory" in result.stderr, result.stderr
    assert ocirt.ids() == [cid]
    ocirt("delete", "--force", cid)


@pytest.mark.parametrize("command", [["state"], ["delete", "--force"], ["delete"], ["kill"], ["start"]])
def test_commands_on_a_stray_entry_fail_cleanly_and_leave_it(ocirt, stray_entries, command):
    for name in stray_entries:
        result = ocirt(*(command + [name]), check=False)
        assert result.returncode != 0, (name, result)
        assert "Traceback" not in result.stderr and "Not a directory" not in result.stderr, result.stderr
        assert name in result.stderr and "not a container directory" in result.stderr, result.stderr
        assert os.path.lexists(os.path.join(ocirt.root, name))


# --------------------------------------------------------------------------
# 7. config trust


def test_joining_the_runtimes_own_mount_namespace_is_refused(ocirt, make_bundle):
    """Joining it would re-root the host: the bind, the config's mounts and pivot_root would all land there."""
    before = read_text("/proc/self/mountinfo")
    bundle = make_bundle(["true"], config={"linux": {"namespaces": namespaces(mount="/proc/%d/ns/mnt" % os.getpid())}})
    cid = new_id()
    result = ocirt("create", "--bundle", bundle, cid, check=False)
    assert_refused(ocirt, result, cid, "linux.namespaces", "mount", "runtime's own mount namespace")
    assert read_text("/proc/self/mountinfo") == before


def test_joining_pid_1s_mount_namespace_is_refused(ocirt, make_bundle):
    try:
        os.stat("/proc/1/ns/mnt")
    except OSError as exc:
        pytest.skip("PID 1's namespaces are out of reach here (%s): a config cannot name them either" % exc.strerror)
    bundle = make_bundle(["true"], config={"linux": {"namespaces": namespaces(mount="/proc/1/ns/mnt")}})
    cid = new_id()
    result = ocirt("create", "--bundle", bundle, cid, check=False)
    assert_refused(ocirt, result, cid, "linux.namespaces", "mount namespace")


def test_joining_another_mount_namespace_still_works(ocirt, make_bundle, unshared):
    other = unshared("--mount", "--propagation", "private")
    path = other.path("mnt")
    bundle = make_bundle(["sleep", "1000"], config={"linux": {"namespaces": namespaces(mount=path)}})
    cid = new_id()
    ocirt("create", "--bundle", bundle, cid)
    try:
        pid = ocirt.state(cid)["pid"]
        assert os.readlink("/proc/%d/ns/mnt" % pid) == os.readlink(path)
    finally:
        ocirt("delete", "--force", cid)


@pytest.fixture
def userns_reachable(scratch):
    """Search permission on the scratch directory and its parents for the container's root (host uid 100000)."""
    changed = []
    path = scratch
    while path != "/":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(path, mode | stat.S_IXOTH)
            changed.append((path, mode))
        path = os.path.dirname(path)
    yield scratch
    for path, mode in changed:
        os.chmod(path, mode)


def test_linux_devices_in_a_user_namespace_bind_only_device_nodes(ocirt, make_bundle, userns_reachable):
    secret = os.path.join(userns_reachable, "secret.txt")
    with open(secret, "w") as handle:
        handle.write("host secret\n")
    os.chmod(secret, 0o644)
    userns = dict(USERNS_MAPS, namespaces=DEFAULT_NAMESPACES + [{"type": "user"}])
    device = {"path": secret, "type": "c", "major": 1, "minor": 3}
    bundle = make_bundle(["cat", secret], config={"linux": dict(userns, devices=[device])})
    cid = new_id()
    result = ocirt("run", "--bundle", bundle, cid, check=False)
    assert "host secret" not in result.stdout, "a host file was bound as a device"
    assert_refused(ocirt, result, cid, "linux.devices[0]", secret, "not a character device")


@pytest.mark.parametrize("device, error", [
    ({"path": "/dev/zero", "type": "b", "major": 1, "minor": 5}, "not a block device"),
    ({"path": "/dev/zero", "type": "c", "major": 1, "minor": 3}, "is 1:5, not 1:3"),
], ids=["wrong-type", "wrong-numbers"])
def test_linux_devices_in_a_user_namespace_must_match_the_host_node(ocirt, make_bundle, userns_reachable, device, error):
    userns = dict(USERNS_MAPS, namespaces=DEFAULT_NAMESPACES + [{"type": "user"}])
    bundle = make_bundle(["true"], config={"linux": dict(userns, devices=[device])})
    cid = new_id()
    result = ocirt("run", "--bundle", bundle, cid, check=False)
    assert_refused(ocirt, result, cid, "linux.devices[0]", error)


def test_linux_devices_in_a_user_namespace_still_bind_the_host_node(ocirt, make_bundle, userns_reachable):
    userns = dict(USERNS_MAPS, namespaces=DEFAULT_NAMESPACES + [{"type": "user"}])
    bundle = make_bundle(["sh", "-c", "head -c 4 /dev/full | od -An -tx1; stat -c %t:%T /dev/full"],
                         config={"linux": dict(userns, devices=[{"path": "/dev/full", "type": "c", "major": 1,
                                                                 "minor": 7}])})
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert result.stdout.split() == ["00", "00", "00", "00", "1:7"], result.stdout


# --------------------------------------------------------------------------
# 8. the state the hooks see

HOOK_SH = "/bin/sh"


def stdin_hook(directory, name):
    return {"path": HOOK_SH, "args": ["sh", "-c", "cat > %s/%s" % (directory, name)]}


def test_prestart_sees_created_and_poststart_sees_running_with_the_pid(ocirt, make_bundle, scratch):
    """runtime-tools' hooks_stdin: the process exits at once, yet poststart gets the state of the start."""
    for attempt in range(5):
        out = os.path.join(scratch, "hooks-%d" % attempt)
        os.makedirs(out)
        hooks = {"prestart": [stdin_hook(out, "prestart")], "poststart": [stdin_hook(out, "poststart")],
                 "poststop": [stdin_hook(out, "poststop")]}
        bundle = make_bundle(["true"], config={"hooks": hooks, "annotations": {"k": "v"}})
        cid = new_id()
        ocirt("create", "--bundle", bundle, cid)
        pid = ocirt.state(cid)["pid"]
        ocirt("start", cid)
        ocirt("delete", "--force", cid)
        seen = dict((name, json.loads(read_text(os.path.join(out, name)))) for name in os.listdir(out))
        assert sorted(seen) == ["poststart", "poststop", "prestart"]
        assert seen["prestart"]["status"] == "created", seen["prestart"]
        assert seen["poststart"]["status"] == "running", (attempt, seen["poststart"])
        for name in ("prestart", "poststart"):
            assert seen[name]["pid"] == pid, (attempt, name, seen[name])
        for name in seen:
            assert seen[name]["id"] == cid and seen[name]["bundle"] == bundle
            assert seen[name]["annotations"] == {"k": "v"}
        assert seen["poststop"]["status"] == "stopped"


# --------------------------------------------------------------------------
# 9. joining a UTS namespace by path


def test_joining_a_uts_namespace_by_path_sets_the_hostname_there(ocirt, make_bundle, unshared):
    host_name = read_text("/proc/sys/kernel/hostname")
    other = unshared("--uts")
    path = other.path("uts")
    bundle = make_bundle(["sh", "-c", "hostname; readlink /proc/self/ns/uts"],
                         config={"hostname": "mrsdalloway", "linux": {"namespaces": namespaces(uts=path)}})
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert result.stdout.split() == ["mrsdalloway", os.readlink(path)]
    seen = subprocess.run(["nsenter", "-t", str(other.proc.pid), "-u", "hostname"], capture_output=True, text=True,
                          check=True).stdout
    assert seen.strip() == "mrsdalloway"
    assert read_text("/proc/sys/kernel/hostname") == host_name


def test_joining_a_uts_namespace_by_path_without_a_hostname(ocirt, make_bundle, unshared):
    other = unshared("--uts")
    path = other.path("uts")
    config = {"linux": {"namespaces": namespaces(uts=path)}}
    bundle = make_bundle(["readlink", "/proc/self/ns/uts"], config=config)
    with open(os.path.join(bundle, "config.json")) as handle:
        written = json.load(handle)
    written.pop("hostname", None)
    with open(os.path.join(bundle, "config.json"), "w") as handle:
        json.dump(written, handle)
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert result.stdout.strip() == os.readlink(path)


@pytest.mark.parametrize("field", ["hostname", "domainname"])
def test_hostname_in_the_runtimes_own_uts_namespace_is_refused(ocirt, make_bundle, field):
    host_name = read_text("/proc/sys/kernel/hostname")
    host_domain = read_text("/proc/sys/kernel/domainname")
    # The default config sets a hostname: left empty, only FIELD is set.
    bundle = make_bundle(["true"], config={"hostname": "", field: "pwned", "linux": {
        "namespaces": namespaces(uts="/proc/%d/ns/uts" % os.getpid())}})
    cid = new_id()
    result = ocirt("create", "--bundle", bundle, cid, check=False)
    assert_refused(ocirt, result, cid, field, "runtime's own uts namespace")
    assert read_text("/proc/sys/kernel/hostname") == host_name
    assert read_text("/proc/sys/kernel/domainname") == host_domain


# --------------------------------------------------------------------------
# 10. seccomp: allow by default, errno for getcwd, no noNewPrivileges

GETCWD_DENIED = {"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("nnp", [False, True], ids=["without-nnp", "with-nnp"])
def test_a_profile_denying_getcwd_loads_and_applies(ocirt, make_bundle, nnp):
    """runtime-tools' linux_seccomp (crun passes it; runc 1.1.5 fails its own cwd check under the filter)."""
    bundle = make_bundle(["sh", "-c", "/bin/busybox pwd -P; echo rc=$?"],
                         config={"process": {"noNewPrivileges": nnp, "cwd": "/tmp"},
                                 "linux": {"seccomp": GETCWD_DENIED}})
    result = ocirt.run(bundle, new_id())
    assert result.returncode == 0, result
    assert "rc=1" in result.stdout and "Operation not permitted" in result.stderr, result


def test_exec_with_a_profile_denying_getcwd_without_nnp(ocirt, make_bundle):
    bundle = make_bundle(["sleep", "1000"], config={"process": {"noNewPrivileges": False},
                                                    "linux": {"seccomp": GETCWD_DENIED}})
    cid = new_id()
    ocirt("run", "--detach", "--bundle", bundle, cid)
    try:
        result = ocirt("exec", "--cwd", "/tmp", cid, "sh", "-c", "/bin/busybox pwd -P; echo rc=$?", check=False)
        assert result.returncode == 0, result
        assert "rc=1" in result.stdout and "Operation not permitted" in result.stderr, result
    finally:
        ocirt("delete", "--force", cid)


def test_exec_tty_in_a_container_without_devpts_opens_no_image_node(ocirt, make_bundle, scratch):
    mounts = [m for m in DEFAULT_MOUNTS if not m["destination"].startswith("/dev")]
    bundle = make_bundle(["sleep", "1000"], config={"mounts": mounts})
    pts = os.path.join(bundle, "rootfs", "dev", "pts")
    os.makedirs(pts)
    node = os.path.join(pts, "ptmx")
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    cid = new_id()
    ocirt("run", "--detach", "--bundle", bundle, cid)
    watch = OpenWatch(node)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(scratch, "console.sock"))
    listener.listen(1)
    try:
        result = ocirt("exec", "--tty", "--detach", "--console-socket", os.path.join(scratch, "console.sock"), cid,
                       "true", check=False)
        assert result.returncode != 0, result
        assert "process.terminal" in result.stderr and "not the ptmx of a devpts" in result.stderr, result.stderr
        assert not watch.opened(), "the image's /dev/pts/ptmx was opened"
    finally:
        watch.close()
        listener.close()
        ocirt("delete", "--force", cid)
