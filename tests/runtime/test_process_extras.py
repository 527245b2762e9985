"""process.ioPriority, scheduler, execCPUAffinity, linux.personality and memoryPolicy in real containers,
and the LSM fields refused at create on a host without the module (this one has neither AppArmor nor SELinux).

Each container is busybox: what it reads back comes from its own /proc (the I/O priority, which no
/proc file shows, is read from the host with ioprio_get).
"""
import ctypes
import json
import os
import platform

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux._syscall_table import TABLES
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
from helpers import assert_create_fails, create_and_start, new_id, run_ok


def stat_field(text, number):
    """Field NUMBER (1-based, as in proc(5)) of /proc/<pid>/stat TEXT."""
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[number - 3])


def status_field(text, name):
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    raise AssertionError("no %s in %r" % (name, text))


def run_or_skip_if_refused(ocirt, bundle, refusals, reason):
    """Run BUNDLE; skip (with REASON) if the kernel refused it with one of REFUSALS."""
    result = ocirt.run(bundle)
    if result.returncode != 0 and any(text in result.stderr for text in refusals):
        print("skipped: %s: %s" % (reason, result.stderr.strip()))
        pytest.skip("%s: %s" % (reason, result.stderr.strip()))
    assert result.returncode == 0, "container failed (%d)\nstdout: %s\nstderr: %s" % (
        result.returncode, result.stdout, result.stderr)
    return result.stdout


# --------------------------------------------------------------------------
# scheduler and I/O priority


def test_scheduler_batch_with_nice(ocirt, make_bundle):
    bundle = make_bundle(["cat", "/proc/self/stat"],
                         config={"process": {"scheduler": {"policy": "SCHED_BATCH", "nice": 7}}})
    out = run_ok(ocirt, bundle)
    assert stat_field(out, 41) == 3  # SCHED_BATCH
    assert stat_field(out, 19) == 7  # nice


def test_scheduler_real_time_needs_and_gets_cap_sys_nice(ocirt, make_bundle):
    """Applied while the process is still privileged: the configured capabilities lack CAP_SYS_NICE."""
    bundle = make_bundle(["cat", "/proc/self/stat"],
                         config={"process": {"scheduler": {"policy": "SCHED_RR", "priority": 5}}})
    out = run_or_skip_if_refused(ocirt, bundle, ["Operation not permitted"],
                                 "real-time scheduling is refused in this cgroup (RT group scheduling)")
    assert stat_field(out, 41) == 2  # SCHED_RR
    assert stat_field(out, 40) == 5  # rt_priority


def test_scheduler_in_exec_too(ocirt, make_bundle, tmp_path):
    bundle = make_bundle(["sleep", "30"], config={"process": {"scheduler": {"policy": "SCHED_IDLE"}}})
    container_id = new_id("sch")
    ocirt("run", "--detach", "--bundle", bundle, container_id)
    out = ocirt("exec", container_id, "cat", "/proc/self/stat").stdout
    assert stat_field(out, 41) == 5  # SCHED_IDLE, from the container's process
    proc = {"args": ["cat", "/proc/self/stat"], "cwd": "/", "scheduler": {"policy": "SCHED_BATCH", "nice": 3}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(proc))
    out = ocirt("exec", "--process", str(path), container_id).stdout
    assert stat_field(out, 41) == 3
    assert stat_field(out, 19) == 3
    ocirt("delete", "--force", container_id)


IOPRIO_CLASS_NUMBERS = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}  # linux/ioprio.h
IOPRIO_WHO_PROCESS = 1


def io_priority_of(pid):
    """(class, priority) of PID's I/O priority, read back with ioprio_get(2): no procfs file shows it."""
    number = TABLES[platform.machine()]["ioprio_get"]
    value = ctypes.CDLL(None, use_errno=True).syscall(number, IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        raise OSError(ctypes.get_errno(), "ioprio_get(%d)" % pid)
    return value >> 13, value & 0x1FFF  # IOPRIO_CLASS_SHIFT; the rest is the class data


# Priorities other than 4: best-effort 4 is what an unset I/O priority reads back as.
@pytest.mark.parametrize("io_class,priority", [("IOPRIO_CLASS_BE", 6), ("IOPRIO_CLASS_IDLE", 2),
                                               ("IOPRIO_CLASS_RT", 1)])
def test_io_priority_applies(ocirt, make_bundle, io_class, priority):
    if platform.machine() not in TABLES:
        pytest.skip("no syscall table for %s to find ioprio_get in" % platform.machine())
    bundle = make_bundle(["sleep", "1000"],
                         config={"process": {"ioPriority": {"class": io_class, "priority": priority}}})
    container_id = new_id("ioprio")
    pid = create_and_start(ocirt, bundle, container_id)
    assert io_priority_of(os.getpid()) != (IOPRIO_CLASS_NUMBERS[io_class], priority)  # not merely inherited
    assert io_priority_of(pid) == (IOPRIO_CLASS_NUMBERS[io_class], priority)
    ocirt("delete", "--force", container_id)


# --------------------------------------------------------------------------
# CPU affinity, personality, memory policy


def test_exec_cpu_affinity_initial_then_final(ocirt, make_bundle):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs, the runtime has %s" % cpus)
    initial, final = str(cpus[0]), str(cpus[1])
    bundle = make_bundle(["cat", "/proc/self/status"],
                         config={"process": {"execCPUAffinity": {"initial": initial, "final": final}}})
    assert status_field(run_ok(ocirt, bundle), "Cpus_allowed_list") == final
    bundle = make_bundle(["cat", "/proc/self/status"],
                         config={"process": {"execCPUAffinity": {"initial": initial}}})
    assert status_field(run_ok(ocirt, bundle), "Cpus_allowed_list") == initial


def test_personality_linux32(ocirt, make_bundle):
    bundle = make_bundle(["cat", "/proc/self/personality"],
                         config={"linux": {"personality": {"domain": "LINUX32"}}})
    assert run_ok(ocirt, bundle).strip() == "00000008"
    bundle = make_bundle(["cat", "/proc/self/personality"], config={"linux": {"personality": {"domain": "LINUX"}}})
    assert run_ok(ocirt, bundle).strip() == "00000000"


def test_memory_policy_bind(ocirt, make_bundle):
    if not os.path.exists("/sys/devices/system/node/node0"):
        print("skipped: the kernel has no NUMA nodes")
        pytest.skip("the kernel has no NUMA nodes (no /sys/devices/system/node/node0)")
    bundle = make_bundle(["sh", "-c", "cat /proc/self/numa_maps 2>/dev/null; true"],
                         config={"linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}}})
    out = run_or_skip_if_refused(ocirt, bundle, ["Function not implemented"], "the kernel lacks set_mempolicy")
    if not out:
        print("note: no /proc/self/numa_maps: the policy applied, but cannot be read back")
        return
    assert "bind:0" in out


# --------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("config, needle", [
    ({"process": {"ioPriority": {"class": "IOPRIO_CLASS_FAST"}}}, "process.ioPriority.class"),
    ({"process": {"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}}, "process.ioPriority.priority"),
    ({"process": {"scheduler": {"policy": "SCHED_SOMETIMES"}}}, "process.scheduler.policy"),
    ({"process": {"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}}, "process.scheduler.nice"),
    ({"process": {"scheduler": {"policy": "SCHED_FIFO"}}}, "process.scheduler.priority"),
    ({"process": {"scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FAST"]}}}, "process.scheduler.flags[0]"),
    ({"process": {"execCPUAffinity": {"initial": "0-"}}}, "process.execCPUAffinity.initial"),
    ({"process": {"execCPUAffinity": {"final": "3-1"}}}, "process.execCPUAffinity.final"),
    ({"linux": {"personality": {"domain": "LINUX64"}}}, "linux.personality.domain"),
    ({"linux": {"memoryPolicy": {"mode": "MPOL_EVERYWHERE"}}}, "linux.memoryPolicy.mode"),
    ({"linux": {"memoryPolicy": {"mode": "MPOL_BIND"}}}, "linux.memoryPolicy.nodes"),
    ({"linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "x"}}}, "linux.memoryPolicy.nodes"),
])
def test_bad_values_fail_create_naming_the_field(ocirt, make_bundle, config, needle):
    assert_create_fails(ocirt, make_bundle(["true"], config=config), needle)


@pytest.mark.parametrize("config, field", [
    ({"process": {"apparmorProfile": "docker-default"}}, "process.apparmorProfile"),
    ({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}, "process.selinuxLabel"),
    ({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}, "linux.mountLabel"),
])
def test_lsm_field_without_the_module_fails_create(ocirt, make_bundle, config, field):
    module_present = lsm.selinux_enabled() if field != "process.apparmorProfile" else lsm.apparmor_enabled()
    if module_present:
        pytest.skip("this host has the module %s needs" % field)
    result = assert_create_fails(ocirt, make_bundle(["true"], config=config), field, "not enabled on this host")
    assert result.stderr.count(field) >= 1


def test_lsm_field_without_the_module_fails_exec(ocirt, make_bundle, tmp_path):
    if lsm.apparmor_enabled():
        pytest.skip("this host has AppArmor")
    bundle = make_bundle(["sleep", "30"])
    container_id = new_id("lsm")
    ocirt("run", "--detach", "--bundle", bundle, container_id)
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["true"], "cwd": "/", "apparmorProfile": "docker-default"}))
    result = ocirt("exec", "--process", str(path), container_id, check=False)
    assert result.returncode != 0
    assert "process.apparmorProfile" in result.stderr
    ocirt("delete", "--force", container_id)


# --------------------------------------------------------------------------
# HOME (issue 15, item 11): from the container user's entry in the image's /etc/passwd, as runc


@pytest.mark.parametrize("user, env, expected", [
    ({"uid": 0, "gid": 0}, [], "/image-root-home"),
    ({"uid": 1000, "gid": 1000}, [], "/home/app"),
    ({"uid": 4242, "gid": 4242}, [], "/"),
    ({"uid": 1000, "gid": 1000}, ["HOME=/given"], "/given"),
    ({"uid": 1000, "gid": 1000}, ["HOME="], "/home/app"),
])
def test_home_comes_from_the_images_passwd_when_env_has_none(ocirt, make_bundle, user, env, expected):
    bundle = make_bundle(["sh", "-c", 'echo "HOME=[$HOME]"'],
                         config={"process": {"user": user, "env": ["PATH=/bin:/sbin"] + env}})
    passwd = os.path.join(bundle, "rootfs", "etc", "passwd")
    with open(passwd) as handle:
        text = handle.read()
    # The host's root has /root: a different home in the image shows whose file was read.
    with open(passwd, "w") as handle:
        handle.write(text.replace("root:x:0:0:root:/root:", "root:x:0:0:root:/image-root-home:"))
    assert run_ok(ocirt, bundle) == "HOME=[%s]\n" % expected


def test_home_in_exec_too_and_a_fifo_passwd_does_not_hang(ocirt, make_bundle):
    bundle = make_bundle(["sleep", "1000"], config={"process": {"env": ["PATH=/bin:/sbin"]}})
    container_id = new_id("home")
    ocirt("run", "--detach", "--bundle", bundle, container_id)
    try:
        as_app = ocirt("exec", "--user", "1000:1000", container_id, "sh", "-c", 'echo "[$HOME]"')
        as_root = ocirt("exec", "--env", "HOME=/set", container_id, "sh", "-c", 'echo "[$HOME]"')
        passwd = os.path.join(bundle, "rootfs", "etc", "passwd")
        os.unlink(passwd)
        os.mkfifo(passwd)
        no_reader = ocirt("exec", container_id, "sh", "-c", 'echo "[$HOME]"')
    finally:
        ocirt("delete", "--force", container_id)
    assert (as_app.stdout, as_root.stdout, no_reader.stdout) == ("[/home/app]\n", "[/set]\n", "[/]\n")
