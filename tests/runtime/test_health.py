"""Health checks, run by each container's monitor as short-lived helpers, on real containers.

The check runs inside the container as `ocirt exec` would; the container's
health (starting, healthy, unhealthy), with the last check's exit code and
output, is in its state and in oci_container_state's result, which can wait
for it (wait=healthy). A test steers the check through a file it creates or
removes in the bundle's rootfs, which the container sees as /ok.
"""
import os

import pytest

from helpers import cmdline, new_id, poll, proc_start_time, proc_stat, rootfs_of
from test_restart import assert_all_gone, params, processes_under, when
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor.supervise import checked_supervision
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import (
    parse_duration, parse_restart_policy)

SLEEP = ["sleep", "999"]
CHECK_OK = {"test": ["test", "-e", "/ok"], "interval": "0.2s", "timeout": "5s", "retries": 2}


def health_of(state_root, cid):
    state = container_state.observe(state_root, cid)[0]
    return state, (state.get("health") or {})


def wait_health(state_root, cid, wanted):
    return poll(lambda: when(health_of(state_root, cid), lambda found: found[1].get("status") == wanted),
                "container %s to be %s" % (cid, wanted))[0]


def test_a_passing_check_makes_it_healthy_and_a_failing_one_unhealthy_then_restarted(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    flag = os.path.join(rootfs_of(bundle), "ok")
    open(flag, "w").close()
    check = dict(CHECK_OK, on_failure="restart")
    made = container_state.run(params(state_root, cid, bundle, healthcheck=check, wait="healthy", timeout=60))
    health = made["container"]["health"]
    assert health["status"] == "healthy" and health["last_exit_code"] == 0, health
    assert made["container"]["restart_policy"] == "no"
    first_pid = made["container"]["pid"]
    os.unlink(flag)
    # Two failures in a row (retries=2): unhealthy, and on_failure=restart makes a new container
    # although the restart policy is "no".
    state = poll(lambda: when(container_state.observe(state_root, cid)[0],
                              lambda s: s.get("restartCount") == 1 and s["status"] == "running"),
                 "the restart of the unhealthy container")
    assert state["pid"] != first_pid
    assert state["lastExitCode"] == 137, state
    assert state["health"]["status"] == "starting", state
    open(flag, "w").close()
    state = wait_health(state_root, cid, "healthy")
    assert state["health"]["failingStreak"] == 0
    tracked = [(state["monitorPid"], proc_start_time(state["monitorPid"]))]
    container_state.run(params(state_root, cid, bundle, state="absent"))
    assert_all_gone(state_root, tracked)


def test_unhealthy_after_retries_with_the_output_and_kill_stops_it(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    check = {"test": "echo the disk is full >&2; exit 7", "interval": "0.2", "retries": 3, "on_failure": "kill"}
    container_state.run(params(state_root, cid, bundle, healthcheck=check, restart_policy="always"))
    # kill: the container is stopped on purpose: the restart policy does not bring it back.
    state = poll(lambda: when(container_state.observe(state_root, cid)[0],
                              lambda s: s["status"] == "stopped" and not s["supervised"]),
                 "the unhealthy container to be killed")
    assert state["restartCount"] == 0 and state["gaveUp"] == "stop requested", state
    health = state["health"]
    assert health["status"] == "unhealthy", health
    assert health["lastExitCode"] == 7 and "the disk is full" in health["lastOutput"], health
    assert health["failingStreak"] == 3, health


def test_wait_healthy_fails_with_the_checks_output(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    check = {"test": ["sh", "-c", "echo not ready: port 8080 closed; exit 1"], "interval": "200ms", "retries": 1}
    with pytest.raises(OCIError) as failed:
        container_state.run(params(state_root, cid, bundle, healthcheck=check, wait="healthy", timeout=60))
    message = str(failed.value)
    assert "unhealthy" in message and "exited 1" in message and "not ready: port 8080 closed" in message, message


def test_wait_healthy_times_out_with_the_checks_output(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    # Failures in the start period do not count: it stays "starting" until the task gives up.
    check = {"test": ["sh", "-c", "echo warming up; exit 1"], "interval": "0.2s", "start_period": "1h"}
    with pytest.raises(OCIError) as failed:
        container_state.run(params(state_root, cid, bundle, healthcheck=check, wait="healthy", timeout=2))
    message = str(failed.value)
    assert "not healthy after 2 seconds (health: starting)" in message and "warming up" in message, message


def test_a_check_that_hangs_is_killed_with_its_processes(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    check = {"test": ["sh", "-c", "sleep 500 & sleep 501"], "interval": "0.2s", "timeout": "0.5s", "retries": 1}
    container_state.run(params(state_root, cid, bundle, healthcheck=check))
    state = wait_health(state_root, cid, "unhealthy")
    assert "timed out after 0.5s" in state["health"]["lastOutput"], state["health"]
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle

    def check_processes():
        return [p for p in lifecycle.processes(state_root, cid) if p != state["pid"]
                and (cmdline(p) or [""])[0] == "sleep" and (cmdline(p) or ["", ""])[1] in ("500", "501")]
    # Between two checks (each killed at its timeout), none of a check's processes is left.
    poll(lambda: not check_processes() and state["health"], "a moment between checks", tries=2400)
    tracked = [(state["monitorPid"], proc_start_time(state["monitorPid"]))]
    container_state.run(params(state_root, cid, bundle, state="absent"))
    assert_all_gone(state_root, tracked)
    assert not processes_under(state_root)


def test_absent_leaves_no_monitor_and_no_check_process(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    check = {"test": ["sleep", "0.3"], "interval": "0.1s"}
    made = container_state.run(params(state_root, cid, bundle, healthcheck=check, restart_policy="always"))
    monitor = made["container"]["monitor_pid"]
    # Catch a check while it runs: a helper of this monitor.
    helper = poll(lambda: [p for p in processes_under(state_root) if int(proc_stat(p)[1]) == monitor],
                  "a running health check")
    tracked = [(pid, proc_start_time(pid)) for pid in [monitor, made["container"]["pid"]] + helper]
    container_state.run(params(state_root, cid, bundle, state="absent"))
    assert container_state.observe(state_root, cid) == (None, None)
    assert_all_gone(state_root, tracked)


@pytest.mark.parametrize("text,seconds", [
    (30, 30.0), ("30", 30.0), ("30s", 30.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5),
    ("2.5s", 2.5), ("1h2m3s", 3723.0), (" 10S ", 10.0), (0.25, 0.25), ("0", 0.0)])
def test_durations_as_podman_writes_them(text, seconds):
    assert parse_duration(text, "healthcheck.interval") == seconds


@pytest.mark.parametrize("bad", ["", "s", "1x", "1m30", "-1s", "1.2.3s", "ten", "1s2", "²s", True, None, [],
                                 -1, "1e3"])
def test_bad_durations_name_the_field(bad):
    with pytest.raises(OCIError, match="^healthcheck.timeout: "):
        parse_duration(bad, "healthcheck.timeout")


def test_restart_policies_parse():
    assert parse_restart_policy("no", "p") == ("no", 0)
    assert parse_restart_policy(None, "p") == ("no", 0)
    assert parse_restart_policy("On-Failure:3", "p") == ("on-failure", 3)
    assert parse_restart_policy("unless-stopped", "p") == ("unless-stopped", 0)


@pytest.mark.parametrize("check,needle", [
    ({"test": []}, "healthcheck.test: must be the command"),
    ({"test": ["ok", 3]}, "healthcheck.test: must be the command"),
    ({"test": "  "}, "healthcheck.test: must be the command"),
    ({"test": ["true"], "on_failure": "explode"}, "healthcheck.on_failure: must be one of none, restart, kill"),
    ({"test": ["true"], "retries": 0}, "healthcheck.retries: must be a whole number"),
    ({"test": ["true"], "retries": "3"}, "healthcheck.retries: must be a whole number"),
    ({"test": ["true"], "interval": "0s"}, "healthcheck: interval and timeout must be more than 0"),
    ({"test": ["true"], "interval": "soon"}, "healthcheck.interval: 'soon' is not a duration"),
    ({"test": ["true"], "command": ["x"]}, "healthcheck: unknown key command"),
    ("true", "healthcheck: must be a mapping"),
])
def test_hostile_health_checks_are_refused_naming_the_field(check, needle):
    with pytest.raises(OCIError) as failed:
        checked_supervision(healthcheck=check)
    assert needle in str(failed.value)


def test_a_bad_health_check_fails_the_task_and_leaves_nothing(state_root, make_bundle):
    cid = new_id("hc")
    bundle = make_bundle(SLEEP)
    with pytest.raises(OCIError, match="healthcheck.timeout: '3 days' is not a duration"):
        container_state.run(params(state_root, cid, bundle, healthcheck={"test": ["true"], "timeout": "3 days"}))
    with pytest.raises(OCIError, match="wait=healthy: needs a healthcheck"):
        container_state.run(params(state_root, cid, bundle, wait="healthy"))
    assert container_state.observe(state_root, cid) == (None, None)
    assert not os.path.exists(os.path.join(state_root, cid))
