"""oci_containers' backend (_ansible/containers.py) on real containers, without Ansible.

The module only hands its parameters to run() and reports what comes back
(failing when run() says failed), so these are the module's behaviours:
converging several containers and their bundles in one run, idempotence,
exclusive removal, check mode, diff, and a failing item that is reported
while the others converge.
"""
import json
import os

import pytest

from helpers import SERVICE, WORDS_BY_ROOT, new_id, proc_start_time, state_entries, wait_gone
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import containers
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


@pytest.fixture
def fleet(state_root):
    """fleet(items, **options) -> containers.run's result for ITEMS in STATE_ROOT (ids noted for the audit)."""
    def run(items, check_mode=False, diff=False, **options):
        WORDS_BY_ROOT.setdefault(state_root, set()).update(
            item["id"] for item in items if isinstance(item, dict) and "id" in item)
        params = dict(containers=items, exclusive=False, parallel=containers.DEFAULT_PARALLEL, state_root=state_root)
        params.update(options)
        return containers.run(params, check_mode=check_mode, diff=diff)
    return run


@pytest.fixture
def rootfs(make_bundle):
    """A busybox root filesystem directory, for items that declare their bundle (rootfs_from)."""
    return os.path.join(make_bundle(["true"], name="source"), "rootfs")


def by_id(result):
    return dict((r["id"], r) for r in result["containers"] + result["removed"])


def running_pid(outcome):
    container = outcome["container"]
    assert container["status"] == "running", outcome
    assert proc_start_time(container["pid"]) is not None
    return container["pid"], proc_start_time(container["pid"])


def test_converges_several_containers_once_then_exclusive_removes_the_unnamed(
        fleet, make_bundle, rootfs, scratch, state_root):
    ready_made = make_bundle(SERVICE)
    declared = os.path.join(scratch, "declared")
    ids = [new_id("fl") for _number in range(4)]
    items = [dict(id=ids[0], bundle=declared, rootfs_from=rootfs, args=SERVICE, memory="64M"),
             dict(id=ids[1], bundle=declared, rootfs_from=rootfs, args=SERVICE, memory="64M"),
             dict(id=ids[2], bundle=ready_made),
             dict(name=ids[3], bundle=ready_made, stop_timeout=1)]
    first = fleet(items)
    assert first["changed"] and "failed" not in first
    assert [r["id"] for r in first["containers"]] == ids and first["removed"] == []
    assert [b["path"] for b in first["bundles"]] == [declared]  # declared once for two items; ready_made untouched
    assert first["bundles"][0]["changed"] and first["bundles"][0]["failed"] is False
    with open(os.path.join(declared, "config.json")) as handle:
        config = json.load(handle)
    assert config["process"]["args"] == SERVICE
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    pids = {}
    for container_id in ids:
        outcome = by_id(first)[container_id]
        assert outcome["changed"] and outcome["failed"] is False and outcome["actions"] == ["create", "start"]
        pids[container_id] = running_pid(outcome)
    assert by_id(first)[ids[0]]["container"]["bundle"] == declared
    assert by_id(first)[ids[2]]["container"]["bundle"] == ready_made
    assert len(set(pid for pid, _start in pids.values())) == 4

    again = fleet(items)
    assert again["changed"] is False
    assert again["bundles"][0]["changed"] is False and again["bundles"][0]["actions"] == []
    for container_id in ids:
        outcome = by_id(again)[container_id]
        assert outcome["changed"] is False and outcome["actions"] == []
        assert (outcome["container"]["pid"], proc_start_time(outcome["container"]["pid"])) == pids[container_id]

    kept = fleet(items[2:3], exclusive=True)
    assert kept["changed"] and kept["containers"][0]["changed"] is False
    assert sorted(r["id"] for r in kept["removed"]) == sorted(ids[:2] + ids[3:])
    for outcome in kept["removed"]:
        assert outcome["changed"] and outcome["actions"] == ["stop", "delete"] and outcome["container"] is None
        wait_gone(*pids[outcome["id"]])
    assert proc_start_time(pids[ids[2]][0]) == pids[ids[2]][1]
    assert sorted(state_entries(state_root)) == [ids[2]]
    assert os.path.isfile(os.path.join(declared, "config.json"))  # bundles are never removed

    gone = fleet([dict(id=ids[2], state="absent")])
    assert gone["changed"] and gone["containers"][0]["actions"] == ["stop", "delete"]
    wait_gone(*pids[ids[2]])
    assert state_entries(state_root) == []


def test_check_mode_reports_every_bundle_and_container_and_makes_nothing(
        fleet, make_bundle, rootfs, scratch, state_root):
    ready_made = make_bundle(SERVICE)
    declared = os.path.join(scratch, "declared")
    ids = [new_id("fc"), new_id("fc")]
    items = [dict(id=ids[0], bundle=declared, rootfs_from=rootfs, args=SERVICE),
             dict(id=ids[1], bundle=ready_made)]
    result = fleet(items, check_mode=True, diff=True)
    assert result["changed"] and "failed" not in result
    assert result["bundles"][0]["changed"] and any(a.startswith("write ") for a in result["bundles"][0]["actions"])
    for outcome in result["containers"]:
        assert outcome["changed"] and outcome["actions"] == ["create", "start"] and outcome["container"] is None
    assert not os.path.lexists(declared)
    assert state_entries(state_root) == []
    after = result["diff"]["after"]
    assert json.loads(after["bundles"][declared])["process"]["args"] == SERVICE
    assert after["containers"][ids[0]]["status"] == "running"
    assert after["containers"][ids[0]]["config"]["process"]["args"] == SERVICE  # the config it would have
    assert result["diff"]["before"]["containers"][ids[1]] == {"status": "absent", "config": {}}

    # A real run, then check mode with one change: only that container would be recreated.
    fleet(items)
    changed_items = [dict(items[0], args=["sleep", "999"]), items[1]]
    check = fleet(changed_items, check_mode=True, diff=True)
    outcome = by_id(check)
    assert outcome[ids[0]]["changed"] and outcome[ids[0]]["actions"][0].startswith("stop: process.args changed")
    assert outcome[ids[1]]["changed"] is False
    assert list(check["diff"]["after"]["containers"]) == [ids[0]]
    with open(os.path.join(declared, "config.json")) as handle:
        assert json.load(handle)["process"]["args"] == SERVICE
    assert by_id(fleet(items))[ids[0]]["changed"] is False
    fleet([dict(id=i, state="absent") for i in ids])


def test_a_failing_item_is_reported_and_the_others_converge(fleet, make_bundle, rootfs, scratch, state_root):
    good = make_bundle(SERVICE)
    broken = make_bundle(SERVICE)
    with open(os.path.join(broken, "config.json"), "w") as handle:
        handle.write("{not json")
    ids = dict((name, new_id("ff")) for name in ("good1", "nosource", "badjson", "good2"))
    items = [dict(id=ids["good1"], bundle=good),
             dict(id=ids["nosource"], bundle=os.path.join(scratch, "nosource"),
                  rootfs_from=os.path.join(scratch, "missing-rootfs"), args=SERVICE),
             dict(id=ids["badjson"], bundle=broken),
             dict(id=ids["good2"], bundle=os.path.join(scratch, "declared"), rootfs_from=rootfs, args=SERVICE)]
    result = fleet(items)
    assert result["failed"] is True
    assert result["msg"].startswith("2 of 4 containers failed: %s, %s" % (ids["nosource"], ids["badjson"]))
    outcome = by_id(result)
    assert outcome[ids["nosource"]]["failed"] and "missing-rootfs" in outcome[ids["nosource"]]["msg"]
    assert outcome[ids["nosource"]]["msg"].startswith("container %s: bundle " % ids["nosource"])
    assert outcome[ids["badjson"]]["failed"] and "malformed JSON" in outcome[ids["badjson"]]["msg"]
    failed_bundles = [b for b in result["bundles"] if b["failed"]]
    assert [b["path"] for b in failed_bundles] == [os.path.join(scratch, "nosource")]
    for name in ("good1", "good2"):
        assert outcome[ids[name]]["failed"] is False
        running_pid(outcome[ids[name]])
    # Nothing of the failed items is left: no state, no bundle directory.
    assert sorted(state_entries(state_root)) == sorted([ids["good1"], ids["good2"]])
    assert not os.path.lexists(os.path.join(scratch, "nosource", "rootfs"))
    fleet([dict(id=ids[name], state="absent") for name in ("good1", "good2")])


@pytest.mark.parametrize("items, needles", [
    ([dict(id="a", bundle="/x"), dict(id="b", bundle="/x", memroy="1G")], ["containers[1] (id b)", "memroy"]),
    ([dict(id="a", bundle="/x", pids_limit="many")], ["containers[0] (id a)", "pids_limit"]),
    ([dict(id="a", bundle="/x"), dict(id="a", bundle="/y")], ["containers[1] (id a)", "also containers[0]'s"]),
    ([dict(id="a")], ["containers[0] (id a)", "bundle"]),
    ([dict(bundle="/x")], ["containers[0]", "id"]),
    (["web"], ["containers[0]: must be a dict"]),
    ([dict(id="a", bundle="/x", args=["true"]), dict(id="b", bundle="/x", args=["false"])],
     ["containers[1] (id b)", "bundle /x is also containers[0]'s, with other args"]),
    ([dict(id="../a", bundle="/x")], ["containers[0]", "../a"]),
    ([dict(id="a", bundle="/x", state="gone")], ["containers[0] (id a)", "state"]),
])
def test_invalid_items_fail_the_task_before_anything_is_done(fleet, make_bundle, state_root, items, needles):
    innocent = dict(id=new_id("fi"), bundle=make_bundle(SERVICE))  # valid, last: not converged either
    with pytest.raises(OCIError) as error:
        fleet(items + [innocent])
    message = str(error.value)
    assert message.startswith("invalid containers, nothing done: ")
    for needle in needles:
        assert needle in message, message
    assert state_entries(state_root) == []


def test_exclusive_check_mode_names_what_it_would_remove_and_removes_nothing(fleet, make_bundle, state_root):
    bundle = make_bundle(SERVICE)
    ids = [new_id("fx"), new_id("fx")]
    fleet([dict(id=i, bundle=bundle) for i in ids])
    result = fleet([dict(id=ids[0], bundle=bundle)], exclusive=True, check_mode=True)
    assert result["changed"] and [r["id"] for r in result["removed"]] == [ids[1]]
    assert result["removed"][0]["actions"] == ["stop", "delete"]
    assert sorted(state_entries(state_root)) == sorted(ids)
    rerun = fleet([dict(id=i, bundle=bundle) for i in ids], exclusive=True)
    assert rerun["changed"] is False, [(r["id"], r.get("actions"), r.get("msg")) for r in rerun["containers"] + rerun["removed"]]
    fleet([], exclusive=True)
    assert state_entries(state_root) == []
