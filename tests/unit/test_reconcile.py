"""Which change means update, which recreate, which nothing: reconcile.compare and reconcile.plan."""
import copy

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import reconcile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

BUNDLE = "/srv/bundles/web"


def config(**resources):
    result = spec.default_config(["sleep", "1000"])
    result["linux"]["resources"].update(resources)
    return result


def describe(actions):
    return [a.describe() for a in actions]


def state(status, bundle=BUNDLE):
    return {"id": "web", "status": status, "bundle": bundle}


# -- compare ------------------------------------------------------------------------------

def test_identical_configs_need_nothing():
    assert reconcile.compare(config(), config()) == ({}, [])


@pytest.mark.parametrize("before,after,updates", [
    ({"memory": {"limit": 1 << 26}}, {"memory": {"limit": 1 << 27}}, {"memory": {"limit": 1 << 27}}),
    ({}, {"memory": {"limit": 1 << 26}}, {"memory": {"limit": 1 << 26}}),
    ({"pids": {"limit": 10}}, {"pids": {"limit": 20}}, {"pids": {"limit": 20}}),
    ({"cpu": {"quota": 50000, "period": 100000}}, {"cpu": {"quota": 20000, "period": 100000}},
     {"cpu": {"quota": 20000}}),
    ({"blockIO": {"weight": 100}}, {"blockIO": {"weight": 200}}, {"blockIO": {"weight": 200}}),
    # A limit that goes away becomes "no limit", in place.
    ({"memory": {"limit": 1 << 26}}, {}, {"memory": {"limit": -1}}),
    ({"memory": {"limit": 1 << 26, "swap": 1 << 27}}, {"memory": {"limit": 1 << 26}}, {"memory": {"swap": -1}}),
    ({"pids": {"limit": 10}}, {}, {"pids": {"limit": -1}}),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4096}]},
     {"hugepageLimits": [{"pageSize": "2MB", "limit": 4096}]}),
])
def test_limit_changes_are_updates(before, after, updates):
    assert reconcile.compare(config(**before), config(**after)) == (updates, [])


@pytest.mark.parametrize("change,reason", [
    (lambda c: c["process"].update(args=["sleep", "2000"]), "process.args changed"),
    (lambda c: c["process"].update(env=["A=1"]), "process.env changed"),
    (lambda c: c.update(hostname="other"), "hostname changed"),
    (lambda c: c["root"].update(readonly=False), "root.readonly changed"),
    (lambda c: c["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv"}), "mounts changed"),
    (lambda c: c["linux"]["resources"].update(devices=[]), "linux.resources.devices changed"),
    (lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}), "linux.sysctl.net.ipv4.ip_forward changed"),
    (lambda c: c["linux"]["resources"].update(cpu={"shares": 512}) or c["linux"]["resources"].pop("cpu"),
     None),
])
def test_other_changes_recreate(change, reason):
    desired = config()
    change(desired)
    updates, reasons = reconcile.compare(config(), desired)
    if reason is None:
        assert (updates, reasons) == ({}, [])
    else:
        assert updates == {}
        assert reasons == [reason]


def test_a_removed_limit_without_an_unlimited_value_recreates():
    updates, reasons = reconcile.compare(config(cpu={"shares": 512}), config())
    assert updates == {}
    assert reasons == ["linux.resources.cpu.shares removed"]


def test_an_update_and_a_recreate_together_recreate():
    desired = config(memory={"limit": 1 << 27})
    desired["process"]["args"] = ["true"]
    updates, reasons = reconcile.compare(config(memory={"limit": 1 << 26}), desired)
    assert reasons == ["process.args changed"]
    actions = reconcile.plan(state("running"), config(memory={"limit": 1 << 26}), desired, BUNDLE, "running")
    assert [a.verb for a in actions] == ["stop", "delete", "create", "start"]


def test_effective_config_takes_the_updated_resources():
    created = config(memory={"limit": 1 << 26})
    updated = dict(created["linux"]["resources"], memory={"limit": 1 << 27})
    effective = reconcile.effective_config(created, updated)
    assert effective["linux"]["resources"]["memory"] == {"limit": 1 << 27}
    assert created["linux"]["resources"]["memory"] == {"limit": 1 << 26}  # not modified
    # After an update to 128M, a bundle asking for 128M needs nothing more.
    assert reconcile.compare(effective, config(memory={"limit": 1 << 27})) == ({}, [])


# -- plan -----------------------------------------------------------------------------------

@pytest.mark.parametrize("status,want,expected", [
    (None, "running", ["create", "start"]),
    (None, "created", ["create"]),
    (None, "stopped", ["create"]),
    (None, "absent", []),
    ("created", "running", ["start"]),
    ("created", "created", []),
    ("created", "stopped", []),
    ("created", "absent", ["stop", "delete"]),
    ("running", "running", []),
    ("running", "stopped", ["stop"]),
    ("running", "absent", ["stop", "delete"]),
    ("running", "created", ["stop: wanted created, is running", "delete: wanted created, is running",
                            "create: recreate: wanted created, is running"]),
    ("paused", "running", ["resume"]),
    ("paused", "stopped", ["stop"]),
    ("stopped", "stopped", []),
    ("stopped", "absent", ["delete"]),
    ("stopped", "running", ["delete: stopped, wanted running", "create: recreate: stopped, wanted running", "start"]),
])
def test_plan_moves_between_states(status, want, expected):
    current = state(status) if status else None
    actions = reconcile.plan(current, config() if current else None, config(), BUNDLE, want)
    assert describe(actions) == expected


def test_a_container_whose_restart_is_due_is_left_to_its_monitor_unless_wanted_stopped_or_changed():
    pending = dict(state("stopped"), restartPending=True, supervised=True)
    assert reconcile.plan(pending, config(), config(), BUNDLE, "running") == []
    assert describe(reconcile.plan(pending, config(), config(), BUNDLE, "stopped")) == ["stop: its restart is due"]
    assert describe(reconcile.plan(pending, config(), None, None, "stopped")) == ["stop: its restart is due"]
    assert describe(reconcile.plan(pending, config(), config(), BUNDLE, "absent")) == ["delete"]
    changed = config()
    changed["process"]["args"] = ["true"]
    assert [a.verb for a in reconcile.plan(pending, config(), changed, BUNDLE, "running")] == \
        ["delete", "create", "start"]
    # Without a pending restart (the monitor gave up, or there is none) a stopped one is started again.
    assert [a.verb for a in reconcile.plan(dict(pending, restartPending=False), config(), config(), BUNDLE,
                                           "running")] == ["delete", "create", "start"]


def test_a_finished_job_is_not_run_again():
    actions = reconcile.plan(state("stopped"), config(), config(), BUNDLE, "running", job=True)
    assert actions == []


def test_a_finished_job_runs_again_when_asked_or_changed():
    assert [a.verb for a in reconcile.plan(state("stopped"), config(), config(), BUNDLE, "running", job=True,
                                           restart=True)] == ["delete", "create", "start"]
    changed = config()
    changed["process"]["args"] = ["true"]
    assert [a.verb for a in reconcile.plan(state("stopped"), config(), changed, BUNDLE, "running",
                                           job=True)] == ["delete", "create", "start"]


def test_update_in_place_for_a_live_container_only():
    before, after = config(memory={"limit": 1 << 26}), config(memory={"limit": 1 << 27})
    assert describe(reconcile.plan(state("running"), before, after, BUNDLE, "running")) == ["update: memory"]
    assert describe(reconcile.plan(state("created"), before, after, BUNDLE, "created")) == ["update: memory"]
    # A stopped container is recreated anyway, with the new limit.
    assert [a.verb for a in reconcile.plan(state("stopped"), before, after, BUNDLE, "running")] == [
        "delete", "create", "start"]


def test_another_bundle_recreates():
    actions = reconcile.plan(state("running", bundle="/srv/bundles/old"), config(), config(), BUNDLE, "running")
    assert [a.verb for a in actions] == ["stop", "delete", "create", "start"]
    assert "bundle changed from /srv/bundles/old to /srv/bundles/web" in actions[0].describe()


@pytest.mark.parametrize("flags", [{"recreate": True}, {"restart": True}])
def test_recreate_and_restart_force_a_new_container(flags):
    actions = reconcile.plan(state("running"), config(), config(), BUNDLE, "running", **flags)
    assert [a.verb for a in actions] == ["stop", "delete", "create", "start"]


def test_plan_does_not_modify_its_inputs():
    current, stored, desired = state("running"), config(memory={"limit": 1}), config(memory={"limit": 2})
    copies = copy.deepcopy((current, stored, desired))
    reconcile.plan(current, stored, desired, BUNDLE, "running")
    assert (current, stored, desired) == copies


@pytest.mark.parametrize("name,number", [("SIGTERM", 15), ("term", 15), ("9", 9), ("SIGKILL", 9)])
def test_stop_signal_names(name, number):
    assert reconcile.Options(stop_signal=name).stop_signal == number


@pytest.mark.parametrize("options,needles", [
    ({"stop_signal": "SIGNOPE"}, ["stop_signal", "SIGNOPE"]),
    ({"stop_signal": "0"}, ["stop_signal", "out of range"]),
    ({"stop_signal": "65"}, ["stop_signal", "out of range"]),
    ({"stop_timeout": -1}, ["stop_timeout", "-1"]),
    ({"log_max_size": -5}, ["log_max_size", "-5"]),
    ({"log_max_files": 0}, ["log_max_files", "0"]),
])
def test_bad_options_are_errors_naming_the_option(options, needles):
    """Options are checked when made: before any action, so a bad one changes nothing."""
    with pytest.raises(OCIError) as caught:
        reconcile.Options(**options)
    for needle in needles:
        assert needle in str(caught.value)


def test_options_pass_only_what_is_set_to_create():
    assert reconcile.Options().log == {}
    options = reconcile.Options(log_path="", log_max_size=0, log_max_files=1)
    assert options.log == {"log_max_size": 0, "log_max_files": 1}
    assert reconcile.Options(log_path="/var/log/c.log").log == {"log_path": "/var/log/c.log"}


@pytest.mark.parametrize("current,verbs,after", [
    (None, [], "absent"),
    (None, ["create"], "created"),
    (None, ["create", "start"], "running"),
    ({"status": "running"}, [], "running"),
    ({"status": "running"}, ["stop", "delete"], "absent"),
    ({"status": "running"}, ["stop", "delete", "create", "start"], "running"),
    ({"status": "paused"}, ["resume"], "running"),
    ({"status": "running"}, ["update"], "running"),
])
def test_status_after(current, verbs, after):
    actions = [reconcile.Action(verb, resources={"memory": {}}) for verb in verbs]
    assert reconcile.status_after(current, actions) == after


# -- stopped without a bundle, and a bundle not made yet (check mode): issue 19 ------------------

@pytest.mark.parametrize("status,expected", [
    ("running", ["stop"]), ("paused", ["stop"]), ("created", []), ("stopped", []), (None, []),
])
def test_stopped_without_a_bundle_only_stops_what_runs(status, expected):
    current = state(status) if status else None
    assert describe(reconcile.plan(current, config() if current else None, None, None, "stopped")) == expected


@pytest.mark.parametrize("status,expected", [
    (None, ["create", "start"]),
    ("running", ["stop: bundle /b not made yet", "delete: bundle /b not made yet",
                 "create: recreate: bundle /b not made yet", "start"]),
])
def test_a_bundle_not_made_yet_plans_a_create(status, expected):
    current = state(status) if status else None
    actions = reconcile.plan(current, config() if current else None, None, "/b", "running",
                             unknown="bundle /b not made yet")
    assert describe(actions) == expected
