"""The systemd cgroup driver's plumbing: `ocirt --systemd-cgroup`, and oci_container_state's cgroup_manager.

What needs a real systemd (the scope, its Delegate=yes, its removal) is in
tests/runtime/test_cgroup_v2.py, under systemd booted by systemd-nspawn;
PID 1 here is no systemd, so this file checks the decisions, the arguments
that reach create, and the refusals.
"""
import json
import os

import pytest

from helpers import new_id
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state, reconcile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create, run

SLEEP = ["sleep", "1000"]
NO_SYSTEMD = not os.path.isdir("/run/systemd/system")


# --------------------------------------------------------------------------
# the default manager
# --------------------------------------------------------------------------

@pytest.mark.parametrize("systemd_is_pid1,mode,expected", [
    (True, "v2", "systemd"),
    (True, "hybrid", "cgroupfs"),
    (True, "v1", "cgroupfs"),
    (False, "v2", "cgroupfs"),
    (False, "hybrid", "cgroupfs"),
    (False, "none", "cgroupfs"),
])
def test_the_default_manager_is_systemd_only_under_systemd_on_pure_v2(systemd_is_pid1, mode, expected):
    assert container_state.default_cgroup_manager(systemd_is_pid1, mode) == expected


def test_this_hosts_default_manager_follows_its_facts():
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Layout
    expected = container_state.default_cgroup_manager(os.path.isdir("/run/systemd/system"), Layout.detect().mode)
    assert container_state.host_cgroup_manager() == expected
    if NO_SYSTEMD:
        assert expected == "cgroupfs"


# --------------------------------------------------------------------------
# the driver's cgroupsPath
# --------------------------------------------------------------------------

def test_an_empty_cgroups_path_becomes_the_ocirt_scope_in_system_slice():
    assert systemd.driver_path(None, "web") == "system.slice:ocirt:web"
    assert systemd.driver_path("", "web") == "system.slice:ocirt:web"
    scope = systemd.parse(systemd.driver_path(None, "web"), "web")
    assert (scope.slice, scope.unit, scope.path) == ("system.slice", "ocirt-web.scope",
                                                     "/system.slice/ocirt-web.scope")


@pytest.mark.parametrize("given", ["machine.slice:pod:web", "system.slice:ocirt:", ":x:web"])
def test_a_systemd_form_cgroups_path_is_kept(given):
    assert systemd.driver_path(given, "web") == given


@pytest.mark.parametrize("given", ["/machine/web", "relative/web", "a:b"])
def test_a_cgroup_path_is_refused_naming_the_field_and_the_option(given):
    with pytest.raises(OCIError) as caught:
        systemd.driver_path(given, "web", option="cgroup_manager=systemd")
    message = str(caught.value)
    assert "linux.cgroupsPath" in message and "cgroup_manager=systemd" in message and repr(given) in message


# --------------------------------------------------------------------------
# ocirt --systemd-cgroup
# --------------------------------------------------------------------------

@pytest.fixture
def recorded(monkeypatch):
    """create, create_monitored and run replaced by recorders of their keyword arguments."""
    calls = []
    for module, name in ((create, "create"), (create, "create_monitored"), (run, "run")):
        monkeypatch.setattr(module, name, lambda *args, _name=name, **kwargs: calls.append((_name, kwargs)) or 0)
    return calls


@pytest.mark.parametrize("argv,called", [
    (["create", "c1"], "create"),
    (["create", "--monitor", "c1"], "create_monitored"),
    (["run", "c1"], "run"),
    (["run", "--detach", "c1"], "run"),
])
@pytest.mark.parametrize("flag", [True, False])
def test_the_flag_reaches_create_and_run(tmp_path, recorded, argv, called, flag):
    assert cli.main(["--root", str(tmp_path)] + (["--systemd-cgroup"] if flag else []) + argv) == 0
    assert [(name, kwargs["systemd_cgroup"]) for name, kwargs in recorded] == [(called, flag)]


def test_the_flag_is_taken_by_commands_that_need_nothing_of_it(tmp_path, capsys):
    assert cli.main(["--systemd-cgroup", "--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_usage_names_the_flag(capsys):
    assert cli.main(["--help"]) == 0
    assert "[--systemd-cgroup]" in capsys.readouterr().out


def test_with_the_flag_a_cgroup_path_fails_create_naming_it_and_leaves_nothing(ocirt, make_bundle):
    container_id = new_id("sdpath")
    bundle = make_bundle(SLEEP, config={"linux": {"cgroupsPath": "/machine/" + container_id}})
    result = ocirt("--systemd-cgroup", "create", "--bundle", bundle, container_id, check=False)
    assert result.returncode == 1
    assert "linux.cgroupsPath" in result.stderr and "--systemd-cgroup" in result.stderr
    assert "slice:prefix:name" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))


@pytest.mark.skipif(not NO_SYSTEMD, reason="systemd manages this host")
def test_with_the_flag_and_no_systemd_create_says_why_and_leaves_nothing(ocirt, make_bundle):
    container_id = new_id("sdnone")
    bundle = make_bundle(SLEEP)
    result = ocirt("--systemd-cgroup", "run", "--detach", "--bundle", bundle, container_id, check=False)
    assert result.returncode == 1
    assert "system.slice:ocirt:%s" % container_id in result.stderr and "systemd" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))


def test_without_the_flag_an_empty_cgroups_path_is_the_runtimes_own_cgroup(ocirt, make_bundle):
    container_id = new_id("cgfs")
    ocirt("create", "--bundle", make_bundle(SLEEP), container_id)
    try:
        with open(os.path.join(ocirt.root, container_id, "state.json")) as handle:
            assert json.load(handle)["cgroupPath"] == "/ocirt/" + container_id
    finally:
        ocirt("delete", "--force", container_id)


# --------------------------------------------------------------------------
# oci_container_state: cgroup_manager
# --------------------------------------------------------------------------

def params(root, container_id, bundle, **extra):
    result = dict(state_root=root, id=container_id, bundle=bundle, state="running", recreate=False,
                  restart=False, wait="none", timeout=0, stop_signal="SIGTERM", stop_timeout=10, log_path=None,
                  log_max_size=None, log_max_files=None, logs_lines=20, cgroup_manager=None)
    result.update(extra)
    return result


def test_with_systemd_the_config_gets_the_scope_and_keeps_the_rest():
    config = {"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "pid"}]}}
    converted = container_state.with_cgroup_manager(config, "systemd", "web")
    assert converted["linux"] == {"namespaces": [{"type": "pid"}], "cgroupsPath": "system.slice:ocirt:web"}
    assert config["linux"] == {"namespaces": [{"type": "pid"}]}, "the bundle's config was modified"
    assert container_state.with_cgroup_manager(config, "cgroupfs", "web") == config


def test_a_change_of_manager_recreates_and_none_is_idempotent():
    bundle = "/srv/b"
    config = {"ociVersion": "1.0.2", "process": {"args": SLEEP}, "linux": {}}
    as_systemd = container_state.with_cgroup_manager(config, "systemd", "web")
    running = {"status": "running", "bundle": bundle}
    assert reconcile.plan(running, as_systemd, as_systemd, bundle, "running") == []
    assert reconcile.plan(running, config, config, bundle, "running") == []
    for current, desired in ((config, as_systemd), (as_systemd, config)):
        actions = [a.describe() for a in reconcile.plan(running, current, desired, bundle, "running")]
        assert actions == ["stop: linux.cgroupsPath changed", "delete: linux.cgroupsPath changed",
                           "create: recreate: linux.cgroupsPath changed", "start"]


def test_the_manager_reaches_create(monkeypatch):
    seen = []
    monkeypatch.setattr(create, "create_monitored", lambda *args, **kwargs: seen.append(kwargs))
    for flag in (True, False):
        reconcile.apply("/nonexistent", "web", "/b", [reconcile.Action("create")],
                        reconcile.Options(systemd_cgroup=flag, log_max_files=3))
    # config (the desired config, container_state.desired) and supervision are passed as they are: None here.
    assert seen == [dict(systemd_cgroup=flag, log_max_files=3, config=None, supervision=None) for flag in (True, False)]


def test_the_module_plans_a_recreate_when_the_manager_changes(state_root, make_bundle, monkeypatch):
    """A real container made with cgroupfs; the plan (check mode) with systemd recreates it into the scope."""
    container_id = new_id("mgr")
    bundle = make_bundle(SLEEP)
    made = container_state.run(params(state_root, container_id, bundle, cgroup_manager="cgroupfs"))
    assert made["cgroup_manager"] == "cgroupfs"
    assert made["container"]["cgroup_path"] == "/ocirt/" + container_id
    assert container_state.run(params(state_root, container_id, bundle, cgroup_manager="cgroupfs"),
                               check_mode=True)["actions"] == []
    # Pretend systemd is reachable for the plan: check mode makes no scope.
    monkeypatch.setattr(systemd, "available", lambda: None)
    planned = container_state.run(params(state_root, container_id, bundle, cgroup_manager="systemd"),
                                  check_mode=True, diff=True)
    assert planned["cgroup_manager"] == "systemd"
    assert planned["actions"][-2:] == ["create: recreate: linux.cgroupsPath changed", "start"]
    assert planned["diff"]["after"]["config"]["linux"]["cgroupsPath"] == "system.slice:ocirt:" + container_id
    assert "cgroupsPath" not in planned["diff"]["before"]["config"]["linux"]


@pytest.mark.skipif(not NO_SYSTEMD, reason="systemd manages this host")
def test_systemd_without_systemd_fails_naming_the_option_and_keeps_the_container(state_root, make_bundle):
    container_id = new_id("mgr")
    bundle = make_bundle(SLEEP)
    container_state.run(params(state_root, container_id, bundle, cgroup_manager="cgroupfs"))
    pid = container_state.observe(state_root, container_id)[0]["pid"]
    with pytest.raises(OCIError, match="cgroup_manager=systemd: PID 1 is not systemd"):
        container_state.run(params(state_root, container_id, bundle, cgroup_manager="systemd"))
    after = container_state.observe(state_root, container_id)[0]
    assert (after["status"], after["pid"]) == ("running", pid)


def test_systemd_with_a_cgroup_path_in_the_bundle_fails_naming_the_option(state_root, make_bundle, monkeypatch):
    monkeypatch.setattr(systemd, "available", lambda: None)
    container_id = new_id("mgr")
    bundle = make_bundle(SLEEP, config={"linux": {"cgroupsPath": "/machine/x"}})
    with pytest.raises(OCIError, match="cgroup_manager=systemd"):
        container_state.run(params(state_root, container_id, bundle, cgroup_manager="systemd"), check_mode=True)
    assert container_state.observe(state_root, container_id) == (None, None)


def test_an_unknown_manager_is_refused_naming_the_option():
    with pytest.raises(OCIError, match="cgroup_manager: must be one of cgroupfs, systemd"):
        container_state.with_cgroup_manager({}, "lxcfs", "web")
