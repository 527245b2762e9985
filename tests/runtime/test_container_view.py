"""What a process sees from inside a real container: the config made visible.

Each test builds a busybox bundle (fixture `make_bundle`), runs a real
container through the installed `ocirt` command (fixture `ocirt`, whose
state root is force-cleaned and audited for leftover mounts, cgroups,
processes and state after every test), and checks the container's own view: hostname,
mount table, /dev, masked and read-only paths, process settings,
capabilities, descriptors, sysctls, mounts (including symlink escapes) and
namespaces. Expected values follow runc and the OCI runtime specification.
"""
import os
import socket
import stat
import subprocess

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
from busybox_bundle import deep_merge  # tools/, on the path through conftest
from helpers import (
    assert_create_fails, edit_config, host_mount_points, new_id, ocirt_with_fds, parse_mountinfo, read_text,
    rootfs_of, run_ok, script, sections, wait_stopped, write_file)


DEFAULT_MOUNTS = default_config()["mounts"]
DEFAULT_NAMESPACES = default_config()["linux"]["namespaces"]
DEFAULT_MASKED = default_config()["linux"]["maskedPaths"]
DEFAULT_READONLY = default_config()["linux"]["readonlyPaths"]


# --------------------------------------------------------------------------
# helpers


def namespaces_without(kind):
    """The default config's namespaces less KIND (config lists replace, not merge)."""
    return [ns for ns in DEFAULT_NAMESPACES if ns["type"] != kind]


def mount_at(mounts, point):
    """The one mount at POINT (the top one if stacked)."""
    found = [m for m in mounts if m["point"] == point]
    assert found, "no mount at %s in the container; points: %s" % (point, [m["point"] for m in mounts])
    return found[-1]


def status_fields(text):
    """{'CapEff': '...', ...} from /proc/<pid>/status text."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def tree_listing(path):
    """Every entry under PATH with its type, size and mode: compared before/after."""
    listing = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            listing.append((os.path.relpath(full, path), stat.S_IFMT(st.st_mode), st.st_size,
                            stat.S_IMODE(st.st_mode), st.st_uid))
    return sorted(listing)


# --------------------------------------------------------------------------
# 1. hostname and domainname


def test_hostname_and_domainname_come_from_the_config(ocirt, make_bundle):
    host_name = socket.gethostname()
    host_domain = read_text("/proc/sys/kernel/domainname")
    bundle = make_bundle(script(("hostname", "hostname"), ("uname", "uname -n"),
                                ("domain", "cat /proc/sys/kernel/domainname")),
                         config={"hostname": "view-host", "domainname": "view.example"})
    out = sections(run_ok(ocirt, bundle))
    assert out["hostname"] == "view-host\n"
    assert out["uname"] == "view-host\n"
    assert out["domain"] == "view.example\n"
    assert socket.gethostname() == host_name
    assert read_text("/proc/sys/kernel/domainname") == host_domain


def test_hostname_needs_a_new_uts_namespace(ocirt, make_bundle):
    bundle = make_bundle(["hostname"], config={"hostname": "no-uts",
                                               "linux": {"namespaces": namespaces_without("uts")}})
    host_name = socket.gethostname()
    assert_create_fails(ocirt, bundle, "hostname")
    assert socket.gethostname() == host_name


# --------------------------------------------------------------------------
# 2. the mount table


def _expected_cgroup_dirs():
    """Names of the per-hierarchy directories a v1/hybrid cgroup mount must show."""
    names = set()
    has_v2 = False
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                has_v2 = True
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _hierarchy_id, controllers, _path = line.rstrip("\n").split(":", 2)
            if controllers:
                names.add(",".join(c[len("name="):] if c.startswith("name=") else c
                                   for c in controllers.split(",")))
            elif has_v2:
                names.add("unified")
    return names


def _is_v1_or_hybrid():
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[line.split().index("-") + 1] == "cgroup" for line in handle)


def test_mountinfo_shows_the_rootfs_and_the_default_mounts_only(ocirt, make_bundle):
    bundle = make_bundle(script(("mountinfo", "cat /proc/self/mountinfo"),
                                ("root", "stat -c '%d %i' /"),
                                ("cgroup", "cat /proc/self/cgroup"),
                                ("ptmx", "stat -c '%a' /dev/pts/ptmx")))
    out = sections(run_ok(ocirt, bundle))
    mounts = parse_mountinfo(out["mountinfo"])
    points = [m["point"] for m in mounts]

    # The root is the bundle's rootfs, read-only (root.readonly is true by default).
    root = mount_at(mounts, "/")
    rootfs = os.path.realpath(rootfs_of(bundle))
    host_root = os.stat(rootfs)
    assert out["root"].split() == [str(host_root.st_dev), str(host_root.st_ino)]
    assert rootfs.endswith(root["root"]), (root["root"], rootfs)
    assert root["root"].endswith("/rootfs")
    assert "ro" in root["opts"]

    proc = mount_at(mounts, "/proc")
    assert proc["fstype"] == "proc"

    dev = mount_at(mounts, "/dev")
    assert dev["fstype"] == "tmpfs"
    assert "nosuid" in dev["opts"]
    assert {"mode=755", "size=65536k"} <= dev["super"]

    pts = mount_at(mounts, "/dev/pts")
    assert pts["fstype"] == "devpts"
    assert {"nosuid", "noexec"} <= pts["opts"]
    assert {"gid=5", "mode=620", "ptmxmode=666"} <= pts["super"]
    assert out["ptmx"] == "666\n"

    shm = mount_at(mounts, "/dev/shm")
    assert shm["fstype"] == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= shm["opts"]
    assert "size=65536k" in shm["super"]

    mqueue = mount_at(mounts, "/dev/mqueue")
    assert mqueue["fstype"] == "mqueue"
    assert {"nosuid", "nodev", "noexec"} <= mqueue["opts"]

    sysfs = mount_at(mounts, "/sys")
    assert sysfs["fstype"] == "sysfs"
    assert {"ro", "nosuid", "nodev", "noexec"} <= sysfs["opts"]

    cgroup = mount_at(mounts, "/sys/fs/cgroup")
    assert {"ro", "nosuid", "nodev", "noexec"} <= cgroup["opts"]
    cgroup_points = set(p for p in points if p.startswith("/sys/fs/cgroup/"))
    if _is_v1_or_hybrid():
        assert cgroup["fstype"] == "tmpfs"
        expected = set("/sys/fs/cgroup/" + name for name in _expected_cgroup_dirs())
        assert cgroup_points == expected
        own = {}
        for line in out["cgroup"].splitlines():
            _hierarchy_id, controllers, path = line.split(":", 2)
            own[controllers] = path
        for point in cgroup_points:
            bind = mount_at(mounts, point)
            assert bind["fstype"] in ("cgroup", "cgroup2")
            assert {"ro", "nosuid", "nodev", "noexec"} <= bind["opts"], point
        # Each controller shows the container's own cgroup, not the host's whole tree.
        for controllers, path in own.items():
            if not controllers:
                continue
            name = ",".join(c[len("name="):] if c.startswith("name=") else c
                            for c in controllers.split(","))
            assert mount_at(mounts, "/sys/fs/cgroup/" + name)["root"] == path, name

    # No mount point of the host outside the container shows through.
    expected_points = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                       "/sys/fs/cgroup"} | cgroup_points
    expected_points |= set(p for p in DEFAULT_MASKED + DEFAULT_READONLY if os.path.exists(p))
    assert set(points) == expected_points
    assert len(points) == len(set(points)), "a mount point appears twice: %s" % points
    for point in points:
        assert not point.startswith(("/work", "/run", "/tmp", "/home", "/var")), point


# --------------------------------------------------------------------------
# 3. /dev


DEFAULT_DEVICES = {
    "/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
    "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0),
}


def _stat_lines(text):
    """{path: (type, major, minor, mode, uid, gid)} from `stat -c '%n|%F|%t|%T|%a|%u|%g'`."""
    found = {}
    for line in text.splitlines():
        name, kind, major, minor, mode, uid, gid = line.split("|")
        found[name] = (kind, int(major, 16), int(minor, 16), mode, int(uid), int(gid))
    return found


def test_default_devices_and_symlinks(ocirt, make_bundle):
    names = " ".join(sorted(DEFAULT_DEVICES))
    bundle = make_bundle(script(
        ("stat", "stat -c '%%n|%%F|%%t|%%T|%%a|%%u|%%g' %s" % names),
        ("links", "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done"),
        ("null", "echo discard > /dev/null && echo null-ok"),
        ("zero", "head -c 4 /dev/zero | od -An -tx1"),
        ("full", "echo x > /dev/full 2>/dev/null || echo full-refused"),
        ("urandom", "head -c 16 /dev/urandom | wc -c"),
    ))
    out = sections(run_ok(ocirt, bundle))
    devices = _stat_lines(out["stat"])
    assert set(devices) == set(DEFAULT_DEVICES)
    for path, (major, minor) in DEFAULT_DEVICES.items():
        assert devices[path][:4] == ("character special file", major, minor, "666"), path
    links = dict(line.split(" ", 1) for line in out["links"].splitlines())
    assert links == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                     "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
    assert out["null"] == "null-ok\n"
    assert out["zero"].split() == ["00", "00", "00", "00"]
    assert out["full"] == "full-refused\n"
    assert out["urandom"].strip() == "16"


def test_linux_devices_are_created_with_mode_and_owner(ocirt, make_bundle):
    config_devices = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000, "gid": 1000},
        {"path": "/dev/myzero", "type": "u", "major": 1, "minor": 5, "fileMode": 0o640, "uid": 0, "gid": 5},
        {"path": "/dev/myloop", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660, "uid": 0, "gid": 0},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o620, "uid": 1000, "gid": 5},
        {"path": "/dev/sub/dir/deep", "type": "c", "major": 1, "minor": 9},
    ]
    names = " ".join(d["path"] for d in config_devices)
    bundle = make_bundle(script(("stat", "stat -c '%%n|%%F|%%t|%%T|%%a|%%u|%%g' %s" % names)),
                         config={"linux": {"devices": config_devices}})
    devices = _stat_lines(sections(run_ok(ocirt, bundle))["stat"])
    assert devices["/dev/mynull"] == ("character special file", 1, 3, "600", 1000, 1000)
    assert devices["/dev/myzero"] == ("character special file", 1, 5, "640", 0, 5)
    assert devices["/dev/myloop"] == ("block special file", 7, 0, "660", 0, 0)
    assert devices["/dev/myfifo"][0] == "fifo"
    assert devices["/dev/myfifo"][3:] == ("620", 1000, 5)
    # No fileMode, uid or gid: 0666 root:root, as runc does.
    assert devices["/dev/sub/dir/deep"] == ("character special file", 1, 9, "666", 0, 0)


# --------------------------------------------------------------------------
# 4. masked paths, read-only paths, root.readonly


def test_masked_paths_hide_files_and_directories(ocirt, make_bundle):
    masked = DEFAULT_MASKED + ["/proc/does-not-exist", "/no/such/dir"]
    bundle = make_bundle(script(
        ("timer_list", "wc -c < /proc/timer_list"),
        ("keys", "wc -c < /proc/keys"),
        ("acpi", "ls -A /proc/acpi | wc -l"),
        ("firmware", "ls -A /sys/firmware | wc -l"),
        ("nosuch", "ls -d /no 2>&1 || echo absent"),
    ), config={"linux": {"maskedPaths": masked}})
    out = sections(run_ok(ocirt, bundle))
    assert out["timer_list"].strip() == "0"
    assert out["keys"].strip() == "0"
    assert out["acpi"].strip() == "0"
    assert out["firmware"].strip() == "0"
    assert out["nosuch"].strip().endswith("absent")
    # A masked path that does not exist is skipped, not created.
    assert not os.path.lexists(os.path.join(rootfs_of(bundle), "no"))


def test_masked_paths_have_content_on_the_host():
    """The masking test above means something only if the host's files are not empty."""
    assert os.listdir("/sys/firmware")
    with open("/proc/timer_list") as handle:
        assert handle.read(1)


def test_readonly_paths_refuse_writes(ocirt, make_bundle):
    bundle = make_bundle(script(
        ("write", "(echo 99 > /proc/sys/net/ipv4/ip_default_ttl) 2>&1 || echo refused"),
        ("value", "cat /proc/sys/net/ipv4/ip_default_ttl"),
        ("opts", "grep ' /proc/sys ' /proc/self/mountinfo"),
    ), config={"linux": {"readonlyPaths": DEFAULT_READONLY + ["/proc/no-such-entry"]}})
    out = sections(run_ok(ocirt, bundle))
    assert "Read-only file system" in out["write"]
    assert out["write"].strip().endswith("refused")
    assert out["value"] != "99\n"
    assert "ro" in out["opts"].split()[5].split(",")
    # A read-only path that does not exist is skipped, not created.
    assert "/proc/no-such-entry" not in out["opts"]


def test_writes_under_proc_sys_work_without_readonly_paths(ocirt, make_bundle):
    """The control for the test above: the same write succeeds when /proc/sys is not listed,
    and changes only the container's network namespace."""
    bundle = make_bundle(script(
        ("write", "(echo 99 > /proc/sys/net/ipv4/ip_default_ttl) 2>&1 || echo refused"),
        ("value", "cat /proc/sys/net/ipv4/ip_default_ttl"),
    ), config={"linux": {"readonlyPaths": []}})
    host_value = read_text("/proc/sys/net/ipv4/ip_default_ttl")
    assert host_value != "99\n"
    out = sections(run_ok(ocirt, bundle))
    assert out["write"] == ""
    assert out["value"] == "99\n"
    assert read_text("/proc/sys/net/ipv4/ip_default_ttl") == host_value


def test_readonly_root_refuses_writes(ocirt, make_bundle):
    bundle = make_bundle(["touch", "/x"])
    result = ocirt.run(bundle)
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert not os.path.lexists(os.path.join(rootfs_of(bundle), "x"))


def test_writable_root_accepts_writes(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "touch /x && echo made"], config={"root": {"readonly": False}})
    assert run_ok(ocirt, bundle) == "made\n"
    assert os.path.isfile(os.path.join(rootfs_of(bundle), "x"))


# --------------------------------------------------------------------------
# 5. process settings


def test_user_group_and_additional_groups(ocirt, make_bundle):
    bundle = make_bundle(script(("id", "id"), ("u", "id -u"), ("g", "id -g"), ("G", "id -G"),
                                ("status", "grep -E '^(Uid|Gid|Groups):' /proc/self/status")),
                         config={"process": {"user": {"uid": 1000, "gid": 1000,
                                                      "additionalGids": [5, 65534]}}})
    out = sections(run_ok(ocirt, bundle))
    assert out["u"] == "1000\n"
    assert out["g"] == "1000\n"
    assert set(out["G"].split()) == {"1000", "5", "65534"}
    assert out["id"].startswith("uid=1000(app) gid=1000(app)")
    status = status_fields(out["status"])
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert sorted(status["Groups"].split()) == ["5", "65534"]


def test_root_user_has_no_supplementary_groups(ocirt, make_bundle):
    bundle = make_bundle(["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"])
    status = status_fields(run_ok(ocirt, bundle))
    assert status["Uid"].split() == ["0"] * 4
    assert status["Gid"].split() == ["0"] * 4
    assert status["Groups"] == ""


def test_umask(ocirt, make_bundle):
    bundle = make_bundle(script(("umask", "umask"),
                                ("file", "touch /dev/shm/f && stat -c %a /dev/shm/f")),
                         config={"process": {"user": {"uid": 0, "gid": 0, "umask": 0o077}}})
    out = sections(run_ok(ocirt, bundle))
    assert out["umask"] == "0077\n"
    assert out["file"] == "600\n"


def test_default_umask_is_0022(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "umask"])
    assert run_ok(ocirt, bundle) == "0022\n"


def test_cwd_that_exists_in_the_image(ocirt, make_bundle):
    bundle = make_bundle(["pwd"], config={"process": {"cwd": "/tmp"}})
    assert run_ok(ocirt, bundle) == "/tmp\n"


def test_cwd_that_does_not_exist_fails_create(ocirt, make_bundle):
    bundle = make_bundle(["pwd"], config={"process": {"cwd": "/nonexistent/deeper"}})
    assert_create_fails(ocirt, bundle, "process.cwd")
    assert not os.path.lexists(os.path.join(rootfs_of(bundle), "nonexistent"))


def test_env_and_path_lookup(ocirt, make_bundle):
    bundle = make_bundle(["mytool"], config={"process": {"env": [
        "PATH=/opt/first:/opt/tools:/bin", "GREETING=hello world", "EMPTY="]}})
    rootfs = rootfs_of(bundle)
    write_file(os.path.join(rootfs, "opt/tools/mytool"),
               '#!/bin/sh\necho "tool|$GREETING|${EMPTY-unset}|$PATH"\nenv | sort\n', 0o755)
    # Not executable: the search goes on past it.
    write_file(os.path.join(rootfs, "opt/first/mytool"), "#!/bin/sh\necho wrong\n", 0o644)
    # Later in $PATH: never reached.
    write_file(os.path.join(rootfs, "bin/mytool"), "#!/bin/sh\necho decoy\n", 0o755)
    out = run_ok(ocirt, bundle).splitlines()
    assert out[0] == "tool|hello world||/opt/first:/opt/tools:/bin"
    assert "GREETING=hello world" in out
    assert "EMPTY=" in out
    assert not any(line.startswith("TERM=") for line in out), "env is the config's, not the default's"


def test_executable_missing_from_path_fails_create(ocirt, make_bundle):
    bundle = make_bundle(["no-such-tool"])
    assert_create_fails(ocirt, bundle, "process.args[0]", "no-such-tool")


def test_rlimits(ocirt, make_bundle):
    bundle = make_bundle(script(("soft", "ulimit -n"), ("hard", "ulimit -Hn"),
                                ("limits", "grep 'Max open files' /proc/self/limits")),
                         config={"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]}})
    out = sections(run_ok(ocirt, bundle))
    assert out["soft"] == "512\n"
    assert out["hard"] == "1024\n"
    assert out["limits"].split()[3:5] == ["512", "1024"]


@pytest.mark.parametrize("nnp, expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(ocirt, make_bundle, nnp, expected):
    bundle = make_bundle(["grep", "^NoNewPrivs:", "/proc/self/status"],
                         config={"process": {"noNewPrivileges": nnp}})
    assert status_fields(run_ok(ocirt, bundle))["NoNewPrivs"] == expected


# --------------------------------------------------------------------------
# 6. capabilities


def _caps(ocirt, bundle):
    status = status_fields(run_ok(ocirt, bundle))
    return dict((name, int(status[name], 16))
                for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))


CAP_STATUS = ["grep", "^Cap", "/proc/self/status"]
NET_BIND_SERVICE = 1 << 10


def test_default_capabilities(ocirt, make_bundle):
    caps = _caps(ocirt, make_bundle(CAP_STATUS))
    default = (1 << 29) | (1 << 5) | (1 << 10)  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert default == 0x20000420
    assert caps == {"CapBnd": default, "CapEff": default, "CapPrm": default, "CapInh": 0, "CapAmb": 0}


def test_ambient_capability_for_root(ocirt, make_bundle):
    sets = dict((name, ["CAP_NET_BIND_SERVICE"])
                for name in ("bounding", "effective", "permitted", "inheritable", "ambient"))
    caps = _caps(ocirt, make_bundle(CAP_STATUS, config={"process": {"capabilities": sets}}))
    assert caps == dict((name, NET_BIND_SERVICE) for name in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"))


def test_non_root_user_keeps_requested_capabilities(ocirt, make_bundle):
    sets = dict((name, ["CAP_NET_BIND_SERVICE", "CAP_KILL"])
                for name in ("bounding", "effective", "permitted", "inheritable", "ambient"))
    config = {"process": {"user": {"uid": 1000, "gid": 1000}, "capabilities": sets}}
    caps = _caps(ocirt, make_bundle(CAP_STATUS, config=config))
    wanted = NET_BIND_SERVICE | (1 << 5)
    assert caps["CapEff"] == wanted
    assert caps["CapPrm"] == wanted
    assert caps["CapAmb"] == wanted
    assert caps["CapBnd"] == wanted


def test_non_root_user_without_ambient_loses_capabilities_at_exec(ocirt, make_bundle):
    """Kernel semantics runc shares: a non-root exec keeps only ambient capabilities."""
    sets = dict((name, ["CAP_NET_BIND_SERVICE"]) for name in ("bounding", "effective", "permitted"))
    config = {"process": {"user": {"uid": 1000, "gid": 1000}, "capabilities": sets}}
    caps = _caps(ocirt, make_bundle(CAP_STATUS, config=config))
    assert caps == {"CapBnd": NET_BIND_SERVICE, "CapEff": 0, "CapPrm": 0, "CapInh": 0, "CapAmb": 0}


# --------------------------------------------------------------------------
# 7. descriptors


LIST_FDS = ["sh", "-c", "ls /proc/$$/fd; true"]


def test_only_stdio_reaches_the_container(ocirt, make_bundle, scratch):
    bundle = make_bundle(LIST_FDS)
    leak = os.open(os.path.join(scratch, "leak"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        out = run_ok(ocirt, bundle, pass_fds=(leak,))
    finally:
        os.close(leak)
    assert sorted(out.split(), key=int) == ["0", "1", "2"]


def test_preserve_fds_passes_extra_descriptors(ocirt, make_bundle, scratch):
    # The listing comes first: a redirection makes the shell keep a saved copy of fd 1.
    bundle = make_bundle(["sh", "-c", "ls /proc/$$/fd; echo hi >&3; echo there >&4; true"])
    paths = [os.path.join(scratch, name) for name in ("fd3.txt", "fd4.txt", "fd5.txt")]
    fds = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for path in paths]
    container_id = new_id("fds")
    log_path = os.path.join(scratch, "container.log")
    try:
        with open(log_path, "w") as log:
            # Three extra descriptors (3, 4, 5) reach `ocirt create`; it preserves two.
            # The container inherits create's stdout: a file, not a pipe create's caller waits on.
            created = ocirt_with_fds(ocirt, fds, "create", "--preserve-fds", "2", "--bundle", bundle,
                                     container_id, stdout=log, stderr=log)
    finally:
        for fd in fds:
            os.close(fd)
    assert created.returncode == 0, read_text(log_path)
    ocirt("start", container_id)
    wait_stopped(ocirt, container_id)
    ocirt("delete", container_id)
    assert sorted(read_text(log_path).split(), key=int) == ["0", "1", "2", "3", "4"]
    assert read_text(paths[0]) == "hi\n"
    assert read_text(paths[1]) == "there\n"
    assert read_text(paths[2]) == ""


# --------------------------------------------------------------------------
# 8. sysctl and oomScoreAdj


def test_network_sysctl_is_set_inside_only(ocirt, make_bundle):
    host_value = read_text("/proc/sys/net/ipv4/ip_forward")
    wanted = "0" if host_value.strip() == "1" else "1"
    bundle = make_bundle(["cat", "/proc/sys/net/ipv4/ip_forward"],
                         config={"linux": {"sysctl": {"net.ipv4.ip_forward": wanted}}})
    assert run_ok(ocirt, bundle) == wanted + "\n"
    assert read_text("/proc/sys/net/ipv4/ip_forward") == host_value


def test_ipc_sysctl_is_set_inside_only(ocirt, make_bundle):
    host_value = read_text("/proc/sys/kernel/shmmax")
    wanted = "68719476736" if host_value.strip() != "68719476736" else "34359738368"
    bundle = make_bundle(["cat", "/proc/sys/kernel/shmmax"],
                         config={"linux": {"sysctl": {"kernel.shmmax": wanted}}})
    assert run_ok(ocirt, bundle) == wanted + "\n"
    assert read_text("/proc/sys/kernel/shmmax") == host_value


def test_non_namespaced_sysctl_is_refused(ocirt, make_bundle):
    host_value = read_text("/proc/sys/kernel/panic")
    bundle = make_bundle(["true"], config={"linux": {"sysctl": {"kernel.panic": "17"}}})
    assert_create_fails(ocirt, bundle, "linux.sysctl.kernel.panic")
    assert read_text("/proc/sys/kernel/panic") == host_value


def test_network_sysctl_without_network_namespace_is_refused(ocirt, make_bundle):
    host_value = read_text("/proc/sys/net/ipv4/ip_forward")
    bundle = make_bundle(["true"], config={"linux": {"sysctl": {"net.ipv4.ip_forward": "1"},
                                                     "namespaces": namespaces_without("network")}})
    assert_create_fails(ocirt, bundle, "linux.sysctl.net.ipv4.ip_forward")
    assert read_text("/proc/sys/net/ipv4/ip_forward") == host_value


def test_oom_score_adj(ocirt, make_bundle):
    host_value = read_text("/proc/self/oom_score_adj")
    bundle = make_bundle(["cat", "/proc/self/oom_score_adj"], config={"process": {"oomScoreAdj": 500}})
    assert run_ok(ocirt, bundle) == "500\n"
    assert read_text("/proc/self/oom_score_adj") == host_value


# --------------------------------------------------------------------------
# 9. mounts


def _with_mounts(*extra):
    return {"mounts": DEFAULT_MOUNTS + list(extra)}


def test_bind_mount_of_a_host_directory_read_write(ocirt, make_bundle, scratch):
    hostdir = os.path.join(scratch, "hostdir")
    write_file(os.path.join(hostdir, "from-host.txt"), "host data\n")
    bundle = make_bundle(script(("read", "cat /mnt/rw/from-host.txt"),
                                ("write", "echo container data > /mnt/rw/from-container.txt && echo wrote")),
                         config=_with_mounts({"destination": "/mnt/rw", "type": "bind", "source": hostdir,
                                              "options": ["rbind", "rw"]}))
    out = sections(run_ok(ocirt, bundle))
    assert out["read"] == "host data\n"
    assert out["write"] == "wrote\n"
    assert read_text(os.path.join(hostdir, "from-container.txt")) == "container data\n"


def test_bind_mount_of_a_host_directory_read_only(ocirt, make_bundle, scratch):
    hostdir = os.path.join(scratch, "hostdir")
    write_file(os.path.join(hostdir, "from-host.txt"), "host data\n")
    before = tree_listing(hostdir)
    bundle = make_bundle(script(("read", "cat /mnt/ro/from-host.txt"),
                                ("write", "(echo no > /mnt/ro/new.txt) 2>&1 || echo refused"),
                                ("opts", "grep ' /mnt/ro ' /proc/self/mountinfo")),
                         config=_with_mounts({"destination": "/mnt/ro", "type": "bind", "source": hostdir,
                                              "options": ["bind", "ro"]}))
    out = sections(run_ok(ocirt, bundle))
    assert out["read"] == "host data\n"
    assert "Read-only file system" in out["write"]
    assert "ro" in out["opts"].split()[5].split(",")
    assert tree_listing(hostdir) == before
    # The host's own view of the directory stays writable.
    assert not os.statvfs(hostdir).f_flag & os.ST_RDONLY


def test_bind_mount_of_a_single_file(ocirt, make_bundle, scratch):
    hostfile = os.path.join(scratch, "custom.conf")
    write_file(hostfile, "key=value\n")
    bundle = make_bundle(script(("read", "cat /etc/custom.conf"), ("kind", "stat -c %F /etc/custom.conf")),
                         config=_with_mounts({"destination": "/etc/custom.conf", "type": "bind",
                                              "source": hostfile, "options": ["bind", "ro"]}))
    out = sections(run_ok(ocirt, bundle))
    assert out["read"] == "key=value\n"
    assert out["kind"] == "regular file\n"
    # The destination was created as an empty file inside the rootfs.
    created = os.path.join(rootfs_of(bundle), "etc", "custom.conf")
    assert os.path.isfile(created) and not os.path.islink(created)
    assert os.path.getsize(created) == 0


def test_relative_bind_source_is_relative_to_the_bundle(ocirt, make_bundle):
    bundle = make_bundle(["cat", "/data/inside.txt"],
                         config=_with_mounts({"destination": "/data", "type": "bind", "source": "data",
                                              "options": ["rbind", "ro"]}))
    write_file(os.path.join(bundle, "data", "inside.txt"), "relative source\n")
    assert run_ok(ocirt, bundle) == "relative source\n"


def test_tmpfs_with_size_and_mode(ocirt, make_bundle):
    bundle = make_bundle(script(
        ("mode", "stat -c %a /scratchfs"),
        ("mount", "grep ' /scratchfs ' /proc/self/mountinfo"),
        ("fill", "dd if=/dev/zero of=/scratchfs/big bs=1024 count=2048 2>&1 || echo full"),
    ), config=_with_mounts({"destination": "/scratchfs", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "size=1m", "mode=700"]}))
    out = sections(run_ok(ocirt, bundle))
    assert out["mode"] == "700\n"
    fields = out["mount"].split()
    assert {"nosuid", "nodev"} <= set(fields[5].split(","))
    assert fields[fields.index("-") + 1] == "tmpfs"
    assert {"size=1024k", "mode=700"} <= set(fields[fields.index("-") + 3].split(","))
    assert "No space left on device" in out["fill"]
    assert out["fill"].strip().endswith("full")


def test_destination_with_missing_parents_is_created_inside_the_rootfs(ocirt, make_bundle, scratch):
    hostdir = os.path.join(scratch, "hostdir")
    write_file(os.path.join(hostdir, "marker"), "deep\n")
    bundle = make_bundle(["cat", "/a/b/c/d/marker"],
                         config=_with_mounts({"destination": "/a/b/c/d", "type": "bind", "source": hostdir,
                                              "options": ["rbind"]}))
    assert run_ok(ocirt, bundle) == "deep\n"
    assert os.path.isdir(os.path.join(rootfs_of(bundle), "a", "b", "c", "d"))
    assert not os.path.lexists("/a/b/c/d")


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_symlinked_destinations_stay_inside_the_rootfs(ocirt, make_bundle, scratch, style):
    """A destination that is a symlink in the image pointing outside the rootfs
    (CVE-2021-30465 style) must resolve inside the rootfs, never on the host."""
    hostdir = os.path.join(scratch, "hostdir")
    hostdir2 = os.path.join(scratch, "hostdir2")
    write_file(os.path.join(hostdir, "original.txt"), "host original\n")
    write_file(os.path.join(hostdir2, "original.txt"), "host original 2\n")
    payload = os.path.join(scratch, "payload")
    write_file(os.path.join(payload, "marker.txt"), "payload dir\n")
    payload_file = os.path.join(scratch, "payload-file.txt")
    write_file(payload_file, "payload file\n")
    before = (tree_listing(hostdir), tree_listing(hostdir2))

    bundle = make_bundle(script(
        ("dir-target", "cat %s/marker.txt" % hostdir),
        ("dir-link", "cat /mnt/escape/marker.txt"),
        ("file-target", "cat %s/planted.txt" % hostdir2),
        ("file-link", "cat /mnt/escape-file"),
        ("deep", "grep -c ' %s/sub/deeper ' /proc/self/mountinfo" % hostdir2),
        ("original", "ls %s/original.txt 2>&1 || echo no-host-file" % hostdir),
    ), config=_with_mounts(
        {"destination": "/mnt/escape", "type": "bind", "source": payload, "options": ["rbind", "ro"]},
        {"destination": "/mnt/escape-file", "type": "bind", "source": payload_file, "options": ["bind", "ro"]},
        {"destination": "/mnt/escape-parent/sub/deeper", "type": "tmpfs", "source": "tmpfs",
         "options": ["size=1m"]},
    ))
    mnt = os.path.join(rootfs_of(bundle), "mnt")
    os.makedirs(mnt)

    def link_to(target):
        if style == "absolute":
            return target
        return "../" * 30 + target.lstrip("/")

    os.symlink(link_to(hostdir), os.path.join(mnt, "escape"))
    os.symlink(link_to(os.path.join(hostdir2, "planted.txt")), os.path.join(mnt, "escape-file"))
    os.symlink(link_to(hostdir2), os.path.join(mnt, "escape-parent"))
    # On the host the relative links do reach the host directories.
    assert os.path.realpath(os.path.join(mnt, "escape")) == os.path.realpath(hostdir)

    out = sections(run_ok(ocirt, bundle))
    # Inside, the mounts sit at the symlinks' in-root targets.
    assert out["dir-target"] == "payload dir\n"
    assert out["dir-link"] == "payload dir\n"
    assert out["file-target"] == "payload file\n"
    assert out["file-link"] == "payload file\n"
    assert out["deep"].strip() == "1"
    # The container never saw the host directory.
    assert out["original"].strip().endswith("no-host-file")
    # The host directories are untouched: nothing created, nothing mounted.
    assert (tree_listing(hostdir), tree_listing(hostdir2)) == before
    assert read_text(os.path.join(hostdir, "original.txt")) == "host original\n"
    points = host_mount_points()
    for path in (hostdir, hostdir2):
        assert not any(p == path or p.startswith(path + "/") for p in points)
    # What was created went inside the rootfs, at the in-root targets.
    inside = os.path.join(rootfs_of(bundle), hostdir.lstrip("/"))
    inside2 = os.path.join(rootfs_of(bundle), hostdir2.lstrip("/"))
    assert os.path.isdir(inside)
    assert os.path.isfile(os.path.join(inside2, "planted.txt"))
    assert os.path.isdir(os.path.join(inside2, "sub", "deeper"))


# --------------------------------------------------------------------------
# 10. namespaces


def _without_hostname(config):
    config.pop("hostname", None)


def _with_hostname(config):
    config["hostname"] = "clobber"


def _kill_helper(helper):
    """Kill a helper we started, and the child its --fork made."""
    children = []
    try:
        with open("/proc/%d/task/%d/children" % (helper.pid, helper.pid)) as handle:
            children = [int(pid) for pid in handle.read().split()]
    except OSError:
        pass
    helper.kill()
    helper.wait()
    for pid in children:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_joins_a_uts_namespace_by_path(ocirt, make_bundle):
    host_name = socket.gethostname()
    helper = subprocess.Popen(
        ["unshare", "--uts", "--fork", "--kill-child", "sh", "-c",
         "hostname joined-uts && echo ready && exec sleep 100"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert helper.stdout.readline() == "ready\n"
        namespaces = namespaces_without("uts")
        namespaces.append({"type": "uts", "path": "/proc/%d/ns/uts" % helper.pid})
        bundle = make_bundle(script(("hostname", "hostname"), ("ns", "readlink /proc/self/ns/uts")),
                             config={"linux": {"namespaces": namespaces}})
        edit_config(bundle, _without_hostname)
        out = sections(run_ok(ocirt, bundle))
        assert out["hostname"] == "joined-uts\n"
        assert out["ns"].strip() == os.readlink("/proc/%d/ns/uts" % helper.pid)
        # A hostname is set in the joined uts namespace (as runc and crun; only the runtime's own is refused,
        # see test_hardening.py).
        edit_config(bundle, _with_hostname)
        out = sections(run_ok(ocirt, bundle))
        assert out["hostname"] == "clobber\n"
        joined = subprocess.run(["nsenter", "-t", str(helper.pid), "-u", "hostname"], capture_output=True,
                                text=True, check=True).stdout
        assert joined == "clobber\n"
    finally:
        _kill_helper(helper)
    assert socket.gethostname() == host_name


@pytest.fixture
def netns():
    """A named network namespace (`ip netns add`), deleted afterwards.

    Request it before `ocirt` so that the audit's mount snapshot already holds
    the /run/netns mounts `ip` makes (the fixture tears down after the audit).
    """
    name = new_id("ocirt-view")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        path = "/run/netns/" + name
        if not os.path.exists(path):
            path = "/var/run/netns/" + name
        yield path
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_joins_a_network_namespace_by_path(netns, ocirt, make_bundle):
    namespaces = namespaces_without("network")
    namespaces.append({"type": "network", "path": netns})
    bundle = make_bundle(script(("ns", "readlink /proc/self/ns/net"), ("links", "ls /sys/class/net")),
                         config={"linux": {"namespaces": namespaces}})
    out = sections(run_ok(ocirt, bundle))
    assert out["ns"].strip() == "net:[%d]" % os.stat(netns).st_ino
    assert out["ns"].strip() != os.readlink("/proc/self/ns/net")
    assert out["links"].split() == ["lo"]


USERNS_CONFIG = {"linux": {
    "namespaces": DEFAULT_NAMESPACES + [{"type": "user"}],
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
}}


def test_user_namespace_with_maps(userns_scratch, ocirt, make_bundle, scratch):
    shared = os.path.join(scratch, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o777)
    config = dict(USERNS_CONFIG, **_with_mounts(
        {"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]}))
    bundle = make_bundle(script(("uid_map", "cat /proc/self/uid_map"),
                                ("gid_map", "cat /proc/self/gid_map"),
                                ("id", "id -u; id -g"),
                                ("touch", "touch /shared/by-container && echo touched")),
                         config=config)
    # The mount point exists in the image: the container's root (host uid 100000)
    # may not create entries in a rootfs directory that host root owns.
    os.mkdir(os.path.join(rootfs_of(bundle), "shared"))
    out = sections(run_ok(ocirt, bundle))
    assert out["uid_map"].split() == ["0", "100000", "65536"]
    assert out["gid_map"].split() == ["0", "100000", "65536"]
    assert out["id"].split() == ["0", "0"]
    assert out["touch"] == "touched\n"
    st = os.stat(os.path.join(shared, "by-container"))
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_user_namespace_has_the_default_mounts_and_devices(userns_scratch, ocirt, make_bundle):
    bundle = make_bundle(script(("mountinfo", "cat /proc/self/mountinfo"),
                                ("null", "echo x > /dev/null && echo null-ok"),
                                ("zero", "head -c 2 /dev/zero | od -An -tx1")),
                         config=USERNS_CONFIG)
    out = sections(run_ok(ocirt, bundle))
    mounts = parse_mountinfo(out["mountinfo"])
    assert mount_at(mounts, "/sys")["fstype"] == "sysfs"
    assert "ro" in mount_at(mounts, "/sys")["opts"]
    assert "ro" in mount_at(mounts, "/sys/fs/cgroup")["opts"]
    assert mount_at(mounts, "/proc")["fstype"] == "proc"
    assert mount_at(mounts, "/dev/pts")["fstype"] == "devpts"
    assert out["null"] == "null-ok\n"
    assert out["zero"].split() == ["00", "00"]


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/time"), reason="this kernel has no time namespace")
def test_new_time_namespace(ocirt, make_bundle):
    bundle = make_bundle(["readlink", "/proc/self/ns/time"],
                         config={"linux": {"namespaces": DEFAULT_NAMESPACES + [{"type": "time"}]}})
    inside = run_ok(ocirt, bundle).strip()
    assert inside.startswith("time:[")
    assert inside != os.readlink("/proc/self/ns/time")


def test_without_a_mount_namespace_the_root_is_switched_with_chroot(ocirt, make_bundle):
    bundle = make_bundle(script(("hostname", "cat /etc/hostname"), ("ls", "ls /"),
                                ("marker", "cat /marker.txt")),
                         config={"mounts": [], "root": {"readonly": False},
                                 "linux": {"maskedPaths": [], "readonlyPaths": [],
                                           "namespaces": namespaces_without("mount")}})
    rootfs = rootfs_of(bundle)
    write_file(os.path.join(rootfs, "marker.txt"), "in the image\n")
    mounts_before = host_mount_points()
    out = sections(run_ok(ocirt, bundle))
    assert out["hostname"] == "busybox\n"
    assert out["marker"] == "in the image\n"
    assert sorted(out["ls"].split()) == sorted(os.listdir(rootfs))
    assert host_mount_points() == mounts_before


def test_container_without_a_proc_mount_runs(ocirt, make_bundle):
    """Nothing in the process setup may need the container's own /proc."""
    bundle = make_bundle(["ls", "/proc"], config={"mounts": [],
                                                  "linux": {"maskedPaths": [], "readonlyPaths": []}})
    assert run_ok(ocirt, bundle) == ""


NO_MOUNT_NAMESPACE = {"mounts": [], "root": {"readonly": False},
                      "linux": {"maskedPaths": [], "readonlyPaths": [],
                                "namespaces": namespaces_without("mount")}}


@pytest.mark.parametrize("field, overlay", [
    pytest.param("mounts", {"mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]},
                 id="mounts"),
    pytest.param("linux.maskedPaths", {"linux": {"maskedPaths": ["/etc/passwd"]}}, id="maskedPaths"),
    pytest.param("linux.readonlyPaths", {"linux": {"readonlyPaths": ["/etc"]}}, id="readonlyPaths"),
    pytest.param("root.readonly", {"root": {"readonly": True}}, id="root.readonly"),
])
def test_without_a_mount_namespace_mount_settings_are_refused(ocirt, make_bundle, field, overlay):
    mounts_before = host_mount_points()
    bundle = make_bundle(["true"], config=deep_merge(NO_MOUNT_NAMESPACE, overlay))
    assert_create_fails(ocirt, bundle, field, "mount namespace")
    assert host_mount_points() == mounts_before
