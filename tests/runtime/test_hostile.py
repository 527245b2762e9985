"""Hostile bundles: images and configs built to make the runtime act on the host.

Each test plants something an attacker controls (symlinks in the image, a
racing rename, leaked descriptors, a setuid binary, a shebang naming the
runtime's own executable, configs with edge values), runs real containers
through the installed `ocirt` command, and checks two things: the host is
untouched (a checksum listing of every host path involved, and its mount
table, compared before and after) and the container got what it should.
The fixtures' host audit checks mounts, cgroups, processes and state after
every test. Symlink escapes of mount destinations are in
test_container_view.py; these are the other classes.
"""
import hashlib
import json
import os
import platform
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
from helpers import (
    OCIRT, assert_failed_cleanly, fd_targets, host_mount_points, new_id, ocirt_with_fds, parse_mountinfo, read_text,
    rootfs_of, run_ok, script, sections, wait_status, write_file)

PYTHON = sys.executable

DEFAULT_MOUNTS = default_config()["mounts"]
DEFAULT_NAMESPACES = default_config()["linux"]["namespaces"]
DEFAULT_MASKED = default_config()["linux"]["maskedPaths"]
DEFAULT_READONLY = default_config()["linux"]["readonlyPaths"]
X86_64 = platform.machine() == "x86_64"


# --------------------------------------------------------------------------
# helpers


def checksum_listing(path):
    """(relative path, type, mode, size, sha256 or link target) of PATH and all below it, never following links."""
    entries = []

    def describe(full):
        st = os.lstat(full)
        kind = stat.S_IFMT(st.st_mode)
        digest = ""
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            digest = "-> " + os.readlink(full)
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
        return (os.path.relpath(full, path), kind, stat.S_IMODE(st.st_mode), size, digest)

    if not os.path.lexists(path):
        return [("<missing>", 0, 0, 0, "")]
    entries.append(describe(path))
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            for name in sorted(dirnames + filenames):
                entries.append(describe(os.path.join(dirpath, name)))
    return sorted(entries)


def mounts_at_or_under(path):
    prefix = path.rstrip("/") + "/"
    return sorted(p for p in host_mount_points() if p == path or p.startswith(prefix))


class HostSnapshot:
    """Checksum listings and mount points of host PATHS, taken now, to compare with later."""

    def __init__(self, *paths):
        self.paths = paths
        self.listings = self._listings()
        self.mounts = self._mounts()

    def _listings(self):
        return dict((path, checksum_listing(path)) for path in self.paths)

    def _mounts(self):
        return dict((path, mounts_at_or_under(path)) for path in self.paths)

    def assert_untouched(self):
        assert self._mounts() == self.mounts, "the mount table of host paths changed"
        after = self._listings()
        for path in self.paths:
            assert after[path] == self.listings[path], "host path %s changed:\nbefore %s\nafter  %s" % (
                path, self.listings[path], after[path])


def in_root(bundle, path):
    """Where container PATH (absolute, symlink-free) lies on the host."""
    return os.path.join(rootfs_of(bundle), path.lstrip("/"))


def sha256_of(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def relative_escape(link_dir_depth, target):
    """A relative symlink target that climbs far above the rootfs, then descends to TARGET."""
    return "../" * (link_dir_depth + 30) + target.lstrip("/")


@pytest.fixture
def host_dir():
    """A host directory an image points its symlinks at: /tmp/ocirt-hostile-<uuid>, with content."""
    path = new_id("/tmp/ocirt-hostile")
    write_file(os.path.join(path, "secret.txt"), "host secret\n", 0o600)
    write_file(os.path.join(path, "sub", "file.txt"), "host file\n")
    yield path
    leftover = mounts_at_or_under(path)
    for point in sorted(leftover, key=len, reverse=True):
        # Only after a failed assertion: never leave the host with a mount on a test directory.
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftover, "mounts were left on the host directory: %s" % leftover


@pytest.fixture
def host_dir2():
    path = new_id("/tmp/ocirt-hostile")
    write_file(os.path.join(path, "other.txt"), "second host dir\n")
    yield path
    leftover = mounts_at_or_under(path)
    for point in sorted(leftover, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftover, "mounts were left on the host directory: %s" % leftover


def link(bundle, container_path, target, style):
    """Make container_path in the image a symlink to host TARGET, absolute or climbing with ../."""
    where = in_root(bundle, container_path)
    if os.path.isdir(where) and not os.path.islink(where):
        shutil.rmtree(where)
    elif os.path.lexists(where):
        os.unlink(where)
    parent = os.path.dirname(where)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    if style == "absolute":
        os.symlink(target, where)
    else:
        depth = container_path.strip("/").count("/")
        os.symlink(relative_escape(depth, target), where)
    # Seen from the host, the link does reach the host path.
    assert os.path.realpath(where) == os.path.realpath(target)
    return where


# --------------------------------------------------------------------------
# 1. symlinks in the image pointing at host paths


@pytest.mark.parametrize("style", ["absolute", "relative"])
@pytest.mark.parametrize("kind", ["directory", "file"])
def test_masked_path_that_is_a_symlink_to_the_host_is_masked_inside(ocirt, make_bundle, host_dir, style, kind):
    target = host_dir if kind == "directory" else os.path.join(host_dir, "secret.txt")
    if kind == "directory":
        probes = (("via-link", "ls -A /etc/evil-mask/"), ("in-root", "ls -A %s" % target))
    else:
        probes = (("via-link", "cat /etc/evil-mask"), ("in-root", "cat %s" % target),
                  ("node", "stat -c '%%F %%t:%%T' %s" % target))
    bundle = make_bundle(script(*(probes + (("mountinfo", "cat /proc/self/mountinfo"),))),
                         config={"linux": {"maskedPaths": DEFAULT_MASKED + ["/etc/evil-mask"]}})
    # The image has something at the link's in-root target, so the mask has something to hide.
    if kind == "directory":
        write_file(in_root(bundle, os.path.join(host_dir, "image.txt")), "image copy\n")
    else:
        write_file(in_root(bundle, target), "image secret\n")
    link(bundle, "/etc/evil-mask", target, style)
    host = HostSnapshot(host_dir)
    image = HostSnapshot(in_root(bundle, host_dir))

    out = sections(run_ok(ocirt, bundle))
    mounts = parse_mountinfo(out["mountinfo"])
    assert out["via-link"] == "", out
    assert out["in-root"] == "", out
    if kind == "directory":
        masks = [m for m in mounts if m["point"] == host_dir]
        assert masks and masks[-1]["fstype"] == "tmpfs" and "ro" in masks[-1]["opts"], mounts
    else:
        # /dev/null bound over the in-root file: empty, a character device 1:3.
        assert out["node"] == "character special file 1:3\n", out
        assert [m for m in mounts if m["point"] == target], mounts
    host.assert_untouched()
    image.assert_untouched()  # a mask hides; it never changes what is in the image


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_masked_path_whose_in_root_target_is_missing_is_skipped(ocirt, make_bundle, host_dir, style):
    bundle = make_bundle(script(("ls", "ls -A /etc/evil-mask/ 2>&1 || echo no-target")),
                         config={"linux": {"maskedPaths": DEFAULT_MASKED + ["/etc/evil-mask"]}})
    link(bundle, "/etc/evil-mask", host_dir, style)
    host = HostSnapshot(host_dir)
    out = sections(run_ok(ocirt, bundle))
    assert "no-target" in out["ls"], out
    assert "secret.txt" not in out["ls"]
    host.assert_untouched()
    assert not os.path.lexists(in_root(bundle, host_dir))


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_readonly_path_that_is_a_symlink_to_the_host_is_read_only_inside(ocirt, make_bundle, host_dir, style):
    bundle = make_bundle(script(
        ("write-link", "touch /etc/evil-ro/new.txt 2>&1 || echo refused"),
        ("write-target", "touch %s/new2.txt 2>&1 || echo refused" % host_dir),
        ("read", "cat /etc/evil-ro/image.txt"),
        ("write-elsewhere", "touch /etc/writable.txt && echo wrote"),
        ("mountinfo", "cat /proc/self/mountinfo"),
    ), config={"root": {"readonly": False},
               "linux": {"readonlyPaths": DEFAULT_READONLY + ["/etc/evil-ro"]}})
    write_file(in_root(bundle, os.path.join(host_dir, "image.txt")), "image copy\n")
    link(bundle, "/etc/evil-ro", host_dir, style)
    host = HostSnapshot(host_dir)

    out = sections(run_ok(ocirt, bundle))
    assert "Read-only file system" in out["write-link"] and "refused" in out["write-link"], out
    assert "Read-only file system" in out["write-target"], out
    assert out["read"] == "image copy\n"
    assert out["write-elsewhere"] == "wrote\n"  # the root is writable: the ro bind is what refused
    bind = [m for m in parse_mountinfo(out["mountinfo"]) if m["point"] == host_dir]
    assert bind and "ro" in bind[-1]["opts"], out["mountinfo"]
    host.assert_untouched()
    assert not os.statvfs(host_dir).f_flag & os.ST_RDONLY
    assert not os.path.lexists(in_root(bundle, os.path.join(host_dir, "new.txt")))


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_dev_as_a_symlink_to_a_host_directory(ocirt, make_bundle, host_dir, style):
    """The runtime's /dev tmpfs, its device nodes and /dev/pts land at the link's in-root target."""
    bundle = make_bundle(script(
        ("null", "stat -L -c '%F %t:%T' /dev/null"),
        ("zero", "head -c 3 /dev/zero | od -An -tx1"),
        ("write-null", "echo x > /dev/null && echo ok"),
        ("ls", "ls -A %s" % host_dir),
        ("mountinfo", "cat /proc/self/mountinfo"),
    ))
    link(bundle, "/dev", host_dir, style)
    host = HostSnapshot(host_dir)

    out = sections(run_ok(ocirt, bundle))
    assert out["null"] == "character special file 1:3\n", out
    assert out["zero"].split() == ["00", "00", "00"]
    assert out["write-null"] == "ok\n"
    listed = out["ls"].split()
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"} <= set(listed), listed
    assert "secret.txt" not in listed
    mounts = parse_mountinfo(out["mountinfo"])
    by_point = dict((m["point"], m) for m in mounts)
    assert by_point[host_dir]["fstype"] == "tmpfs", mounts
    assert by_point[host_dir + "/pts"]["fstype"] == "devpts", mounts
    assert by_point[host_dir + "/shm"]["fstype"] == "tmpfs", mounts
    host.assert_untouched()
    # The tmpfs went on a directory made inside the rootfs: nothing of it is in the image now.
    assert os.path.isdir(in_root(bundle, host_dir))
    assert os.listdir(in_root(bundle, host_dir)) == []


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_proc_and_sys_as_symlinks_to_host_directories(ocirt, make_bundle, host_dir, host_dir2, style):
    bundle = make_bundle(script(
        ("pid", "cat /proc/self/stat | cut -d' ' -f1 | grep -c '^[0-9]'"),
        ("keys", "stat -c '%F %t:%T' /proc/keys 2>&1"),
        ("proc-sys", "(echo 0 > /proc/sys/net/ipv4/ip_forward) 2>&1 || echo refused"),
        ("net", "ls /sys/class/net"),
        ("mountinfo", "cat /proc/self/mountinfo"),
    ))
    link(bundle, "/proc", host_dir, style)
    link(bundle, "/sys", host_dir2, style)
    host = HostSnapshot(host_dir, host_dir2)

    out = sections(run_ok(ocirt, bundle))
    by_point = {}
    for mount in parse_mountinfo(out["mountinfo"]):
        by_point[mount["point"]] = mount
    assert by_point[host_dir]["fstype"] == "proc", out["mountinfo"]
    assert by_point[host_dir2]["fstype"] == "sysfs", out["mountinfo"]
    assert "ro" in by_point[host_dir2]["opts"]
    assert host_dir2 + "/fs/cgroup" in by_point, out["mountinfo"]
    assert out["pid"] == "1\n"
    assert out["net"].split() == ["lo"]  # the container's own network namespace, through its sysfs
    # Masked and read-only paths under /proc followed the link too.
    assert out["keys"] == "character special file 1:3\n", out
    assert "Read-only file system" in out["proc-sys"] and "refused" in out["proc-sys"], out
    assert "ro" in by_point[host_dir + "/sys"]["opts"]
    host.assert_untouched()


@pytest.mark.parametrize("dev_mount", ["tmpfs", "none"])
def test_image_dev_null_symlink_to_etc_passwd_has_no_effect(ocirt, make_bundle, dev_mount):
    """With the runtime's tmpfs the image's /dev is hidden; without one the runtime replaces the link by the node."""
    config = {}
    if dev_mount == "none":
        config["mounts"] = [m for m in DEFAULT_MOUNTS if not m["destination"].startswith("/dev")]
    bundle = make_bundle(script(
        ("null", "stat -c '%F %t:%T' /dev/null"),
        ("write", "echo clobbered > /dev/null && echo ok"),
        ("passwd", "cat /etc/passwd"),
    ), config=config)
    os.symlink("/etc/passwd", in_root(bundle, "/dev/null"))
    os.symlink("../../../../../../../etc/shadow", in_root(bundle, "/dev/zero"))
    image_passwd = read_text(in_root(bundle, "/etc/passwd"))
    host = HostSnapshot("/etc/passwd", "/etc/shadow", in_root(bundle, "/etc"))

    out = sections(run_ok(ocirt, bundle))
    assert out["null"] == "character special file 1:3\n", out
    assert out["write"] == "ok\n"
    assert out["passwd"] == image_passwd
    host.assert_untouched()
    if dev_mount == "none":
        assert stat.S_ISCHR(os.lstat(in_root(bundle, "/dev/null")).st_mode)
        assert stat.S_ISCHR(os.lstat(in_root(bundle, "/dev/zero")).st_mode)
    else:
        assert os.readlink(in_root(bundle, "/dev/null")) == "/etc/passwd"


def test_device_paths_outside_dev_land_inside_the_rootfs(ocirt, make_bundle, host_dir):
    """linux.devices may name any path (the spec allows it): each node is made inside the rootfs,
    through symlinks in the image and '..' in the path alike."""
    devices = [
        {"path": host_dir + "/plain-node", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
        {"path": "/devlink/linked-node", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
        {"path": "/dev/../../../../.." + host_dir + "/dotdot-node", "type": "c", "major": 1, "minor": 7,
         "fileMode": 0o666},
        {"path": "/devlink/../../../../" + host_dir.lstrip("/") + "/fifo-node", "type": "p", "fileMode": 0o600},
    ]
    bundle = make_bundle(script(
        ("ls", "ls %s" % host_dir),
        ("null", "stat -c '%%F %%t:%%T' %s/plain-node" % host_dir),
    ), config={"linux": {"devices": devices}})
    link(bundle, "/devlink", host_dir, "absolute")
    host = HostSnapshot(host_dir)
    out = sections(run_ok(ocirt, bundle))
    assert sorted(out["ls"].split()) == ["dotdot-node", "fifo-node", "linked-node", "plain-node"], out
    assert out["null"] == "character special file 1:3\n", out
    host.assert_untouched()
    for name, kind in (("plain-node", stat.S_ISCHR), ("linked-node", stat.S_ISCHR), ("dotdot-node", stat.S_ISCHR),
                       ("fifo-node", stat.S_ISFIFO)):
        assert kind(os.lstat(in_root(bundle, os.path.join(host_dir, name))).st_mode), name
    assert os.stat(in_root(bundle, os.path.join(host_dir, "linked-node"))).st_rdev == os.makedev(1, 5)


# --------------------------------------------------------------------------
# 2. a rename racing the mount


_SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_renameat2, RENAME_EXCHANGE = 316, 2
directory, first, second, stop, limit = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode(), sys.argv[4], int(sys.argv[5])
dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
swaps = 0
for i in range(limit):
    if libc.syscall(SYS_renameat2, dirfd, first, dirfd, second, RENAME_EXCHANGE) == 0:
        swaps += 1
    if i % 500 == 0:
        if os.path.exists(stop):
            break
        if i == 0:
            print("started", flush=True)
print(swaps, flush=True)
"""


def create_logged(ocirt, bundle, container_id, log_path):
    """`ocirt create` with the container's stdout and stderr going to LOG_PATH; returns the CompletedProcess."""
    with open(log_path, "w") as log:
        result = subprocess.run([OCIRT, "--root", ocirt.root, "create", "--bundle", bundle, container_id],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
    ocirt.ids()  # (and the fixture's audit now knows the id)
    return result


@pytest.mark.skipif(not X86_64, reason="renameat2 is called by its x86_64 syscall number")
def test_racing_rename_exchange_never_lands_a_bind_mount_on_the_host(ocirt, make_bundle, host_dir, scratch):
    """A process swaps rootfs/mnt/target (a directory) and rootfs/mnt/evil (a symlink to a host
    directory) with RENAME_EXCHANGE while containers are created with a bind mount on /mnt/target:
    whichever the runtime resolves, the bind lands inside the rootfs, read-only as configured, and
    the host directory is untouched. The swapper is stopped while each container looks around."""
    payload = os.path.join(scratch, "payload")
    write_file(os.path.join(payload, "payload.txt"), "payload\n")
    bundle = make_bundle(script(
        ("found", "for p in /mnt/target /mnt/evil %s; do [ -f $p/payload.txt ] && echo $p; done" % host_dir),
        ("ro", "for p in /mnt/target /mnt/evil %s; do [ -f $p/payload.txt ] && touch $p/new; done 2>&1" % host_dir),
    ), config={"root": {"readonly": False},
               "mounts": DEFAULT_MOUNTS + [{"destination": "/mnt/target", "type": "bind", "source": payload,
                                            "options": ["rbind", "ro"]}]})
    mnt = in_root(bundle, "/mnt")
    os.makedirs(os.path.join(mnt, "target"))
    os.symlink(host_dir, os.path.join(mnt, "evil"))
    # The symlink's in-root target exists, so either outcome of the race can be mounted on.
    os.makedirs(in_root(bundle, host_dir))
    host = HostSnapshot(host_dir)
    payload_before = checksum_listing(payload)
    stop = os.path.join(scratch, "stop-swapping")
    swapper = subprocess.Popen([PYTHON, "-c", _SWAPPER, mnt, "target", "evil", stop, "50000000"],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    outcomes = []
    try:
        assert swapper.stdout.readline() == "started\n"
        for index in range(20):
            container_id = new_id("race%d" % index)
            log_path = os.path.join(scratch, "race%d.log" % index)
            created = create_logged(ocirt, bundle, container_id, log_path)
            swapper.send_signal(signal.SIGSTOP)
            try:
                if created.returncode != 0:
                    # Losing the race may fail create, cleanly; never anything else.
                    assert read_text(log_path).startswith("ocirt: mounts["), read_text(log_path)
                    assert container_id not in ocirt.ids()
                    outcomes.append("refused")
                    continue
                ocirt("start", container_id)
                wait_status(ocirt, container_id, "stopped")
                ocirt("delete", container_id)
                out = sections(read_text(log_path))
                found = out["found"].split()
                # The payload is visible inside, where the directory is now or at the symlink's in-root
                # target: the bind landed inside the rootfs.
                assert found, read_text(log_path)
                assert out["ro"].count("Read-only file system") == len(found), read_text(log_path)
                outcomes.append(found[-1])
                assert mounts_at_or_under(host_dir) == []
            finally:
                swapper.send_signal(signal.SIGCONT)
    finally:
        with open(stop, "w"):
            pass
        swapper.send_signal(signal.SIGCONT)
        try:
            swaps = int(swapper.communicate(timeout=60)[0].strip() or 0)
        except subprocess.TimeoutExpired:
            swapper.kill()
            swapper.communicate()
            swaps = 0
    assert swaps > 0, "the swapper never swapped: the race was not run"
    host.assert_untouched()
    assert checksum_listing(payload) == payload_before
    assert outcomes.count("refused") < len(outcomes), outcomes


# --------------------------------------------------------------------------
# 3. descriptors and the working directory


def fd_numbers(ls_output):
    """The descriptor numbers of `ls -l /proc/PID/fd` output."""
    numbers = []
    for line in ls_output.splitlines():
        if " -> " in line:
            numbers.append(int(line.split(" -> ")[0].split()[-1]))
    return sorted(numbers)


LIST_INIT_FDS = ["sh", "-c", "ls -l /proc/$$/fd"]


def test_descriptors_of_the_caller_of_create_stay_out(ocirt, make_bundle, scratch):
    bundle = make_bundle(LIST_INIT_FDS)
    leaked = [os.path.join(scratch, "leak5"), os.path.join(scratch, "leak6")]
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for path in leaked]
    container_id = new_id("fds")
    log_path = os.path.join(scratch, "create.log")
    try:
        with open(log_path, "w") as log:
            created = ocirt_with_fds(ocirt, fds, "create", "--bundle", bundle, container_id, first=5,
                                     stdout=log, stderr=log)
    finally:
        for fd in fds:
            os.close(fd)
    assert created.returncode == 0, read_text(log_path)
    init = ocirt.state(container_id)["pid"]
    # While created the process is still the runtime's: none of its descriptors is the caller's.
    held = fd_targets(init)
    assert not set(leaked) & set(held.values()), held
    ocirt("start", container_id)
    wait_status(ocirt, container_id, "stopped")
    ocirt("delete", container_id)
    output = read_text(log_path)
    assert fd_numbers(output) == [0, 1, 2], output
    assert not any(path in output for path in leaked), output


def test_descriptors_of_the_caller_of_run_detach_stay_out(ocirt, make_bundle, scratch):
    bundle = make_bundle(LIST_INIT_FDS)
    leaked = [os.path.join(scratch, "leak5"), os.path.join(scratch, "leak6")]
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for path in leaked]
    container_id = new_id("fdsmon")
    log_path = os.path.join(scratch, "run.log")
    try:
        with open(log_path, "w") as log:
            started = ocirt_with_fds(ocirt, fds, "run", "--detach", "--bundle", bundle, container_id, first=5,
                                     stdout=log, stderr=log)
    finally:
        for fd in fds:
            os.close(fd)
    assert started.returncode == 0, read_text(log_path)
    monitor = ocirt.state(container_id).get("monitorPid") or 0
    if monitor:
        held = fd_targets(monitor)
        assert not set(leaked) & set(held.values()), held
    waited = ocirt("wait", "--timeout", "60", container_id, check=False)
    assert waited.stdout.strip() == "0", waited
    output = ocirt("logs", container_id).stdout
    ocirt("delete", container_id)
    assert fd_numbers(output) == [0, 1, 2], output
    assert not any(path in output for path in leaked), output


@pytest.mark.parametrize("number", [3, 4, 5, 6, 7, 8, 9, 10])
def test_cwd_through_a_runtime_descriptor_never_reaches_the_host(ocirt, make_bundle, number):
    """process.cwd /proc/self/fd/N (CVE-2024-21626): create fails naming process.cwd, or the
    working directory is inside the container."""
    bundle = make_bundle(["sleep", "100"], config={"process": {"cwd": "/proc/self/fd/%d" % number}})
    container_id = new_id("cwd")
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    if result.returncode != 0:
        assert_failed_cleanly(ocirt, result, container_id, "process.cwd")
        return
    init = ocirt.state(container_id)["pid"]
    try:
        cwd = os.readlink("/proc/%d/cwd" % init)
        actual = os.stat("/proc/%d/cwd" % init)
        # The path the kernel gives, looked up from the container's root, must lead to that same directory.
        inside = os.stat("/proc/%d/root/%s" % (init, cwd.lstrip("/"))) if cwd.startswith("/") else None
    finally:
        ocirt("delete", "--force", container_id)
    assert inside is not None and (inside.st_dev, inside.st_ino) == (actual.st_dev, actual.st_ino), cwd


# --------------------------------------------------------------------------
# 4. /proc/<pid>/exe of the runtime


def host_interpreter():
    return os.path.realpath(PYTHON)


def test_runtime_init_of_a_created_container_is_out_of_reach(ocirt, make_bundle):
    """While created, the container's process is the host's interpreter waiting on the exec fifo:
    a process exec'd into the container cannot open its exe, fds or environ, and from the host it
    is not dumpable (a same-uid reader without CAP_SYS_PTRACE is refused, as a control is not)."""
    python = host_interpreter()
    python_sum = sha256_of(python)
    bundle = make_bundle(["sleep", "100"])
    container_id = new_id("exe")
    ocirt("create", "--bundle", bundle, container_id)
    init = ocirt.state(container_id)["pid"]
    assert os.path.realpath("/proc/%d/exe" % init) == python
    probe = ocirt("exec", container_id, "sh", "-c", "; ".join([
        "echo ==read==; head -c 4 /proc/1/exe >/dev/null 2>&1 && echo READ || echo denied",
        "echo ==write==; (: >> /proc/1/exe) 2>/dev/null && echo OPENED-FOR-WRITE || echo denied",
        "echo ==readlink==; readlink /proc/1/exe || echo denied",
        "echo ==fd==; readlink /proc/1/fd/0 || echo denied",
        "echo ==environ==; cat /proc/1/environ >/dev/null 2>&1 && echo READ || echo denied",
        "echo ==pid==; echo $$"]), check=False)
    assert probe.returncode == 0, probe
    out = sections(probe.stdout)
    assert out["pid"].strip() != "1"
    for name in ("read", "write", "readlink", "fd", "environ"):
        assert out[name].strip().endswith("denied"), (name, probe.stdout)

    # From the host: uid 0 with only the container's capabilities (no CAP_SYS_PTRACE, no CAP_SYS_ADMIN,
    # which both override dumpability); the bounding set is dropped so that exec keeps no other.
    container_caps = "-all,+kill,+audit_write,+net_bind_service"
    reader = ["setpriv", "--bounding-set", container_caps, "--inh-caps", "-all", "--", "cat"]
    control = subprocess.Popen(["setpriv", "--bounding-set", "-all,+kill", "--inh-caps", "-all", "--", "sleep", "100"],
                               stdin=subprocess.DEVNULL)
    try:
        for dummy in range(500):
            if os.path.realpath("/proc/%d/exe" % control.pid) != os.path.realpath(shutil.which("setpriv")):
                break
            time.sleep(0.01)
        allowed = subprocess.run(reader + ["/proc/%d/environ" % control.pid], capture_output=True, check=False)
        refused = subprocess.run(reader + ["/proc/%d/environ" % init], capture_output=True, check=False)
    finally:
        control.kill()
        control.wait()
    assert allowed.returncode == 0, allowed  # the same reader, on a dumpable process of fewer capabilities
    assert refused.returncode != 0 and b"Permission denied" in refused.stderr, refused
    ocirt("delete", "--force", container_id)
    assert sha256_of(python) == python_sum


def same_file(first, second):
    a, b = os.stat(first), os.stat(second)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_writing_through_proc_1_exe_of_a_running_container_fails(ocirt, make_bundle):
    bundle = make_bundle(["sleep", "100"], config={"root": {"readonly": False}})
    image_busybox = in_root(bundle, "/bin/busybox")
    host = HostSnapshot("/bin/busybox", image_busybox)
    container_id = new_id("exe")
    ocirt("create", "--bundle", bundle, container_id)
    ocirt("start", container_id)
    init = ocirt.state(container_id)["pid"]
    for dummy in range(500):
        if same_file("/proc/%d/exe" % init, image_busybox):
            break
        time.sleep(0.01)
    assert same_file("/proc/%d/exe" % init, image_busybox)
    probe = ocirt("exec", container_id, "sh", "-c",
                  "(echo x > /proc/1/exe) 2>&1 && echo WROTE; (echo x >> /bin/busybox) 2>&1 && echo WROTE; true",
                  check=False)
    ocirt("delete", "--force", container_id)
    assert probe.returncode == 0, probe
    assert "WROTE" not in probe.stdout, probe.stdout
    assert probe.stdout.count("Text file busy") == 2, probe.stdout
    host.assert_untouched()


# The image's program: a script whose interpreter is /proc/self/exe, which the kernel resolves in
# the process that execs it, the runtime's interpreter (CVE-2019-5736). If the host's binary runs,
# it reports whether it holds a descriptor on it through a writable mount: enough to overwrite it
# once nothing executes it. (It opens for writing without writing or truncating: nothing changes.)
_SELF_EXE_SCRIPT = """#!/proc/self/exe
import errno, os
fd = os.open("/proc/self/exe", os.O_PATH)
st = os.fstat(fd)
readonly = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
try:
    os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY))
    opened = "opened"
except OSError as exc:
    opened = errno.errorcode.get(exc.errno, str(exc.errno))
print("SELF-EXE %d %d %s %s" % (st.st_dev, st.st_ino, "ro" if readonly else "rw", opened))
"""


def self_exe_bundle(make_bundle, args):
    """A bundle whose image has glibc and a Python library (the host's /usr, read-only) and /bin/evil."""
    bundle = make_bundle(args, config={"mounts": DEFAULT_MOUNTS + [
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}]})
    for name in ("lib", "lib64"):
        os.symlink("usr/" + name, in_root(bundle, "/" + name))
    write_file(in_root(bundle, "/bin/evil"), _SELF_EXE_SCRIPT, 0o755)
    return bundle


def assert_no_handle_on_the_host_interpreter(output):
    python = os.stat(host_interpreter())
    for line in output.splitlines():
        if line.startswith("SELF-EXE "):
            dev, ino, mode, opened = line.split()[1:]
            escaped = (int(dev), int(ino)) == (python.st_dev, python.st_ino) and mode == "rw"
            assert not escaped, ("the container's process ran the host's runtime interpreter %s and holds a "
                                 "descriptor on it through a writable host mount (open for writing: %s): "
                                 "it can overwrite it once no process executes it" % (host_interpreter(), opened))


@pytest.mark.parametrize("how", ["init", "exec"])
def test_shebang_naming_proc_self_exe_does_not_hand_out_the_runtime_binary(ocirt, make_bundle, how):
    python = host_interpreter()
    host = HostSnapshot(python)
    # Control: the image's own interpreter runs, so a missing SELF-EXE line below is the runtime's doing.
    control = ocirt.run(self_exe_bundle(make_bundle, [python, "-c", "print('image python runs')"]))
    assert control.stdout == "image python runs\n", control
    if how == "init":
        bundle = self_exe_bundle(make_bundle, ["/bin/evil"])
        output = ocirt.run(bundle).stdout
    else:
        bundle = self_exe_bundle(make_bundle, ["sleep", "100"])
        container_id = new_id("selfexe")
        ocirt("run", "--detach", "--bundle", bundle, container_id)
        result = ocirt("exec", container_id, "/bin/evil", check=False)
        ocirt("delete", "--force", container_id)
        output = result.stdout
    assert_no_handle_on_the_host_interpreter(output)
    host.assert_untouched()


# --------------------------------------------------------------------------
# 5. privileges


def test_exec_process_has_no_inheritable_or_ambient_capabilities(ocirt, make_bundle):
    bundle = make_bundle(["sleep", "100"])
    container_id = new_id("caps")
    ocirt("run", "--detach", "--bundle", bundle, container_id)
    result = ocirt("exec", container_id, "grep", "^Cap", "/proc/self/status", check=False)
    ocirt("delete", "--force", container_id)
    assert result.returncode == 0, result
    caps = dict((line.split(":")[0], int(line.split()[1], 16)) for line in result.stdout.splitlines())
    default = (1 << 29) | (1 << 5) | (1 << 10)
    assert caps == {"CapInh": 0, "CapAmb": 0, "CapPrm": default, "CapEff": default, "CapBnd": default}, caps


def euid_reporter_elf():
    """A static x86_64 ELF (138 bytes, no libc): exit(geteuid() & 0xff). 0 for root, 232 for uid 1000.

    busybox cannot serve: made setuid, it drops the privilege itself for applets such as id.
    """
    code = bytes.fromhex("b86b000000" + "0f05" + "89c7" + "b83c000000" + "0f05")  # geteuid; exit(eax)
    base = 0x400000
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 2, 0x3E, 1, base + 120, 64, 0, 0,
                         64, 56, 1, 0, 0, 0)
    size = 120 + len(code)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code


@pytest.mark.skipif(not X86_64, reason="the setuid probe is an x86_64 binary")
@pytest.mark.parametrize("how", ["init", "exec"])
@pytest.mark.parametrize("nnp, expected", [(True, "232"), (False, "0")])
def test_no_new_privileges_holds_across_a_setuid_root_binary(ocirt, make_bundle, nnp, expected, how):
    probe = "/bin/euid-suid; echo $?"
    config = {"process": {"noNewPrivileges": nnp, "user": {"uid": 1000, "gid": 1000}}}
    if how == "init":
        bundle = make_bundle(["sh", "-c", probe], config=config)
    else:
        bundle = make_bundle(["sleep", "100"], config=config)
    path = in_root(bundle, "/bin/euid-suid")
    with open(path, "wb") as handle:
        handle.write(euid_reporter_elf())
    os.chmod(path, 0o4755)
    assert os.stat(path).st_uid == 0
    if how == "init":
        out = run_ok(ocirt, bundle)
    else:
        container_id = new_id("nnp")
        ocirt("run", "--detach", "--bundle", bundle, container_id)
        result = ocirt("exec", container_id, "sh", "-c", probe, check=False)
        ocirt("delete", "--force", container_id)
        assert result.returncode == 0, result
        out = result.stdout
    # 232 is uid 1000 & 0xff: the setuid bit was ignored; 0: it made the process root.
    assert out.strip() == expected, out


USERNS = {"namespaces": DEFAULT_NAMESPACES + [{"type": "user"}],
          "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


def test_user_namespace_root_cannot_write_a_host_root_file_bound_read_write(userns_scratch, ocirt, make_bundle, scratch):
    host_owned = os.path.join(scratch, "host-owned.txt")
    mapped_owned = os.path.join(scratch, "mapped-owned.txt")
    host_dir_owned = os.path.join(scratch, "host-dir")
    write_file(host_owned, "root's\n", 0o644)
    write_file(mapped_owned, "mapped root's\n", 0o644)
    os.chown(mapped_owned, 100000, 100000)
    os.makedirs(host_dir_owned)
    os.chmod(host_dir_owned, 0o755)

    def bind(source, destination):
        return {"destination": destination, "type": "bind", "source": source, "options": ["bind", "rw"]}

    bundle = make_bundle(script(
        ("id", "id -u"),
        ("host-owned", "(echo pwned >> /mnt/host-owned.txt) 2>&1 || echo refused"),
        ("host-dir", "(touch /mnt/host-dir/new) 2>&1 || echo refused"),
        ("chmod", "chmod 666 /mnt/host-owned.txt 2>&1 || echo refused"),
        ("mapped-owned", "echo appended >> /mnt/mapped-owned.txt && echo wrote"),
    ), config={"linux": USERNS, "mounts": DEFAULT_MOUNTS + [
        bind(host_owned, "/mnt/host-owned.txt"), bind(mapped_owned, "/mnt/mapped-owned.txt"),
        bind(host_dir_owned, "/mnt/host-dir")]})
    # The mount points exist in the image: the container's root may not create them in a rootfs host root owns.
    write_file(in_root(bundle, "/mnt/host-owned.txt"), "")
    write_file(in_root(bundle, "/mnt/mapped-owned.txt"), "")
    os.makedirs(in_root(bundle, "/mnt/host-dir"))
    host = HostSnapshot(host_owned, host_dir_owned)

    out = sections(run_ok(ocirt, bundle))
    assert out["id"] == "0\n"
    for name in ("host-owned", "host-dir", "chmod"):
        assert "refused" in out[name] and ("Permission denied" in out[name] or "Operation not permitted" in out[name]), \
            (name, out)
    assert out["mapped-owned"] == "wrote\n", out
    host.assert_untouched()
    assert read_text(mapped_owned) == "mapped root's\nappended\n"


# --------------------------------------------------------------------------
# 6. configs the runtime must refuse (before anything exists) or run correctly


def write_raw_config(bundle, data):
    with open(os.path.join(bundle, "config.json"), "wb") as handle:
        handle.write(data)


def config_bytes(bundle):
    with open(os.path.join(bundle, "config.json"), "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("breaker, needles", [
    pytest.param(lambda raw: raw.replace(b'"ocirt"', b'"oc\xffirt\xc3"'), ["config.json"], id="non-utf8-bytes"),
    pytest.param(lambda raw: raw[:len(raw) // 2], ["config.json"], id="truncated"),
    pytest.param(lambda raw: raw[:-1].rstrip().rstrip(b"}") + b',"mounts": [}', ["config.json"],
                 id="unbalanced"),
    pytest.param(lambda raw: b'{"a":' * 100000 + b'1' + b'}' * 100000, ["config.json"], id="deep-objects"),
    pytest.param(lambda raw: b"\xef\xbb\xbf" + raw, ["config.json"], id="utf8-bom"),
])
def test_malformed_config_bytes_are_refused_cleanly(ocirt, make_bundle, breaker, needles):
    bundle = make_bundle(["true"])
    write_raw_config(bundle, breaker(config_bytes(bundle)))
    container_id = new_id("raw")
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert_failed_cleanly(ocirt, result, container_id, *needles)


def _deep_unknown_field(config, depth=900):
    value = 1
    for dummy in range(depth):
        value = {"a": value}
    config["x-deep"] = value


@pytest.mark.parametrize("change, needles", [
    pytest.param(lambda c: c["mounts"].append({"destination": "/mnt/a\u0000b", "type": "tmpfs", "source": "tmpfs"}),
                 ["mounts[%d].destination" % len(DEFAULT_MOUNTS), "NUL"], id="nul-in-mount-destination"),
    pytest.param(lambda c: c["process"]["args"].append("a\u0000b"), ["process.args[1]", "NUL"], id="nul-in-args"),
    pytest.param(lambda c: c["process"]["env"].append("A=\u0000"), ["process.env[2]", "NUL"], id="nul-in-env"),
    pytest.param(lambda c: c["linux"]["maskedPaths"].append("/etc/\u0000"), ["linux.maskedPaths", "NUL"],
                 id="nul-in-masked-path"),
    pytest.param(lambda c: c["process"]["user"].update(uid=2 ** 32), ["process.user.uid"], id="uid-2**32"),
    pytest.param(lambda c: c["process"]["user"].update(gid=2 ** 32), ["process.user.gid"], id="gid-2**32"),
    pytest.param(lambda c: c["process"]["user"].update(uid=-1), ["process.user.uid"], id="uid-negative"),
    pytest.param(lambda c: c["process"]["user"].update(additionalGids=[2 ** 32]),
                 ["process.user.additionalGids[0]"], id="additional-gid-2**32"),
    pytest.param(lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 1024}]),
                 ["process.rlimits[0].soft"], id="rlimit-negative-soft"),
    pytest.param(lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1, "hard": -5}]),
                 ["process.rlimits[0].hard"], id="rlimit-negative-hard"),
    pytest.param(lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_CORE", "soft": 2 ** 65, "hard": 2 ** 65}]),
                 ["process.rlimits[0]"], id="rlimit-above-uint64"),
    pytest.param(lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": -1, "size": 1}]),
                 ["linux.uidMappings"], id="negative-host-id"),
    pytest.param(lambda c: c["linux"].update(devices=[{"path": "dev/rel", "type": "c", "major": 1, "minor": 3}]),
                 ["linux.devices[0].path"], id="relative-device-path"),
    pytest.param(lambda c: c["process"].update(cwd="relative"), ["process.cwd"], id="relative-cwd"),
])
def test_bad_config_values_are_refused_before_anything_exists(ocirt, make_bundle, change, needles):
    bundle = make_bundle(["true"])
    raw = json.loads(config_bytes(bundle))
    change(raw)
    write_raw_config(bundle, json.dumps(raw).encode())
    container_id = new_id("bad")
    host = HostSnapshot(bundle)
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert_failed_cleanly(ocirt, result, container_id, *needles)
    host.assert_untouched()  # (mounts under the bundle included; others on the host are not this test's)


@pytest.mark.parametrize("how", ["init", "exec"])
@pytest.mark.parametrize("field", ["uid", "gid"])
def test_uid_or_gid_4294967295_never_leaves_the_process_root(ocirt, make_bundle, field, how):
    """(uid_t)-1 means "unchanged" to setresuid/setresgid: accepting it would keep the process root."""
    user = {"uid": 1000, "gid": 1000}
    user[field] = 2 ** 32 - 1
    container_id = new_id("uidmax")
    if how == "init":
        bundle = make_bundle(["sh", "-c", "id -u; id -g"], config={"process": {"user": user}})
        result = ocirt.run(bundle, container_id)
        if result.returncode != 0:
            assert_failed_cleanly(ocirt, result, container_id, "process.user." + field)
            return
    else:
        ocirt("run", "--detach", "--bundle", make_bundle(["sleep", "100"]), container_id)
        result = ocirt("exec", "--user", "%d:%d" % (user["uid"], user["gid"]), container_id, "sh", "-c", "id -u; id -g",
                       check=False)
        ocirt("delete", "--force", container_id)
        if result.returncode != 0:
            assert "Traceback" not in result.stderr and "process.user." + field in result.stderr, result
            return
    uid, gid = result.stdout.split()
    assert (int(uid), int(gid)) == (user["uid"], user["gid"]), "asked for %s, runs as uid %s gid %s" % (user, uid, gid)


def test_rlimit_infinity_means_unlimited(ocirt, make_bundle):
    """The spec's rlimits are uint64: 2**64-1 is RLIM_INFINITY ("unlimited"), as runc takes it."""
    bundle = make_bundle(["sh", "-c", "ulimit -c; ulimit -Hc"], config={"process": {"rlimits": [
        {"type": "RLIMIT_CORE", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1}]}})
    container_id = new_id("rlim")
    result = ocirt.run(bundle, container_id)
    if result.returncode != 0:
        # Refusing it would be a clean failure naming the field; anything else is a bug.
        assert_failed_cleanly(ocirt, result, container_id, "process.rlimits[0]")
        return
    assert result.stdout.split() == ["unlimited", "unlimited"], result.stdout


def test_deeply_nested_unknown_field_is_ignored(ocirt, make_bundle):
    bundle = make_bundle(["echo", "ran"])
    raw = json.loads(config_bytes(bundle))
    _deep_unknown_field(raw)
    write_raw_config(bundle, json.dumps(raw).encode())
    container_id = new_id("deep")
    result = ocirt.run(bundle, container_id)
    if result.returncode != 0:
        assert_failed_cleanly(ocirt, result, container_id, "config.json")
        return
    assert result.stdout == "ran\n"


def test_a_long_argument_runs_and_a_10mb_one_fails_cleanly(ocirt, make_bundle):
    long_arg = "y" * 100000
    bundle = make_bundle(["sh", "-c", 'echo ${#1}', "sh", long_arg])
    assert run_ok(ocirt, bundle) == "100000\n"

    huge = "z" * (10 << 20)
    bundle = make_bundle(["echo", huge])
    container_id = new_id("huge")
    result = ocirt.run(bundle, container_id)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode != 0
    assert "Argument list too long" in result.stderr, result.stderr[-2000:]
    assert huge not in result.stderr  # the error names the problem, not 10 MB of argument
    assert container_id not in ocirt.ids()


def set_field(config, dotted, value):
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


@pytest.mark.parametrize("field", ["process.args", "process.env", "process.cwd", "root.path", "hostname",
                                   "mounts.destination"])
def test_lone_surrogate_in_a_string_fails_cleanly_naming_the_field(ocirt, make_bundle, field):
    """JSON may escape a lone UTF-16 surrogate (\\ud800); no file name, argument or hostname can hold it."""
    bundle = make_bundle(["true"])
    raw = json.loads(config_bytes(bundle))
    bad = "a\ud800b"
    if field == "process.args":
        raw["process"]["args"] = ["echo", bad]
    elif field == "process.env":
        raw["process"]["env"].append("BAD=" + bad)
    elif field == "process.cwd":
        raw["process"]["cwd"] = "/" + bad
    elif field == "mounts.destination":
        field = "mounts[%d].destination" % len(raw["mounts"])
        raw["mounts"].append({"destination": "/" + bad, "type": "tmpfs", "source": "tmpfs"})
    else:
        set_field(raw, field, bad)
    write_raw_config(bundle, json.dumps(raw).encode())
    container_id = new_id("surrogate")
    result = ocirt.run(bundle, container_id)
    assert_failed_cleanly(ocirt, result, container_id, field)


def test_surrogate_escaped_bytes_in_args_reach_the_process(ocirt, make_bundle):
    """\\udcff is how Python carries the byte 0xff of a non-UTF-8 name: it goes through as that byte."""
    bundle = make_bundle(["true"])
    raw = json.loads(config_bytes(bundle))
    raw["process"]["args"] = ["echo", "a\udcffb"]
    write_raw_config(bundle, json.dumps(raw).encode())
    result = ocirt.run(bundle, errors="surrogateescape")
    assert result.returncode == 0, result
    assert result.stdout == "a\udcffb\n", ascii(result.stdout)


@pytest.mark.parametrize("field", ["linux", "hooks", "process.user", "process.capabilities", "process.rlimits",
                                   "mounts", "annotations", "linux.resources", "linux.maskedPaths", "root.readonly"])
def test_optional_field_set_to_null_is_taken_as_absent(ocirt, make_bundle, field):
    """JSON null for an optional field: absent, as runc's decoder takes it (or refused cleanly)."""
    bundle = make_bundle(["echo", "ran"])
    raw = json.loads(config_bytes(bundle))
    if field == "linux":
        raw["mounts"] = []  # without linux.namespaces there is no mount namespace for them
        raw["root"]["readonly"] = False
    set_field(raw, field, None)
    write_raw_config(bundle, json.dumps(raw).encode())
    container_id = new_id("null")
    result = ocirt.run(bundle, container_id)
    if result.returncode != 0:
        assert_failed_cleanly(ocirt, result, container_id, field.split(".")[0])
        return
    assert result.stdout == "ran\n"
