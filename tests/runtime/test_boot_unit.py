"""The role's boot unit (roles/container/templates/ocirt-container.service.j2) and its ocirt-boot.

The unit's ExecStart is ocirt-boot (_ansible/boot.py), which creates the
container from its boot record (the deploy task's options, written by
oci_container_state's boot_record) as oci_container_state would: health
check, restart policy, labels, networks and published ports come back with
it. The unit, the launchers and the core the role ships (its
__container_cli_archive) are rendered by Ansible from the role's own
defaults and vars, and run here as the role would install them: with the
system's Python (-I, no Ansible on the path).

- Rendered units: systemd restarts only a monitor that died (Restart=on-abnormal).
- On this host, as a real process: ocirt-boot brings a container back on a
  real CNI network with its published port answering and its health check
  passing; a kill -9 of the container is the monitor's restart (restart_count
  1); the unit's stop commands leave no veth, iptables rule, IPAM
  reservation or netns (the `net` fixture's audit); a tampered record fails
  naming the file with nothing made.
- Under a real systemd (systemd-nspawn --boot, tests/nspawn_support.py): the
  units start at boot with the monitor as main process; health checks run
  (healthy; a failing one restarted by on_failure: restart); a killed
  container comes back through the monitor's backoff (restart_count 1, no
  systemd restart); a killed monitor through systemd; a record others can
  read fails the unit naming the file; `systemctl stop` leaves nothing.
"""
import base64
import json
import os
import random
import stat
import subprocess
import sys

import pytest
import yaml

import nspawn_support
from helpers import REPO, poll, proc_start_time, wait_gone
from test_day_two import ANSIBLE_BIN, ansible_env
from test_networks import HTTPD, _missing_host_feature, http_get
# Fixtures, used by name.
from test_networks import net, params  # noqa: F401  # pylint: disable=unused-import
from test_restart import when
from test_role_cli import role_run  # noqa: F401  # pylint: disable=unused-import
from runner_events import describe, stats
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import boot
from ansible_collections.daemonless.oci.plugins.module_utils._network import cni

ROLE = os.path.join(REPO, "roles", "container")
HOST_PYTHON = "/usr/bin/python3"  # the role's container_cli_python: the system's, without Ansible
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars_files: [%(defaults)s, %(vars)s]
  tasks:
    - ansible.builtin.template:
        src: %(template)s
        dest: "%(scratch)s/unit-{{ index }}.service"
        mode: "0644"
      vars:
        container_name: "{{ item.container_name }}"
        container_wait: "{{ item.container_wait | default('none') }}"
        container_stop_timeout: "{{ item.container_stop_timeout | default(10) }}"
        container_state_root: "{{ item.container_state_root | default('/run/ocirt') }}"
        container_bundle_dir: "{{ item.container_bundle_dir | default('/var/lib/ocirt/bundles/' ~ item.container_name) }}"
      loop: "{{ variants }}"
      loop_control:
        index_var: index
    - name: The core as the role sends it
      ansible.builtin.copy:
        content: "{{ __container_cli_archive }}"
        dest: "%(scratch)s/core.tar.gz.b64"
        mode: "0644"
      when: launchers
    - ansible.builtin.template:
        src: %(launcher)s
        dest: "%(scratch)s/{{ item.name }}"
        mode: "0755"
      vars:
        __container_launcher_name: "{{ item.name }}"
        __container_launcher_main: "{{ item.main }}"
      loop: [{name: ocirt, main: _runtime.cli}, {name: ocirt-boot, main: _ansible.boot}]
      when: launchers
"""


def render(scratch, variants, launchers=False, lib_dir="/usr/local/lib/daemonless-oci"):
    """The units' texts, rendered by ansible-playbook's template module from the role's defaults and vars
    with each of VARIANTS (dicts of role variables); with LAUNCHERS also the role's archive of the core
    and its two launchers (for a core in LIB_DIR) in SCRATCH."""
    playbook = os.path.join(scratch, "render.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK % {"defaults": os.path.join(ROLE, "defaults", "main.yml"),
                                 "vars": os.path.join(ROLE, "vars", "main.yml"),
                                 "template": os.path.join(ROLE, "templates", "ocirt-container.service.j2"),
                                 "launcher": os.path.join(ROLE, "templates", "ocirt-launcher.j2"),
                                 "scratch": scratch})
    extra = os.path.join(scratch, "vars.json")
    with open(extra, "w") as handle:
        json.dump({"variants": variants, "ansible_python_interpreter": sys.executable, "role_path": ROLE,
                   "launchers": launchers, "container_cli_lib_dir": lib_dir,
                   "container_cli_python": HOST_PYTHON}, handle)
    result = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c",
                             "local", playbook, "-e", "@" + extra], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    units = []
    for index in range(len(variants)):
        with open(os.path.join(scratch, "unit-%d.service" % index)) as handle:
            units.append(handle.read())
    return units


def collection_version():
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)["version"]


def unpack_core(scratch, lib_dir):
    """The role's core unpacked as tasks/cli.yml does, into LIB_DIR/<version>: that directory."""
    with open(os.path.join(ROLE, "vars", "main.yml")) as handle:
        role_vars = yaml.safe_load(handle)
    core = os.path.join(lib_dir, collection_version())
    target = os.path.join(core, role_vars["__container_cli_module_utils"])
    os.makedirs(target)
    with open(os.path.join(scratch, "core.tar.gz.b64"), "rb") as handle:
        data = base64.b64decode(handle.read())
    subprocess.run(["tar", "-xz", "--no-same-owner", "-C", target], input=data, check=True, timeout=60)
    for parent in role_vars["__container_cli_parents"]:
        open(os.path.join(core, parent, "__init__.py"), "w").close()
    with open(os.path.join(core, "VERSION"), "w") as handle:
        handle.write(collection_version() + "\n")
    return core


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(str(tmp_path_factory.mktemp("units")), VARIANTS)


VARIANTS = [dict(container_name="web"), dict(container_name="job", container_wait="exited")]


def directives(unit):
    found = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_a_service_unit_starts_ocirt_boot_and_restarts_only_a_dead_monitor(rendered):
    unit = directives(rendered[0])
    assert unit["Type"] == ["forking"] and unit["KillMode"] == ["mixed"]
    assert unit["PIDFile"] == ["/run/ocirt-web.monitor.pid"]
    assert unit["ExecStart"] == ["/usr/local/bin/ocirt-boot --record /var/lib/ocirt/boot/web.json "
                                 "--pid-file /run/ocirt-web.monitor.pid web"]
    # The monitor restarts the container (backoff, restart_count); it exits with an exit code when it
    # restarts no more, which on-abnormal leaves alone; a monitor killed by a signal is restarted.
    assert unit["Restart"] == ["on-abnormal"] and "StartLimitBurst" not in unit
    assert "/var/lib/ocirt/boot" in unit["RequiresMountsFor"][0]


def test_a_job_unit_stays_a_oneshot_from_the_record(rendered):
    unit = directives(rendered[-1])
    assert unit["Type"] == ["oneshot"] and "Restart" not in unit and "PIDFile" not in unit
    # No --pid-file: a quick job may be done, its monitor gone, before ocirt-boot looks.
    assert unit["ExecStart"][0] == "/usr/local/bin/ocirt-boot --record /var/lib/ocirt/boot/job.json job"
    assert unit["ExecStart"][1].endswith(" wait --timeout 300 job")


def record_params(**options):
    """oci_container_state's params as AnsibleModule hands them over (every option), with OPTIONS."""
    given = dict((name, option.get("default")) for name, option in boot.recorded_options().items())
    given.update(options)
    return given


def run_module(module, args):
    """MODULE as an ad-hoc task on localhost, run by HOST_PYTHON as on a managed host (the implicit localhost
    would run it with the controller's Python): its result, with "failed" added."""
    command = [os.path.join(ANSIBLE_BIN, "ansible"), "localhost", "-c", "local", "-m", "daemonless.oci." + module,
               "-a", json.dumps(args), "-e", "ansible_python_interpreter=" + HOST_PYTHON]
    done = subprocess.run(command, env=ansible_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=300)
    text = done.stdout[done.stdout.index("localhost | "):]
    outcome = json.loads(text[text.index("=>") + 2:])
    outcome["failed"] = text.startswith("localhost | FAILED")
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return outcome


# --------------------------------------------------------------------------
# ocirt-boot on this host, a real process with the system's Python and the role's core

def test_ocirt_boot_brings_back_network_port_and_health_and_the_monitor_restarts(
        scratch, state_root, ocirt, net, params, make_bundle):  # noqa: F811
    if _missing_host_feature():
        pytest.skip(_missing_host_feature())
    bin_dir = os.path.join(scratch, "bin")
    os.mkdir(bin_dir)
    render(bin_dir, [], launchers=True, lib_dir=os.path.join(scratch, "lib"))
    unpack_core(bin_dir, os.path.join(scratch, "lib"))
    network = net()
    port = random.randint(20000, 29000)
    task = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]], publish=["%d:80" % port],
                  restart_policy="on-failure", labels={"app": "web"},
                  healthcheck=dict(test=["sh", "-c", "wget -q -O - http://127.0.0.1:80/ | grep hello"],
                                   interval="0.3s", timeout="5s", retries=2, start_period=None, on_failure="none"))
    cid = task["id"]
    record_path = os.path.join(scratch, "boot", cid + ".json")
    pid_file = os.path.join(scratch, "monitor.pid")
    # The task as the role gives it (module options only), recorded by the real module.
    module_args = dict((name, task[name]) for name in ("id", "bundle", "network", "publish", "restart_policy",
                                                       "labels", "healthcheck", "stop_signal", "stop_timeout",
                                                       "state_root", "network_config_dir", "cni_path"))
    recorded = run_module("oci_container_state", dict(module_args, boot_record=record_path))
    assert not recorded["failed"] and recorded["changed"] and recorded["container"] is None, recorded
    assert ocirt.ids() == [], "boot_record must change no container"
    assert stat.S_IMODE(os.stat(record_path).st_mode) == 0o600
    boot_command = [os.path.join(bin_dir, "ocirt-boot"), "--record", record_path, "--pid-file", pid_file, cid]

    # A tampered record: the error names it, and nothing is made (no container, no network namespace).
    with open(record_path) as handle:
        good = handle.read()
    with open(record_path, "w") as handle:
        handle.write(good.replace('"publish": [', '"publish": 8080, "was": ['))
    failed = subprocess.run(boot_command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                            check=False)
    assert failed.returncode == 1 and "boot record %s: " % record_path in failed.stderr, failed.stderr
    assert ocirt.ids() == [] and not os.path.exists(pid_file)
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, cid)), "network made for a bad record"
    with open(record_path, "w") as handle:
        handle.write(good)

    started = subprocess.run(boot_command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                             check=False)
    assert started.returncode == 0, started.stderr
    state = ocirt.state(cid)
    with open(pid_file) as handle:
        assert int(handle.read()) == state["monitorPid"]
    assert state["status"] == "running" and state["annotations"]["org.daemonless.oci.label.app"] == "web"
    assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % cid
    healthy = poll(lambda: when(ocirt.state(cid), lambda s: (s.get("health") or {}).get("status") == "healthy"),
                   "the health check to pass")
    assert healthy["restartPolicy"] == "on-failure" and healthy["restartCount"] == 0
    # The deploy task after the unit's start finds the container as it wants it: nothing to do.
    again_task = run_module("oci_container_state", module_args)
    assert not again_task["failed"] and again_task["actions"] == [], again_task
    assert again_task["container"]["health"]["status"] == "healthy"

    # kill -9: the monitor restarts it (with its backoff), the port answers again.
    os.kill(state["pid"], 9)
    again = poll(lambda: when(ocirt.state(cid), lambda s: s.get("restartCount") == 1 and s["status"] == "running"),
                 "the monitor to restart the killed container")
    assert again["pid"] != state["pid"] and again["monitorPid"] == state["monitorPid"]
    assert again["lastExitCode"] == 137, again
    assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % cid

    # The unit's ExecStop and ExecStopPost, as systemd runs them: nothing left (the net fixture audits
    # veths, iptables rules and IPAM reservations).
    monitor = (again["monitorPid"], proc_start_time(again["monitorPid"]))
    launcher = os.path.join(bin_dir, "ocirt")
    for words in (["kill", cid, "SIGTERM"], ["wait", "--timeout", "2", cid], ["delete", "--force", cid],
                  ["delete", "--force", cid]):
        subprocess.run([launcher, "--root", state_root] + words, capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=120, check=False)
    wait_gone(*monitor)
    assert ocirt.ids() == []
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, cid)), "the network namespace outlived the unit"


# --------------------------------------------------------------------------
# under a real systemd

def nspawn_record(name, state_root, bundle_dir, **options):
    """The boot record of the container NAME, as oci_container_state with boot_record writes it."""
    scratch_path = os.path.join("/tmp", "ocirt-boot-record-%s-%d.json" % (name, os.getpid()))
    try:
        boot.record(record_params(id=name, bundle=bundle_dir, state_root=state_root, cgroup_manager="cgroupfs",
                                  boot_record=scratch_path, **options))
        with open(scratch_path) as handle:
            return handle.read()
    finally:
        if os.path.exists(scratch_path):
            os.unlink(scratch_path)


SICK_CHECK = dict(test=["test", "-e", "/tmp/ok"], interval="0.3s", timeout="5s", retries=2, start_period=None,
                  on_failure="restart")


def test_the_unit_boots_supervises_and_stops_cleanly_under_systemd(scratch):
    import busybox_bundle
    state_root = "/run/ocirt"
    lib_dir = "/usr/local/lib/daemonless-oci"
    names = ("svc-web", "svc-sick", "svc-bad")
    units = render(scratch, [dict(container_name=name, container_stop_timeout=2) for name in names],
                   launchers=True, lib_dir=lib_dir)
    local_lib = os.path.join(scratch, "lib")
    core = unpack_core(scratch, local_lib)
    files = {lib_dir + "/" + os.path.basename(core): ("copy", core)}
    for launcher in ("ocirt", "ocirt-boot"):
        with open(os.path.join(scratch, launcher)) as handle:
            files["/usr/local/bin/" + launcher] = ("text", handle.read(), 0o755)
    web_check = dict(SICK_CHECK, test=["test", "-e", "/etc/passwd"], on_failure="none")
    options = {"svc-web": dict(restart_policy="on-failure", healthcheck=web_check, labels={"tier": "web"}),
               "svc-sick": dict(healthcheck=SICK_CHECK),
               "svc-bad": dict()}
    for name, unit in zip(names, units):
        bundle_src = os.path.join(scratch, "bundle-" + name)
        busybox_bundle.build_bundle(bundle_src, args=["sh", "-c", "echo up; exec sleep 1000"], config={})
        bundle_dir = "/var/lib/ocirt/bundles/" + name
        unit_name = "ocirt-%s.service" % name
        files["/etc/systemd/system/" + unit_name] = unit
        files["/etc/systemd/system/multi-user.target.wants/" + unit_name] = "->/etc/systemd/system/" + unit_name
        files[bundle_dir] = ("copy", bundle_src)
        # svc-bad's record is readable by others: refused, whatever it holds.
        files["/var/lib/ocirt/boot/%s.json" % name] = (
            "text", nspawn_record(name, state_root, bundle_dir, **options[name]), 0o644 if name == "svc-bad" else 0o600)
    with nspawn_support.booted_systemd(files) as host:
        def ocirt_state(name):
            return json.loads(host.sh("/usr/local/bin/ocirt state %s" % name).stdout)

        verify = host.sh("systemd-analyze verify /etc/systemd/system/ocirt-svc-web.service", check=False)
        assert verify.returncode == 0 and "ocirt-svc-web" not in verify.stderr, verify.stderr
        shown = poll(lambda: when(host.unit("ocirt-svc-web.service", "ActiveState", "MainPID", "NRestarts",
                                            "UnitFileState"), lambda u: u.get("ActiveState") == "active"),
                     "the unit to run")
        assert shown["UnitFileState"] == "enabled", shown
        # The container as the deploy task made it: the health check runs, the label is there.
        state = poll(lambda: when(ocirt_state("svc-web"), lambda s: (s.get("health") or {}).get("status")
                                  == "healthy"), "svc-web's health check to pass under the unit")
        assert state["annotations"]["org.daemonless.oci.label.tier"] == "web"
        assert int(shown["MainPID"]) == state["monitorPid"], "systemd must track the monitor: %s %s" % (shown, state)

        # A killed container: the monitor restarts it after its backoff; systemd sees nothing happen.
        host.sh("kill -9 %d" % state["pid"])
        again = poll(lambda: when(ocirt_state("svc-web"), lambda s: s.get("restartCount") == 1
                                  and s["status"] == "running"), "the monitor to restart svc-web")
        assert again["pid"] != state["pid"] and again["monitorPid"] == state["monitorPid"]
        unit_now = host.unit("ocirt-svc-web.service", "ActiveState", "MainPID", "NRestarts")
        assert unit_now == dict(ActiveState="active", MainPID=str(state["monitorPid"]), NRestarts="0"), unit_now

        # A killed monitor: systemd restarts the unit, which makes the container again from the record.
        host.sh("kill -9 %d" % state["monitorPid"])
        restarted = poll(lambda: when(host.unit("ocirt-svc-web.service", "ActiveState", "MainPID", "NRestarts"),
                                      lambda u: u.get("ActiveState") == "active" and u.get("NRestarts") == "1"),
                         "systemd to restart the unit after its monitor died")
        fresh = poll(lambda: when(host.sh("/usr/local/bin/ocirt state svc-web", check=False),
                                  lambda r: r.returncode == 0 and json.loads(r.stdout)["monitorPid"]
                                  == int(restarted["MainPID"])), "the new container").stdout
        fresh = json.loads(fresh)
        assert fresh["status"] == "running" and fresh["restartCount"] == 0 and fresh["pid"] != again["pid"]
        assert fresh["restartPolicy"] == "on-failure" and "healthcheck" in json.dumps(fresh["annotations"])

        # A failing check: unhealthy after 2 tries, and on_failure=restart restarts it (policy "no").
        sick = poll(lambda: when(ocirt_state("svc-sick"), lambda s: s.get("restartCount", 0) >= 1),
                    "the unhealthy svc-sick to be restarted")
        assert sick["lastExitCode"] == 137 and sick["restartPolicy"] == "no", sick

        # The record others could read: the unit failed, saying why, and made nothing.
        bad = poll(lambda: when(host.unit("ocirt-svc-bad.service", "ActiveState", "Result"),
                                lambda u: u.get("ActiveState") == "failed"), "svc-bad's unit to fail")
        assert bad["Result"] == "exit-code", bad
        journal = host.sh("journalctl -b -u ocirt-svc-bad.service --no-pager", check=False).stdout
        assert "boot record /var/lib/ocirt/boot/svc-bad.json: mode 0644 lets others" in journal, journal[-2000:]
        assert "svc-bad" not in host.sh("/usr/local/bin/ocirt list -q").stdout.split()

        # Stop: through ocirt, nothing left (no container, no monitor), and not restarted.
        pids = []
        for name in ("svc-web", "svc-sick"):
            now = ocirt_state(name)
            # pid 0: between two incarnations (svc-sick restarts); kill -0 0 would be the shell's group.
            pids += [pid for pid in (now["pid"], now["monitorPid"]) if pid]
            host.sh("systemctl stop ocirt-%s.service" % name)
            stopped = host.unit("ocirt-%s.service" % name, "ActiveState", "MainPID")
            assert stopped["ActiveState"] == "inactive" and stopped["MainPID"] == "0", stopped
        assert host.sh("/usr/local/bin/ocirt list -q").stdout.strip() == ""
        left = host.sh("for p in %s; do kill -0 $p 2>/dev/null && echo $p; done; true"
                       % " ".join(map(str, pids))).stdout.split()
        assert left == [], "processes outlived the units: %s" % left


# --------------------------------------------------------------------------
# the role: record, unit, launchers (no systemd here: the unit is only rendered, as container_unit_render_only)

def test_the_role_records_the_task_renders_the_unit_and_installs_a_working_ocirt_boot(role_run, scratch,  # noqa: F811
                                                                                        state_root, ocirt):
    record_dir = os.path.join(scratch, "boot")
    extra = dict(container_boot_persistence=True, container_unit_render_only=True,
                 container_unit_dir=os.path.join(scratch, "units"), container_boot_record_dir=record_dir,
                 container_restart_policy="on-failure", container_wait="healthy", container_timeout=60,
                 container_healthcheck=dict(test=["true"], interval="0.3s", retries=2))
    os.makedirs(os.path.join(scratch, "units"))
    first = role_run(**extra)
    assert first.status == "successful", describe(first)
    record_path = os.path.join(record_dir, role_run.name + ".json")
    assert stat.S_IMODE(os.stat(record_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(record_dir).st_mode) == 0o700
    recorded = boot.load(record_path, role_run.name)
    assert recorded["restart_policy"] == "on-failure" and recorded["healthcheck"]["test"] == ["true"]
    assert recorded["state_root"] == state_root and recorded["stop_signal"] == "SIGKILL"
    with open(os.path.join(scratch, "units", "ocirt-%s.service" % role_run.name)) as handle:
        unit = directives(handle.read())
    boot_launcher = os.path.join(scratch, "bin", "ocirt-boot")
    pid_file = "/run/ocirt-%s.monitor.pid" % role_run.name
    wanted = "%s --record %s --pid-file %s %s" % (boot_launcher, record_path, pid_file, role_run.name)
    assert unit["ExecStart"] == [wanted]
    # No unit runs here: the deploy task made the container, health check and policy included.
    state = ocirt.state(role_run.name)
    assert state["restartPolicy"] == "on-failure" and state["health"]["status"] == "healthy", state

    second = role_run(**extra)
    assert second.status == "successful", describe(second)
    assert stats(second)["localhost"].get("changed", 0) == 0, stats(second)

    # The installed ocirt-boot, as the unit runs it: the same container again (recreated: a boot finds
    # none or a leftover), its monitor's pid written. (That the deploy task then has nothing to do is
    # tested above, on a network.)
    own_pid_file = os.path.join(scratch, "monitor.pid")
    started = subprocess.run([boot_launcher, "--record", record_path, "--pid-file", own_pid_file, role_run.name],
                             env={}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                             check=False)
    assert started.returncode == 0, started.stderr
    again = ocirt.state(role_run.name)
    assert again["pid"] != state["pid"] and again["restartPolicy"] == "on-failure"
    with open(own_pid_file) as handle:
        assert int(handle.read()) == again["monitorPid"]

    gone = role_run(**dict(extra, container_state="absent"))
    assert gone.status == "successful", describe(gone)
    assert not os.path.exists(record_path) and ocirt.ids() == []


def test_a_job_from_its_record_runs_and_needs_no_monitor_pid(scratch, state_root, ocirt, make_bundle):
    # A job's unit runs ocirt-boot without --pid-file, then `ocirt wait`: a job already done is no error.
    record_path = os.path.join(scratch, "boot", "job.json")
    boot.record(record_params(id="job-boot", bundle=make_bundle(["sh", "-c", "echo done; exit 3"]),
                              state_root=state_root, cgroup_manager="cgroupfs", boot_record=record_path))
    assert boot.main(["--record", record_path, "job-boot"]) == 0
    waited = ocirt("wait", "--timeout", "60", "job-boot", check=False)
    assert ocirt.state("job-boot")["exitCode"] == 3, waited.stdout + waited.stderr
