"""The action group's promise: module_defaults for group/daemonless.oci.oci reach every module of the group,
and Ansible passes each of them every option set there, so an option of the group must be one of all of them.

A user's `module_defaults: {group/daemonless.oci.oci: {state_root: ...}}` once failed on oci_image, which had no
state_root ("Unsupported parameters"). The image store's containers (pull.py) are checked here too, without
a registry or a real container: a store record, a bundle directory and a state directory are enough.
"""
import importlib
import os

import pytest
import yaml

from helpers import REPO
from ansible.module_utils import basic
from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.platform import host_platform, platform_text
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container

# Options the whole group takes: what README.md and the state_root doc fragment tell users to set for the group.
GROUP_OPTIONS = ("state_root",)
NAME = "registry.example/team/app:1"


def group_modules():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)["action_groups"]["oci"]


class Built(Exception):
    """Stops a module's main() once it has built its AnsibleModule: the argument spec is all that is wanted."""


def argument_spec_of(module_name, monkeypatch):
    seen = {}

    def record(self, argument_spec, **_kwargs):
        seen.update(argument_spec)
        raise Built()
    monkeypatch.setattr(basic.AnsibleModule, "__init__", record)
    module = importlib.import_module("ansible_collections.daemonless.oci.plugins.modules." + module_name)
    with pytest.raises(Built):
        module.main()
    return seen


@pytest.mark.parametrize("module_name", group_modules())
def test_every_module_of_the_group_takes_the_group_options(module_name, monkeypatch):
    spec = argument_spec_of(module_name, monkeypatch)
    missing = [name for name in GROUP_OPTIONS if name not in spec]
    assert not missing, "%s is in action_groups.oci but has no %s" % (module_name, missing)


@pytest.fixture
def used_image(tmp_path):
    """(image_root, state_root, bundle): NAME in a store, used by BUNDLE, from which container c1 was created."""
    store = Store(str(tmp_path / "images"))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    # Pulled records carry their platform; the host's, so that pull=never finds this one.
    record = dict(digest="sha256:" + "a" * 64, manifest="sha256:" + "b" * 64, layers=[],
                  platform=platform_text(host_platform()))
    with store.locked():
        store.set_name(NAME, record)
        store.add_user(str(bundle), NAME, record)
    state_root = str(tmp_path / "state")
    with Container.new(state_root, "c1") as container:
        container.write({"ociVersion": "1.0.2", "id": "c1", "status": "created", "pid": 0, "bundle": str(bundle),
                         "rootfs": str(bundle / "rootfs"), "created": "2024-01-01T00:00:00.000000000Z"})
    with Container.new(state_root, "other") as container:
        container.write({"ociVersion": "1.0.2", "id": "other", "status": "created", "pid": 0, "bundle": "/elsewhere",
                         "rootfs": "/elsewhere/rootfs", "created": "2024-01-01T00:00:00.000000000Z"})
    return store.root, state_root, str(bundle)


def test_the_image_lists_the_containers_of_the_state_root_that_use_it(used_image):
    image_root, state_root, bundle = used_image
    image = pull.ensure_present(image_root, NAME, pull="never", state_root=state_root)["image"]
    assert image["used_by"] == [bundle] and image["containers"] == ["c1"]
    # Another state root holds other containers: none of them is this image's.
    elsewhere = pull.ensure_present(image_root, NAME, pull="never", state_root=state_root + "-none")["image"]
    assert elsewhere["containers"] == []
    assert pull.describe(image_root, NAME, state_root)[0]["containers"] == ["c1"]


def test_a_refused_removal_names_the_containers_using_the_image(used_image):
    image_root, state_root, bundle = used_image
    with pytest.raises(OCIError) as refused:
        pull.ensure_absent(image_root, NAME, state_root=state_root)
    message = str(refused.value)
    assert "name: %s" % NAME in message and bundle in message
    assert "container(s) c1 in state_root %s" % state_root in message and "other" not in message
    # The refusal left the name where it was.
    assert pull.ensure_present(image_root, NAME, pull="never", state_root=state_root)["image"]["containers"] == ["c1"]


def test_image_info_takes_one_name_or_a_list_and_names_a_bad_one_by_its_place(used_image):
    image_root, state_root, _bundle = used_image
    other = "registry.example/app/other:1"
    assert [i["name"] for i in pull.describe(image_root, [NAME, other], state_root)] == [NAME]
    assert [i["name"] for i in pull.describe(image_root, NAME, state_root)] == [NAME]
    assert pull.describe(image_root, [other], state_root) == []
    with pytest.raises(OCIError) as bad:
        pull.describe(image_root, [NAME, "nginx:1.27"], state_root)
    assert str(bad.value).startswith("name[1]: "), str(bad.value)
