"""oci_containers' items and workers, without containers: the item options are oci_bundle's and
oci_container_state's (taken from argument_specs, so options added there flow through), and the
worker processes return every result, in order, even when one dies."""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import containers
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
    bundle_argument_spec, container_state_argument_spec)


def test_an_item_takes_every_option_of_both_modules_but_the_task_wide_ones():
    spec = containers.item_argument_spec()
    bundle, state = bundle_argument_spec(), container_state_argument_spec()
    expected = (set(bundle) | set(state)) - {"path", "force", "state_root"}
    assert set(spec) == expected | set(containers.REMOVE_BUNDLE_ARGSPEC)  # the one option of neither module
    assert spec["state"] == state["state"]  # the container's state, not the bundle's present/absent
    for name in set(bundle) - set(containers.NOT_PER_ITEM):
        assert spec[name] == bundle[name]
    assert set(containers.bundle_options()) == set(bundle) - {"path", "state", "force", "state_root"}


def test_validation_fills_defaults_and_tells_which_items_declare_their_bundle():
    items, errors = containers.validate([dict(id="a", bundle="/b"), dict(name="c", bundle="/b", args=["x"])])
    assert errors == []
    assert items[0]["state"] == "running" and items[0]["managed_bundle"] is False
    assert items[1]["id"] == "c" and items[1]["managed_bundle"] is True and items[1]["args"] == ["x"]
    assert items[1]["rootfs_check"] == "identity"


def test_parallel_map_keeps_the_order_and_runs_in_other_processes():
    parent = os.getpid()
    results = containers.parallel_map(lambda job: [job * 2, os.getpid()], list(range(7)), 3)
    assert [r[0] for r in results] == [0, 2, 4, 6, 8, 10, 12]
    assert parent not in set(r[1] for r in results) and len(set(r[1] for r in results)) == 3
    assert containers.parallel_map(lambda job: [job, os.getpid()], [5], 3) == [[5, parent]]


def test_a_worker_that_dies_leaves_its_jobs_failed_and_the_others_done():
    def job(number):
        if number == 3:
            os._exit(9)
        return dict(number=number)
    results = containers.parallel_map(job, list(range(6)), 2)
    # Worker 1 had jobs 1, 3, 5: it reported 1, then died.
    assert results[0] == dict(number=0) and results[1] == dict(number=1)
    assert results[2] == dict(number=2) and results[4] == dict(number=4)
    for index in (3, 5):
        assert results[index]["failed"] is True and "exited before reporting" in results[index]["msg"]
