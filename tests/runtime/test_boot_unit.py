"""The role's boot unit (roles/container/templates/ocirt-container.service.j2) under a real systemd.

The unit is rendered by Ansible's template module from the role's
defaults, checked by `systemd-analyze verify`, and installed, enabled,
into a systemd booted by systemd-nspawn (tests/nspawn_support.py): it
must start the container at boot with the container's monitor as the unit's
main process, restart a killed container (Restart= mapped from the restart
policy), and stop cleanly through ocirt (no container, no monitor left).
"""
import json
import os
import subprocess
import sys

import pytest

import nspawn_support
from helpers import REPO, poll
from test_restart import when

ROLE = os.path.join(REPO, "roles", "container")
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars_files: [%(defaults)s]
  tasks:
    - ansible.builtin.template:
        src: %(template)s
        dest: "%(scratch)s/unit-{{ index }}.service"
        mode: "0644"
      vars:
        container_name: "{{ item.container_name }}"
        container_restart_policy: "{{ item.container_restart_policy | default('no') }}"
        container_wait: "{{ item.container_wait | default('none') }}"
        container_stop_timeout: "{{ item.container_stop_timeout | default(10) }}"
        container_ocirt_command: "{{ item.container_ocirt_command | default('/usr/local/bin/ocirt') }}"
        container_bundle_dir: "{{ item.container_bundle_dir | default('/var/lib/ocirt/bundles/' ~ item.container_name) }}"
      loop: "{{ variants }}"
      loop_control:
        index_var: index
"""
VARIANTS = [dict(container_name="web", container_restart_policy=policy)
            for policy in ("no", "on-failure", "on-failure:3", "always", "unless-stopped")]
VARIANTS.append(dict(container_name="job", container_wait="exited"))


def render(scratch, variants):
    """The units' texts, rendered by ansible-playbook's template module from the role's defaults with
    each of VARIANTS (dicts of role variables)."""
    playbook = os.path.join(scratch, "render.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK % {"defaults": os.path.join(ROLE, "defaults", "main.yml"),
                                 "template": os.path.join(ROLE, "templates", "ocirt-container.service.j2"),
                                 "scratch": scratch})
    extra = os.path.join(scratch, "vars.json")
    with open(extra, "w") as handle:
        json.dump({"variants": variants, "ansible_python_interpreter": sys.executable}, handle)
    result = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c",
                             "local", playbook, "-e", "@" + extra], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    units = []
    for index in range(len(variants)):
        with open(os.path.join(scratch, "unit-%d.service" % index)) as handle:
            units.append(handle.read())
    return units


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(str(tmp_path_factory.mktemp("units")), VARIANTS)


def directives(unit):
    found = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("index,policy,restart", [(0, "no", "no"), (1, "on-failure", "on-failure"),
                                                  (2, "on-failure:3", "on-failure"), (3, "always", "always"),
                                                  (4, "unless-stopped", "always")])
def test_restart_is_mapped_from_the_restart_policy(rendered, index, policy, restart):
    assert VARIANTS[index]["container_restart_policy"] == policy
    unit = directives(rendered[index])
    assert unit["Restart"] == [restart]
    assert unit["Type"] == ["forking"] and unit["KillMode"] == ["mixed"]
    assert unit["PIDFile"] == ["/run/ocirt-web.monitor.pid"]
    assert "--monitor-pid-file /run/ocirt-web.monitor.pid" in unit["ExecStart"][0]
    assert "--restart" not in unit["ExecStart"][0], "two supervisors: the monitor must not restart under systemd"
    if policy == "on-failure:3":
        assert unit["StartLimitBurst"] == ["4"]
    else:
        assert "StartLimitBurst" not in unit


def test_a_job_unit_stays_a_oneshot(rendered):
    unit = directives(rendered[-1])
    assert unit["Type"] == ["oneshot"] and "Restart" not in unit and "PIDFile" not in unit


def test_the_unit_boots_restarts_a_killed_container_and_stops_cleanly(scratch):
    name = "svc-boot"
    unit_name = "ocirt-%s.service" % name
    bundle_dir = "/var/lib/ocirt/bundles/" + name
    unit, = render(scratch, [dict(container_name=name, container_restart_policy="always",
                                  container_ocirt_command=os.path.join(REPO, ".venv", "bin", "ocirt"),
                                  container_bundle_dir=bundle_dir, container_stop_timeout=2)])
    import busybox_bundle
    bundle_src = os.path.join(scratch, "bundle")
    busybox_bundle.build_bundle(bundle_src, args=["sh", "-c", "echo up; exec sleep 1000"], config={})
    # Installed and enabled before the boot, as the role leaves it: the boot starts it.
    files = {"/etc/systemd/system/" + unit_name: unit,
             "/etc/systemd/system/multi-user.target.wants/" + unit_name: "->/etc/systemd/system/" + unit_name,
             bundle_dir: ("copy", bundle_src)}
    with nspawn_support.booted_systemd(files) as host:
        verify = host.sh("systemd-analyze verify /etc/systemd/system/%s" % unit_name, check=False)
        assert verify.returncode == 0 and unit_name not in verify.stderr, verify.stderr
        shown = poll(lambda: when(host.unit(unit_name, "ActiveState", "MainPID", "NRestarts", "UnitFileState"),
                                  lambda u: u.get("ActiveState") == "active"), "the unit to run")
        assert shown["UnitFileState"] == "enabled", shown
        state = json.loads(host.ocirt("state", name).stdout)
        assert state["status"] == "running", state
        assert int(shown["MainPID"]) == state["monitorPid"], "systemd must track the monitor: %s %s" % (shown, state)
        # A killed container: the monitor exits with 137, systemd restarts the unit, a new container runs.
        host.sh("kill -9 %d" % state["pid"])
        again = poll(lambda: when(host.unit(unit_name, "ActiveState", "MainPID", "NRestarts"),
                                  lambda u: u.get("ActiveState") == "active" and u.get("NRestarts") == "1"),
                     "systemd to restart the unit")
        new_state = json.loads(poll(lambda: when(host.ocirt("state", name, check=False),
                                                 lambda r: r.returncode == 0), "the new container").stdout)
        assert new_state["pid"] != state["pid"] and new_state["status"] == "running", new_state
        assert int(again["MainPID"]) == new_state["monitorPid"]
        # Stop: through ocirt, nothing left (no container, no monitor), and not restarted.
        host.sh("systemctl stop %s" % unit_name)
        stopped = host.unit(unit_name, "ActiveState", "MainPID")
        assert stopped["ActiveState"] == "inactive" and stopped["MainPID"] == "0", stopped
        assert host.ocirt("list", "-q").stdout.strip() == ""
        left = host.sh("for p in %d %d; do kill -0 $p 2>/dev/null && echo $p; done; true"
                       % (new_state["pid"], new_state["monitorPid"])).stdout.split()
        assert left == [], "processes outlived the unit: %s" % left
