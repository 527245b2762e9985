"""Real containers on a pure cgroup v2 layout: device programs, freeze, kill, delete, crash recovery.

This host is a v1 hybrid whose cgroup2 hierarchy is mounted at
/sys/fs/cgroup/unified. The `v2` fixture starts one helper process in a
private mount namespace where /sys/fs/cgroup is unmounted and a lone cgroup2
mount takes its place: the layout of a pure v2 host (Debian 12, Ubuntu
22.04+, RHEL 9). Every `ocirt` command of a test runs in that namespace
(nsenter), so create, start, state, update and delete are separate commands
that share one v2 view; the state root under /run is the same directory as
outside. A container's cgroup /ocirt/ID there is /sys/fs/cgroup/unified/ocirt/ID
out here (one hierarchy, two mounts): the tests read and check it from here,
and the host audit of the state_root fixture sees it too.

Device programs, cgroup.freeze, cgroup.kill and hugetlb are enforced for real
in that view; memory, cpu, pids and io are v1 controllers on this host, so
there they are absent, and asking for them must fail naming the field
(their planned v2 writes are unit-tested in tests/unit/test_cgroup_plan.py).
Waiting is always a bounded poll that fails with a message.
"""
import json
import os
import signal
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from helpers import OCIRT, POLL_DELAY, WORDS_BY_ROOT, new_id, poll
import nspawn_support
from nspawn_support import HOST_UNIFIED, REPO, read

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import device_program
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Hierarchy, Layout
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import plan_devices
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config

MB = 1024 * 1024
SLEEP = ["sleep", "1000"]
FAMILY = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]
DEFAULT_MOUNTS = default_config()["mounts"]
DEFAULT_NAMESPACES = default_config()["linux"]["namespaces"]
DENY_ALL = {"allow": False, "access": "rwm"}
PHASES = ["after-cgroups", "during-mounts", "before-created"]


def probe_device():
    """A linux.devices entry, /dev/probe, for a character device that no default rule allows and
    that opens for reading and writing without any capability (fuse, tun, loop-control), so that
    an EPERM inside the container can only come from the device rules; or skip."""
    for path in ("/dev/fuse", "/dev/net/tun", "/dev/loop-control"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_ISCHR(st.st_mode):
            return {"path": "/dev/probe", "type": "c", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                    "fileMode": 0o666, "uid": 0, "gid": 0}
    pytest.skip("no character device here that opens without a capability (fuse, tun, loop-control)")


def allow_probe(device, access):
    return {"allow": True, "type": "c", "major": device["major"], "minor": device["minor"], "access": access}


def host_dir(container_id, name=None):
    """This side's path of the container's cgroup /ocirt/ID (or of its file NAME)."""
    directory = os.path.join(HOST_UNIFIED, "ocirt", container_id)
    return os.path.join(directory, name) if name else directory


def procs(container_id):
    try:
        return sorted(int(p) for p in read(host_dir(container_id, "cgroup.procs")).split())
    except FileNotFoundError:
        return []


def programs(container_id):
    """[(id, name)] of the device programs attached to the container's cgroup."""
    return device_program.attached(host_dir(container_id))


def proc_gone(pid):
    try:
        for line in read("/proc/%d/status" % pid).splitlines():
            if line.startswith("State:"):
                return line.split()[1] == "Z"
    except OSError:
        return True
    return False


class V2View:
    """`ocirt --root ROOT` run inside the helper's mount namespace, where cgroups are pure v2."""

    def __init__(self, root, helper_pid):
        self.root = root
        self.helper_pid = helper_pid

    def __call__(self, *args, **kwargs):
        """Run `ocirt ARGS` in the v2 view: CompletedProcess (text); CHECK (default) fails on an error.

        A created container keeps the command's stdout and stderr: for create
        they go to files, or reading them would wait for the container's end.
        """
        check = kwargs.pop("check", True)
        WORDS_BY_ROOT.setdefault(self.root, set()).update(str(a) for a in args)
        argv = ["nsenter", "-t", str(self.helper_pid), "-m", OCIRT, "--root", self.root] + [str(a) for a in args]
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        if args and args[0] == "create":
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                code = subprocess.call(argv, stdout=out, stderr=err, **kwargs)
                out.seek(0)
                err.seek(0)
                result = subprocess.CompletedProcess(argv, code, out.read(), err.read())
        else:
            result = subprocess.run(argv, check=False, capture_output=True, text=True, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError("ocirt %s failed (%d): %s%s" % (" ".join(map(str, args)), result.returncode,
                                                                 result.stdout, result.stderr))
        return result

    def state(self, container_id):
        return json.loads(self("state", container_id).stdout)

    def record(self, container_id):
        """state.json as the runtime wrote it, or None."""
        try:
            with open(os.path.join(self.root, container_id, "state.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def run_detached(self, make_bundle, args=None, config=None, container_id=None):
        """create + start; return (id, pid) of a running container."""
        container_id = container_id or new_id("v2")
        bundle = make_bundle(args or SLEEP, config=config)
        self("create", "--bundle", bundle, container_id)
        self("start", container_id)
        state = self.state(container_id)
        assert state["status"] == "running", state
        return container_id, state["pid"]

    def run(self, make_bundle, args, config=None):
        """`ocirt run` in the foreground, removed at exit: CompletedProcess."""
        bundle = make_bundle(args, config=config)
        return self("run", "--bundle", bundle, new_id("run"), check=False)


@pytest.fixture
def v2(state_root):
    """A V2View; afterwards its containers are force-deleted in the v2 view and the helper ends,
    before state_root's finalizer audits the host."""
    if HOST_UNIFIED is None:
        pytest.skip("the host has no cgroup2 hierarchy to mount as a pure v2 layout")
    script = ("umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && echo ready "
              "&& exec sleep infinity")
    helper = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    view = V2View(state_root, helper.pid)
    ready = b""
    try:
        ready = helper.stdout.readline()
        if ready.strip() != b"ready":
            pytest.skip("cannot make a private mount namespace with cgroup2 at /sys/fs/cgroup here")
        yield view
    finally:
        if os.path.isdir(state_root) and ready.strip() == b"ready":
            listed = view("list", "-q", check=False).stdout.split()
            named = [n for n in os.listdir(state_root) if not n.startswith("=")]
            for container_id in sorted(set(listed) | set(named)):
                view("delete", "--force", container_id, check=False)
        helper.kill()
        helper.wait()
        helper.stdout.close()


def assert_clean_error(result, *needles):
    assert result.returncode not in (0, -9), result
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, "error does not say %r: %r" % (needle, result.stderr)


def assert_no_cgroup_and_no_program(container_id, program_ids):
    poll(lambda: not os.path.lexists(host_dir(container_id)), "cgroup /ocirt/%s to go" % container_id)
    for prog_id in program_ids:
        # The kernel releases a removed cgroup's programs asynchronously.
        poll(lambda: not device_program.program_exists(prog_id), "device program %d to be released" % prog_id)


# --------------------------------------------------------------------------
# the layout, and the default config
# --------------------------------------------------------------------------

def test_the_runtime_sees_a_pure_v2_host_and_uses_the_unified_hierarchy_only(v2, make_bundle):
    container_id, pid = v2.run_detached(make_bundle)
    record = v2.record(container_id)["cgroup"]
    assert record["mode"] == "v2", record
    assert record["dirs"] == {"unified": "/sys/fs/cgroup/ocirt/" + container_id}, record
    assert procs(container_id) == [pid]
    assert "0::/ocirt/%s" % container_id in read("/proc/%d/cgroup" % pid).splitlines()
    # No v1 hierarchy was touched: none is visible in the v2 view.
    for hierarchy in ("memory", "pids", "devices", "freezer"):
        assert not os.path.exists(os.path.join("/sys/fs/cgroup", hierarchy, "ocirt", container_id)), hierarchy
    v2("delete", "--force", container_id)


def test_the_default_config_runs(v2, make_bundle):
    """`ocirt spec`'s config (its devices rules start with a deny-all) as it is, on v2."""
    script = ("cat /dev/null && echo NULL-OK; "
              "head -c 4 /dev/zero | od -An -tx1; "
              "echo x > /dev/full; echo full=$?; "
              "head -c 1 /dev/urandom >/dev/null && echo URANDOM-OK; "
              "cat /proc/self/cgroup")
    result = v2.run(make_bundle, ["sh", "-c", script])
    assert result.returncode == 0, result
    assert "NULL-OK" in result.stdout and "URANDOM-OK" in result.stdout, result
    assert "00 00 00 00" in result.stdout, result
    # /dev/full is allowed: writing fails with ENOSPC from the device, not EPERM from the program.
    assert "full=1" in result.stdout and "No space left on device" in result.stderr, result
    assert "Operation not permitted" not in result.stderr, result


# --------------------------------------------------------------------------
# device rules: the eBPF program
# --------------------------------------------------------------------------

def test_a_device_present_but_not_allowed_cannot_be_opened(v2, make_bundle):
    device = probe_device()
    script = ("ls -l /dev/probe; true < /dev/probe && echo READ-OPENED; true > /dev/probe && echo WRITE-OPENED; "
              "true < /dev/null && echo NULL-OPENED")
    result = v2.run(make_bundle, ["sh", "-c", script], config={"linux": {"devices": [device]}})
    assert "/dev/probe" in result.stdout, result  # the node is there...
    assert "OPENED" not in result.stdout.replace("NULL-OPENED", ""), result  # ...and the program refuses it
    assert result.stderr.count("Operation not permitted") == 2, result
    assert "NULL-OPENED" in result.stdout, result


def test_an_allowed_device_can_be_opened_for_its_access_only(v2, make_bundle):
    device = probe_device()
    rules = [DENY_ALL, allow_probe(device, "r")]
    script = "true < /dev/probe && echo READ-OPENED; true > /dev/probe || echo WRITE-REFUSED"
    result = v2.run(make_bundle, ["sh", "-c", script],
                    config={"linux": {"devices": [device], "resources": {"devices": rules}}})
    assert "READ-OPENED" in result.stdout, result
    assert "WRITE-REFUSED" in result.stdout and "Operation not permitted" in result.stderr, result


def test_mknod_is_allowed_but_not_opening_what_it_made(v2, make_bundle):
    device = probe_device()
    caps = ["CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_KILL"]
    config = {"process": {"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
              "mounts": DEFAULT_MOUNTS + [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                           "options": ["mode=1777"]}]}
    script = "mknod /tmp/probe c %d %d && echo MKNOD-OK; true < /tmp/probe && echo OPENED" % (
        device["major"], device["minor"])
    result = v2.run(make_bundle, ["sh", "-c", script], config=config)
    assert "MKNOD-OK" in result.stdout, result
    assert "OPENED" not in result.stdout and "Operation not permitted" in result.stderr, result


def exec_open(v2, container_id):
    result = v2("exec", container_id, "sh", "-c", "true < /dev/probe && echo OPENED", check=False)
    return "OPENED" in result.stdout


def test_update_replaces_the_program_and_the_rules_take_effect(v2, make_bundle, scratch):
    device = probe_device()
    container_id, _pid = v2.run_detached(make_bundle, config={"linux": {"devices": [device]}})
    before = programs(container_id)
    assert len(before) == 1 and before[0][1] == device_program.PROGRAM_NAME, before
    assert not exec_open(v2, container_id)

    allow = os.path.join(scratch, "allow.json")
    with open(allow, "w") as handle:
        json.dump({"devices": [DENY_ALL, allow_probe(device, "r")]}, handle)
    v2("update", "--resources", allow, container_id)
    after = programs(container_id)
    assert len(after) == 1 and after[0][1] == device_program.PROGRAM_NAME, after
    assert after[0][0] != before[0][0], "update left the old program attached"
    poll(lambda: not device_program.program_exists(before[0][0]), "the replaced program to be released")
    assert exec_open(v2, container_id)

    deny = os.path.join(scratch, "deny.json")
    with open(deny, "w") as handle:
        json.dump({"devices": [DENY_ALL]}, handle)
    v2("update", "--resources", deny, container_id)
    assert [p[0] for p in programs(container_id)] != [after[0][0]]
    assert len(programs(container_id)) == 1
    assert not exec_open(v2, container_id)
    assert v2.state(container_id)["status"] == "running"
    v2("delete", "--force", container_id)


def test_update_leaves_programs_it_did_not_attach(v2, make_bundle, scratch):
    """A program someone else attached to the container's cgroup (systemd, an agent) stays."""
    container_id, _pid = v2.run_detached(make_bundle)
    foreign = device_program.Program(True, [])
    # Loaded under the runtime's own name, the program would be taken for the runtime's: rename it.
    fd = _load_named(foreign, b"agent_devices")
    try:
        directory_fd = os.open(host_dir(container_id), os.O_RDONLY | os.O_DIRECTORY)
        try:
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
            syscalls.bpf(device_program.BPF_PROG_ATTACH, 20,
                         {0: directory_fd, 4: fd, 8: device_program.BPF_CGROUP_DEVICE,
                          12: device_program.BPF_F_ALLOW_MULTI}, "attach")
        finally:
            os.close(directory_fd)
    finally:
        os.close(fd)
    path = os.path.join(scratch, "r.json")
    with open(path, "w") as handle:
        json.dump({"devices": [DENY_ALL]}, handle)
    v2("update", "--resources", path, container_id)
    names = sorted(name for _id, name in programs(container_id))
    assert names == [b"agent_devices", device_program.PROGRAM_NAME], names
    v2("delete", "--force", container_id)


def _load_named(program, name):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    values = {0: device_program.BPF_PROG_TYPE_CGROUP_DEVICE, 4: len(program.instructions), 48: name}
    return syscalls.bpf(device_program.BPF_PROG_LOAD, 72, values, "load",
                        {8: program.encode(), 16: device_program.LICENSE})[0]


def test_a_verifier_refusal_names_the_rule():
    layout = Layout([Hierarchy("/sys/fs/cgroup", "/", 2, [])], unified_controllers=[])
    rules = [DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]
    program = plan_devices(rules, layout)[0].program
    os.close(device_program.load(program))  # the kernel takes it as compiled
    # Make the rule's block read r6, which nothing set: the verifier stops there.
    index = program.origins.index("linux.resources.devices[1]") + 1
    program.instructions[index] = (device_program.ALU32_MOV_X, 1, 6, 0, 0)
    with pytest.raises(OCIError) as info:
        device_program.load(program)
    message = str(info.value)
    assert message.startswith("linux.resources.devices[1]: the kernel refused"), message
    assert "R6" in message, message


def test_bad_device_rules_fail_create_naming_the_rule_and_leave_nothing(v2, make_bundle):
    rules = [DENY_ALL, {"allow": True, "type": "c", "access": "rwm"},
             {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "r"}]
    container_id = new_id("bad")
    bundle = make_bundle(SLEEP, config={"linux": {"resources": {"devices": rules}}})
    result = v2("create", "--bundle", bundle, container_id, check=False)
    assert_clean_error(result, "linux.resources.devices[2]", "linux.resources.devices[1]")
    assert not os.path.lexists(os.path.join(v2.root, container_id))
    assert not os.path.lexists(host_dir(container_id))


# --------------------------------------------------------------------------
# pause, resume, kill --all, delete
# --------------------------------------------------------------------------

def test_pause_freezes_through_cgroup_freeze_and_resume_thaws(v2, make_bundle, scratch):
    shared = os.path.join(scratch, "shared")
    os.mkdir(shared)
    counter = os.path.join(shared, "c")
    mounts = DEFAULT_MOUNTS + [{"destination": "/tmp", "type": "bind", "source": shared, "options": ["rbind", "rw"]}]
    container_id, _pid = v2.run_detached(
        make_bundle, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/c; done"], config={"mounts": mounts})

    def value():
        try:
            text = read(counter).strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    poll(lambda: (value() or 0) > 10, "the counter to run")
    v2("pause", container_id)
    assert v2.state(container_id)["status"] == "paused"
    assert read(host_dir(container_id, "cgroup.freeze")).strip() == "1"
    assert "frozen 1" in read(host_dir(container_id, "cgroup.events")).splitlines()
    frozen = read(counter)
    for dummy in range(20):
        time.sleep(POLL_DELAY)
        assert read(counter) == frozen, "the counter moved while paused"
    again = v2("pause", container_id, check=False)
    assert_clean_error(again, "paused")
    v2("resume", container_id)
    assert v2.state(container_id)["status"] == "running"
    assert read(host_dir(container_id, "cgroup.freeze")).strip() == "0"
    assert "frozen 0" in read(host_dir(container_id, "cgroup.events")).splitlines()
    before = int(frozen.strip() or 0)
    poll(lambda: (value() or 0) > before, "the counter to move after resume")
    v2("delete", "--force", container_id)


def test_kill_all_reaches_every_process(v2, make_bundle):
    namespaces = [ns for ns in DEFAULT_NAMESPACES if ns["type"] != "pid"]
    container_id, pid = v2.run_detached(make_bundle, FAMILY, config={"linux": {"namespaces": namespaces}})
    family = poll(lambda: len(procs(container_id)) == 3 and procs(container_id), "the three processes")
    assert pid in family
    v2("kill", "--all", container_id, "KILL")
    poll(lambda: procs(container_id) == [] or None, "cgroup.procs to empty")
    for member in family:
        poll(lambda: proc_gone(member) or None, "process %d to die" % member)
    poll(lambda: v2.state(container_id)["status"] == "stopped", "the container to stop")
    v2("delete", container_id)
    assert not os.path.lexists(host_dir(container_id))


def test_kill_all_with_another_signal_reaches_every_process(v2, make_bundle):
    """cgroup.kill only sends SIGKILL: other signals go to each pid of cgroup.procs."""
    namespaces = [ns for ns in DEFAULT_NAMESPACES if ns["type"] != "pid"]
    container_id, _pid = v2.run_detached(make_bundle, FAMILY, config={"linux": {"namespaces": namespaces}})
    family = poll(lambda: len(procs(container_id)) == 3 and procs(container_id), "the three processes")
    v2("kill", "--all", container_id, "TERM")
    for member in family:
        poll(lambda: proc_gone(member) or None, "process %d to end on SIGTERM" % member)
    v2("delete", container_id)


def test_kill_all_of_a_paused_container_with_sigkill(v2, make_bundle):
    container_id, pid = v2.run_detached(make_bundle, FAMILY)
    poll(lambda: len(procs(container_id)) == 3, "the three processes")
    v2("pause", container_id)
    v2("kill", "--all", container_id, "KILL")
    poll(lambda: procs(container_id) == [] or None, "the frozen processes to die")
    poll(lambda: v2.state(container_id)["status"] == "stopped", "the container to stop")
    v2("delete", container_id)


def test_delete_leaves_no_cgroup_and_no_program(v2, make_bundle):
    container_id, _pid = v2.run_detached(make_bundle, FAMILY)
    ids = [prog_id for prog_id, _name in programs(container_id)]
    assert len(ids) == 1
    v2("kill", container_id, "KILL")
    poll(lambda: v2.state(container_id)["status"] == "stopped", "the container to stop")
    v2("delete", container_id)
    assert_no_cgroup_and_no_program(container_id, ids)
    # Deleting twice is an error, as on any host.
    assert_clean_error(v2("delete", container_id, check=False), "does not exist")


@pytest.mark.parametrize("phase", PHASES)
def test_create_killed_midway_leaves_nothing_after_delete_force(v2, make_bundle, phase):
    container_id = new_id("crash")
    bundle = make_bundle(SLEEP)
    result = v2("create", "--bundle", bundle, container_id, check=False,
                env=dict(os.environ, OCIRT_FAILPOINT=phase))
    assert result.returncode in (-9, 137), "create was not killed at %s: %r" % (phase, result)
    assert os.path.isdir(host_dir(container_id)), "create died after making its cgroup, yet there is none"
    ids = [prog_id for prog_id, _name in programs(container_id)]
    if phase != "after-cgroups":
        assert len(ids) == 1, ids  # the limits, devices included, are applied before the mounts
    assert v2.state(container_id)["status"] in ("creating", "stopped")
    assert v2("delete", "--force", container_id, check=False).returncode == 0
    assert not os.path.lexists(os.path.join(v2.root, container_id))
    assert_no_cgroup_and_no_program(container_id, ids)


# --------------------------------------------------------------------------
# resources: what v2 has here, and what it lacks
# --------------------------------------------------------------------------

def _unified_controllers():
    return read(os.path.join(HOST_UNIFIED, "cgroup.controllers")).split() if HOST_UNIFIED else []


def test_hugetlb_limits_and_unified_keys_are_written(v2, make_bundle):
    if "hugetlb" not in _unified_controllers():
        pytest.skip("the cgroup2 hierarchy here has no hugetlb controller")
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("the kernel has no 2MB huge pages")
    resources = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}],
                 "unified": {"hugetlb.2MB.rsvd.max": str(2 * MB)}}
    container_id, _pid = v2.run_detached(make_bundle, config={"linux": {"resources": resources}})
    assert read(host_dir(container_id, "hugetlb.2MB.max")).strip() == str(4 * MB)
    assert read(host_dir(container_id, "hugetlb.2MB.rsvd.max")).strip() == str(2 * MB)
    v2("update", "--resources", "-", container_id,
       input=json.dumps({"hugepageLimits": [{"pageSize": "2MB", "limit": 8 * MB}]}))
    assert read(host_dir(container_id, "hugetlb.2MB.max")).strip() == str(8 * MB)
    v2("delete", "--force", container_id)


ABSENT_CASES = [
    ("memory", {"memory": {"limit": 64 * MB}}, "linux.resources.memory"),
    ("pids", {"pids": {"limit": 10}}, "linux.resources.pids.limit"),
    ("cpu", {"cpu": {"shares": 512}}, "linux.resources.cpu"),
    ("cpuset", {"cpu": {"cpus": "0"}}, "linux.resources.cpu.cpus"),
    ("io", {"blockIO": {"weight": 300}}, "linux.resources.blockIO"),
    ("pids", {"unified": {"pids.max": "10"}}, "linux.resources.unified.pids.max"),
]


@pytest.mark.parametrize("controller,resources,field", ABSENT_CASES,
                         ids=[case[2] for case in ABSENT_CASES])
def test_a_controller_absent_from_v2_is_reported_by_name(v2, make_bundle, controller, resources, field):
    if controller in _unified_controllers():
        pytest.skip("the cgroup2 hierarchy here has the %s controller" % controller)
    container_id = new_id("absent")
    bundle = make_bundle(SLEEP, config={"linux": {"resources": resources}})
    result = v2("create", "--bundle", bundle, container_id, check=False)
    assert_clean_error(result, field, controller)
    assert not os.path.lexists(os.path.join(v2.root, container_id))
    assert not os.path.lexists(host_dir(container_id))


def test_update_of_an_absent_controller_names_the_field_and_changes_nothing(v2, make_bundle):
    if "memory" in _unified_controllers():
        pytest.skip("the cgroup2 hierarchy here has the memory controller")
    container_id, pid = v2.run_detached(make_bundle)
    result = v2("update", "--memory", "64m", container_id, check=False)
    assert_clean_error(result, "linux.resources.memory", "memory")
    state = v2.state(container_id)
    assert state["status"] == "running" and state["pid"] == pid
    assert v2.record(container_id).get("resources", {}).get("memory") is None
    os.kill(pid, signal.SIGKILL)
    poll(lambda: v2.state(container_id)["status"] == "stopped", "the container to stop")
    v2("delete", container_id)


def test_a_parent_holding_processes_cannot_delegate_a_controller(v2, make_bundle):
    """cgroup v2's no-internal-process rule: a cgroup with processes delegates no controller.
    A linux.cgroupsPath below such a cgroup fails with the reason, and leaves nothing."""
    if "hugetlb" not in _unified_controllers():
        pytest.skip("the cgroup2 hierarchy here has no controller to delegate (no hugetlb)")
    top = "ocirt-busy-%s" % uuid.uuid4().hex[:10]
    busy = os.path.join(HOST_UNIFIED, top)
    os.mkdir(busy)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        with open(os.path.join(busy, "cgroup.procs"), "w") as handle:
            handle.write(str(sleeper.pid))
        container_id = new_id("busy")
        bundle = make_bundle(SLEEP, config={"linux": {"cgroupsPath": "/%s/ctr" % top, "resources": {
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]}}})
        result = v2("create", "--bundle", bundle, container_id, check=False)
        assert_clean_error(result, "holds processes of its own", "linux.resources.hugepageLimits[0]",
                           "linux.cgroupsPath")
        assert not os.path.lexists(os.path.join(busy, "ctr"))
        assert not os.path.lexists(os.path.join(v2.root, container_id))
    finally:
        sleeper.kill()
        sleeper.wait()
        poll(lambda: not read(os.path.join(busy, "cgroup.procs")).split(), "the sleeper to leave %s" % busy)
        for directory in (os.path.join(busy, "ctr"), busy):
            if os.path.isdir(directory):
                os.rmdir(directory)


# --------------------------------------------------------------------------
# the container's view: the cgroup mount and the cgroup namespace
# --------------------------------------------------------------------------

def cgroup_mount(mountinfo):
    """(root, fstype, mount options) of the mount at /sys/fs/cgroup in MOUNTINFO text."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/sys/fs/cgroup":
            sep = fields.index("-")
            return fields[3], fields[sep + 1], set(fields[5].split(","))
    return None


def unified_line(proc_cgroup):
    lines = [line for line in proc_cgroup.splitlines() if line.startswith("0::")]
    assert len(lines) == 1, proc_cgroup
    return lines[0]


VIEW_SCRIPT = ("cat /proc/self/cgroup; echo ==; grep ' /sys/fs/cgroup ' /proc/self/mountinfo; echo ==; "
               "cat /sys/fs/cgroup/cgroup.procs; echo ==; "
               "mkdir /sys/fs/cgroup/sub && echo MADE && rmdir /sys/fs/cgroup/sub")


def test_the_container_sees_its_own_cgroup_read_only(v2, make_bundle):
    container_id, _pid = v2.run_detached(make_bundle)
    result = v2("exec", container_id, "sh", "-c", VIEW_SCRIPT, check=False)
    own, mounts, members, made = result.stdout.split("==\n")
    # (This host's v1 hierarchies exist in the kernel, unmounted in the v2 view: only the 0:: line counts.)
    assert unified_line(own) == "0::/ocirt/%s" % container_id, own
    root, fstype, options = cgroup_mount(mounts)
    # A bind of the container's own cgroup, never the host's whole tree.
    assert (root, fstype) == ("/ocirt/%s" % container_id, "cgroup2"), mounts
    assert "ro" in options, mounts
    # Its cgroup.procs: the container's init (pid 1 in its pid namespace) and the exec'd shell's family.
    assert "1" in members.split() and len(members.split()) >= 2, members
    assert "MADE" not in made and "Read-only file system" in result.stderr, result
    v2("delete", "--force", container_id)


def test_a_cgroup_namespace_is_rooted_at_the_containers_cgroup(v2, make_bundle):
    """As runc: the namespace is made once the process is in its cgroup, so /proc/self/cgroup reads "/"."""
    namespaces = DEFAULT_NAMESPACES + [{"type": "cgroup"}]
    container_id, pid = v2.run_detached(make_bundle, config={"linux": {"namespaces": namespaces}})
    assert os.stat("/proc/%d/ns/cgroup" % pid).st_ino != os.stat("/proc/self/ns/cgroup").st_ino
    result = v2("exec", container_id, "sh", "-c", VIEW_SCRIPT, check=False)
    own, mounts, _members, _made = result.stdout.split("==\n")
    assert unified_line(own) == "0::/", own
    assert cgroup_mount(mounts)[0] == "/", mounts
    # From the host, the process is where it should be.
    assert "0::/ocirt/%s" % container_id in read("/proc/%d/cgroup" % pid).splitlines()
    v2("delete", "--force", container_id)


def test_a_writable_cgroup_mount_lets_the_container_nest_and_delete_removes_it_all(v2, make_bundle):
    mounts = [m for m in DEFAULT_MOUNTS if m["destination"] != "/sys/fs/cgroup"]
    mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                   "options": ["nosuid", "noexec", "nodev", "rw"]})
    container_id, _pid = v2.run_detached(make_bundle, config={"mounts": mounts})
    v2("exec", container_id, "sh", "-c", "mkdir -p /sys/fs/cgroup/sub/deeper")
    assert os.path.isdir(host_dir(container_id, "sub/deeper"))
    v2("delete", "--force", container_id)
    assert not os.path.lexists(host_dir(container_id))


def test_a_cgroup_namespace_is_rooted_at_the_containers_cgroups_on_this_hosts_layout_too(ocirt, make_bundle):
    """The namespace is made after the process joined its cgroups on v1 and hybrid hosts as well:
    every hierarchy's line reads "/", the v1 ones included."""
    namespaces = DEFAULT_NAMESPACES + [{"type": "cgroup"}]
    bundle = make_bundle(["cat", "/proc/self/cgroup"], config={"linux": {"namespaces": namespaces}})
    result = ocirt.run(bundle)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines and all(line.split(":", 2)[2] == "/" for line in lines), lines


# --------------------------------------------------------------------------
# the systemd cgroup driver, under a real systemd (systemd-nspawn)
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def systemd_host():
    """systemd booted by systemd-nspawn (tests/nspawn_support.py), for this module's tests."""
    with nspawn_support.booted_systemd() as host:
        yield host


def scope_of(container_id, slice_path="/system.slice", prefix="ocirt"):
    return "%s/%s-%s.scope" % (slice_path, prefix, container_id)


def test_systemd_scope_is_made_with_delegate_and_removed_at_delete(systemd_host, make_bundle):
    host = systemd_host
    container_id = new_id("sd")
    hugetlb = "hugetlb" in host.sh("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
    assert hugetlb or "hugetlb" not in _unified_controllers(), "the fixture did not hand hugetlb down"
    resources = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]} if hugetlb else {}
    bundle = host.bundle(container_id, SLEEP, {"linux": {"cgroupsPath": "system.slice:ocirt:" + container_id,
                                                         "resources": resources}})
    host.ocirt("create", "--bundle", bundle, container_id)
    host.ocirt("start", container_id)
    state = json.loads(host.ocirt("state", container_id).stdout)
    unit = "ocirt-%s.scope" % container_id
    shown = host.unit(unit, "Delegate", "ActiveState", "ControlGroup", "Slice")
    assert shown == {"Delegate": "yes", "ActiveState": "active", "ControlGroup": scope_of(container_id),
                     "Slice": "system.slice"}, shown
    assert state["status"] == "running"
    # The container's process is in the scope, and the runtime's limits are written there.
    procs_file = "/sys/fs/cgroup%s/cgroup.procs" % scope_of(container_id)
    assert host.sh("cat " + procs_file).stdout.split() == [str(state["pid"])]
    if hugetlb:
        assert host.sh("cat /sys/fs/cgroup%s/hugetlb.2MB.max" % scope_of(container_id)).stdout.strip() == str(4 * MB)
    host.ocirt("delete", "--force", container_id)
    poll(lambda: host.unit(unit, "LoadState").get("LoadState") == "not-found", "the scope to be gone")
    assert host.sh("test -e /sys/fs/cgroup%s" % scope_of(container_id), check=False).returncode != 0


def test_a_scope_in_a_nested_slice(systemd_host, make_bundle):
    host = systemd_host
    container_id = new_id("sd")
    bundle = host.bundle(container_id, SLEEP, {"linux": {"cgroupsPath": "ocirt-tests.slice:pre:" + container_id}})
    host.ocirt("run", "--detach", "--bundle", bundle, container_id)
    path = scope_of(container_id, "/ocirt.slice/ocirt-tests.slice", "pre")
    assert host.unit("pre-%s.scope" % container_id, "ControlGroup")["ControlGroup"] == path
    pid = json.loads(host.ocirt("state", container_id).stdout)["pid"]
    assert host.sh("cat /sys/fs/cgroup%s/cgroup.procs" % path).stdout.split() == [str(pid)]
    host.ocirt("delete", "--force", container_id)
    poll(lambda: host.unit("pre-%s.scope" % container_id, "LoadState")["LoadState"] == "not-found",
         "the scope to be gone")


@pytest.mark.parametrize("phase", PHASES)
def test_a_create_killed_midway_leaves_no_scope_after_delete_force(systemd_host, make_bundle, phase):
    host = systemd_host
    container_id = new_id("sdcrash")
    bundle = host.bundle(container_id, SLEEP, {"linux": {"cgroupsPath": "system.slice:ocirt:" + container_id}})
    result = host.sh("OCIRT_FAILPOINT=%s %s/.venv/bin/ocirt create --bundle %s %s >/dev/null 2>&1"
                     % (phase, REPO, bundle, container_id), check=False)
    assert result.returncode == 137, "create was not killed at %s: %r" % (phase, result)
    host.ocirt("delete", "--force", container_id)
    unit = "ocirt-%s.scope" % container_id
    poll(lambda: host.unit(unit, "LoadState")["LoadState"] == "not-found", "the scope to be gone")
    assert host.sh("test -e /sys/fs/cgroup%s" % scope_of(container_id), check=False).returncode != 0
    assert host.sh("test -e /run/ocirt/%s" % container_id, check=False).returncode != 0


def test_the_systemd_form_without_systemd_is_refused_naming_the_field(ocirt, make_bundle):
    """On this host PID 1 is no systemd: the form cannot be honoured, and says so, leaving nothing."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd manages this host")
    container_id = new_id("nosd")
    bundle = make_bundle(SLEEP, config={"linux": {"cgroupsPath": "system.slice:ocirt:" + container_id}})
    result = ocirt("create", "--bundle", bundle, container_id, check=False)
    assert_clean_error(result, "linux.cgroupsPath", "systemd")
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))


@pytest.mark.parametrize("command", ["create", "run"])
def test_the_systemd_driver_puts_a_container_without_cgroups_path_in_its_own_scope(systemd_host, command):
    """ocirt --systemd-cgroup, as runc's clients call it: no cgroupsPath means ocirt-<id>.scope in system.slice."""
    host = systemd_host
    container_id = new_id("sdflag")
    bundle = host.bundle(container_id, SLEEP, {"linux": {}})
    if command == "create":
        host.ocirt("--systemd-cgroup", "create", "--bundle", bundle, container_id)
        host.ocirt("--systemd-cgroup", "start", container_id)
    else:
        host.ocirt("--systemd-cgroup", "run", "--detach", "--bundle", bundle, container_id)
    unit = "ocirt-%s.scope" % container_id
    shown = host.unit(unit, "Delegate", "ActiveState", "ControlGroup", "Slice")
    assert shown == {"Delegate": "yes", "ActiveState": "active", "ControlGroup": scope_of(container_id),
                     "Slice": "system.slice"}, shown
    state = json.loads(host.ocirt("state", container_id).stdout)
    assert state["status"] == "running"
    assert host.sh("cat /sys/fs/cgroup%s/cgroup.procs" % scope_of(container_id)).stdout.split() == [str(state["pid"])]
    # The runtime's own parent is not used with the driver.
    assert host.sh("test -e /sys/fs/cgroup/ocirt/%s" % container_id, check=False).returncode != 0
    # delete needs no flag: the scope is recorded with the container.
    host.ocirt("delete", "--force", container_id)
    poll(lambda: host.unit(unit, "LoadState").get("LoadState") == "not-found", "the scope to be gone")
    assert host.sh("test -e /sys/fs/cgroup%s" % scope_of(container_id), check=False).returncode != 0


def test_the_systemd_driver_refuses_a_cgroup_path_and_leaves_nothing(systemd_host):
    host = systemd_host
    container_id = new_id("sdflag")
    bundle = host.bundle(container_id, SLEEP, {"linux": {"cgroupsPath": "/machine/" + container_id}})
    result = host.ocirt("--systemd-cgroup", "create", "--bundle", bundle, container_id, check=False)
    assert result.returncode == 1, result
    assert "linux.cgroupsPath" in result.stderr and "slice:prefix:name" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert host.sh("test -e /run/ocirt/%s" % container_id, check=False).returncode != 0
    assert host.sh("test -e /sys/fs/cgroup/machine/%s" % container_id, check=False).returncode != 0


def test_without_the_flag_under_systemd_an_empty_cgroups_path_stays_the_runtimes_own(systemd_host):
    host = systemd_host
    container_id = new_id("sdflag")
    bundle = host.bundle(container_id, SLEEP, {"linux": {}})
    host.ocirt("run", "--detach", "--bundle", bundle, container_id)
    try:
        pid = json.loads(host.ocirt("state", container_id).stdout)["pid"]
        assert host.sh("cat /sys/fs/cgroup/ocirt/%s/cgroup.procs" % container_id).stdout.split() == [str(pid)]
        assert host.unit("ocirt-%s.scope" % container_id, "LoadState")["LoadState"] == "not-found"
    finally:
        host.ocirt("delete", "--force", container_id)


_MODULE_RUN = r"""
import json, sys
sys.path[0:0] = [%(repo)r + '/.venv/collections', %(repo)r + '/.venv/lib/python3.11/site-packages']
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
params = dict(state_root='/run/ocirt', recreate=False, restart=False, wait='none', timeout=0,
              stop_signal='SIGKILL', stop_timeout=0, log_path=None, log_max_size=None, log_max_files=None,
              logs_lines=20)
params.update(json.loads(sys.argv[1]))
result = container_state.run(params)
print(json.dumps(dict(default=container_state.host_cgroup_manager(), manager=result.get('cgroup_manager'),
                      actions=result['actions'], cgroup_path=(result['container'] or {}).get('cgroup_path'))))
"""


def test_oci_container_state_defaults_to_the_systemd_manager_here_and_a_change_recreates(systemd_host):
    """The module's work (container_state.run) under systemd on pure v2: the default is systemd's scope;
    cgroup_manager=cgroupfs recreates the container in the runtime's own cgroup; absent removes it."""
    host = systemd_host
    container_id = new_id("sdmod")
    bundle = host.bundle(container_id, SLEEP, {"linux": {}})

    def module(**params):
        params.update(id=container_id, bundle=bundle)
        return _in_host(host, _MODULE_RUN % {"repo": REPO}, params)
    unit = "ocirt-%s.scope" % container_id
    try:
        first = module(state="running", cgroup_manager=None)
        assert (first["default"], first["manager"]) == ("systemd", "systemd")
        assert first["cgroup_path"] == scope_of(container_id)
        assert host.unit(unit, "Delegate", "ActiveState") == {"Delegate": "yes", "ActiveState": "active"}
        assert module(state="running", cgroup_manager="systemd")["actions"] == []
        moved = module(state="running", cgroup_manager="cgroupfs")
        assert moved["actions"][-2:] == ["create: recreate: linux.cgroupsPath changed", "start"]
        assert moved["cgroup_path"] == "/ocirt/" + container_id
        poll(lambda: host.unit(unit, "LoadState")["LoadState"] == "not-found", "the old scope to be gone")
        back = module(state="running", cgroup_manager=None)
        assert back["actions"][-2:] == ["create: recreate: linux.cgroupsPath changed", "start"]
        assert back["cgroup_path"] == scope_of(container_id)
        assert module(state="absent", cgroup_manager=None)["manager"] is None
        poll(lambda: host.unit(unit, "LoadState")["LoadState"] == "not-found", "the scope to be gone")
    finally:
        host.ocirt("delete", "--force", container_id, check=False)


def _in_host(host, script, params):
    """SCRIPT run by the venv's python inside the systemd container with PARAMS (json) as its argument."""
    path = os.path.join(host.bundles, "module-run-%s.py" % uuid.uuid4().hex[:8])
    with open(path, "w") as handle:
        handle.write(script)
    try:
        out = host.sh("%s/.venv/bin/python -I %s '%s'" % (REPO, path, json.dumps(params))).stdout
    finally:
        os.unlink(path)
    return json.loads(out)
