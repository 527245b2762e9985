"""module_defaults for the action group (group/daemonless.oci.oci) through ansible-playbook: every module of
the group takes the group's state_root and works in it.

A user's trial failed with `Unsupported parameters for (daemonless.oci.oci_image) module: state_root`: Ansible
passes each module of a group every option set for the group. Here one play sets state_root for the group
(a private one: a module that ignored it would not find the containers the others made) and image_root per
module, runs a task of each module of meta/runtime.yml's group, and checks that oci_image names the
containers of that state root using its image. The image is imported (import_from), not pulled: no registry.
"""
import json
import os
import textwrap

import yaml

import busybox_bundle
import registry_support as rs
from helpers import REPO, new_id
from test_day_two import run_playbook

NAME = "registry.example/test/group-defaults:1"
# busybox is PID 1 and ignores SIGTERM there: the shell's trap makes the stop quick.
ARGS = ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; /bin/busybox sleep 1000 & wait"]

PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      module_defaults:
        group/daemonless.oci.oci:
          state_root: "{{ root }}"
        # image_root is not an option of every module of the group: it is set per module.
        daemonless.oci.oci_image:
          image_root: "{{ images }}"
        daemonless.oci.oci_image_info:
          image_root: "{{ images }}"
        daemonless.oci.oci_bundle:
          image_root: "{{ images }}"
      tasks:
        - name: import the image
          daemonless.oci.oci_image:
            name: "{{ name }}"
            import_from: "{{ import_dir }}"
          register: imported
        - name: a bundle from it
          daemonless.oci.oci_bundle:
            path: "{{ work }}/one"
            image: "{{ name }}"
            args: "{{ args }}"
          register: bundle
        - name: its container
          daemonless.oci.oci_container_state:
            id: "{{ one }}"
            bundle: "{{ work }}/one"
          register: container
        - name: another container, with its bundle, from the same image
          daemonless.oci.oci_containers:
            containers:
              - id: "{{ two }}"
                bundle: "{{ work }}/two"
                image: "{{ name }}"
                image_root: "{{ images }}"
                args: "{{ args }}"
          register: fleet
        - name: a command in the first
          daemonless.oci.oci_container_exec:
            id: "{{ one }}"
            argv: [/bin/busybox, echo, hello]
          register: exec
        - name: info
          daemonless.oci.oci_container_info:
            name: ["{{ one }}", "{{ two }}"]
          register: info
        - name: facts
          daemonless.oci.oci_container_facts:
            name: ["{{ one }}", "{{ two }}"]
          register: facts
        - name: a network
          daemonless.oci.oci_network:
            name: "{{ net }}"
            subnet: 10.213.9.0/24
            config_dir: "{{ work }}/cni"
          register: network
        - name: the image, with the containers using it
          daemonless.oci.oci_image:
            name: "{{ name }}"
            pull: never
          register: image
        - name: the image's info
          daemonless.oci.oci_image_info:
            name: "{{ name }}"
          register: image_info
        - name: its removal, refused while containers use it
          daemonless.oci.oci_image:
            name: "{{ name }}"
            state: absent
          register: refused
          ignore_errors: true
        - name: results
          ansible.builtin.copy:
            dest: "{{ out }}"
            content: "{{ dict(imported=imported, bundle=bundle, container=container, fleet=fleet, exec=exec,
                             info=info, facts=facts, network=network, image=image, image_info=image_info,
                             refused=refused) | to_json }}"
    """)


def write_import_dir(directory):
    """An import_from directory for oci_image: one layer holding busybox, the blobs named by their hex."""
    with open(busybox_bundle.BUSYBOX, "rb") as handle:
        busybox = handle.read()
    manifest, blobs = rs.make_image(None, layers=[[rs._file_info("bin/busybox", busybox, mode=0o755)]])
    os.makedirs(directory)
    digest = rs.digest_of(manifest)
    blobs[digest] = manifest
    for blob_digest, data in blobs.items():
        with open(os.path.join(directory, blob_digest.split(":", 1)[1]), "wb") as handle:
            handle.write(data)
    with open(os.path.join(directory, "image.json"), "w") as handle:
        json.dump(dict(digest=digest, manifest=digest), handle)


def test_the_group_state_root_reaches_every_module_and_oci_image_names_the_containers(scratch, state_root):
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        group = yaml.safe_load(handle)["action_groups"]["oci"]
    missing = [m for m in group if "daemonless.oci.%s:" % m not in PLAYBOOK]
    assert not missing, "the playbook has no task of %s" % missing
    import_dir = os.path.join(scratch, "import")
    write_import_dir(import_dir)
    one, two = new_id("grp"), new_id("grp")
    out = os.path.join(scratch, "results.json")
    playbook = os.path.join(scratch, "group.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK)
    variables = dict(root=state_root, images=os.path.join(scratch, "images"), work=os.path.join(scratch, "work"),
                     import_dir=import_dir, name=NAME, args=ARGS, one=one, two=two, net=new_id("n")[:15], out=out)
    done = run_playbook(playbook, "-e", json.dumps(variables))
    assert done.returncode == 0 and os.path.exists(out), done.stdout + done.stderr
    assert "Unsupported parameters" not in done.stdout + done.stderr
    with open(out) as handle:
        results = json.load(handle)
    assert results["imported"]["changed"] and results["imported"]["image"]["containers"] == []
    assert results["container"]["container"]["status"] == "running", results["container"]
    assert [item["container"]["status"] for item in results["fleet"]["containers"]] == ["running"]
    assert results["exec"]["rc"] == 0 and results["exec"]["stdout"].strip() == "hello", results["exec"]
    assert sorted(c["id"] for c in results["info"]["containers"]) == sorted([one, two])
    assert set(results["facts"]["ansible_facts"]["oci_containers"]) == {one, two}
    assert results["network"]["changed"] and results["network"]["users"] == []
    image = results["image"]["image"]
    assert not results["image"]["changed"] and image["containers"] == sorted([one, two]), image
    assert results["image_info"]["images"][0]["containers"] == sorted([one, two])
    refused = results["refused"]
    assert refused["failed"] and "name: %s" % NAME in refused["msg"], refused
    assert "container(s) %s in state_root %s" % (", ".join(sorted([one, two])), state_root) in refused["msg"]
