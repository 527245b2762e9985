"""oci_containers' options for the role daemonless.oci.container (its deploy and its removal are one task
each), on real containers.

remove_bundle: the container goes, then its bundle directory, as oci_bundle state=absent removes it; a
bundle another container still uses is refused, naming it, and both stay; check mode says so and removes
nothing; bad input fails before anything is done.
single: the one container's result at the top level, as oci_container_state returns it (what the role
registers as container_result), a failure's msg the container's own.
"""
import os

import pytest

from helpers import SERVICE, new_id, state_entries
from test_oci_containers import fleet, rootfs  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def removal(container_id, bundle, **extra):
    item = dict(id=container_id, state="absent", bundle=bundle, remove_bundle=True, stop_timeout=1)
    item.update(extra)
    return item


def test_remove_bundle_removes_the_container_then_its_bundle_and_check_mode_removes_nothing(
        fleet, rootfs, scratch, state_root):  # noqa: F811
    bundle = os.path.join(scratch, "declared")
    cid = new_id("rb")
    made = fleet([dict(id=cid, bundle=bundle, rootfs_from=rootfs, args=SERVICE)])
    assert made["containers"][0]["container"]["status"] == "running", made

    checked = fleet([removal(cid, bundle)], check_mode=True)
    assert checked["changed"] and checked["containers"][0]["actions"] == ["stop", "delete"], checked
    assert checked["bundles"][0]["actions"] == ["remove %s" % bundle], checked
    assert os.path.isfile(os.path.join(bundle, "config.json")) and state_entries(state_root) == [cid]

    gone = fleet([removal(cid, bundle)])
    assert gone["changed"] and "failed" not in gone, gone
    assert gone["containers"][0]["actions"] == ["stop", "delete"] and not gone["containers"][0]["failed"]
    assert [(b["path"], b["actions"], b["failed"]) for b in gone["bundles"]] == [
        (bundle, ["remove %s" % bundle], False)]
    assert not os.path.lexists(bundle) and state_entries(state_root) == []

    again = fleet([removal(cid, bundle)])
    assert again["changed"] is False and again["bundles"][0]["actions"] == [], again


def test_a_bundle_another_container_uses_is_refused_naming_it_and_both_stay(
        fleet, make_bundle, state_root):  # noqa: F811
    bundle = make_bundle(SERVICE)
    leaving, staying = new_id("rb"), new_id("rb")
    fleet([dict(id=leaving, bundle=bundle), dict(id=staying, bundle=bundle)])
    result = fleet([removal(leaving, bundle), dict(id=staying, bundle=bundle)])
    assert result["failed"] and leaving in result["msg"], result
    outcome = dict((r["id"], r) for r in result["containers"])[leaving]
    assert outcome["failed"] and staying in outcome["msg"] and "used by" in outcome["msg"], outcome
    assert outcome["msg"].startswith("container %s: bundle %s" % (leaving, bundle)), outcome
    # The container itself went; its bundle and the other container stay as they were.
    assert os.path.isfile(os.path.join(bundle, "config.json"))
    assert state_entries(state_root) == [staying]


def test_a_bundle_path_that_is_not_a_directory_is_left_and_reported(fleet, make_bundle, scratch, state_root):  # noqa: F811
    target = make_bundle(SERVICE)
    link = os.path.join(scratch, "link")
    os.symlink(target, link)
    cid = new_id("rb")
    fleet([dict(id=cid, bundle=target)])
    result = fleet([removal(cid, link)])
    outcome = result["containers"][0]
    assert result["failed"] and outcome["failed"] and "not a bundle directory" in outcome["msg"], result
    assert os.path.islink(link) and os.path.isfile(os.path.join(target, "config.json"))
    assert state_entries(state_root) == []


@pytest.mark.parametrize("item", [
    dict(id="a", bundle="/x", remove_bundle=True),                     # state running
    dict(id="a", bundle="/x", state="stopped", remove_bundle=True),
    dict(id="a", state="absent", remove_bundle=True),                  # no bundle to remove
    dict(id="a", bundle="/x", state="absent", remove_bundle="sometimes"),
])
def test_remove_bundle_without_state_absent_and_a_bundle_fails_before_anything(
        fleet, make_bundle, scratch, state_root, item):  # noqa: F811
    innocent = make_bundle(SERVICE)
    with pytest.raises(OCIError) as error:
        fleet([item, dict(id=new_id("rb"), bundle=innocent)])
    assert str(error.value).startswith("invalid containers, nothing done: containers[0] (id a)")
    assert "remove_bundle" in str(error.value)
    assert state_entries(state_root) == [] and os.path.isfile(os.path.join(innocent, "config.json"))


def test_single_returns_the_containers_result_as_oci_container_state_does(fleet, rootfs, scratch, state_root):  # noqa: F811
    bundle = os.path.join(scratch, "declared")
    cid = new_id("sg")
    item = dict(id=cid, bundle=bundle, rootfs_from=rootfs, args=["sh", "-c", "echo done; exit 3"], wait="exited",
                timeout=60)
    job = fleet([item], single=True)
    assert job["changed"] and "failed" not in job, job
    assert job["id"] == cid and job["actions"] == ["create", "start"] and job["exit_code"] == 3
    assert job["container"]["status"] == "stopped" and "done" in " ".join(job["logs_lines"])
    assert job["msg"] == "container %s: create, start; job exited with code 3" % cid, job
    assert [c["id"] for c in job["containers"]] == [cid] and job["bundles"][0]["path"] == bundle

    # The bundle's change alone changes the task (the container, a finished job, is recreated with it).
    changed = fleet([dict(item, env={"A": "1"})], single=True)
    assert changed["changed"] and changed["bundles"][0]["changed"], changed

    failed = fleet([dict(id=new_id("sg"), bundle=os.path.join(scratch, "other"),
                         rootfs_from=os.path.join(scratch, "missing"))], single=True)
    assert failed["failed"] and failed["msg"].startswith("container %s: bundle " % failed["id"]), failed
    assert "missing" in failed["msg"] and failed["container"] is None


def test_single_needs_exactly_one_item(fleet, make_bundle, state_root):  # noqa: F811
    bundle = make_bundle(SERVICE)
    for items in ([], [dict(id=new_id("sg"), bundle=bundle), dict(id=new_id("sg"), bundle=bundle)]):
        with pytest.raises(OCIError) as error:
            fleet(items, single=True)
        assert str(error.value) == "single: needs exactly one item in containers, not %d" % len(items)
    assert state_entries(state_root) == []


def test_a_failing_job_item_says_what_it_did_and_the_others_converge(fleet, rootfs, make_bundle, scratch, state_root):  # noqa: F811
    job_id, service_id = new_id("jb"), new_id("jb")
    job = dict(id=job_id, bundle=os.path.join(scratch, "job"), rootfs_from=rootfs, args=["sh", "-c", "echo x; exit 4"],
               wait="exited", expected_exit_codes=[0])
    result = fleet([job, dict(id=service_id, bundle=make_bundle(SERVICE))])
    failed, converged = result["containers"]
    assert result["failed"] and failed["failed"] and not converged["failed"], result
    assert failed["msg"] == "container %s: job exited with code 4, expected 0; its last output: x" % job_id, failed
    # Not changed=False and no container, as before: the job was created, started and ran.
    assert failed["changed"] and failed["actions"] == ["create", "start"] and failed["exit_code"] == 4, failed
    assert failed["container"]["status"] == "stopped" and converged["container"]["status"] == "running"
