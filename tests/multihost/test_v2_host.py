"""The container role converged in one play on a pure cgroup v2 host and on a v1/hybrid host.

Two hosts of the harness (harness.py): mh1 has the machine's cgroup layout
(v1 or hybrid here), mh2 runs its sshd in a mount namespace where only
cgroup2 is mounted at /sys/fs/cgroup, so every module run over SSH there sees
a pure v2 host. Outcomes are read on the hosts (what the play reports) and
from the machine (the host's cgroup directories, pids, state root).

The tests run in order on one set of hosts (module-scoped fixture, conftest.py).
"""
import os

import pytest

import harness
from helpers import cmdline, poll

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import device_program

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks")
V1, V2 = "mh1", "mh2"
SEEN = {}
# mh1 with the machine's layout, mh2 pure v2 (the `hosts` fixture of conftest.py); logged in unprivileged,
# root through sudo (`sudo_inventory`), as the main multihost scenario.
HOST_COUNT = 2
V2_HOSTS = (2,)


def earlier(key):
    if key not in SEEN:
        pytest.skip("an earlier step of the scenario did not complete")
    return SEEN[key]


def play(hosts, inventory, **extra_vars):
    return hosts.playbook(os.path.join(PLAYBOOKS, "role.yml"), inventory, extra_vars=extra_vars)


def assert_ok(result, changed):
    assert result.rc == 0, str(result)
    assert sorted(result.recap) == [V1, V2], str(result)
    for name, counts in result.recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, "%s: %s\n%s" % (name, counts, result)
        if changed:
            assert counts["changed"] > 0, "%s: %s\n%s" % (name, counts, result)
        else:
            assert counts["changed"] == 0, "%s changed on a re-run: %s\n%s" % (name, counts, result)


def view(report, kind):
    """The host_view lines of KIND ('proc', 'procs', 'cgroup', 'state'), without the prefix."""
    return [line.split(" ", 1)[1] for line in report["host_view"] if line.split(" ", 1)[0] == kind]


def v2_procs(host, path):
    with open(os.path.join(host.unified_dir(path), "cgroup.procs")) as handle:
        return [int(p) for p in handle.read().split()]


def test_role_converges_on_a_v2_and_a_v1_host_in_one_play(hosts, sudo_inventory):
    result = play(hosts, sudo_inventory)
    assert_ok(result, changed=True)
    v1, v2 = hosts.by_name(V1), hosts.by_name(V2)
    pids = {}
    for host in (v1, v2):
        report = result.report(host.name, "role")
        web = report["containers"]["web"]
        assert report["role_changed"]
        assert web["status"] == "running" and web["pid"] > 0, web
        assert web["cgroup_path"] == "/ocirt/web"
        assert cmdline(web["pid"]) == ["sleep", "3600"]
        assert view(report, "procs") == [str(web["pid"])], report["host_view"]
        assert view(report, "state") == ["web"]
        pids[host.name] = web["pid"]
    # What the hosts are: the machine's layout on mh1, pure v2 on mh2, and the runtime says so.
    r1, r2 = result.report(V1, "role"), result.report(V2, "role")
    assert r1["cgroup_fs"] == "tmpfs" and r1["host"]["cgroup"]["mode"] in ("v1", "hybrid"), r1["host"]
    assert r2["cgroup_fs"] == "cgroup2fs" and r2["host"]["cgroup"]["mode"] == "v2", r2["host"]
    # On the v2 host the process is in /ocirt/web of the cgroup2 hierarchy (the host's view and the
    # machine's: /multihost-2/ocirt/web of the machine's cgroup2 hierarchy), with its device program.
    assert view(r2, "proc") == ["0::/ocirt/web"], r2["host_view"]
    assert v2_procs(v2, "/ocirt/web") == [pids[V2]]
    programs = device_program.attached(v2.unified_dir("/ocirt/web"))
    assert len(programs) == 1, programs
    # On the v1 host the v1 hierarchies hold it, and no device program is involved.
    assert [int(p) for p in v1.read_cgroup("pids", "/ocirt/web", "cgroup.procs").split()] == [pids[V1]]
    assert [int(p) for p in v1.read_cgroup("devices", "/ocirt/web", "cgroup.procs").split()] == [pids[V1]]
    assert not os.path.exists(v1.unified_dir("/ocirt/web")) or v2_procs(v1, "/ocirt/web") == [pids[V1]]
    assert pids[V1] != pids[V2]
    SEEN["deploy"] = {"pids": pids, "programs": [prog_id for prog_id, _name in programs]}


def test_rerun_changes_nothing_on_either_host(hosts, sudo_inventory):
    deployed = earlier("deploy")
    result = play(hosts, sudo_inventory)
    assert_ok(result, changed=False)
    for name in (V1, V2):
        report = result.report(name, "role")
        assert not report["role_changed"]
        assert report["containers"]["web"]["pid"] == deployed["pids"][name]
        assert report["containers"]["web"]["status"] == "running"
    v2 = hosts.by_name(V2)
    assert v2_procs(v2, "/ocirt/web") == [deployed["pids"][V2]]
    assert [p for p, _n in device_program.attached(v2.unified_dir("/ocirt/web"))] == deployed["programs"]


def test_a_memory_limit_fails_on_the_v2_host_naming_the_field(hosts, sudo_inventory):
    """This machine's cgroup2 hierarchy has no memory controller: the v2 host refuses the limit by
    name and its container keeps running; the v1 host applies it in place."""
    deployed = earlier("deploy")
    v1, v2 = hosts.by_name(V1), hosts.by_name(V2)
    with open(os.path.join(harness.unified_mount(hosts.mounts), "cgroup.controllers")) as handle:
        if "memory" in handle.read().split():
            pytest.skip("the machine's cgroup2 hierarchy has the memory controller")
    result = play(hosts, sudo_inventory, service_memory="64M")
    assert result.rc != 0, str(result)
    assert result.recap[V2]["failed"] == 1 and result.recap[V1]["failed"] == 0, str(result)
    assert "Traceback" not in result.output, str(result)
    fatal = [line for line in result.output.splitlines() if line.startswith("fatal: [%s]" % V2)]
    assert len(fatal) == 1, str(result)
    assert "container web: linux.resources.memory" in fatal[0] and "no memory cgroup controller" in fatal[0], fatal
    assert int(v1.read_cgroup("memory", "/ocirt/web", "memory.limit_in_bytes")) == 64 * 1024 * 1024
    assert [int(p) for p in v1.read_cgroup("pids", "/ocirt/web", "cgroup.procs").split()] == [deployed["pids"][V1]]
    assert v2_procs(v2, "/ocirt/web") == [deployed["pids"][V2]]
    assert harness.alive(deployed["pids"][V2])


def test_absent_leaves_nothing_on_either_host(hosts, sudo_inventory):
    pids = list(SEEN.get("deploy", {}).get("pids", {}).values())
    result = play(hosts, sudo_inventory, service_state="absent")
    assert_ok(result, changed=True)
    for host in hosts.hosts:
        report = result.report(host.name, "role")
        assert report["containers"] == {}
        assert report["host_view"] == [], "%s still has: %s" % (host.name, report["host_view"])
        # From the machine: no container cgroup (in any hierarchy), process or state of the host's.
        assert host.container_cgroups() == []
        assert host.container_pids() == []
        assert host.state_entries() == []
        assert "/srv/oci" not in host.mountinfo()
    for prog_id in SEEN.get("deploy", {}).get("programs", []):
        # The kernel releases a removed cgroup's programs asynchronously.
        poll(lambda: not device_program.program_exists(prog_id), "device program %d to be released" % prog_id)
    alive = [pid for pid in pids if harness.alive(pid)]
    assert not alive, "container processes still alive: %s" % alive
