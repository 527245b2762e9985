"""A multihost play as an AWX job: deploy.yml, a re-run and remove.yml on the harness's hosts (over SSH,
become through sudo) through ansible-runner, checked by the job events AWX shows per host.

Run by hand under the machine's lock: flock /tmp/multihost.lock make units TEST_PATHS=tests/multihost/test_awx_runner.py
"""
import os

import harness
from runner_events import describe, run_job, stats, task_events

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks")
HOST_COUNT = 2  # the `hosts` fixture of conftest.py


def job(hosts, inventory, tmp_path, name):
    """PLAYBOOKS/NAME as an AWX job on HOSTS through INVENTORY (conftest.py's sudo_inventory: login as the
    test user, sudo to root), the harness's ansible.cfg and extra vars, as `hosts.playbook` gives
    ansible-playbook."""
    results = os.path.join(hosts.base, "results")
    os.makedirs(results, exist_ok=True)
    extravars = {"results_dir": results, "harness_python": harness.CONTROL_PYTHON,
                 "harness_script": os.path.abspath(harness.__file__), "harness_base": hosts.base}
    private = tmp_path / ("runner-%s-%d" % (name, len(os.listdir(tmp_path))))
    return run_job(private, os.path.join(PLAYBOOKS, name), inventory, extravars=extravars,
                   envvars=hosts.ansible_env())


def by_host(runner, task):
    return dict((host, data["res"]) for host, data in task_events(runner, task))


def test_deploy_rerun_and_remove_as_awx_jobs(hosts, sudo_inventory, tmp_path):
    names = sorted(h.name for h in hosts.hosts)

    first = job(hosts, sudo_inventory, tmp_path, "deploy.yml")
    assert first.status == "successful" and first.rc == 0, describe(first)
    counts = stats(first)
    assert sorted(counts) == names, counts
    for name in names:
        assert counts[name]["changed"] > 0 and counts[name].get("failures", 0) == 0, counts
        assert counts[name].get("dark", 0) == 0, counts
    web = by_host(first, "The service runs")
    assert sorted(web) == names
    for name, res in web.items():
        assert res["changed"] is True and res["actions"] == ["create", "start"], (name, res)
        assert res["container"]["status"] == "running" and res["container"]["pid"] > 0, (name, res)
    jobs = by_host(first, "The job runs to completion")
    for name, res in jobs.items():
        assert res["exit_code"] == 0 and res["logs_lines"] == ["job done on %s" % name], (name, res)

    second = job(hosts, sudo_inventory, tmp_path, "deploy.yml")
    assert second.status == "successful", describe(second)
    for name, count in stats(second).items():
        assert count.get("changed", 0) == 0 and count.get("failures", 0) == 0, (name, count)
    again = by_host(second, "The service runs")
    for name, res in again.items():
        assert res["changed"] is False and res["actions"] == [], (name, res)
        assert res["container"]["pid"] == web[name]["container"]["pid"], (name, res)

    removed = job(hosts, sudo_inventory, tmp_path, "remove.yml")
    assert removed.status == "successful", describe(removed)
    for name, count in stats(removed).items():
        assert count["changed"] > 0 and count.get("failures", 0) == 0, (name, count)
    for host in hosts.hosts:
        assert host.container_cgroups() == [] and host.container_pids() == [] and host.state_entries() == []
