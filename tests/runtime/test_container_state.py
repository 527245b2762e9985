"""oci_container_state's backend (_ansible/container_state.py) on real containers, without Ansible.

The module only builds its parameters and reports what run() returns, so
these are the module's behaviours: idempotency, check mode, diff, jobs and
their log tail, updates in place, and bad input failing before any action.
"""
import functools
import json
import os

import pytest

from helpers import SERVICE, container_state_params, new_id
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import process_start_time

MB = 1 << 20


@pytest.fixture
def params(state_root):
    """params(**overrides): the module's parameters with its defaults, for a fresh id in STATE_ROOT."""
    return functools.partial(container_state_params, state_root, new_id("cs"))


def set_memory_limit(bundle, limit):
    path = os.path.join(bundle, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    config["linux"].setdefault("resources", {})["memory"] = {"limit": limit}
    with open(path, "w") as handle:
        json.dump(config, handle)


def test_running_is_reached_once_then_nothing_changes(params, make_bundle):
    bundle = make_bundle(SERVICE)  # absent stops it with the default SIGTERM
    first = container_state.run(params(bundle=bundle))
    assert first["changed"] and first["actions"] == ["create", "start"]
    container = first["container"]
    assert container["status"] == "running" and container["bundle"] == bundle
    assert process_start_time(container["pid"]) is not None
    assert container["monitor_pid"] > 0 and container["log_path"]
    again = container_state.run(params(bundle=bundle))
    assert again["changed"] is False and again["actions"] == []
    assert again["container"]["pid"] == container["pid"]
    gone = container_state.run(params(state="absent", bundle=None))
    assert gone["changed"] and gone["actions"] == ["stop", "delete"] and gone["container"] is None
    assert process_start_time(container["pid"]) is None


def test_check_mode_reports_the_plan_and_makes_nothing(params, make_bundle, state_root):
    bundle = make_bundle(["sleep", "1000"])
    result = container_state.run(params(bundle=bundle), check_mode=True, diff=True)
    assert result["changed"] and result["actions"] == ["create", "start"]
    assert result["container"] is None
    assert result["diff"]["before"] == {"status": "absent", "config": {}}
    with open(os.path.join(bundle, "config.json")) as handle:
        expected = json.load(handle)
    expected["hostname"] = result["diff"]["after"]["config"]["hostname"]  # the container id (issue 19 point 16)
    assert expected["hostname"] == params()["id"]
    assert result["diff"]["after"] == {"status": "running", "config": expected}
    assert not os.path.isdir(state_root) or [e for e in os.listdir(state_root) if e != "=monitor"] == []


def test_a_job_runs_to_its_end_and_returns_its_exit_code_and_log_tail(params, make_bundle):
    bundle = make_bundle(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; exit 3"])
    result = container_state.run(params(bundle=bundle, wait="exited", logs_lines=3))
    assert result["exit_code"] == 3 and result["oom_killed"] is False
    assert result["logs_lines"] == ["line4", "line5", "oops"]
    assert result["container"]["status"] == "stopped" and result["container"]["exit_code"] == 3
    # A finished job whose config did not change is not run again.
    again = container_state.run(params(bundle=bundle, wait="exited", logs_lines=3))
    assert again["changed"] is False and again["actions"] == []


def test_a_job_whose_exit_code_is_not_expected_fails_with_its_code_and_output_every_run(params, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo half done; echo disk full >&2; exit 3"])
    job = params(bundle=bundle, wait="exited", expected_exit_codes=[0, 2])
    with pytest.raises(container_state.TaskFailed) as caught:
        container_state.run(job)
    assert str(caught.value) == ("container %s: job exited with code 3, expected 0 or 2; its last output: "
                                 "half done | disk full" % job["id"])
    # What the task did is the failure's result, as for a job that times out.
    done = caught.value.result
    assert done["changed"] and done["actions"] == ["create", "start"] and done["exit_code"] == 3, done
    assert done["container"]["status"] == "stopped" and done["container"]["exit_code"] == 3
    # The finished job is not run again, and is judged again.
    with pytest.raises(container_state.TaskFailed) as again:
        container_state.run(job)
    assert again.value.result["changed"] is False and again.value.result["exit_code"] == 3
    # Among the expected codes (or none given): a success.
    accepted = container_state.run(dict(job, expected_exit_codes=[0, 3]))
    assert accepted["exit_code"] == 3 and not accepted["changed"], accepted
    assert container_state.run(dict(job, expected_exit_codes=[]))["exit_code"] == 3


def test_expected_exit_codes_are_for_jobs_only(params, make_bundle, state_root):
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=make_bundle(["sleep", "1000"]), expected_exit_codes=[0]))
    assert str(caught.value) == "expected_exit_codes: only with wait=exited (a job's exit code)"
    assert not os.path.isdir(state_root) or [e for e in os.listdir(state_root) if not e.startswith("=")] == []


def test_a_changed_limit_is_applied_in_place_and_becomes_the_stored_config(params, make_bundle, state_root):
    bundle = make_bundle(["sleep", "1000"], config={"linux": {"resources": {"memory": {"limit": 64 * MB}}}})
    first = container_state.run(params(bundle=bundle))["container"]
    set_memory_limit(bundle, 96 * MB)
    result = container_state.run(params(bundle=bundle), diff=True)
    assert result["actions"] == ["update: memory"]
    assert result["container"]["pid"] == first["pid"]
    assert result["diff"]["before"]["config"]["linux"]["resources"]["memory"] == {"limit": 64 * MB}
    assert result["diff"]["after"]["status"] == "running"
    # The stored config now carries the update: the same bundle again is no change.
    _current, stored = container_state.observe(state_root, first["id"])
    assert stored["linux"]["resources"]["memory"]["limit"] == 96 * MB
    assert container_state.run(params(bundle=bundle))["actions"] == []


@pytest.mark.parametrize("bad,field", [
    ({"stop_signal": "SIGNOPE"}, "stop_signal"), ({"stop_timeout": -1}, "stop_timeout"),
    ({"log_max_files": 0}, "log_max_files"), ({"log_max_size": -1}, "log_max_size"),
    ({"timeout": -5}, "timeout"), ({"logs_lines": -1}, "logs_lines"),
])
def test_bad_options_fail_before_any_action(params, make_bundle, state_root, bad, field):
    """A recreate (stop, delete, create) with a bad option used to stop and delete before failing."""
    bundle = make_bundle(["sleep", "1000"])
    before = container_state.run(params(bundle=bundle))["container"]
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=bundle, recreate=True, **bad))
    assert str(caught.value).startswith(field + ":"), caught.value
    after = lifecycle.state(state_root, before["id"])
    assert after["status"] == "running" and after["pid"] == before["pid"]


def test_failures_name_the_container_once(params, make_bundle):
    container_id = params()["id"]
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=make_bundle(["true"]), state="created", stop_signal="NOPE"))
    assert container_state.failure_message(container_id, caught.value) \
        == "container %s: stop_signal: unknown signal 'NOPE'" % container_id
    runtime_error = OCIError("container %s: cannot start a container that is stopped" % container_id)
    assert container_state.failure_message(container_id, runtime_error) == str(runtime_error)


def test_absent_of_an_unknown_container_changes_nothing(params):
    result = container_state.run(params(state="absent"))
    assert result == {"changed": False, "actions": [], "container": None,
                      "msg": "container %s: nothing to do; does not exist" % params()["id"]}
