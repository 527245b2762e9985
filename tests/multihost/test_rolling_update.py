"""A rolling update that waits for health: serial + wait=healthy + max_fail_percentage, over SSH.

Three hosts (harness.py) run a service with a health check. A new config
that passes is rolled out host by host; one that fails its check stops the
play at the first host (its task fails with the check's output), and the
other hosts keep their old container untouched: same pid, same config, still
healthy. Run only under `flock /tmp/multihost.lock` (fixed namespace names).
"""
import json
import os

import harness
from helpers import cmdline

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks")
HOST_COUNT = 3  # the `hosts` fixture of conftest.py


def roll(hosts, word):
    inventory = hosts.inventory("root")
    return hosts.playbook(os.path.join(PLAYBOOKS, "rolling_health.yml"), inventory,
                          extra_vars={"service_word": word, "phase": "rolling"})


def api_state(host):
    """The api container's state on HOST, read from its state root through its namespaces."""
    result = harness.run(["nsenter", "-t", str(host.keeper.pid), "-m",
                          os.path.join(harness.VENV, "bin", "ocirt"), "--root", "/run/ocirt", "state", "api"],
                         check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_bad_config_stops_the_rollout_at_the_first_host(hosts):
    first = roll(hosts, "healthy")
    assert first.rc == 0, str(first)
    before = {}
    for host in hosts.hosts:
        report = first.report(host.name, "rolling")
        assert report["api"]["health"]["status"] == "healthy", report
        assert report["api"]["restart_policy"] == "on-failure"
        before[host.name] = report["api"]
    assert len(set(b["pid"] for b in before.values())) == 3

    bad = roll(hosts, "broken")
    assert bad.rc != 0, str(bad)
    names = [host.name for host in hosts.hosts]
    assert bad.recap[names[0]]["failed"] == 1, str(bad)
    assert "unhealthy" in bad.output and "no healthy in:" in bad.output, bad.output[-4000:]
    # The others were never touched: not in the recap with a change, same container, still healthy.
    for name in names[1:]:
        assert bad.recap.get(name, {}).get("changed", 0) == 0, str(bad)
        host = hosts.by_name(name)
        state = api_state(host)
        assert state["pid"] == before[name]["pid"] and state["status"] == "running", state
        assert state["health"]["status"] == "healthy", state
        assert cmdline(state["pid"])[-1] == "healthy"
    # The first host runs the new, unhealthy container (its task failed; nothing was rolled back).
    assert api_state(hosts.by_name(names[0]))["health"]["status"] == "unhealthy"

    fixed = roll(hosts, "healthy")
    assert fixed.rc == 0, str(fixed)
    for host in hosts.hosts:
        assert fixed.report(host.name, "rolling")["api"]["health"]["status"] == "healthy"
