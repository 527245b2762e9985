"""The demo playbook (tools/demo, what `make demo` runs) as an AWX job: through ansible-runner, checked
by its job events (tests/runner_events.py).

The demo's paths and container ids are extra vars (as an AWX job template
sets them), pointed at this test's scratch directory and private state root.
The role's `ocirt` for operators is not installed here (container_install_cli:
false): its install is more than half of every role call's time, and
test_role_cli.py proves it (install, idempotent re-run, version check).
"""
import os
import uuid

import pytest

from helpers import REPO, WORDS_BY_ROOT
from runner_events import describe, run_job, stats, task_events

DEMO = os.path.join(REPO, "tools", "demo")
CONTAINER_TASK = "Bring the container to the wanted state"  # the role's oci_container_state task


@pytest.fixture
def demo_vars(state_root, scratch):
    service, job = "demo-web-" + uuid.uuid4().hex[:8], "demo-job-" + uuid.uuid4().hex[:8]
    WORDS_BY_ROOT.setdefault(state_root, set()).update([service, job])
    return {"demo_work": os.path.join(scratch, "demo"), "demo_state_root": state_root,
            "demo_service": service, "demo_job": job, "container_install_cli": False}


def run_demo(scratch, name, demo_vars):
    private = os.path.join(scratch, "runner-%s-%d" % (name, len(os.listdir(scratch))))
    return run_job(private, os.path.join(DEMO, name + ".yml"),
                   os.path.join(DEMO, "inventory.yml"), extravars=demo_vars)


def test_the_demo_as_an_awx_job(scratch, demo_vars):
    service, job = demo_vars["demo_service"], demo_vars["demo_job"]

    first = run_demo(scratch, "deploy", demo_vars)
    assert first.status == "successful" and first.rc == 0, describe(first)
    counts = stats(first)
    assert list(counts) == ["localhost"], counts
    assert counts["localhost"]["changed"] > 0 and counts["localhost"].get("failures", 0) == 0, counts
    results = dict((data["res"]["container"]["id"], data["res"]) for host, data in task_events(first, CONTAINER_TASK))
    assert sorted(results) == sorted([service, job])
    assert all(host == "localhost" for host, dummy in task_events(first, CONTAINER_TASK))
    assert results[service]["changed"] is True and results[service]["actions"] == ["create", "start"]
    assert results[service]["container"]["status"] == "running" and results[service]["container"]["pid"] > 0
    assert results[job]["changed"] is True and results[job]["exit_code"] == 0
    assert results[job]["container"]["status"] == "stopped"
    assert any(line.startswith("hello from job") for line in results[job]["logs_lines"]), results[job]
    facts = task_events(first, "Gather the containers' facts")
    assert facts[0][1]["res"]["ansible_facts"]["oci_containers"][service]["status"] == "running"

    second = run_demo(scratch, "deploy", demo_vars)
    assert second.status == "successful" and second.rc == 0, describe(second)
    counts = stats(second)
    assert counts["localhost"].get("changed", 0) == 0 and counts["localhost"].get("failures", 0) == 0, counts
    again = dict((data["res"]["container"]["id"], data["res"]) for host, data in task_events(second, CONTAINER_TASK))
    assert again[service]["changed"] is False and again[service]["actions"] == []
    assert again[service]["container"]["pid"] == results[service]["container"]["pid"]
    assert again[job]["changed"] is False

    cleanup = run_demo(scratch, "cleanup", demo_vars)
    assert cleanup.status == "successful" and cleanup.rc == 0, describe(cleanup)
    # The role's include of its absent tasks bears the same name: the module's results are those with "actions".
    removed = [data["res"] for host, data in task_events(cleanup, "Remove the container") if "actions" in data["res"]]
    assert [r["changed"] for r in removed] == [True, True] and all(r["container"] is None for r in removed)
    assert not os.path.exists(demo_vars["demo_work"]) and not os.path.exists(demo_vars["demo_state_root"])
