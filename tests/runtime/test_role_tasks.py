"""How much the role daemonless.oci.container runs for one container (issue 20: each module task costs
about half a second of wall, whatever it does), read from the job events of real runs on this machine:
an unchanged container takes ONE module task, its removal at most one; and what the one task took over
still happens: the log file's missing directory is made (in check mode only said), check mode changes
nothing, a failing bundle fails the role with its message and leaves nothing, the removal takes the
bundle with the container.

Module tasks are the tasks whose action runs a module on the host; raw (one shell command), debug,
assert, fail, set_fact, includes and the role's argument check run none.
"""
import json
import os
import stat

from helpers import Ocirt, state_entries
from runner_events import describe, stats
from test_role_cli import role_run  # noqa: F401  # pylint: disable=unused-import

# Actions that build and run no module on the host.
NOT_MODULES = {"ansible.builtin.raw", "ansible.builtin.debug", "ansible.builtin.assert", "ansible.builtin.fail",
               "ansible.builtin.set_fact", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks",
               "ansible.builtin.include_role", "ansible.builtin.validate_argument_spec", "ansible.builtin.meta",
               "daemonless.oci.oci_role_preflight"}
RAN = ("runner_on_ok", "runner_on_failed")
# test_role_cli's play, with check mode as a variable.
CHECKABLE_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - check_mode: "{{ role_check_mode | default(false) }}"
      block:
        - ansible.builtin.include_role:
            name: daemonless.oci.container
"""


def ran(runner):
    """[(task name, action, result)] of every task that ran (not skipped), in order."""
    found = []
    for event in runner.events:
        data = event.get("event_data") or {}
        if event.get("event") in RAN:
            found.append((data.get("task"), data.get("task_action"), data.get("res") or {}))
    return found


def module_tasks(runner):
    return [(name, action) for name, action, _res in ran(runner) if action not in NOT_MODULES]


def test_an_unchanged_container_takes_one_module_task_and_its_removal_one(role_run, scratch, state_root):  # noqa: F811
    logs = os.path.join(scratch, "logs", "app")
    log_path = os.path.join(logs, "service.log")
    options = dict(container_log_path=log_path)

    # Check mode first, with nothing on the host: the log directory and the container are only said.
    with open(os.path.join(scratch, "play.yml"), "w") as handle:
        handle.write(CHECKABLE_PLAY)
    checked = role_run(role_check_mode=True, **options)
    assert checked.status == "successful", describe(checked)
    assert not os.path.lexists(os.path.join(scratch, "logs")) and state_entries(state_root) == []
    said = [res for name, _action, res in ran(checked) if name == "Make the log file's directory"]
    assert said and said[0]["changed"], said
    assert not os.path.lexists(os.path.join(scratch, "bundle"))
    deploy = [res for name, _action, res in ran(checked) if name == "Bring the container to the wanted state"]
    assert deploy and deploy[0]["changed"] and deploy[0]["containers"][0]["actions"] == ["create", "start"], deploy

    first = role_run(**options)
    assert first.status == "successful", describe(first)
    assert stat.S_IMODE(os.stat(logs).st_mode) == 0o750
    state = Ocirt(state_root).state(role_run.name)
    assert state["status"] == "running"
    made = [res for name, _action, res in ran(first) if name == "Make the log file's directory"]
    assert made and made[0]["changed"], made

    again = role_run(**options)
    assert again.status == "successful", describe(again)
    assert stats(again)["localhost"].get("changed", 0) == 0, stats(again)
    assert module_tasks(again) == [("Bring the container to the wanted state", "daemonless.oci.oci_containers")], \
        module_tasks(again)
    assert Ocirt(state_root).state(role_run.name)["pid"] == state["pid"]
    with open(log_path) as handle:
        assert "hello from %s" % role_run.name in handle.read()
    # The task's result (container_result) is the container's, as oci_container_state's was.
    kept = [res for name, _action, res in ran(again) if name == "Bring the container to the wanted state"][0]
    assert kept["id"] == role_run.name and kept["container"]["pid"] == state["pid"] and kept["actions"] == []
    assert kept["changed"] is False and kept["msg"] == "container %s: nothing to do; running" % role_run.name, kept

    gone = role_run(container_state="absent")
    assert gone.status == "successful", describe(gone)
    assert len(module_tasks(gone)) <= 1, module_tasks(gone)
    assert state_entries(state_root) == [] and not os.path.lexists(os.path.join(scratch, "bundle"))
    assert stats(gone)["localhost"].get("changed", 0) >= 1
    still_gone = role_run(container_state="absent")
    assert still_gone.status == "successful", describe(still_gone)
    assert len(module_tasks(still_gone)) <= 1 and stats(still_gone)["localhost"].get("changed", 0) == 0


def test_a_failing_deploy_fails_the_role_with_the_containers_message_and_leaves_nothing(
        role_run, scratch, state_root):  # noqa: F811
    missing = os.path.join(scratch, "no-such-rootfs")
    failed = role_run(container_image_src=missing, container_install_cli=False)
    assert failed.status == "failed", describe(failed)
    failures = [((event.get("event_data") or {}).get("task"), event["event_data"]["res"]) for event in failed.events
                if event.get("event") == "runner_on_failed"]
    assert [name for name, _res in failures] == ["Bring the container to the wanted state"], failures
    message = failures[0][1]["msg"]
    assert message.startswith("container %s: bundle " % role_run.name) and missing in message, message
    assert "Traceback" not in json.dumps(failures)
    assert state_entries(state_root) == [] and not os.path.lexists(os.path.join(scratch, "bundle"))


def test_a_job_with_an_unexpected_exit_code_fails_the_role_in_its_one_module_task(role_run, state_root):  # noqa: F811
    job = dict(container_args=["sh", "-c", "echo step one; echo no space left >&2; exit 3"], container_wait="exited",
               container_install_cli=False)
    failed = role_run(**job)
    assert failed.status == "failed", describe(failed)
    failures = [((event.get("event_data") or {}).get("task"), event["event_data"]["res"]) for event in failed.events
                if event.get("event") == "runner_on_failed"]
    assert [name for name, _res in failures] == ["Bring the container to the wanted state"], failures
    message = failures[0][1]["msg"]
    assert message == ("container %s: job exited with code 3, expected 0; its last output: step one | no space left"
                       % role_run.name), message
    assert failures[0][1]["exit_code"] == 3
    # The same job with 3 among the expected codes: done, and not run again.
    done = role_run(container_job_expected_exit_codes=[0, 3], **job)
    assert done.status == "successful", describe(done)
    assert Ocirt(state_root).state(role_run.name)["status"] == "stopped"
    assert module_tasks(done) == [("Bring the container to the wanted state", "daemonless.oci.oci_containers")]
