"""The collection over SSH on several managed hosts, with become, rolled out as an operator would.

The hosts are network namespaces on this machine, each with its own sshd, its
own /run (so its own state root) and its own cgroup namespace (harness.py).
Every outcome is read from the hosts: cgroupfs values and pids as the machine
sees them under /sys/fs/cgroup/*/multihost-N, the hosts' state roots and
mount tables through their namespaces, and what the modules report.

The tests run in order on one set of hosts (module-scoped fixture): the main
scenario logs in as the unprivileged `ocitest` and becomes root through sudo;
the last test logs in as root with become (no sudo involved). MULTIHOST_HOSTS
sets the number of hosts (default 3). The hosts, the sudo inventory and what
the hosts need are in conftest.py.
"""
import os

import pytest

import harness
from helpers import cmdline

HOST_COUNT = int(os.environ.get("MULTIHOST_HOSTS", "3"))
PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks")
MIB = 1024 * 1024

# What one test leaves for the next: pids by phase and host.
SEEN = {}


def earlier(key):
    """What an earlier test of the scenario recorded; skip when it did not get that far."""
    if key not in SEEN:
        pytest.skip("an earlier step of the scenario did not complete")
    return SEEN[key]


def play(hosts, inventory, name, **extra_vars):
    return hosts.playbook(os.path.join(PLAYBOOKS, name), inventory, extra_vars=extra_vars)


def assert_ok(result, hosts, changed=None):
    """Every host ok; CHANGED: 0 for none anywhere, True for some on every host."""
    assert result.rc == 0, str(result)
    assert sorted(result.recap) == sorted(h.name for h in hosts.hosts), str(result)
    for name, counts in result.recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, "%s: %s\n%s" % (name, counts, result)
        if changed == 0:
            assert counts["changed"] == 0, "%s changed on a re-run: %s\n%s" % (name, counts, result)
        elif changed:
            assert counts["changed"] > 0, "%s: %s\n%s" % (name, counts, result)


def memory_limit(host, container="web"):
    return int(host.read_cgroup("memory", "/ocirt/" + container, "memory.limit_in_bytes"))


def cgroup_procs(host, container="web", hierarchy="pids"):
    return [int(p) for p in host.read_cgroup(hierarchy, "/ocirt/" + container, "cgroup.procs").split()]


def test_deploy_service_and_job_on_every_host(hosts, sudo_inventory):
    result = play(hosts, sudo_inventory, "deploy.yml")
    assert_ok(result, hosts, changed=True)
    pids = {}
    for host in hosts.hosts:
        report = result.report(host.name, "deploy")
        # Logged in unprivileged, root through sudo.
        assert report["login_user"] == harness.TEST_USER
        assert report["escalated"] == "root by %s" % harness.TEST_USER
        web = report["web"]
        assert report["web_changed"] and report["web_actions"] == ["create", "start"]
        assert web["status"] == "running" and web["pid"] > 0
        assert web["cgroup_path"] == "/ocirt/web"
        assert report["job_changed"] and report["job_exit_code"] == 0
        assert report["job_logs"] == ["job done on %s" % host.name]
        # On the machine the host's /ocirt/web is /multihost-N/ocirt/web, holding that pid.
        assert cgroup_procs(host) == [web["pid"]]
        assert cgroup_procs(host, hierarchy="memory") == [web["pid"]]
        assert memory_limit(host) == 64 * MIB
        assert cmdline(web["pid"]) == ["sleep", "3600"]
        assert cgroup_procs(host, "own-" + host.name) == [report["own"]["pid"]]
        # Nothing of the host's in the machine's own /ocirt.
        assert not os.path.exists("/sys/fs/cgroup/pids/ocirt/own-%s" % host.name)
        assert host.state_entries() == sorted(["web", "job", "own-" + host.name])
        pids[host.name] = {"web": web["pid"], "own": report["own"]["pid"], "web_monitor": web["monitor_pid"]}
    assert len(set(p["web"] for p in pids.values())) == len(hosts.hosts), "one container per host: %s" % pids
    SEEN["deploy"] = pids


def test_rerun_changes_nothing_anywhere(hosts, sudo_inventory):
    earlier("deploy")
    result = play(hosts, sudo_inventory, "deploy.yml")
    assert_ok(result, hosts, changed=0)
    for host in hosts.hosts:
        report = result.report(host.name, "deploy")
        assert not report["web_changed"] and report["web_actions"] == []
        assert report["web"]["pid"] == earlier("deploy")[host.name]["web"]
        assert not report["job_changed"] and report["job_exit_code"] == 0
        assert cgroup_procs(host) == [earlier("deploy")[host.name]["web"]]


def test_limit_rolled_out_one_host_at_a_time_in_place(hosts, sudo_inventory):
    earlier("deploy")
    result = play(hosts, sudo_inventory, "rolling.yml")
    assert_ok(result, hosts, changed=True)
    # serial: 1 makes one batch (one PLAY header) per host.
    assert result.output.count("PLAY [Roll out a new memory limit]") == len(hosts.hosts), str(result)
    names = [h.name for h in hosts.hosts]
    for position, host in enumerate(hosts.hosts):
        report = result.report(host.name, "rolling")
        pid = earlier("deploy")[host.name]["web"]
        assert report["changed"] and report["actions"] == ["update: memory"]
        assert report["pid_before"] == pid and report["web"]["pid"] == pid
        # When this host's batch ran: hosts up to it had the new limit, the later ones the old.
        expected = dict((n, 96 * MIB if i <= position else 64 * MIB) for i, n in enumerate(names))
        assert report["limits"] == expected
        # Now, on the machine: the new value in the host's cgroup, the same process in it.
        assert memory_limit(host) == 96 * MIB
        assert cgroup_procs(host) == [pid] and harness.alive(pid)


def test_args_change_recreates(hosts, sudo_inventory):
    earlier("deploy")
    result = play(hosts, sudo_inventory, "deploy.yml", service_args=["sleep", "7200"], service_memory="96M")
    assert_ok(result, hosts, changed=True)
    recreated = {}
    for host in hosts.hosts:
        report = result.report(host.name, "deploy")
        old = earlier("deploy")[host.name]["web"]
        new = report["web"]["pid"]
        assert report["web_changed"] and new != old
        assert any("process.args changed" in action for action in report["web_actions"]), report["web_actions"]
        assert not harness.alive(old)
        assert cgroup_procs(host) == [new]
        assert cmdline(new) == ["sleep", "7200"]
        assert memory_limit(host) == 96 * MIB
        # The other containers were left alone.
        assert report["own"]["pid"] == earlier("deploy")[host.name]["own"]
        assert not report["job_changed"]
        recreated[host.name] = new
    SEEN["recreated"] = recreated


def test_facts_report_each_host_its_own_containers(hosts, sudo_inventory):
    earlier("recreated")
    result = play(hosts, sudo_inventory, "facts.yml")
    assert_ok(result, hosts, changed=0)
    for host in hosts.hosts:
        report = result.report(host.name, "facts")
        containers = report["containers"]
        assert sorted(containers) == sorted(["web", "job", "own-" + host.name])
        assert containers["web"]["pid"] == earlier("recreated")[host.name] == cgroup_procs(host)[0]
        assert containers["own-" + host.name]["pid"] == cgroup_procs(host, "own-" + host.name)[0]
        assert containers["job"]["status"] == "stopped" and containers["job"]["exit_code"] == 0
        assert report["host"]["cgroup"]["mode"] in ("v1", "v2", "hybrid")


def test_unreachable_host_fails_alone_and_converges_on_rerun(hosts, sudo_inventory):
    earlier("recreated")
    victim = hosts.hosts[-1]
    others = hosts.hosts[:-1]
    args = ["sleep", "7200"]
    result = play(hosts, sudo_inventory, "unreachable.yml", service_args=args, service_memory="128M", victim=victim.name)
    assert result.rc != 0, str(result)
    assert result.recap[victim.name]["unreachable"] == 1, str(result)
    assert not victim.sshd_pids()
    for host in others:
        counts = result.recap[host.name]
        assert counts["failed"] == 0 and counts["unreachable"] == 0 and counts["changed"] > 0, str(result)
        report = result.report(host.name, "unreachable")
        assert report["web_actions"] == ["update: memory"]
        assert memory_limit(host) == 128 * MIB
        assert cgroup_procs(host) == [earlier("recreated")[host.name]]
    # The victim's container lived on without its sshd, with the old limit.
    assert memory_limit(victim) == 96 * MIB
    assert cgroup_procs(victim) == [earlier("recreated")[victim.name]]

    victim.start_sshd()
    again = play(hosts, sudo_inventory, "deploy.yml", service_args=args, service_memory="128M")
    assert again.rc == 0, str(again)
    for host in hosts.hosts:
        counts = again.recap[host.name]
        assert counts["failed"] == 0 and counts["unreachable"] == 0, str(again)
        report = again.report(host.name, "deploy")
        if host is victim:
            assert counts["changed"] > 0 and report["web_actions"] == ["update: memory"], str(again)
        else:
            assert counts["changed"] == 0, str(again)
        assert report["web"]["pid"] == earlier("recreated")[host.name]
        assert memory_limit(host) == 128 * MIB


def test_absent_everywhere_leaves_every_host_clean(hosts, sudo_inventory):
    # Whatever pids the earlier steps saw: none of them may outlive the removal.
    pids = [p for by_host in SEEN.get("deploy", {}).values() for p in by_host.values()] + list(SEEN.get("recreated", {}).values())
    result = play(hosts, sudo_inventory, "remove.yml")
    assert_ok(result, hosts, changed=True)
    for host in hosts.hosts:
        report = result.report(host.name, "remove")
        assert report["removed_changed"] == [True, True, True]
        assert report["containers"] == []
        assert report["host_view"] == [], "%s still has: %s" % (host.name, report["host_view"])
        # From the machine: no container cgroup, process, state or mount of the host's.
        assert host.container_cgroups() == []
        assert host.container_pids() == []
        assert host.state_entries() == []
        assert "/srv/oci" not in host.mountinfo()
    alive = [pid for pid in pids if harness.alive(pid)]
    assert not alive, "container or monitor processes still alive: %s" % alive


def test_root_login_with_become(hosts):
    """Logged in as root, become changes nothing (no sudo): deploy, re-run, remove."""
    inventory = hosts.inventory("root")
    result = play(hosts, inventory, "deploy.yml")
    assert_ok(result, hosts, changed=True)
    for host in hosts.hosts:
        report = result.report(host.name, "deploy")
        assert report["login_user"] == "root" and report["escalated"] == "root by none"
        assert cgroup_procs(host) == [report["web"]["pid"]]
    assert_ok(play(hosts, inventory, "deploy.yml"), hosts, changed=0)
    result = play(hosts, inventory, "remove.yml")
    assert_ok(result, hosts, changed=True)
    for host in hosts.hosts:
        assert result.report(host.name, "remove")["host_view"] == []
        assert host.container_cgroups() == [] and host.container_pids() == [] and host.state_entries() == []
