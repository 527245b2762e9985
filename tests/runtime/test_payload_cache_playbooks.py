"""The controller's persistent payload cache (plugins/action/, plugins/plugin_utils/_payload_cache.py),
through real ansible-playbook runs of the collection's modules on localhost.

What is proved, structurally (each payload build is counted where ansible
makes it, by tests/callback_plugins/payload_probe.py; nothing is timed): a
second playbook run builds none of our payloads; the payload it uses is the
one a fresh build makes, plus compiled code beside ansible's own sources; a source file whose mtime alone changed is rebuilt
into exactly the payloads that hold it; a corrupt entry is ignored and
replaced; and check mode, diff mode and async still behave through the action
plugins. Each test works on its own copy of the collection, its own
ANSIBLE_HOME and its own state root.
"""
import json
import os

import pytest

from helpers import SERVICE, new_id
from payload_cache_support import (ansible_env, copy_collection, entries, fresh_build, run_play, store_of,
                                   zip_members)


@pytest.fixture
def workspace(scratch):
    collections_path, root = copy_collection(scratch)
    return scratch, collections_path, root


def four_tasks(bundle, state_root, new_ids):
    """oci_bundle on a bundle as it is; oci_containers in check mode; oci_container_state in check and diff
    mode; oci_container_info as an async task: four modules, each one payload build when not cached."""
    one, two = new_ids
    return [
        {"name": "bundle", "daemonless.oci.oci_bundle": {"path": bundle, "state_root": state_root}},
        {"name": "fleet", "check_mode": True, "daemonless.oci.oci_containers": {
            "state_root": state_root, "containers": [{"id": one, "bundle": bundle}]}},
        {"name": "state", "check_mode": True, "diff": True, "daemonless.oci.oci_container_state": {
            "id": two, "bundle": bundle, "state": "running", "state_root": state_root}},
        {"name": "info", "async": 120, "poll": 1, "daemonless.oci.oci_container_info": {"state_root": state_root}},
    ]


def assert_results(results, state_root):
    for name in ("bundle", "fleet", "state", "info"):
        assert results[name][0] == "ok", (name, results[name])
    fleet = results["fleet"][1]
    assert fleet["changed"] is True and fleet["containers"][0]["actions"] == ["create", "start"], fleet
    state = results["state"][1]
    assert state["changed"] is True and state["diff"]["before"] != state["diff"]["after"], state
    info = results["info"][1]
    assert info["finished"] == 1 and info["containers"] == [], info
    # Check mode made nothing: no container was created under the state root.
    assert not os.path.isdir(state_root) or not [name for name in os.listdir(state_root) if not name.startswith("=")]


MODULES = ("oci_bundle", "oci_containers", "oci_container_state", "oci_container_info")


def test_a_second_run_builds_no_payload_and_uses_what_a_fresh_build_makes(workspace, make_bundle, state_root):
    base, collections_path, root = workspace
    env = ansible_env(base, collections_path)
    bundle = make_bundle(SERVICE)
    tasks = four_tasks(bundle, state_root, (new_id("pc"), new_id("pc")))

    first_builds, first = run_play(base, env, tasks)
    assert dict(first_builds) == dict((module, 1) for module in MODULES)
    assert_results(first, state_root)
    stored = entries(store_of(base))
    assert sorted(stored) == sorted(MODULES)
    assert oct(os.stat(store_of(base)).st_mode & 0o777) == "0o700"

    second_builds, second = run_play(base, env, tasks)
    assert dict(second_builds) == {}, "payloads were built again: %s" % dict(second_builds)
    assert_results(second, state_root)
    assert second["bundle"][1]["changed"] is False  # the first run restricted the bundle's modes
    for name in ("fleet", "state", "info"):
        assert first[name][1]["changed"] == second[name][1]["changed"]
    assert first["state"][1]["diff"] == second["state"][1]["diff"]

    # What the second run used (the store's entries, planted unchanged) holds the very files a fresh build holds.
    for module in ("oci_containers",):  # the largest payload; one fresh build costs a second of CPU
        cached = zip_members(stored[module]["zip_data"])
        fresh = fresh_build(collections_path, module)
        assert len(fresh) > 50 and [name for name in fresh if cached.get(name) != fresh[name]] == []
        # Beyond them, only compiled code of ansible's own sources, which the modules above ran with.
        assert sorted(set(cached) - set(fresh)) == sorted(name[:-3] + ".pyc" for name in fresh
                                                          if name.startswith("ansible/"))
        ours = [name for name in cached if name.startswith("ansible_collections/daemonless/oci/plugins/module_utils/")]
        assert len([path for path in stored[module]["files"] if path.startswith(root)]) >= len(ours) > 40


def test_a_touched_source_rebuilds_exactly_the_payloads_that_hold_it_and_a_corrupt_entry_is_replaced(
        workspace, make_bundle, state_root):
    base, collections_path, root = workspace
    env = ansible_env(base, collections_path)
    bundle = make_bundle(SERVICE)
    tasks = four_tasks(bundle, state_root, (new_id("pc"), new_id("pc")))
    builds, _results = run_play(base, env, tasks)
    assert sum(builds.values()) == 4
    stored = entries(store_of(base))

    # A file in some payloads but not all: only its mtime changes (content, size and inode stay).
    touched = os.path.join(root, "plugins", "module_utils", "_ansible", "container_state.py")
    holders = sorted(module for module, entry in stored.items() if touched in entry["files"])
    assert holders and len(holders) < len(MODULES), holders
    info = os.stat(touched)
    os.utime(touched, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    # And one entry is cut short, as a crash without the atomic rename would leave it.
    (info_entry,) = [name for name in os.listdir(store_of(base)) if ".oci_container_info-" in name]
    with open(os.path.join(store_of(base), info_entry), "r+b") as handle:
        handle.truncate(1000)

    builds, results = run_play(base, env, tasks)
    assert dict(builds) == dict((module, 1) for module in holders + ["oci_container_info"])
    assert_results(results, state_root)
    with open(os.path.join(store_of(base), info_entry)) as handle:
        replaced = json.load(handle)
    assert replaced["identity"]["fqn"].endswith(".oci_container_info") and len(replaced["zip_data"]) > 10000

    builds, _results = run_play(base, env, tasks)
    assert "oci_container_info" not in builds and not set(builds) - set(holders), dict(builds)


def test_the_cache_can_be_switched_off(workspace, make_bundle, state_root):
    base, collections_path, _root = workspace
    env = ansible_env(base, collections_path, DAEMONLESS_OCI_PAYLOAD_CACHE="off")
    tasks = [{"name": "info", "daemonless.oci.oci_container_info": {"state_root": state_root}}]
    builds, results = run_play(base, env, tasks)
    assert dict(builds) == {"oci_container_info": 1} and results["info"][0] == "ok"
    # Nothing kept, so every later run builds again.
    assert not os.path.exists(os.path.join(base, "home", "daemonless.oci"))

    # Without compiled code: kept and used as ansible built it.
    plain = os.path.join(base, "plain", "payloads")
    env = ansible_env(base, collections_path, DAEMONLESS_OCI_PAYLOAD_BYTECODE="0", DAEMONLESS_OCI_PAYLOAD_CACHE_DIR=plain)
    assert dict(run_play(base, env, tasks)[0]) == {"oci_container_info": 1}
    assert dict(run_play(base, env, tasks)[0]) == {}
    kept = entries(plain)["oci_container_info"]
    assert kept["identity"]["bytecode"] is False
    assert [name for name in zip_members(kept["zip_data"]) if name.endswith(".pyc")] == []

    moved = os.path.join(base, "elsewhere", "payloads")
    env = ansible_env(base, collections_path, DAEMONLESS_OCI_PAYLOAD_CACHE_DIR=moved)
    assert dict(run_play(base, env, tasks)[0]) == {"oci_container_info": 1}
    assert dict(run_play(base, env, tasks)[0]) == {}
    assert entries(moved) and not os.path.exists(os.path.join(base, "home", "daemonless.oci"))
