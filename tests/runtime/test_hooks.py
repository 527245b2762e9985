"""config.json `hooks` with real containers: where and when each kind runs, what it is given,
and what its failure does.

Each logging hook is a `#!/bin/sh` script written by the test. It appends one
line to a log in a directory that is also bind-mounted into the container (at
/hooklog), so hooks run on the host and hooks run inside the container write
the same file. A line holds the kind (the hook's first argument), the hook's
own mount and UTS namespaces, the hostname it sees, whether it sees a host
path, whether the container's program has run yet, the mount namespace of
the pid named in its state, and the state JSON it read on stdin.

Expected behaviour is the runtime-spec's (config.md "POSIX-platform Hooks",
runtime.md "Lifecycle") and runc's where the spec leaves room.

No test asserts on durations: a hook's `timeout` is only checked to fail the
operation, and every wait is a bounded poll or a subprocess timeout used as a
hang detector.
"""
import json
import os
import random

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
from helpers import assert_error, assert_gone, cmdline, new_id, poll, runtime_cgroups

HANG_SECONDS = 120  # subprocess timeout: a hang detector, not a measurement

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
CREATE_KINDS = ["prestart", "createRuntime", "createContainer"]
HOST_PATH_KINDS = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
HOOK_PATH_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
CONTAINER_LOGDIR = "/hooklog"
LOG_NAME = "hooks.log"
RAN_MARK = "program-ran"

# Appends one tab-separated line (see the module docstring) to LOGDIR/hooks.log.
LOGGING_SCRIPT = r"""#!/bin/sh
state=$(cat)
pid=$(printf '%%s' "$state" | sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p')
target=$(readlink "/proc/${pid:-0}/ns/mnt" 2>/dev/null)
if [ -e '%(marker)s' ]; then seen=host-visible; else seen=host-hidden; fi
if [ -e '%(logdir)s/%(ran)s' ]; then ran=program-ran; else ran=program-not-ran; fi
printf '%%s\t%%s\t%%s\t%%s\t%%s\t%%s\t%%s\t%%s\n' "$1" "$(readlink /proc/self/ns/mnt)" \
    "$(readlink /proc/self/ns/uts)" "$(cat /proc/sys/kernel/hostname)" "$seen" "$ran" "$target" \
    "$state" >> '%(logdir)s/%(log)s'
"""

LOG_FIELDS = ("kind", "mnt", "uts", "hostname", "seen", "ran", "target_mnt", "state")

# The container's program: it leaves a mark (visible to later hooks), then sleeps.
PROGRAM = ["sh", "-c", "echo ran > %s/%s; exec sleep 1000" % (CONTAINER_LOGDIR, RAN_MARK)]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def write_executable(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o755)
    return path


def own_ns(kind):
    return os.readlink("/proc/self/ns/%s" % kind)


def own_hostname():
    with open("/proc/sys/kernel/hostname") as handle:
        return handle.read().strip()


def processes_with_cmdline(args):
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and cmdline(int(name)) == args]


class Hooked:
    """A busybox bundle whose hooks log to SCRATCH/hooklog, bind-mounted at /hooklog."""

    def __init__(self, ocirt, make_bundle, scratch):
        self.ocirt = ocirt
        self.make_bundle = make_bundle
        self.scratch = scratch
        self.logdir = os.path.join(scratch, "hooklog")
        os.makedirs(self.logdir, exist_ok=True)
        self.host_script = write_executable(
            os.path.join(scratch, "log-hook.sh"),
            LOGGING_SCRIPT % {"marker": os.path.join(scratch, "log-hook.sh"), "logdir": self.logdir,
                              "ran": RAN_MARK, "log": LOG_NAME})
        self.hostname = new_id("hk")

    def log_hook(self, kind, tag=None):
        """A logging hook for KIND: the host script, or /hook.sh inside the container for startContainer."""
        path = "/hook.sh" if kind == "startContainer" else self.host_script
        return {"path": path, "args": [path, tag or kind], "env": list(HOOK_PATH_ENV)}

    def log_hooks(self, kinds):
        return dict((kind, [self.log_hook(kind)]) for kind in kinds)

    def bundle(self, hooks, args=None, extra=None):
        mounts = default_config()["mounts"] + [
            {"destination": CONTAINER_LOGDIR, "type": "bind", "source": self.logdir, "options": ["rbind", "rw"]}]
        config = {"hooks": hooks, "mounts": mounts, "hostname": self.hostname}
        config.update(extra or {})
        path = self.make_bundle(args or PROGRAM, config=config)
        write_executable(os.path.join(path, "rootfs", "hook.sh"),
                         LOGGING_SCRIPT % {"marker": self.host_script, "logdir": CONTAINER_LOGDIR,
                                           "ran": RAN_MARK, "log": LOG_NAME})
        return path

    def entries(self):
        """The log's lines as dicts (LOG_FIELDS), the state parsed."""
        path = os.path.join(self.logdir, LOG_NAME)
        if not os.path.exists(path):
            return []
        entries = []
        with open(path) as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t", len(LOG_FIELDS) - 1)
                assert len(fields) == len(LOG_FIELDS), "malformed hook log line: %r" % line
                entry = dict(zip(LOG_FIELDS, fields))
                entry["state"] = json.loads(entry["state"])
                entries.append(entry)
        return entries

    def kinds(self):
        return [entry["kind"] for entry in self.entries()]

    def create(self, bundle, cid, check=True):
        return self.ocirt("create", "--bundle", bundle, cid, check=check, timeout=HANG_SECONDS)

    def wait_status(self, cid, wanted):
        return poll(lambda: self.ocirt.state(cid)["status"] == wanted, "container %s to be %s" % (cid, wanted))


@pytest.fixture
def hooked(ocirt, make_bundle, scratch):
    return Hooked(ocirt, make_bundle, scratch)


# --------------------------------------------------------------------------
# 1. where, when and with what each kind runs
# --------------------------------------------------------------------------

def test_every_kind_runs_once_in_order_with_the_state_on_stdin(hooked, ocirt):
    annotations = {"org.example.hooks": "yes", "other": "value"}
    bundle = hooked.bundle(hooked.log_hooks(KINDS), extra={"annotations": annotations})
    cid = new_id()
    host_mnt, host_uts, host_name = own_ns("mnt"), own_ns("uts"), own_hostname()

    created = hooked.create(bundle, cid)
    assert "warning" not in created.stderr
    assert hooked.kinds() == CREATE_KINDS
    pid = ocirt.state(cid)["pid"]
    assert pid > 0
    container_mnt = os.readlink("/proc/%d/ns/mnt" % pid)
    container_uts = os.readlink("/proc/%d/ns/uts" % pid)
    assert container_mnt != host_mnt and container_uts != host_uts

    started = ocirt("start", cid)
    assert "warning" not in started.stderr
    assert hooked.kinds() == CREATE_KINDS + ["startContainer", "poststart"]

    ocirt("kill", cid, "KILL")
    hooked.wait_status(cid, "stopped")
    assert hooked.kinds() == CREATE_KINDS + ["startContainer", "poststart"]

    deleted = ocirt("delete", cid)
    assert "warning" not in deleted.stderr
    assert hooked.kinds() == KINDS
    entries = dict((entry["kind"], entry) for entry in hooked.entries())

    for kind in KINDS:
        state = entries[kind]["state"]
        assert state["id"] == cid, (kind, state)
        assert state["bundle"] == bundle, (kind, state)
        assert state["ociVersion"], (kind, state)
        assert isinstance(state["pid"], int), (kind, state)
        assert state["annotations"] == annotations, (kind, state)
    # prestart sees "created" (runtime-tools' hooks_stdin; crun), the other create hooks "creating".
    assert entries["prestart"]["state"]["status"] == "created", entries["prestart"]["state"]
    for kind in ("createRuntime", "createContainer"):
        assert entries[kind]["state"]["status"] == "creating", (kind, entries[kind]["state"])
    assert entries["startContainer"]["state"]["status"] == "created"  # as runc: the program has not run yet
    assert entries["poststart"]["state"]["status"] == "running"
    assert entries["poststop"]["state"]["status"] == "stopped"
    for kind in CREATE_KINDS + ["startContainer", "poststart"]:
        assert entries[kind]["state"]["pid"] == pid, (kind, entries[kind]["state"])

    # prestart, createRuntime: by the runtime, in its namespaces, once the container's exist.
    for kind in ("prestart", "createRuntime"):
        entry = entries[kind]
        assert entry["mnt"] == host_mnt and entry["uts"] == host_uts, (kind, entry)
        assert entry["hostname"] == host_name, (kind, entry)
        assert entry["seen"] == "host-visible", (kind, entry)
        assert entry["target_mnt"] == container_mnt, ("the container's namespaces exist", kind, entry)
    # createContainer: in the container's namespaces, before pivot_root (its host path resolves).
    entry = entries["createContainer"]
    assert entry["mnt"] == container_mnt and entry["uts"] == container_uts, entry
    assert entry["seen"] == "host-visible", entry
    # startContainer: inside the container after the root switch, path resolved in the container.
    entry = entries["startContainer"]
    assert entry["mnt"] == container_mnt and entry["uts"] == container_uts, entry
    assert entry["hostname"] == hooked.hostname, entry
    assert entry["seen"] == "host-hidden", entry
    # Everything up to startContainer comes before the program; poststop after it.
    for kind in CREATE_KINDS + ["startContainer"]:
        assert entries[kind]["ran"] == "program-not-ran", (kind, entries[kind])
    assert entries["poststop"]["ran"] == "program-ran"
    for kind in ("poststart", "poststop"):
        entry = entries[kind]
        assert entry["mnt"] == host_mnt and entry["uts"] == host_uts and entry["hostname"] == host_name, (kind, entry)
    assert_gone(ocirt, cid)


def test_hooks_of_one_kind_run_in_the_listed_order(hooked, ocirt):
    hooks = {"prestart": [hooked.log_hook("prestart", "prestart-%d" % index) for index in range(3)],
             "poststop": [hooked.log_hook("poststop", "poststop-%d" % index) for index in range(2)]}
    cid = new_id()
    hooked.create(hooked.bundle(hooks), cid)
    assert hooked.kinds() == ["prestart-0", "prestart-1", "prestart-2"]
    ocirt("delete", "--force", cid)
    assert hooked.kinds() == ["prestart-0", "prestart-1", "prestart-2", "poststop-0", "poststop-1"]


ARGS_ENV_SCRIPT = (
    # The shell's own pid as the mounted /proc numbers it (read by the shell itself, no child).
    "read -r me rest < /proc/self/stat; "
    "/bin/busybox cat /proc/$me/cmdline > %(dir)s/%(kind)s.argv; "
    "/bin/busybox cat /proc/$me/environ > %(dir)s/%(kind)s.env; "
    "/bin/busybox cat > %(dir)s/%(kind)s.stdin")


@pytest.mark.parametrize("kind", KINDS)
def test_args_and_env_are_passed_exactly(hooked, ocirt, kind):
    """args[0] is argv[0] (busybox runs the applet argv[0] names), env is all the environment."""
    directory = CONTAINER_LOGDIR if kind == "startContainer" else hooked.logdir
    script = ARGS_ENV_SCRIPT % {"dir": directory, "kind": kind}
    args = ["sh", "-c", script, "first-arg", "second arg"]
    env = ["HOOK_A=1", "HOOK_B=two words=and an equals sign"]
    # /bin/busybox exists on the host and in the rootfs (startContainer's path is the container's).
    bundle = hooked.bundle({kind: [{"path": "/bin/busybox", "args": args, "env": env}]})
    cid = new_id()
    hooked.create(bundle, cid)
    ocirt("start", cid)
    ocirt("delete", "--force", cid)

    def read(suffix):
        path = os.path.join(hooked.logdir, "%s.%s" % (kind, suffix))
        assert os.path.exists(path), "the %s hook did not run (or did not get argv[0] 'sh')" % kind
        with open(path, "rb") as handle:
            return handle.read()
    assert read("argv").split(b"\0")[:-1] == [arg.encode() for arg in args]
    assert read("env").split(b"\0")[:-1] == [entry.encode() for entry in env]
    state = json.loads(read("stdin"))
    assert state["id"] == cid and state["bundle"] == bundle


def test_a_hook_without_args_or_env_gets_its_path_and_an_empty_environment(hooked, ocirt):
    script = write_executable(os.path.join(hooked.scratch, "bare-hook.sh"),
                              "#!/bin/busybox sh\n" + ARGS_ENV_SCRIPT % {"dir": hooked.logdir, "kind": "bare"} + "\n")
    cid = new_id()
    hooked.create(hooked.bundle({"prestart": [{"path": script}]}), cid)
    with open(os.path.join(hooked.logdir, "bare.argv"), "rb") as handle:
        # The kernel runs a script as INTERPRETER [ARG] PATH argv[1:]: argv was [path] alone.
        assert handle.read().split(b"\0")[:-1] == [b"/bin/busybox", b"sh", script.encode()]
    with open(os.path.join(hooked.logdir, "bare.env"), "rb") as handle:
        environment = handle.read()
    assert environment == b"", "the runtime's environment leaked into the hook: %r" % environment
    ocirt("delete", "--force", cid)


# --------------------------------------------------------------------------
# 2. failing hooks
# --------------------------------------------------------------------------

def failing_hook(code, message, path="/bin/sh"):
    return {"path": path, "args": ["sh", "-c", "echo %s >&2; exit %d" % (message, code)]}


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_a_failing_create_hook_fails_create_and_leaves_nothing(hooked, ocirt, kind):
    hooks = hooked.log_hooks(KINDS)
    hooks[kind] = [failing_hook(3, "hook-said-no"), hooked.log_hook(kind, kind + "-after")]
    cid = new_id()
    result = hooked.create(hooked.bundle(hooks), cid, check=False)
    assert_error(result, "hooks.%s[0]" % kind, "exited with 3", "hook-said-no")
    # The hooks before it ran, the one after it and every later kind did not.
    earlier = CREATE_KINDS[:CREATE_KINDS.index(kind)]
    assert [k for k in hooked.kinds() if k != "poststop"] == earlier
    assert not os.path.exists(os.path.join(hooked.logdir, RAN_MARK))
    assert_gone(ocirt, cid)


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_poststop_hooks_run_when_a_create_hook_fails(hooked, ocirt, kind):
    """runtime.md, Lifecycle: a failing prestart/createRuntime/createContainer hook stops the container
    and "continue[s] the lifecycle at step 12" (delete, destroy, then the poststop hooks). runc (1.1.5 here)
    runs the poststop hooks when create fails so; a runtime that removes the container instead must still
    run them, or what the earlier hooks set up (a network, a mount) is never torn down."""
    hooks = hooked.log_hooks(["poststop"])
    hooks[kind] = [failing_hook(3, "hook-said-no")]
    cid = new_id()
    result = hooked.create(hooked.bundle(hooks), cid, check=False)
    assert_error(result, "hooks.%s[0]" % kind)
    assert_gone(ocirt, cid)
    entries = hooked.entries()
    assert [entry["kind"] for entry in entries] == ["poststop"], "poststop did not run (once) after the failed create"
    assert entries[0]["state"]["id"] == cid and entries[0]["state"]["status"] == "stopped", entries[0]["state"]


def test_a_failing_start_container_hook_fails_start_and_stops_the_container(hooked, ocirt):
    hooks = hooked.log_hooks(KINDS)
    hooks["startContainer"] = [failing_hook(4, "start-hook-said-no")]  # /bin/sh of the container
    cid = new_id()
    hooked.create(hooked.bundle(hooks), cid)
    result = ocirt("start", cid, check=False, timeout=HANG_SECONDS)
    assert_error(result, cid, "hooks.startContainer[0]", "exited with 4", "start-hook-said-no")
    hooked.wait_status(cid, "stopped")
    assert not os.path.exists(os.path.join(hooked.logdir, RAN_MARK)), "the program ran after its hook failed"
    assert "poststart" not in hooked.kinds()
    ocirt("delete", cid)
    assert_gone(ocirt, cid)
    assert hooked.kinds() == CREATE_KINDS + ["poststop"]


def test_a_start_container_hook_missing_in_the_container_fails_start(hooked, ocirt):
    cid = new_id()
    hooked.create(hooked.bundle({"startContainer": [{"path": "/no/such/hook"}]}), cid)
    result = ocirt("start", cid, check=False, timeout=HANG_SECONDS)
    assert_error(result, cid, "hooks.startContainer[0]", "/no/such/hook")
    hooked.wait_status(cid, "stopped")
    assert not os.path.exists(os.path.join(hooked.logdir, RAN_MARK))
    ocirt("delete", cid)
    assert_gone(ocirt, cid)


def test_a_failing_poststart_hook_is_a_warning_and_the_container_runs(hooked, ocirt):
    hooks = {"poststart": [failing_hook(5, "poststart-said-no"), hooked.log_hook("poststart")]}
    cid = new_id()
    hooked.create(hooked.bundle(hooks), cid)
    result = ocirt("start", cid, check=False, timeout=HANG_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr
    assert "hooks.poststart[0]" in result.stderr and "exited with 5" in result.stderr, result.stderr
    assert ocirt.state(cid)["status"] == "running"
    assert hooked.kinds() == ["poststart"], "the hook after the failing one did not run"
    ocirt("delete", "--force", cid)


def test_a_failing_poststop_hook_is_a_warning_and_delete_succeeds(hooked, ocirt):
    hooks = {"poststop": [failing_hook(6, "poststop-said-no"), hooked.log_hook("poststop")]}
    cid = new_id()
    hooked.create(hooked.bundle(hooks), cid)
    ocirt("start", cid)
    ocirt("kill", cid, "KILL")
    hooked.wait_status(cid, "stopped")
    result = ocirt("delete", cid, check=False, timeout=HANG_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr
    assert "hooks.poststop[0]" in result.stderr and "exited with 6" in result.stderr, result.stderr
    assert hooked.kinds() == ["poststop"], "the hook after the failing one did not run"
    assert_gone(ocirt, cid)


def sleeper_args():
    """A sleep of about 30 s whose command line is unique to this test (GNU and busybox sleep take fractions)."""
    return ["sleep", "30.%06d" % random.randint(0, 999999)]


def assert_no_sleeper(args):
    poll(lambda: not processes_with_cmdline(args), "the timed-out hook %s to be gone" % args)


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_a_create_hook_past_its_timeout_is_killed_and_create_fails(hooked, ocirt, kind):
    args = sleeper_args()
    cid = new_id()
    bundle = hooked.bundle({kind: [{"path": "/bin/sleep", "args": args, "timeout": 1}]})
    result = hooked.create(bundle, cid, check=False)
    assert_error(result, "hooks.%s[0]" % kind, "timeout")
    assert_no_sleeper(args)
    assert_gone(ocirt, cid)


def test_a_start_container_hook_past_its_timeout_is_killed_and_start_fails(hooked, ocirt):
    args = sleeper_args()
    cid = new_id()
    # /bin/sleep of the container (busybox).
    hooked.create(hooked.bundle({"startContainer": [{"path": "/bin/sleep", "args": args, "timeout": 1}]}), cid)
    result = ocirt("start", cid, check=False, timeout=HANG_SECONDS)
    assert_error(result, cid, "hooks.startContainer[0]", "timeout")
    hooked.wait_status(cid, "stopped")
    assert_no_sleeper(args)
    assert not os.path.exists(os.path.join(hooked.logdir, RAN_MARK))
    ocirt("delete", cid)
    assert_gone(ocirt, cid)


def test_a_poststart_hook_past_its_timeout_is_killed_with_a_warning(hooked, ocirt):
    args = sleeper_args()
    cid = new_id()
    hooked.create(hooked.bundle({"poststart": [{"path": "/bin/sleep", "args": args, "timeout": 1}]}), cid)
    result = ocirt("start", cid, check=False, timeout=HANG_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "hooks.poststart[0]" in result.stderr and "timeout" in result.stderr
    assert_no_sleeper(args)
    assert ocirt.state(cid)["status"] == "running"
    ocirt("delete", "--force", cid)


@pytest.mark.parametrize("kind", HOST_PATH_KINDS)
def test_a_missing_hook_path_fails_create_before_anything_is_made(hooked, ocirt, kind):
    witness = "createRuntime" if kind == "prestart" else "prestart"
    hooks = {kind: [{"path": new_id("/nonexistent/hook")}], witness: [hooked.log_hook(witness)]}
    cid = new_id()
    cgroups_before = runtime_cgroups()
    result = hooked.create(hooked.bundle(hooks), cid, check=False)
    assert_error(result, "hooks.%s[0].path" % kind)
    assert hooked.kinds() == [], "a hook ran although create should have failed first"
    assert_gone(ocirt, cid)
    assert [path for path in runtime_cgroups() - cgroups_before if os.path.basename(path) == cid] == []


# --------------------------------------------------------------------------
# 3. bad input
# --------------------------------------------------------------------------

BAD_HOOKS = [
    ({"prestart": [{"path": "@HOOK@", "timeout": 0}]}, "hooks.prestart[0].timeout"),
    ({"prestart": [{"path": "@HOOK@", "timeout": -5}]}, "hooks.prestart[0].timeout"),
    ({"createRuntime": [{"path": "@HOOK@", "timeout": "5"}]}, "hooks.createRuntime[0].timeout"),
    ({"poststart": [{"path": "@HOOK@", "timeout": True}]}, "hooks.poststart[0].timeout"),
    ({"poststop": [{"path": "relative/hook.sh"}]}, "hooks.poststop[0].path"),
    ({"startContainer": [{"path": "hook.sh"}]}, "hooks.startContainer[0].path"),
    ({"prestart": [{"args": ["x"]}]}, "hooks.prestart[0].path"),
    ({"createContainer": [{"path": "@HOOK@", "args": "echo hi"}]}, "hooks.createContainer[0].args"),
    ({"prestart": [{"path": "@HOOK@", "args": ["ok", 1]}]}, "hooks.prestart[0].args"),
    ({"prestart": [{"path": "@HOOK@", "env": "A=1"}]}, "hooks.prestart[0].env"),
    ({"prestart": {"path": "@HOOK@"}}, "hooks.prestart"),
    ({"prestart": ["@HOOK@"]}, "hooks.prestart[0]"),
]


@pytest.mark.parametrize("hooks,field", BAD_HOOKS, ids=[field + "-" + str(index) for index, (h, field)
                                                        in enumerate(BAD_HOOKS)])
def test_bad_hook_input_is_refused_naming_the_field(hooked, ocirt, hooks, field):
    text = json.dumps(hooks).replace("@HOOK@", hooked.host_script)
    cid = new_id()
    result = hooked.create(hooked.bundle(json.loads(text)), cid, check=False)
    assert_error(result, field)
    assert hooked.kinds() == []
    assert_gone(ocirt, cid)


def test_hooks_not_an_object_is_refused(hooked, ocirt):
    cid = new_id()
    result = hooked.create(hooked.bundle([hooked.log_hook("prestart")]), cid, check=False)
    assert_error(result, "hooks")
    assert hooked.kinds() == []
    assert_gone(ocirt, cid)


def test_hooks_run_by_ocirt_run_in_the_foreground(hooked, ocirt):
    """`run` goes through the same lifecycle: create hooks, start hooks, and poststop at its delete."""
    bundle = hooked.bundle(hooked.log_hooks(KINDS), args=["sh", "-c", "echo ran > %s/%s" % (CONTAINER_LOGDIR, RAN_MARK)])
    result = ocirt.run(bundle, new_id(), timeout=HANG_SECONDS)
    assert result.returncode == 0, result.stderr
    assert hooked.kinds() == KINDS
    assert hooked.entries()[-1]["ran"] == "program-ran"


def test_hooks_of_a_monitored_container(hooked, ocirt):
    """`run --detach`: the monitor runs create (and its hooks) with its stdio on /dev/null and log pipes."""
    bundle = hooked.bundle(hooked.log_hooks(KINDS), args=["sh", "-c", "echo ran > %s/%s" % (CONTAINER_LOGDIR, RAN_MARK)])
    cid = new_id()
    ocirt("run", "--detach", "--bundle", bundle, cid, timeout=HANG_SECONDS)
    try:
        assert hooked.kinds() == KINDS[:5]
        waited = ocirt("wait", "--timeout", HANG_SECONDS, cid, check=False, timeout=HANG_SECONDS + 30)
        assert waited.stdout.strip() == "0", (waited.stdout, waited.stderr)
        ocirt("delete", cid)
    finally:
        ocirt("delete", "--force", cid, check=False)
    assert hooked.kinds() == KINDS
    assert hooked.entries()[-1]["state"]["id"] == cid
