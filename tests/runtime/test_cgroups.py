"""Cgroups of real containers: every resource, device rules, kill --all, pause,
update, ps, delete, cgroupsPath, and bad input.

Each resource is written at create and read back from the host's cgroup
files (/sys/fs/cgroup/<hierarchy>/<cgroup path>/...). Containers without
linux.cgroupsPath live at /ocirt/<id> in every hierarchy, so every test uses
a fresh id. The conftest audit fails a test that leaves a cgroup directory
below /ocirt, a state directory, a mount or a process behind; tests that use
a cgroup path outside /ocirt check and clean up that path themselves.

Waiting is always a bounded poll (POLL_TRIES x POLL_DELAY) that fails with
a message; nothing asserts on durations. Expected behaviour is runc's and
the OCI runtime specification's.
"""
import errno
import json
import os
import tempfile
import time

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
from helpers import POLL_DELAY, create_and_start, new_id, poll, proc_start_time, proc_state, wait_stopped

CGROUP_ROOT = "/sys/fs/cgroup"
MB = 1024 * 1024
SLEEP = ["sleep", "1000"]
# Two background children and the shell waiting for them: three processes.
FAMILY = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]
DEFAULT_MOUNTS = default_config()["mounts"]
DEFAULT_NAMESPACES = default_config()["linux"]["namespaces"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def hierarchies():
    """{hierarchy directory name: mountpoint} of every cgroup mount under /sys/fs/cgroup."""
    found = {}
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            point = fields[4]
            if fstype in ("cgroup", "cgroup2") and os.path.dirname(point) == CGROUP_ROOT:
                found[os.path.basename(point)] = point
    return found


HIERARCHIES = hierarchies()


def cg(hierarchy, path, name=None):
    """Host path of cgroup PATH (e.g. /ocirt/ID) in HIERARCHY, or of its file NAME."""
    directory = os.path.join(HIERARCHIES[hierarchy], path.lstrip("/"))
    return os.path.join(directory, name) if name else directory


def read(path):
    with open(path) as handle:
        return handle.read()


def procs(hierarchy, path):
    try:
        return sorted(int(p) for p in read(cg(hierarchy, path, "cgroup.procs")).split())
    except FileNotFoundError:
        return []


def dirs_left(path):
    """Hierarchies that still have a directory for cgroup PATH."""
    return sorted(h for h in HIERARCHIES if os.path.lexists(cg(h, path)))


def root_disk():
    """(major, minor) of the whole disk holding the host's root filesystem."""
    st = os.stat("/")
    sysdir = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev)))
    if os.path.exists(os.path.join(sysdir, "partition")):
        sysdir = os.path.dirname(sysdir)
    major, minor = read(os.path.join(sysdir, "dev")).strip().split(":")
    return int(major), int(minor)


def readable_block_device():
    """(major, minor) of a block device the host itself may open for reading.

    The root disk when the host may read it; some hosts (this test VM among
    them) refuse even root to open the root disk, whatever the cgroup says,
    which would make a device-rule test pass for the wrong reason. Then a
    loop or zram device, which opens whether or not it is bound.
    """
    major, minor = root_disk()
    sysdir = os.path.realpath("/sys/dev/block/%d:%d" % (major, minor))
    candidates = ["/dev/" + os.path.basename(sysdir)]
    candidates += ["/dev/loop%d" % n for n in range(8)] + ["/dev/zram0"]
    for device in candidates:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("no block device that the host may open for reading")


def run_detached(ocirt, make_bundle, args=None, config=None, container_id=None, running=True):
    """`ocirt create` + `ocirt start` a container (no monitor); return (id, pid)."""
    container_id = container_id or new_id("cg")
    bundle = make_bundle(SLEEP if args is None else args, config=config)
    return container_id, create_and_start(ocirt, bundle, container_id, running=running)


def with_resources(resources, **extra):
    config = {"linux": {"resources": resources}}
    config["linux"].update(extra)
    return config


def assert_cgroups_gone(container_id, path=None):
    path = path or "/ocirt/" + container_id
    assert dirs_left(path) == [], "cgroup %s left in %s" % (path, dirs_left(path))


# --------------------------------------------------------------------------
# resources written at create, read back from the host
# --------------------------------------------------------------------------

def _blkio_weight_file():
    """blkio.weight (CFQ) or blkio.bfq.weight (BFQ), or None where no I/O scheduler offers a weight."""
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if os.path.exists(cg("blkio", "/", name)):
            return name
    return None


RESOURCE_CASES = [
    ("memory", {"memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 128 * MB, "swappiness": 10}},
     [("memory", "memory.limit_in_bytes", str(64 * MB)),
      ("memory", "memory.soft_limit_in_bytes", str(32 * MB)),
      ("memory", "memory.memsw.limit_in_bytes", str(128 * MB)),
      ("memory", "memory.swappiness", "10")]),
    ("cpu", {"cpu": {"shares": 512, "quota": 50000, "period": 100000}},
     [("cpu", "cpu.shares", "512"), ("cpu", "cpu.cfs_quota_us", "50000"),
      ("cpu", "cpu.cfs_period_us", "100000")]),
    ("cpuset", {"cpu": {"cpus": "0", "mems": "0"}},
     [("cpuset", "cpuset.cpus", "0"), ("cpuset", "cpuset.mems", "0")]),
    ("pids", {"pids": {"limit": 42}}, [("pids", "pids.max", "42")]),
    ("blkio-weight", {"blockIO": {"weight": 300}}, [("blkio", None, "300")]),
    ("hugepages", {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]},
     [("unified", "hugetlb.2MB.max", str(4 * MB))]),
]


def missing_feature(resources, expected):
    """Why this host's kernel cannot show EXPECTED (a hierarchy, swap accounting, an I/O weight, a
    huge page controller or size it lacks), or None: such a case is skipped with the reason."""
    for hierarchy, name, _value in expected:
        if hierarchy not in HIERARCHIES:
            return "the host has no %s cgroup hierarchy" % hierarchy
        if hierarchy == "unified":
            controller = name.split(".")[0]
            if controller not in read(cg("unified", "/", "cgroup.controllers")).split():
                return "the host's cgroup2 hierarchy has no %s controller" % controller
        elif name and name.startswith("memory.memsw.") and not os.path.exists(cg(hierarchy, "/", name)):
            return "the kernel does no swap accounting (no %s; boot with swapaccount=1)" % name
    if "blockIO" in resources and _blkio_weight_file() is None:
        return ("the host's I/O schedulers offer no blkio weight (no BFQ); "
                "test_blkio_weight_without_a_weight_file_names_the_field covers this host")
    for limit in resources.get("hugepageLimits") or []:
        size_kb = int(limit["pageSize"][:-2]) * {"KB": 1, "MB": 1024, "GB": 1024 * 1024}[limit["pageSize"][-2:]]
        if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-%dkB" % size_kb):
            return "the kernel has no %s huge pages" % limit["pageSize"]
    return None


@pytest.mark.parametrize("resources,expected", [case[1:] for case in RESOURCE_CASES],
                         ids=[case[0] for case in RESOURCE_CASES])
def test_resources_are_written_to_the_container_cgroup(ocirt, make_bundle, resources, expected):
    reason = missing_feature(resources, expected)
    if reason:
        pytest.skip(reason)
    container_id, pid = run_detached(ocirt, make_bundle, config=with_resources(resources))
    path = "/ocirt/" + container_id
    for hierarchy, name, value in expected:
        name = name or _blkio_weight_file()
        assert read(cg(hierarchy, path, name)).strip() == value, "%s/%s" % (hierarchy, name)
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)


def test_blkio_weight_without_a_weight_file_names_the_field(ocirt, make_bundle):
    if _blkio_weight_file() is not None:
        pytest.skip("the host has %s: the weight is written, see test_resources_are_written_to_the_container_cgroup"
                    % _blkio_weight_file())
    bundle = make_bundle(config=with_resources({"blockIO": {"weight": 300}}))
    result = ocirt("create", "--bundle", bundle, "blkio-noweight", check=False)
    assert result.returncode != 0
    assert "linux.resources.blockIO.weight" in result.stderr


def test_disable_oom_killer(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle, config=with_resources(
        {"memory": {"limit": 64 * MB, "disableOOMKiller": True}}))
    lines = read(cg("memory", "/ocirt/" + container_id, "memory.oom_control")).splitlines()
    assert "oom_kill_disable 1" in lines, lines
    ocirt("delete", "--force", container_id)


def test_oom_killer_enabled_by_default(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle, config=with_resources({"memory": {"limit": 64 * MB}}))
    lines = read(cg("memory", "/ocirt/" + container_id, "memory.oom_control")).splitlines()
    assert "oom_kill_disable 0" in lines, lines
    ocirt("delete", "--force", container_id)


def test_block_io_throttles_on_the_root_disk(ocirt, make_bundle):
    major, minor = root_disk()
    device = "%d:%d" % (major, minor)
    container_id, _pid = run_detached(ocirt, make_bundle, config=with_resources({"blockIO": {
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}],
    }}))
    path = "/ocirt/" + container_id
    assert read(cg("blkio", path, "blkio.throttle.read_bps_device")).split("\n")[0] == device + " 1048576"
    assert read(cg("blkio", path, "blkio.throttle.write_iops_device")).split("\n")[0] == device + " 100"
    assert read(cg("blkio", path, "blkio.throttle.write_bps_device")).strip() == ""
    ocirt("delete", "--force", container_id)


# --------------------------------------------------------------------------
# the container's process and its view of its cgroup
# --------------------------------------------------------------------------

def test_process_is_in_its_cgroup_in_every_hierarchy(ocirt, make_bundle):
    container_id, pid = run_detached(ocirt, make_bundle)
    path = "/ocirt/" + container_id
    assert ocirt.state(container_id)["cgroupPath"] == path
    assert len(HIERARCHIES) >= 2
    for hierarchy in HIERARCHIES:
        assert procs(hierarchy, path) == [pid], hierarchy
    lines = read("/proc/%d/cgroup" % pid).splitlines()
    assert len(lines) == len(HIERARCHIES), lines
    for line in lines:
        assert line.split(":", 2)[2] == path, line
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)


def test_container_sees_its_own_cgroup_read_only(ocirt, make_bundle):
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/pids/pids.max; "
              "cat /proc/self/cgroup | grep ':memory:'; "
              "echo 1 > /sys/fs/cgroup/pids/pids.max && echo WROTE; "
              "mkdir /sys/fs/cgroup/memory/sub && echo MADE; "
              "grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo")
    bundle = make_bundle(["sh", "-c", script], config=with_resources(
        {"memory": {"limit": 48 * MB}, "pids": {"limit": 33}}))
    result = ocirt.run(bundle)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == str(48 * MB), result.stdout
    assert lines[1] == "33", result.stdout
    assert "WROTE" not in result.stdout and "MADE" not in result.stdout, result.stdout
    assert "Read-only file system" in result.stderr, result.stderr
    mount = [line for line in lines if " /sys/fs/cgroup/memory " in line]
    assert mount, result.stdout
    fields = mount[0].split()
    assert fields[3].startswith("/ocirt/run-"), "the mount shows another cgroup: %s" % mount[0]
    assert "ro" in fields[5].split(","), mount[0]


# --------------------------------------------------------------------------
# device rules
# --------------------------------------------------------------------------

def mknod_config(extra_rules=()):
    """A writable /tmp that allows device nodes, CAP_MKNOD, and the default deny-all plus EXTRA_RULES."""
    caps = ["CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_KILL"]
    return {
        "process": {"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
        "mounts": DEFAULT_MOUNTS + [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                     "options": ["mode=1777"]}],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}] + list(extra_rules)}},
    }


def test_default_devices_work_under_deny_all(ocirt, make_bundle):
    script = ("cat /dev/null && echo NULL-OK; "
              "head -c 4 /dev/zero | od -An -tx1; "
              "echo x > /dev/full; echo full=$?; "
              "head -c 1 /dev/urandom >/dev/null && echo URANDOM-OK")
    bundle = make_bundle(["sh", "-c", script])
    result = ocirt.run(bundle)
    assert result.returncode == 0, result
    assert "NULL-OK" in result.stdout, result
    assert "00 00 00 00" in result.stdout, result
    assert "URANDOM-OK" in result.stdout, result
    # /dev/full is allowed: writing fails with ENOSPC from the device, not EPERM from the cgroup.
    assert "full=1" in result.stdout, result
    assert os.strerror(errno.ENOSPC) in result.stderr, result.stderr
    assert os.strerror(errno.EPERM) not in result.stderr, result.stderr


def test_device_list_on_the_host_is_not_allow_all(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle)
    rules = read(cg("devices", "/ocirt/" + container_id, "devices.list")).splitlines()
    assert "a *:* rwm" not in rules, rules
    assert "c 1:3 rwm" in rules and "c 1:5 rwm" in rules, rules
    assert "b *:* m" in rules and "c *:* m" in rules, rules
    ocirt("delete", "--force", container_id)


def test_mknod_allowed_but_reading_a_denied_block_device_is_not(ocirt, make_bundle):
    major, minor = readable_block_device()
    script = ("mknod /tmp/disk b %d %d && echo MKNOD-OK; "
              "head -c1 /tmp/disk > /dev/null && echo READ-OK" % (major, minor))
    bundle = make_bundle(["sh", "-c", script], config=mknod_config())
    result = ocirt.run(bundle)
    assert "MKNOD-OK" in result.stdout, result
    assert "READ-OK" not in result.stdout, result
    assert "Operation not permitted" in result.stderr, result.stderr


def test_allow_rule_lets_the_container_read_the_device(ocirt, make_bundle):
    major, minor = readable_block_device()
    script = ("mknod /tmp/disk b %d %d && echo MKNOD-OK; "
              "head -c1 /tmp/disk > /dev/null && echo READ-OK; "
              "echo x > /tmp/disk || echo WRITE-REFUSED" % (major, minor))
    rule = {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}
    bundle = make_bundle(["sh", "-c", script], config=mknod_config([rule]))
    result = ocirt.run(bundle)
    assert "MKNOD-OK" in result.stdout, result
    assert "READ-OK" in result.stdout, result
    # The rule allows reading only: opening for write stays forbidden.
    assert "WRITE-REFUSED" in result.stdout, result
    assert "Operation not permitted" in result.stderr, result.stderr


# --------------------------------------------------------------------------
# kill --all, pause/resume
# --------------------------------------------------------------------------

def test_kill_all_reaches_grandchildren_without_a_pid_namespace(ocirt, make_bundle):
    namespaces = [ns for ns in DEFAULT_NAMESPACES if ns["type"] != "pid"]
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY, config={"linux": {"namespaces": namespaces}})
    path = "/ocirt/" + container_id
    family = poll(lambda: len(procs("pids", path)) == 3 and procs("pids", path), "the three processes")
    assert pid in family
    ocirt("kill", "--all", container_id, "KILL")
    for hierarchy in HIERARCHIES:
        poll(lambda: procs(hierarchy, path) == [] or None, "%s cgroup.procs to empty" % hierarchy)
    for member in family:
        poll(lambda: proc_state(member) in (None, "Z") or None, "process %d to die" % member)
    wait_stopped(ocirt, container_id)
    ocirt("delete", container_id)
    assert_cgroups_gone(container_id)


def test_kill_without_all_leaves_the_grandchildren(ocirt, make_bundle):
    """The contrast: a plain kill reaches only the init, so --all is what reached the rest."""
    namespaces = [ns for ns in DEFAULT_NAMESPACES if ns["type"] != "pid"]
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY, config={"linux": {"namespaces": namespaces}})
    path = "/ocirt/" + container_id
    poll(lambda: len(procs("pids", path)) == 3, "the three processes")
    ocirt("kill", container_id, "KILL")
    poll(lambda: pid not in procs("pids", path), "the init to leave the cgroup")
    assert len(procs("pids", path)) == 2
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)


def test_pause_freezes_every_process_and_resume_thaws_them(ocirt, make_bundle):
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY)
    path = "/ocirt/" + container_id
    family = poll(lambda: len(procs("pids", path)) == 3 and procs("pids", path), "the three processes")
    ocirt("pause", container_id)
    assert ocirt.state(container_id)["status"] == "paused"
    assert read(cg("freezer", path, "freezer.state")).strip() == "FROZEN"
    for member in family:
        # The kernel reports a task stopped in the freezer as D (uninterruptible).
        assert proc_state(member) == "D", (member, proc_state(member))
    # Pausing twice is a wrong-state error.
    again = ocirt("pause", container_id, check=False)
    assert again.returncode != 0 and "paused" in again.stderr, again
    ocirt("resume", container_id)
    assert ocirt.state(container_id)["status"] == "running"
    assert read(cg("freezer", path, "freezer.state")).strip() == "THAWED"
    for member in family:
        poll(lambda: proc_state(member) == "S", "process %d to sleep again" % member)
    again = ocirt("resume", container_id, check=False)
    assert again.returncode != 0 and "running" in again.stderr, again
    assert ocirt.state(container_id)["pid"] == pid
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)


def test_kill_with_sigkill_stops_a_paused_container(ocirt, make_bundle):
    """runc thaws a v1-frozen container after sending SIGKILL (a frozen task
    does not die until thawed), so `kill ID KILL` stops a paused container."""
    container_id, pid = run_detached(ocirt, make_bundle)
    path = "/ocirt/" + container_id
    ocirt("pause", container_id)
    try:
        ocirt("kill", container_id, "KILL")
        wait_stopped(ocirt, container_id)
        assert proc_state(pid) in (None, "Z")
    finally:
        # Cleanup only: a container left frozen would keep the signal pending forever.
        freezer = cg("freezer", path, "freezer.state")
        if os.path.exists(freezer) and read(freezer).strip() != "THAWED":
            with open(freezer, "w") as handle:
                handle.write("THAWED")
    ocirt("delete", container_id)
    assert_cgroups_gone(container_id)


def test_paused_container_makes_no_progress(ocirt, make_bundle, scratch):
    shared = os.path.join(scratch, "shared")
    os.mkdir(shared)
    counter = os.path.join(shared, "c")
    mounts = DEFAULT_MOUNTS + [{"destination": "/tmp", "type": "bind", "source": shared,
                                "options": ["rbind", "rw"]}]
    container_id, _pid = run_detached(
        ocirt, make_bundle, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/c; done"],
        config={"mounts": mounts})

    def value():
        try:
            text = read(counter).strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    poll(lambda: (value() or 0) > 10, "the counter to run")
    ocirt("pause", container_id)
    frozen = read(counter)
    for dummy in range(20):
        time.sleep(POLL_DELAY)
        assert read(counter) == frozen, "the counter moved while paused"
    ocirt("resume", container_id)
    before = int(frozen.strip() or 0)
    poll(lambda: (value() or 0) > before, "the counter to move after resume")
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)


# --------------------------------------------------------------------------
# update
# --------------------------------------------------------------------------

def test_update_with_flags_changes_limits_in_place(ocirt, make_bundle):
    container_id, pid = run_detached(ocirt, make_bundle, config=with_resources(
        {"memory": {"limit": 64 * MB}, "pids": {"limit": 20}}))
    path = "/ocirt/" + container_id
    start_time = proc_start_time(pid)
    ocirt("update", "--memory", "128m", "--pids-limit", "77", "--cpu-quota", "20000", container_id)
    assert read(cg("memory", path, "memory.limit_in_bytes")).strip() == str(128 * MB)
    assert read(cg("pids", path, "pids.max")).strip() == "77"
    assert read(cg("cpu", path, "cpu.cfs_quota_us")).strip() == "20000"
    state = ocirt.state(container_id)
    assert state["status"] == "running" and state["pid"] == pid
    assert proc_start_time(pid) == start_time
    assert procs("memory", path) == [pid]
    ocirt("delete", "--force", container_id)


def test_update_with_resources_on_stdin(ocirt, make_bundle, scratch):
    container_id, pid = run_detached(ocirt, make_bundle, config=with_resources(
        {"memory": {"limit": 64 * MB}, "pids": {"limit": 20}}))
    path = "/ocirt/" + container_id
    start_time = proc_start_time(pid)
    with tempfile.TemporaryFile("w+", dir=scratch) as stdin:
        json.dump({"memory": {"limit": 96 * MB}, "pids": {"limit": 55}}, stdin)
        stdin.seek(0)
        ocirt("update", "--resources", "-", container_id, stdin=stdin)
    assert read(cg("memory", path, "memory.limit_in_bytes")).strip() == str(96 * MB)
    assert read(cg("pids", path, "pids.max")).strip() == "55"
    assert ocirt.state(container_id)["pid"] == pid
    assert proc_start_time(pid) == start_time
    ocirt("delete", "--force", container_id)


def test_update_with_resources_file(ocirt, make_bundle, scratch):
    container_id, _pid = run_detached(ocirt, make_bundle)
    path = "/ocirt/" + container_id
    resources = os.path.join(scratch, "resources.json")
    with open(resources, "w") as handle:
        json.dump({"pids": {"limit": 9}, "cpu": {"shares": 256}}, handle)
    ocirt("update", "--resources", resources, container_id)
    assert read(cg("pids", path, "pids.max")).strip() == "9"
    assert read(cg("cpu", path, "cpu.shares")).strip() == "256"
    ocirt("delete", "--force", container_id)


def test_update_raising_memory_above_the_old_memsw(ocirt, make_bundle):
    """memory.limit_in_bytes may not exceed memsw: raising both needs memsw first (as runc orders them)."""
    container_id, _pid = run_detached(ocirt, make_bundle, config=with_resources(
        {"memory": {"limit": 64 * MB, "swap": 64 * MB}}))
    path = "/ocirt/" + container_id
    ocirt("update", "--memory", "256m", "--memory-swap", "512m", container_id)
    assert read(cg("memory", path, "memory.limit_in_bytes")).strip() == str(256 * MB)
    assert read(cg("memory", path, "memory.memsw.limit_in_bytes")).strip() == str(512 * MB)
    ocirt("delete", "--force", container_id)


def test_update_with_a_bad_value_names_the_field_and_changes_nothing(ocirt, make_bundle, scratch):
    container_id, _pid = run_detached(ocirt, make_bundle, config=with_resources({"pids": {"limit": 20}}))
    path = "/ocirt/" + container_id
    with tempfile.TemporaryFile("w+", dir=scratch) as stdin:
        json.dump({"pids": {"limit": 30}, "memory": {"limit": -5}}, stdin)
        stdin.seek(0)
        result = ocirt("update", "--resources", "-", container_id, stdin=stdin, check=False)
    assert result.returncode != 0, result
    assert "linux.resources.memory.limit" in result.stderr, result.stderr
    assert read(cg("pids", path, "pids.max")).strip() == "20"
    ocirt("delete", "--force", container_id)


def test_update_of_a_stopped_container_fails(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle, ["sh", "-c", "exit 0"], running=False)
    wait_stopped(ocirt, container_id)
    result = ocirt("update", "--memory", "64m", container_id, check=False)
    assert result.returncode != 0, result
    assert container_id in result.stderr and "stopped" in result.stderr, result.stderr
    ocirt("delete", container_id)
    assert_cgroups_gone(container_id)


# --------------------------------------------------------------------------
# ps
# --------------------------------------------------------------------------

def test_ps_lists_the_container_processes(ocirt, make_bundle):
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY)
    path = "/ocirt/" + container_id
    family = poll(lambda: len(procs("pids", path)) == 3 and procs("pids", path), "the three processes")
    listed = json.loads(ocirt("ps", "--format", "json", container_id).stdout)
    assert sorted(listed) == family
    assert pid in listed
    table = ocirt("ps", container_id).stdout.splitlines()
    assert table[0].split() == ["PID", "CMD"], table
    rows = dict((int(line.split()[0]), line.split(None, 1)[1]) for line in table[1:])
    assert sorted(rows) == family, table
    assert rows[pid] == " ".join(FAMILY), table
    assert sorted(cmd for p, cmd in rows.items() if p != pid) == ["sleep 1000", "sleep 1000"], table
    ocirt("delete", "--force", container_id)


def test_ps_of_a_stopped_container_fails(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle, ["true"], running=False)
    wait_stopped(ocirt, container_id)
    result = ocirt("ps", container_id, check=False)
    assert result.returncode != 0 and "stopped" in result.stderr, result
    ocirt("delete", container_id)


# --------------------------------------------------------------------------
# delete
# --------------------------------------------------------------------------

def test_delete_of_a_stopped_container_removes_its_cgroups(ocirt, make_bundle):
    container_id, _pid = run_detached(ocirt, make_bundle, ["true"], running=False)
    wait_stopped(ocirt, container_id)
    assert dirs_left("/ocirt/" + container_id) == sorted(HIERARCHIES)
    ocirt("delete", container_id)
    assert_cgroups_gone(container_id)
    assert ocirt.ids() == []


def test_delete_force_of_a_running_container_removes_its_cgroups(ocirt, make_bundle):
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY)
    path = "/ocirt/" + container_id
    family = poll(lambda: len(procs("pids", path)) == 3 and procs("pids", path), "the three processes")
    refused = ocirt("delete", container_id, check=False)
    assert refused.returncode != 0 and "running" in refused.stderr, refused
    assert dirs_left(path) == sorted(HIERARCHIES)
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id)
    for member in family:
        assert proc_state(member) in (None, "Z"), member
    assert ocirt.ids() == []


def test_delete_force_of_a_paused_container(ocirt, make_bundle):
    """As runc: SIGKILL does nothing to a v1-frozen task until it is thawed, so
    delete --force (and kill with KILL) thaws the container after signalling it."""
    container_id, pid = run_detached(ocirt, make_bundle, FAMILY)
    path = "/ocirt/" + container_id
    family = poll(lambda: len(procs("pids", path)) == 3 and procs("pids", path), "the three processes")
    ocirt("pause", container_id)
    try:
        result = ocirt("delete", "--force", container_id, check=False)
        assert result.returncode == 0, result
        assert_cgroups_gone(container_id)
        for member in family:
            assert proc_state(member) in (None, "Z"), member
        assert ocirt.ids() == []
    finally:
        # Cleanup only: a container left frozen would keep the signal pending forever.
        freezer = cg("freezer", path, "freezer.state")
        if os.path.exists(freezer) and read(freezer).strip() != "THAWED":
            with open(freezer, "w") as handle:
                handle.write("THAWED")


# --------------------------------------------------------------------------
# linux.cgroupsPath
# --------------------------------------------------------------------------

def test_relative_cgroups_path_is_below_the_runtime_parent(ocirt, make_bundle):
    container_id = new_id()
    path = "/ocirt/tests/" + container_id
    parent_before = dirs_left("/ocirt/tests")
    _id, pid = run_detached(ocirt, make_bundle, config={"linux": {"cgroupsPath": "tests/" + container_id}},
                            container_id=container_id)
    assert ocirt.state(container_id)["cgroupPath"] == path
    for hierarchy in HIERARCHIES:
        assert procs(hierarchy, path) == [pid], hierarchy
    assert all(line.split(":", 2)[2] == path for line in read("/proc/%d/cgroup" % pid).splitlines())
    assert dirs_left("/ocirt/" + container_id) == []
    ocirt("delete", "--force", container_id)
    assert_cgroups_gone(container_id, path)
    # /ocirt/tests was made for this container (unless it was there before): it goes too.
    assert dirs_left("/ocirt/tests") == parent_before


ABS_PARENT = "/ocirt-abs-test"


def test_absolute_cgroups_path_is_made_and_removed(ocirt, make_bundle):
    """A given path is the runtime's to remove only where the runtime made it: the
    leaf, and the parent too when it did not exist before (Cgroup.create)."""
    container_id = new_id()
    path = ABS_PARENT + "/" + container_id
    parent_before = dirs_left(ABS_PARENT)
    try:
        _id, pid = run_detached(ocirt, make_bundle, config={"linux": {"cgroupsPath": path}},
                                container_id=container_id)
        assert ocirt.state(container_id)["cgroupPath"] == path
        assert dirs_left(path) == sorted(HIERARCHIES)
        for hierarchy in HIERARCHIES:
            assert procs(hierarchy, path) == [pid], hierarchy
        assert all(line.split(":", 2)[2] == path for line in read("/proc/%d/cgroup" % pid).splitlines())
        ocirt("delete", "--force", container_id)
        assert dirs_left(path) == []
        assert dirs_left(ABS_PARENT) == parent_before
    finally:
        ocirt("delete", "--force", container_id, check=False)
        for directory in (path, ABS_PARENT):
            for hierarchy in HIERARCHIES:
                if directory == ABS_PARENT and hierarchy in parent_before:
                    continue
                try:
                    os.rmdir(cg(hierarchy, directory))
                except OSError:
                    pass


def test_existing_absolute_cgroups_path_is_joined_and_left_in_place(ocirt, make_bundle):
    container_id = new_id()
    path = "/ocirt-join-test-" + container_id
    made = []
    try:
        for hierarchy in HIERARCHIES:
            os.mkdir(cg(hierarchy, path))
            made.append(hierarchy)
        # A fresh v1 cpuset is empty and refuses processes until given cpus and mems.
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(cg("cpuset", path, name), "w") as handle:
                handle.write(read(os.path.join(HIERARCHIES["cpuset"], name)).strip())
        _id, pid = run_detached(ocirt, make_bundle, config={"linux": {"cgroupsPath": path}},
                                container_id=container_id)
        assert procs("memory", path) == [pid]
        ocirt("delete", "--force", container_id)
        assert dirs_left(path) == sorted(HIERARCHIES), "a cgroup the runtime did not make was removed"
        assert procs("pids", path) == []
    finally:
        ocirt("delete", "--force", container_id, check=False)
        for hierarchy in made:
            try:
                os.rmdir(cg(hierarchy, path))
            except OSError:
                pass


# --------------------------------------------------------------------------
# bad input: create fails, naming the field, leaving nothing
# --------------------------------------------------------------------------

BAD_RESOURCES = [
    ("memory-limit", {"memory": {"limit": -5}}, "linux.resources.memory.limit"),
    ("device-type", {"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "x", "access": "r"}]},
     "linux.resources.devices[1].type"),
    ("classid", {"network": {"classID": 1048577}}, "linux.resources.network.classID"),
    # Refused by the kernel at apply time, after the process exists: it must be undone too.
    ("cpuset-cpus", {"cpu": {"cpus": "4095"}}, "linux.resources.cpu.cpus"),
]


@pytest.mark.parametrize("resources,field", [case[1:] for case in BAD_RESOURCES],
                         ids=[case[0] for case in BAD_RESOURCES])
def test_bad_resources_fail_create_and_leave_nothing(ocirt, make_bundle, resources, field):
    container_id = new_id("bad")
    bundle = make_bundle(SLEEP, config=with_resources(resources))
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert result.returncode != 0, result
    assert field in result.stderr, result.stderr
    assert ocirt.ids() == []
    assert not os.path.exists(os.path.join(ocirt.root, container_id))
    assert_cgroups_gone(container_id)
    # Nothing runs the container's command.
    for hierarchy in HIERARCHIES:
        assert procs(hierarchy, "/ocirt/" + container_id) == []


def test_bad_cgroups_path_fails_create(ocirt, make_bundle):
    container_id = new_id("bad")
    bundle = make_bundle(SLEEP, config={"linux": {"cgroupsPath": "system.slice:ocirt:" + container_id}})
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert result.returncode != 0, result
    assert "linux.cgroupsPath" in result.stderr and "systemd" in result.stderr, result.stderr
    assert ocirt.ids() == []
    assert_cgroups_gone(container_id)
