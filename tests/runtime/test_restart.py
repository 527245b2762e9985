"""Restart policies, run by each container's monitor, on real containers.

`ocirt run --detach --restart POLICY` and oci_container_state's
restart_policy: the monitor reaps the container and, by the policy, creates
and starts it again from the config it was created with, backing off
(100 ms doubling); a stop asked for (ocirt kill, state=stopped, absent) is
never undone. Every wait is a bounded poll or `ocirt wait --timeout` (a hang
detector), never a measurement: the backoff is read from the restart times
the monitor records.
"""
import datetime
import json
import os
import signal
import time

import pytest

from helpers import cmdline, gone, new_id, poll, proc_start_time, proc_stat
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

SLEEP = ["sleep", "1000"]
WAIT = "60"  # ocirt wait --timeout: a hang detector


def params(root, container_id, bundle, **extra):
    result = dict(state_root=root, id=container_id, bundle=bundle, state="running", recreate=False,
                  restart=False, wait="none", timeout=0, stop_signal="SIGTERM", stop_timeout=1, log_path=None,
                  log_max_size=None, log_max_files=None, logs_lines=20, cgroup_manager="cgroupfs",
                  restart_policy="no", healthcheck=None)
    result.update(extra)
    return result


def started(stamp):
    return datetime.datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f")


def when(value, condition):
    """VALUE when CONDITION(VALUE) holds, else None: what poll() waits for."""
    return value if condition(value) else None


def processes_under(root):
    """Pids whose command line names the state root: monitors' helpers (their runtime snapshot is there)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            words = cmdline(int(name)) or []
            if any(root in word for word in words) and not any("pytest" in word for word in words):
                found.append(int(name))
    return found


def assert_all_gone(root, pids):
    """Every (pid, start time) in PIDS has exited, and no helper of a monitor is left."""
    poll(lambda: all(gone(pid, start) for pid, start in pids), "the processes %s to exit" % pids)
    poll(lambda: not processes_under(root), "no process to run from the state root")


def test_a_killed_container_is_restarted_with_a_new_pid(ocirt, make_bundle):
    cid = new_id("rs")
    bundle = make_bundle(["sh", "-c", "echo started; exec sleep 1000"])
    ocirt("run", "--detach", "--restart", "on-failure", "--bundle", bundle, cid)
    first = ocirt.state(cid)
    assert (first["restartPolicy"], first["restartCount"], first["supervised"]) == ("on-failure", 0, True)
    os.kill(first["pid"], signal.SIGKILL)
    # The monitor counts the restart once its helper has reported the new pid: wait for both.
    again = poll(lambda: when(ocirt.state(cid), lambda s: s["status"] == "running" and s["restartCount"] == 1),
                 "the container to run again")
    assert again["pid"] != first["pid"], again
    assert again["lastExitCode"] == 137, again
    assert again["monitorPid"] == first["monitorPid"], "one monitor supervises every incarnation"
    assert ocirt("ps", "--format", "json", cid).stdout.strip() == "[%d]" % again["pid"]
    # Both incarnations' output is in the one log.
    poll(lambda: ocirt("logs", cid).stdout.count("started") == 2, "both starts in the log")
    tracked = [(pid, proc_start_time(pid)) for pid in (first["monitorPid"], again["pid"])]
    ocirt("delete", "--force", cid)
    assert_all_gone(ocirt.root, tracked)


def test_exit_0_under_on_failure_is_not_restarted(ocirt, make_bundle):
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "on-failure", "--bundle", make_bundle(["true"]), cid)
    assert ocirt("wait", "--timeout", WAIT, cid, check=False).stdout.strip() == "0"
    state = ocirt.state(cid)
    assert (state["status"], state["restartCount"], state["exitCode"], state["supervised"]) == \
        ("stopped", 0, 0, False), state


def test_on_failure_n_gives_up_after_n_restarts_and_says_so(ocirt, make_bundle):
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "on-failure:2", "--bundle", make_bundle(["sh", "-c", "exit 3"]), cid)
    assert ocirt("wait", "--timeout", WAIT, cid, check=False).stdout.strip() == "3"
    state = ocirt.state(cid)
    assert state["restartCount"] == 2, state
    assert len(state["restartTimes"]) == 2, state
    assert state["gaveUp"] == "gave up after 2 restarts (on-failure:2)", state
    assert state["status"] == "stopped" and not state["supervised"], state


def test_a_crash_loop_backs_off_and_costs_no_cpu_between_restarts(ocirt, make_bundle):
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "always", "--bundle", make_bundle(["sh", "-c", "exit 1"]), cid)
    state = poll(lambda: when(ocirt.state(cid), lambda s: s.get("restartCount", 0) >= 6), "six restarts", tries=2400)
    times = [started(stamp) for stamp in state["restartTimes"]]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
    for index, gap in enumerate(gaps):
        # Restart k+1 waits at least the backoff 0.1 * 2**(k+1) after restart k's container exited.
        assert gap >= 0.1 * 2 ** (index + 1), gaps
    assert gaps[-1] > gaps[0] * 4, "the backoff does not grow: %s" % gaps
    # Now the monitor waits 6.4 s before the seventh restart: it must not spin meanwhile.
    monitor = state["monitorPid"]
    before = proc_stat(monitor)
    time.sleep(2)
    after = proc_stat(monitor)
    assert ocirt.state(cid)["restartCount"] == 6, "the sleep did not fall between two restarts"
    cpu = (int(after[11]) + int(after[12])) - (int(before[11]) + int(before[12]))
    assert cpu <= 1, "the monitor used %d clock ticks of CPU while it waited to restart" % cpu
    start = proc_start_time(monitor)
    ocirt("delete", "--force", cid)
    assert_all_gone(ocirt.root, [(monitor, start)])


def crash_looping(root, make_bundle, restarts=5):
    """(id, bundle, state) of a container under restart_policy=always whose command fails at once, once
    RESTARTS restarts are done and the next waits out its backoff (0.1 s doubling: 3.2 s after five)."""
    cid = new_id("rs")
    bundle = make_bundle(["sh", "-c", "exit 1"])
    container_state.run(params(root, cid, bundle, restart_policy="always"))
    waiting = poll(lambda: when(container_state.observe(root, cid)[0],
                                lambda s: s.get("restartCount", 0) >= restarts and s.get("restartPending")),
                   "%d restarts, and the next one due" % restarts, tries=2400)
    return cid, bundle, waiting


def test_a_container_whose_restart_is_due_is_not_recreated_by_a_converge(state_root, make_bundle):
    cid, bundle, waiting = crash_looping(state_root, make_bundle)
    assert waiting["status"] == "stopped" and waiting["supervised"] is True, waiting
    again = container_state.run(params(state_root, cid, bundle, restart_policy="always"))
    assert again["changed"] is False and again["actions"] == [], again["actions"]
    container = again["container"]
    assert container["restart_pending"] is True and container["monitor_pid"] == waiting["monitorPid"], container
    assert container["restart_count"] >= waiting["restartCount"], "the backoff and the count were reset"
    assert "its restart due (restart_policy always)" in again["msg"], again["msg"]
    # The monitor goes on with the loop it was in.
    poll(lambda: container_state.observe(state_root, cid)[0]["restartCount"] > waiting["restartCount"],
         "the monitor's next restart", tries=2400)
    monitor = (waiting["monitorPid"], proc_start_time(waiting["monitorPid"]))
    container_state.run(params(state_root, cid, bundle, state="absent", restart_policy="always"))
    assert_all_gone(state_root, [monitor])


def test_state_stopped_cancels_a_due_restart(state_root, make_bundle):
    cid, bundle, waiting = crash_looping(state_root, make_bundle)
    monitor = (waiting["monitorPid"], proc_start_time(waiting["monitorPid"]))
    stopped = container_state.run(params(state_root, cid, bundle, restart_policy="always", state="stopped"))
    assert stopped["changed"] is True and stopped["actions"] == ["stop: its restart is due"], stopped["actions"]
    assert_all_gone(state_root, [monitor])
    final = container_state.observe(state_root, cid)[0]
    assert (final["status"], final["restartPending"], final["gaveUp"]) == ("stopped", False, "stop requested"), final
    assert final["restartCount"] in (waiting["restartCount"], waiting["restartCount"] + 1), final
    assert container_state.run(params(state_root, cid, bundle, restart_policy="always", state="stopped"))[
        "changed"] is False


def test_ocirt_kill_is_a_requested_stop_and_is_not_undone(ocirt, make_bundle):
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "always", "--bundle", make_bundle(SLEEP), cid)
    pid = ocirt.state(cid)["pid"]
    ocirt("kill", cid, "KILL")
    assert ocirt("wait", "--timeout", WAIT, cid, check=False).stdout.strip() == "137"
    state = ocirt.state(cid)
    assert (state["status"], state["restartCount"], state["gaveUp"]) == ("stopped", 0, "stop requested"), state
    assert state["pid"] == 0 and proc_start_time(pid) is None, state


def test_a_signal_that_does_not_stop_keeps_supervision(ocirt, make_bundle):
    """kill HUP (a reload) is no stop request: a crash after it is still restarted."""
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "always", "--bundle",
          make_bundle(["sh", "-c", "trap 'echo reload' HUP; while :; do sleep 0.1; done"]), cid)
    first = ocirt.state(cid)
    ocirt("kill", cid, "HUP")
    poll(lambda: "reload" in ocirt("logs", cid).stdout, "the reload in the log")
    os.kill(first["pid"], signal.SIGKILL)
    poll(lambda: ocirt.state(cid).get("restartCount") == 1, "the restart")


def test_unless_stopped_after_state_stopped_stays_stopped(state_root, make_bundle):
    cid = new_id("rs")
    bundle = make_bundle(SLEEP)
    made = container_state.run(params(state_root, cid, bundle, restart_policy="unless-stopped"))
    assert made["container"]["restart_policy"] == "unless-stopped"
    assert made["container"]["supervised"] is True
    monitor = made["container"]["monitor_pid"]
    start = proc_start_time(monitor)
    stopped = container_state.run(params(state_root, cid, bundle, restart_policy="unless-stopped", state="stopped"))
    assert stopped["container"]["status"] == "stopped"
    # The monitor has decided: it exits rather than restart, and says why.
    poll(lambda: gone(monitor, start), "the monitor to exit")
    final = container_state.observe(state_root, cid)[0]
    assert (final["status"], final["restartCount"], final["gaveUp"]) == ("stopped", 0, "stop requested"), final
    # Idempotent: converging again to stopped changes nothing.
    again = container_state.run(params(state_root, cid, bundle, restart_policy="unless-stopped", state="stopped"))
    assert again["changed"] is False, again["actions"]


def test_changing_the_restart_policy_recreates(state_root, make_bundle):
    cid = new_id("rs")
    bundle = make_bundle(SLEEP)
    container_state.run(params(state_root, cid, bundle))
    same = container_state.run(params(state_root, cid, bundle), check_mode=True)
    assert same["actions"] == []
    changed = container_state.run(params(state_root, cid, bundle, restart_policy="always"), check_mode=True)
    assert "org.daemonless.oci.supervision.restart" in changed["actions"][0], changed["actions"]
    done = container_state.run(params(state_root, cid, bundle, restart_policy="always"))
    assert done["container"]["restart_policy"] == "always"
    assert container_state.run(params(state_root, cid, bundle, restart_policy="always"))["changed"] is False


def test_a_killed_monitor_is_replaced_by_the_next_converge(state_root, make_bundle):
    cid = new_id("rs")
    bundle = make_bundle(["sh", "-c", "while :; do echo tick; sleep 0.2; done"])
    made = container_state.run(params(state_root, cid, bundle, restart_policy="always"))["container"]
    pid, old_monitor = made["pid"], made["monitor_pid"]
    poll(lambda: os.path.exists(made["log_path"]), "the monitor to run (it opens the log)")
    os.kill(old_monitor, signal.SIGKILL)
    poll(lambda: proc_start_time(old_monitor) is None, "the monitor to die")
    alone = container_state.observe(state_root, cid)[0]
    assert alone["status"] == "running" and alone["pid"] == pid and alone["supervised"] is False, alone
    planned = container_state.run(params(state_root, cid, bundle, restart_policy="always"), check_mode=True)
    assert planned["actions"] == ["supervise: unsupervised: its monitor is gone; a new monitor adopts the "
                                  "running container"]
    adopted = container_state.run(params(state_root, cid, bundle, restart_policy="always"))
    assert adopted["changed"] is True
    container = adopted["container"]
    assert container["pid"] == pid, "a second container was made"
    assert container["supervised"] is True and container["monitor_pid"] not in (0, old_monitor), container
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
    inits = [p for p in lifecycle.processes(state_root, cid) if int(proc_stat(p)[1]) != pid]
    assert inits == [pid], "exactly one container (its processes: the init and its children)"
    # The new monitor logs on (it reopened the container's pipes) and supervises: a kill is restarted.
    log = container["log_path"]
    size = os.path.getsize(log)
    poll(lambda: os.path.getsize(log) > size, "the adopted container's output in the log")
    assert container_state.run(params(state_root, cid, bundle, restart_policy="always"))["changed"] is False
    os.kill(pid, signal.SIGKILL)
    again = poll(lambda: when(container_state.observe(state_root, cid)[0],
                              lambda s: s["status"] == "running" and s["restartCount"] == 1),
                 "the restart by the adopting monitor")
    assert again["pid"] != pid and again["lastExitCode"] is None, again
    new_monitor = (container["monitor_pid"], proc_start_time(container["monitor_pid"]))
    container_state.run(params(state_root, cid, bundle, state="absent"))
    assert_all_gone(state_root, [new_monitor])


def test_a_bad_restart_policy_is_refused_naming_the_option_and_leaves_nothing(state_root, make_bundle, ocirt):
    cid = new_id("rs")
    bundle = make_bundle(SLEEP)
    for bad in ("sometimes", "on-failure:x", "always:3", "on-failure:0", "on-failure:-1"):
        with pytest.raises(OCIError, match="restart_policy: .* is not a restart policy|restart_policy: on-failure"):
            container_state.run(params(state_root, cid, bundle, restart_policy=bad))
        assert container_state.observe(state_root, cid) == (None, None)
    result = ocirt("run", "--detach", "--restart", "sometimes", "--bundle", bundle, cid, check=False)
    assert result.returncode == 2 and "--restart: 'sometimes' is not a restart policy" in result.stderr
    assert ocirt("list", "-q").stdout == ""
    result = ocirt("run", "--restart", "always", "--bundle", bundle, cid, check=False)
    assert result.returncode == 2 and "need --detach" in result.stderr


def test_a_terminal_container_cannot_have_a_restart_policy(ocirt, make_bundle):
    cid = new_id("rs")
    bundle = make_bundle(SLEEP, config={"process": {"terminal": True}})
    result = ocirt("run", "--detach", "--restart", "always", "--bundle", bundle, cid, check=False)
    assert result.returncode == 1 and "restart_policy: a container with process.terminal" in result.stderr
    assert ocirt("list", "-q").stdout == ""


def test_a_hostile_supervision_file_does_not_break_state(ocirt, make_bundle):
    cid = new_id("rs")
    ocirt("run", "--detach", "--restart", "always", "--bundle", make_bundle(SLEEP), cid)
    state = ocirt.state(cid)
    directory = os.path.dirname(state["logPath"])
    for garbage in (b"[1, 2]", b"{not json", b"\xff\xfe", b'{"restartCount": "x", "health": 7}'):
        with open(os.path.join(directory, "supervision.json"), "wb") as handle:
            handle.write(garbage)
        state = ocirt.state(cid)
        assert state["status"] == "running" and state["restartPolicy"] == "always", state
        assert state["restartCount"] == 0, state
    json.dumps(state)
