"""Races between `ocirt` commands: many at once on one id, and many containers at once.

Every command here is a real `ocirt` process started through the installed
launcher, so the only thing keeping two of them apart is what the runtime
itself does (the directory made with mkdir by one create, the per-id flock
every later command holds for its whole length, the atomic state file). Each
test checks that the outcome is one a serial order of the same commands could
have produced, that every failure is a clear refusal (no traceback, no
"unreadable state"), and that nothing outlives `delete`: no state directory,
no cgroup /ocirt/<id> in any hierarchy, no process in such a cgroup. The
fixtures' host audit checks the same once more after each test.

No assertion depends on timing: the commands are started together and may
run in any order; every wait is bounded.
"""
import concurrent.futures
import json
import os
import queue
import subprocess
import time
import uuid

from helpers import OCIRT, WORDS_BY_ROOT, cgroup_dirs, living, new_id, processes_in_cgroups_named, state_entries


COMMAND_TIMEOUT = 120  # seconds any one `ocirt` command may take here, however loaded the machine
SAME_ID_CREATES = 50
DISTINCT_CONTAINERS = 200
WORKERS = 16
CONTENDED_ROUNDS = 8
CONTENDERS_PER_VERB = 3

# What a losing command may say: a refusal that names the state it found, never a crash.
CLEAR_REFUSALS = (
    "already exists",
    "does not exist",
    "cannot start a container that is",
    "cannot kill a container that is",
    "cannot delete a container that is",
    "its process exited before start",
)
NEVER = ("Traceback", "unreadable", "state file is missing", "Errno")


def remember(ocirt, *ids):
    """Tell the fixtures' audit about ids used through Popen (it looks for their cgroups)."""
    WORDS_BY_ROOT.setdefault(ocirt.root, set()).update(ids)


def leftovers(ocirt, ids):
    """What remains on the host of the containers IDS: state, cgroups, processes."""
    problems = []
    entries = [name for name in state_entries(ocirt.root) if name in ids]
    if entries:
        problems.append("state directories: %s" % entries[:10])
    cgroups = [path for container_id in ids for path in cgroup_dirs("/ocirt/" + container_id)]
    if cgroups:
        problems.append("cgroups: %s" % cgroups[:10])
    pids = living(processes_in_cgroups_named(set(ids)))
    if pids:
        problems.append("processes in their cgroups: %s" % pids[:10])
    return problems


class Launched:
    """One `ocirt` process started with Popen, its stdout and stderr in files.

    A created container keeps the caller's stdio: through pipes, reading
    them would wait for the container to exit, so they go to files.
    """

    def __init__(self, root, scratch, args):
        self.args = [str(a) for a in args]
        name = "%s-%s" % (self.args[0], uuid.uuid4().hex[:8])
        self.out_path = os.path.join(scratch, name + ".out")
        self.err_path = os.path.join(scratch, name + ".err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.process = subprocess.Popen([OCIRT, "--root", root] + self.args, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=err)
        self.returncode = None

    def finish(self, timeout=COMMAND_TIMEOUT):
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
            raise AssertionError("ocirt %s did not finish within %d s" % (" ".join(self.args), timeout))
        return self.returncode

    @property
    def stderr(self):
        with open(self.err_path) as handle:
            return handle.read()

    def describe(self):
        return "ocirt %s -> %s: %s" % (" ".join(self.args), self.returncode, self.stderr.strip()[:300])


def assert_clear_refusal(launched):
    text = launched.stderr
    assert launched.returncode != 0, launched.describe()
    assert any(needle in text for needle in CLEAR_REFUSALS), "not a clear refusal: " + launched.describe()
    assert not any(needle in text for needle in NEVER), "an internal error, not a refusal: " + launched.describe()


def run_cli(root, scratch, *args):
    """Run one `ocirt` command (stdio to files) and wait for it (bounded); return the Launched."""
    launched = Launched(root, scratch, args)
    launched.finish()
    return launched


def wait_stopped(root, scratch, container_id, attempts=2000):
    """Poll `state` until the container is stopped (bounded by attempts, not by a clock)."""
    for dummy in range(attempts):
        result = subprocess.run([OCIRT, "--root", root, "state", container_id], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        if result.returncode == 0 and json.loads(result.stdout)["status"] == "stopped":
            return
        if result.returncode != 0:
            raise AssertionError("state %s failed: %s" % (container_id, result.stderr))
        time.sleep(0.005)
    raise AssertionError("container %s did not stop after SIGKILL" % container_id)


# --------------------------------------------------------------------------
# one id, fifty creates


def test_fifty_creates_of_one_id_make_exactly_one_container(ocirt, make_bundle, scratch):
    bundle = make_bundle(["sleep", "100"])
    container_id = new_id("same")
    remember(ocirt, container_id)
    launched = [Launched(ocirt.root, scratch, ["create", "--bundle", bundle, container_id])
                for dummy in range(SAME_ID_CREATES)]
    for item in launched:
        item.finish()
    winners = [item for item in launched if item.returncode == 0]
    losers = [item for item in launched if item.returncode != 0]
    assert len(winners) == 1, "%d creates succeeded:\n%s" % (len(winners), "\n".join(i.describe() for i in launched))
    for item in losers:
        text = item.stderr
        assert "already exists" in text or "lock" in text, item.describe()
        assert not any(needle in text for needle in NEVER), item.describe()

    # The one container is whole: created, its process alive and in its cgroup.
    state = ocirt.state(container_id)
    assert state["status"] == "created", state
    assert state["pid"] > 0 and os.path.exists("/proc/%d" % state["pid"]), state
    assert state["pid"] in processes_in_cgroups_named({container_id}), state
    assert ocirt.ids() == [container_id]

    ocirt("delete", "--force", container_id)
    assert leftovers(ocirt, [container_id]) == []
    assert state_entries(ocirt.root) == []


# --------------------------------------------------------------------------
# two hundred containers, sixteen at a time


def lifecycle(root, scratch, bundles, container_id):
    """create, start, kill, (wait for stopped), delete one container; return None or what failed."""
    bundle = bundles.get(timeout=COMMAND_TIMEOUT)
    try:
        for args in (("create", "--bundle", bundle, container_id), ("start", container_id),
                     ("kill", container_id, "KILL")):
            launched = run_cli(root, scratch, *args)
            if launched.returncode != 0:
                return launched.describe()
        wait_stopped(root, scratch, container_id)
        launched = run_cli(root, scratch, "delete", container_id)
        if launched.returncode != 0:
            return launched.describe()
        return None
    except AssertionError as exc:
        return "%s: %s" % (container_id, exc)
    finally:
        bundles.put(bundle)


def test_two_hundred_containers_in_parallel_all_succeed_and_leave_nothing(ocirt, make_bundle, scratch):
    bundles = queue.Queue()
    for dummy in range(WORKERS):
        bundles.put(make_bundle(["sleep", "100"]))
    ids = [new_id("many") for dummy in range(DISTINCT_CONTAINERS)]
    remember(ocirt, *ids)
    logs = os.path.join(scratch, "logs")
    os.mkdir(logs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [failure for failure in pool.map(lambda cid: lifecycle(ocirt.root, logs, bundles, cid), ids)
                    if failure is not None]
    assert not failures, "%d of %d lifecycles failed:\n%s" % (len(failures), len(ids), "\n".join(failures[:10]))
    assert ocirt.ids() == []
    assert leftovers(ocirt, ids) == []
    assert state_entries(ocirt.root) == []


# --------------------------------------------------------------------------
# start, kill and delete at once on one container


def status_matches_reality(ocirt, container_id):
    """The container is gone, or `state` is readable and its status is what /proc and the cgroup say."""
    result = ocirt("state", container_id, check=False)
    if result.returncode != 0:
        assert "does not exist" in result.stderr, result.stderr
        assert container_id not in ocirt.ids()
        return None
    state = json.loads(result.stdout)
    in_cgroup = living(processes_in_cgroups_named({container_id}))
    if state["status"] in ("created", "running"):
        pid = state["pid"]
        assert pid > 0 and os.path.exists("/proc/%d" % pid), state
        assert pid in in_cgroup, (state, in_cgroup)
    else:
        assert state["status"] == "stopped", state
        assert state["pid"] == 0, state
        # A stopped init in its own pid namespace leaves nothing running in the cgroup.
        assert in_cgroup == [], (state, in_cgroup)
    return state["status"]


def test_concurrent_start_kill_delete_on_one_container_stay_consistent(ocirt, make_bundle, scratch):
    bundle = make_bundle(["sleep", "100"])
    for round_number in range(CONTENDED_ROUNDS):
        container_id = new_id("contend")
        remember(ocirt, container_id)
        ocirt("create", "--bundle", bundle, container_id)
        verbs = [["start", container_id], ["kill", container_id, "KILL"], ["delete", container_id]]
        order = [verb for verb in verbs for dummy in range(CONTENDERS_PER_VERB)]
        # Vary who is started first from round to round (deterministically).
        order = order[round_number % len(order):] + order[:round_number % len(order)]
        launched = [Launched(ocirt.root, scratch, args) for args in order]
        for item in launched:
            item.finish()
        for item in launched:
            if item.returncode != 0:
                assert_clear_refusal(item)
        # Serialized by the per-id lock: at most one start and at most one delete can succeed.
        assert sum(1 for item in launched if item.args[0] == "start" and item.returncode == 0) <= 1
        assert sum(1 for item in launched if item.args[0] == "delete" and item.returncode == 0) <= 1
        status = status_matches_reality(ocirt, container_id)
        deleted = any(item.args[0] == "delete" and item.returncode == 0 for item in launched)
        assert (status is None) == deleted, (status, [item.describe() for item in launched])
        ocirt("delete", "--force", container_id)
        assert leftovers(ocirt, [container_id]) == [], round_number
    assert state_entries(ocirt.root) == []


def test_delete_force_racing_start_and_kill_leaves_nothing(ocirt, make_bundle, scratch):
    """delete --force in the middle of start and kill: whatever order, the container ends deleted."""
    bundle = make_bundle(["sleep", "100"])
    for round_number in range(CONTENDED_ROUNDS // 2):
        container_id = new_id("force")
        remember(ocirt, container_id)
        ocirt("create", "--bundle", bundle, container_id)
        order = [["start", container_id], ["kill", container_id, "TERM"], ["delete", "--force", container_id],
                 ["start", container_id], ["kill", container_id, "KILL"], ["delete", "--force", container_id]]
        order = order[round_number:] + order[:round_number]
        launched = [Launched(ocirt.root, scratch, args) for args in order]
        for item in launched:
            item.finish()
        for item in launched:
            if item.args[:2] == ["delete", "--force"]:
                assert item.returncode == 0, item.describe()
            elif item.returncode != 0:
                assert_clear_refusal(item)
        assert status_matches_reality(ocirt, container_id) is None
        assert leftovers(ocirt, [container_id]) == [], round_number
    assert state_entries(ocirt.root) == []
